"""Loading answers bad input clearly and before any gradient work (issue 22): a name that is
neither a local folder nor a reachable hub repo says both, swapped or mismatched (model,
tokenizer) pairs are named, a GRADIEND folder is read as untrusted (safetensors only, files
inside it only), non-finite base weights are refused like non-finite GRADIEND weights, and a
16-bit gradient cache never stores an overflow as inf."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import torch
from conftest import fast_args, he_she_data
from safetensors.torch import load_file, save_file
from tiny import make_model, make_tokenizer

from gradiend import GradiendModel, ModelWithGradiend, TextPredictionTrainer
from gradiend.data.hub import load_hub_data
from gradiend.data.sources import resolve_base_data
from gradiend.lm.checks import cache_dtype_for, check_model_arg
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.run_layout import MODEL_CONFIG, MODEL_INDICES, MODEL_WEIGHTS
from gradiend.trainer.gradient_data import GradientBatches, per_example_matrix

ROOT = Path(__file__).resolve().parents[1]
# the shared wording of both non-finite errors (GRADIEND and base model)
NONFINITE = (
    r"the (GRADIEND|base model) weights in .+ hold NaN or inf: (\d+) non-finite value\(s\) "
    r"in (\d+) tensor\(s\) \((.+): (\d+)\)\. "
)


@pytest.fixture(scope="module")
def tiny() -> dict:
    """``{kind: (model, tokenizer)}``: untrained tiny models (the checks need no feature)."""
    return {kind: make_model(kind) for kind in ("mlm", "clm")}


@pytest.fixture
def no_gradients(monkeypatch):
    """Fail the test if any gradient is computed (bad input must be refused first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a gradient was computed before the input was checked")

    for name in ("batch", "per_example", "iter_per_example", "directional"):
        monkeypatch.setattr(GradientComputer, name, refuse)


def _trainer(model, tmp_path, **kw):
    return TextPredictionTrainer(
        model=model,
        run_id="r",
        data=kw.pop("data", he_she_data(20)),
        args=fast_args(tmp_path),
        **kw,
    )


# --------------------------------------------------------------------------- 1: folder or hub id
def _says_both(err: str, name: str, where: Path) -> None:
    assert f"{name!r} is neither a local folder nor a hub repo" in err, err
    assert f"no folder at {where / name}" in err and f"working folder {where}" in err, err
    assert "Fix: pass the path of an existing" in err and "for a hub repo" in err, err


def test_a_missing_one_slash_model_folder_says_folder_and_hub(
    tmp_path, monkeypatch, no_model_loads
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as info:
        TextPredictionTrainer(model="models/my-bert", data=he_she_data(10))
    _says_both(str(info.value), "models/my-bert", tmp_path)
    assert "hub is offline (HF_HUB_OFFLINE is set)" in str(info.value)
    # a repo the hub cache holds is accepted offline (no model is loaded here)
    (tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc").mkdir(parents=True)
    check_model_arg("org/cached")


def test_a_hub_that_does_not_answer_is_named_with_its_error(tmp_path, monkeypatch):
    import transformers

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_repo(*args, **kwargs):
        raise OSError("models/my-bert is not a valid model identifier listed on the hub")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_repo)
    with pytest.raises(FileNotFoundError) as info:
        load_base_model("models/my-bert", device="cpu")
    _says_both(str(info.value), "models/my-bert", tmp_path)
    assert "the hub has no repo 'models/my-bert' or cannot be reached (OSError: models/my-bert" in (
        str(info.value)
    )


def test_missing_one_slash_data_and_gradiend_folders_say_both(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        _trainer(tiny["mlm"], tmp_path, data="corpora/x")
    _says_both(str(info.value), "corpora/x", tmp_path)
    assert str(info.value).startswith("data 'corpora/x'")
    with pytest.raises(FileNotFoundError) as info:
        load_hub_data("corpora/x")
    _says_both(str(info.value), "corpora/x", tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        resolve_base_data("corpora/x")
    _says_both(str(info.value), "corpora/x", tmp_path)
    assert str(info.value).startswith("base_data 'corpora/x'")
    with pytest.raises(FileNotFoundError) as info:
        GradiendModel.from_pretrained("runs/my-gradiend")
    _says_both(str(info.value), "runs/my-gradiend", tmp_path)


# --------------------------------------------------------------------------- 2: objects and order
def test_swapped_model_and_tokenizer_are_named_before_loading(tiny, tmp_path, no_model_loads):
    model, tok = tiny["mlm"]
    with pytest.raises(TypeError, match=r"swapped: got \(\w+, BertForMaskedLM\)"):
        _trainer((tok, model), tmp_path)
    with pytest.raises(TypeError, match="model= got a tokenizer.*tokenizer="):
        _trainer(tok, tmp_path, tokenizer=model)
    with pytest.raises(TypeError, match="needs a loaded model.*got a str"):
        _trainer(("bert", tok), tmp_path)
    with pytest.raises(TypeError, match="model must be a hub id.*got a dict"):
        _trainer({"model": model}, tmp_path)


def test_load_base_model_names_swapped_and_wrong_objects(tiny):
    model, tok = tiny["clm"]
    with pytest.raises(TypeError, match="swapped"):
        load_base_model((tok, model))
    with pytest.raises(TypeError, match="swapped"):
        load_base_model(tok, model)
    with pytest.raises(TypeError, match="must be a tokenizer.*got a LlamaForCausalLM"):
        load_base_model(model, model)
    lm = load_base_model((model, tok))
    assert load_base_model(lm) is lm  # a loaded BaseLM passes through


def test_model_with_gradiend_names_the_order(tiny):
    lm = load_base_model(tiny["mlm"])
    gradiend = GradiendModel(4)
    with pytest.raises(
        TypeError, match=r"got the GRADIEND first.*ModelWithGradiend\(lm, gradiend\)"
    ):
        ModelWithGradiend(gradiend, lm)
    with pytest.raises(TypeError, match="must be the base model as a BaseLM.*got a tuple"):
        ModelWithGradiend(tiny["mlm"], gradiend)
    with pytest.raises(TypeError, match="second argument must be a GradiendModel"):
        ModelWithGradiend(lm, "runs/x")
    with pytest.raises(TypeError, match="a base model goes to base_model="):
        ModelWithGradiend.from_pretrained(tiny["mlm"])


def test_a_tokenizer_larger_than_the_embedding_is_refused_before_gradients(tmp_path, no_gradients):
    model, _ = make_model("clm")
    tok = make_tokenizer("mlm")  # a masked model's tokenizer, with tokens the model never saw
    tok.add_tokens(["zebra", "quokka"])
    rows = model.get_input_embeddings().weight.shape[0]
    msg = rf"{len(tok)} tokens\) does not fit.*{rows} embedding rows.*ids {rows}\.\.{len(tok) - 1}"
    with pytest.raises(ValueError, match=msg + ".*tokenizer saved with the model"):
        load_base_model((model, tok))
    with pytest.raises(ValueError, match="does not fit"):
        _trainer((model, tok), tmp_path).train()


def test_a_masked_lm_with_a_tokenizer_without_mask_token_is_refused(tmp_path, no_gradients):
    model, _ = make_model("mlm")
    tok = make_tokenizer("clm")  # a causal model's tokenizer: no [MASK] token
    with pytest.raises(ValueError, match="BertForMaskedLM is a masked LM, but its tokenizer"):
        load_base_model((model, tok))
    with pytest.raises(ValueError, match="has no mask token.*tokenizer saved with the masked"):
        _trainer((model, tok), tmp_path).train()


# --------------------------------------------------------------------------- 3 and 4: received files
@pytest.fixture
def saved(tmp_path) -> Path:
    folder = tmp_path / "gradiend"
    GradiendModel(4, indices=torch.arange(10, 14)).save_pretrained(folder)
    return folder


@pytest.fixture
def never_unpickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.mark.parametrize("fmt", ["torch.save", "pickle", "garbage"])
def test_a_weights_file_that_is_not_safetensors_is_refused(saved, fmt, never_unpickle):
    path = saved / MODEL_WEIGHTS
    state = {k: v.clone() for k, v in load_file(str(path)).items()}
    path.unlink()  # the loaded file may be memory-mapped: write a new one
    if fmt == "torch.save":
        torch.save(state, path)  # torch.save is patched only for loading
        kind = "it is a zip archive, the format of torch.save"
    elif fmt == "pickle":
        path.write_bytes(pickle.dumps({k: v.tolist() for k, v in state.items()}, protocol=4))
        kind = "it starts like a Python pickle"
    else:
        path.write_bytes(b"\x00\x01 not a tensor file")
        kind = "its header cannot be read"
    msg = rf"{re.escape(str(path))} is not a safetensors file \({kind}.*never unpickles.*save_file"
    with pytest.raises(ValueError, match=msg):
        GradiendModel.from_pretrained(saved)
    (saved / MODEL_INDICES).write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=f"{MODEL_INDICES} is not a safetensors file"):
        GradiendModel.from_pretrained(saved)


def test_the_library_never_calls_an_unpickler():
    """No torch.load, pickle.load(s), numpy allow_pickle or pandas read_pickle in the library."""
    banned = re.compile(r"torch\.load\(|pickle\.loads?\(|import pickle|allow_pickle|read_pickle\(")
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "gradiend").rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if banned.search(line)
    ]
    assert hits == []


def _point(folder: Path, key: str, name: str) -> None:
    cfg = json.loads((folder / MODEL_CONFIG).read_text())
    if key == "indices_file":
        cfg["mapping"]["indices_file"] = name
    else:
        cfg[key] = name
    (folder / MODEL_CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
@pytest.mark.parametrize("key", ["indices_file", "importance_file"])
def test_a_config_naming_a_file_outside_its_folder_is_refused(saved, tmp_path, how, key):
    outside = tmp_path / "elsewhere.safetensors"
    save_file({"indices": torch.arange(4), "decoder_fit": torch.zeros(4, 1)}, str(outside))
    name = {"absolute": str(outside), "dotdot": "../elsewhere.safetensors", "symlink": "in.st"}
    if how == "symlink":
        (saved / "in.st").symlink_to(outside)
    _point(saved, key, name[how])
    label = "mapping.indices_file" if key == "indices_file" else key
    msg = rf"{label} '{re.escape(name[how])}' leads outside the GRADIEND folder"
    with pytest.raises(ValueError, match=msg + ".*reads only files inside its own folder"):
        GradiendModel.from_pretrained(saved)


def test_weights_linked_out_are_refused_but_a_hub_snapshot_loads(saved, tmp_path):
    outside = tmp_path / "w.safetensors"
    (saved / MODEL_WEIGHTS).rename(outside)
    (saved / MODEL_WEIGHTS).symlink_to(outside)
    with pytest.raises(ValueError, match="the weights file 'model.safetensors' leads outside"):
        GradiendModel.from_pretrained(saved)
    repo = tmp_path / "models--org--g"
    snap, blobs = repo / "snapshots" / "c0ffee", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (saved / MODEL_WEIGHTS).unlink()
    outside.rename(saved / MODEL_WEIGHTS)
    for f in saved.iterdir():  # the hub cache's layout: snapshot files link to blobs
        f.rename(blobs / f.name)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / f.name)
    loaded = GradiendModel.from_pretrained(snap)
    assert torch.equal(loaded.indices, torch.arange(10, 14))


# --------------------------------------------------------------------------- 5: non-finite weights
def test_nan_base_weights_are_refused_before_the_first_gradient(tiny, tmp_path, no_gradients):
    model, tok = copy.deepcopy(tiny["mlm"][0]), tiny["mlm"][1]
    name = "bert.encoder.layer.0.attention.self.query.weight"
    with torch.no_grad():
        model.get_parameter(name)[0, :3] = float("nan")
        model.get_parameter("cls.predictions.transform.dense.bias")[1] = float("inf")
    trainer = _trainer((model, tok), tmp_path)
    with pytest.raises(ValueError, match=NONFINITE) as info:
        trainer.train()
    msg = str(info.value)
    assert "base model weights in BertForMaskedLM" in msg
    assert "4 non-finite value(s) in 2 tensor(s)" in msg, msg
    assert f"{name}: 3" in msg and "cls.predictions.transform.dense.bias: 1" in msg
    assert "Load an intact checkpoint" in msg
    assert not (trainer.model_dir / MODEL_WEIGHTS).exists()


def test_nan_gradiend_and_base_weights_read_alike(saved):
    path = saved / MODEL_WEIGHTS
    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    path.unlink()  # the loaded file may be memory-mapped: write a new one
    tensors["encoder.0.linear.weight"][0, :2] = float("inf")
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=NONFINITE) as info:
        GradiendModel.from_pretrained(saved)
    msg = str(info.value)
    assert f"GRADIEND weights in {path}" in msg
    assert "2 non-finite value(s) in 1 tensor(s) (encoder.0.linear.weight: 2). Retrain" in msg


# --------------------------------------------------------------------------- 6: 16-bit cache
class _Computer:
    """Gradients of a fixed size per batch (``scale`` of them huge)."""

    def __init__(self, scales: list[float]):
        self.dim, self.device, self.scales = 4, torch.device("cpu"), scales

    def batch(self, rows, kinds):
        g = torch.arange(1.0, 5.0) * self.scales[rows[0]]
        return {k: g * (1 if k == "factual" else -1) for k in kinds}


def _cache(tmp_path: Path | None, scales: list[float], dtype=torch.float16) -> GradientBatches:
    return GradientBatches(
        _Computer(scales),
        items=list(range(len(scales))),
        batches=[[i] for i in range(len(scales))],
        source="factual",
        target="alternative",
        max_bytes=1e9,
        cache_dir=tmp_path,
        progress=False,
        dtype=dtype,
    )


def test_an_overflowing_float16_batch_widens_the_cache_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="gradiend.lm.checks"):
        cache = _cache(tmp_path / "c", [1.0, 1e5, 2.0])
    assert cache.dtype == torch.float32
    for i, scale in enumerate([1.0, 1e5, 2.0]):
        s, t = cache[i]
        assert s.dtype == t.dtype == torch.float32 and torch.isfinite(s).all()
        assert torch.equal(s, torch.arange(1.0, 5.0) * scale) and torch.equal(t, -s)
    stored = load_file(str(tmp_path / "c" / "batch_00001.safetensors"))
    assert stored["source"].dtype == torch.float32 and torch.isfinite(stored["source"]).all()
    (msg,) = [r.getMessage() for r in caplog.records if "float16" in r.getMessage()]
    assert "training batch 1 reach |g| = 4e+05, beyond float16's largest value (65504)" in msg
    assert "kept in float32" in msg and "gradient_cache_dtype='bfloat16'" in msg
    again = _cache(tmp_path / "c", [1.0, 1.0, 1.0])  # read back: the float32 file stays finite
    assert again.computed == 0 and torch.equal(again[1][0], torch.arange(1.0, 5.0) * 1e5)


def test_a_cache_that_fits_keeps_its_dtype_and_distributed_refuses(tmp_path, monkeypatch):
    assert _cache(None, [1.0, 100.0]).dtype == torch.float16
    assert _cache(None, [1e5], dtype=torch.bfloat16).dtype == torch.bfloat16
    assert cache_dtype_for(torch.tensor([1e38]), torch.bfloat16, "x") == torch.bfloat16
    nan = torch.tensor([float("nan"), 1.0])  # non-finite already: not an overflow of the cast
    assert cache_dtype_for(nan, torch.float16, "x") == torch.float16
    cache = _cache(None, [1.0])
    monkeypatch.setattr("gradiend.trainer.gradient_data.dist.is_distributed", lambda: True)
    cache.computer.scales = [1e6]
    with pytest.raises(ValueError, match="under torch.distributed without use_cache.*'float32'"):
        cache._compute(0)


def test_an_overflowing_validation_row_widens_the_matrix(caplog):
    computer = SimpleNamespace(
        dim=2,
        device=torch.device("cpu"),
        iter_per_example=lambda items, kind: (torch.tensor([1.0, s]) for s in items),
    )
    with caplog.at_level(logging.WARNING, logger="gradiend.lm.checks"):
        out = per_example_matrix(computer, [1.0, 1e6, 3.0], "factual", 2, False, torch.float16)
    assert out.dtype == torch.float32 and torch.equal(out[:, 1], torch.tensor([1.0, 1e6, 3.0]))
    assert "validation row 1 reach |g| = 1e+06" in caplog.text
    assert per_example_matrix(computer, [1.0], "factual", 2, False, torch.float16).dtype == (
        torch.float16
    )

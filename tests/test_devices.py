"""Placement and precision: every stage with the base model in another dtype (or on CUDA) while
the GRADIEND stays float32, the 16-bit gradient cache, and the memory-lean pre-pruning."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap
from gradiend.trainer import PrePruneConfig, pruning
from gradiend.trainer.pruning import importance, select

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(model_tok, tmp_path, run_id, **overrides):
    """The whole seed workflow on a planted model; returns the trainer and its results."""
    overrides.setdefault("pre_prune_config", PrePruneConfig(n_samples=16, topk=0.3))
    trainer = TextPredictionTrainer(
        model=model_tok,
        run_id=run_id,
        data=he_she_data(),
        eval_neutral_data=neutral_texts(),
        args=fast_args(tmp_path, **overrides),
        progress=False,
    )
    trainer.train()
    enc = trainer.evaluate_encoder()
    dec = trainer.evaluate_decoder(target_class="she", lrs=[0.05, 0.2])
    changed = trainer.rewrite_base_model(
        decoder_results=dec, target_class="she", output_dir=tmp_path / f"{run_id}-rewritten"
    )
    return trainer, enc, dec, changed


@pytest.mark.parametrize(("kind", "dtype"), [("clm", torch.float64), ("mlm", torch.bfloat16)])
def test_pipeline_with_base_model_in_another_dtype(planted, tmp_path, kind, dtype):
    """A forgotten conversion fails here the way a forgotten ``.to(device)`` fails on a GPU."""
    model, tok = planted[kind]
    base = copy.deepcopy(model).to(dtype)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    trainer, enc, dec, changed = _run((base, tok), tmp_path, f"{kind}-{dtype}")
    gradiend = trainer.get_model().gradiend
    assert gradiend.W_e.dtype == torch.float32  # the GRADIEND stays float32
    assert abs(enc["correlation"]) > (0.9 if dtype == torch.float64 else 0.6)
    assert all(p.dtype == dtype for p in changed.parameters())
    # the base model itself is untouched by evaluation and rewrite (bit for bit)
    for n, p in base.named_parameters():
        assert torch.equal(p, before[n]), n
    # the rewrite is θ + η·u, summed in float32 and cast back once
    entry = dec[next(k for k in dec if k.startswith("she"))]
    mwg = trainer.get_model()
    u = mwg.get_update_vector(entry["feature_factor"])
    spec = mwg.param_map.specs[-1]
    pos = mwg.grads.local[-1]
    n = len(pos)
    expected = (before[spec.name].reshape(-1)[pos].float() + entry["learning_rate"] * u[-n:]).to(
        dtype
    )
    got = dict(changed.named_parameters())[spec.name].reshape(-1)[pos]
    assert torch.equal(got, expected)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_fisher_preconditioned_rewrite_on_a_bf16_base(planted, tmp_path, device):
    """The Fisher is computed where the base model lives (float32, beside the GRADIEND) and
    the rewrite is θ + η·u⊘(F+λ), summed in float32 and cast back once."""
    from gradiend.evaluator import FisherConfig
    from gradiend.lm import fisher as fisher_mod

    model, tok = planted["clm"]
    base = copy.deepcopy(model).to(device, torch.bfloat16)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    trainer = TextPredictionTrainer(
        model=(base, tok),
        run_id=f"fisher-{device}",
        data=he_she_data(),
        eval_neutral_data=neutral_texts(40),
        args=fast_args(tmp_path, pre_prune_config=PrePruneConfig(n_samples=16, topk=0.3)),
        progress=False,
    )
    trainer.train()
    dec = trainer.evaluate_decoder(
        target_class="she", max_size_neutral=20, precondition=FisherConfig(damping=0.1)
    )
    s = dec["she"]
    assert s["value"] > s["base_value"] and s["precondition"]["n_texts"] == 20
    fisher = fisher_mod.load_fisher(trainer.run_dir, s["precondition"]["key"])
    assert fisher.dtype == torch.float32 and bool(torch.isfinite(fisher).all())
    changed = trainer.rewrite_base_model(decoder_results=dec, target_class="she")
    for n, p in base.named_parameters():
        assert torch.equal(p, before[n]), n  # the base model is untouched
    mwg = trainer.get_model()
    u = mwg.gradiend.get_update_vector(s["feature_factor"]).float().cpu() / (fisher.cpu() + 0.1)
    spec, pos = mwg.param_map.specs[-1], mwg.grads.local[-1]
    n = len(pos)
    theta = before[spec.name].reshape(-1)[pos].float().cpu()
    expected = (theta + s["learning_rate"] * u[-n:]).to(torch.bfloat16)
    got = dict(changed.named_parameters())[spec.name].reshape(-1)[pos].cpu()
    assert next(changed.parameters()).device.type == device
    torch.testing.assert_close(got, expected)  # bf16 tolerance: one rounding step


def test_in_memory_model_stays_where_its_owner_put_it(planted, tmp_path):
    model, tok = planted["clm"]
    device = next(model.parameters()).device
    trainer = TextPredictionTrainer(
        model=(model, tok),
        run_id="stay",
        data=he_she_data(),
        args=fast_args(tmp_path, max_steps=20),
        progress=False,
    )
    mwg = trainer.train()
    assert next(model.parameters()).device == device
    assert mwg.gradiend.W_e.device == device


def test_bf16_gradient_cache_changes_no_result(planted, tmp_path):
    runs = {}
    for dtype in ("float32", "bfloat16"):
        trainer = TextPredictionTrainer(
            model=planted["clm"],
            run_id=dtype,
            data=he_she_data(),
            args=fast_args(tmp_path, gradient_cache_dtype=dtype, use_cache=True),
            progress=False,
        )
        runs[dtype] = (trainer.train().gradiend, trainer.evaluate_encoder()["correlation"])
        files = list((tmp_path / dtype / "cache" / "gradients").rglob("*.safetensors"))
        assert files
    (a, corr_a), (b, corr_b) = runs["float32"], runs["bfloat16"]
    cos = torch.nn.functional.cosine_similarity(a.W_d[:, 0], b.W_d[:, 0], dim=0)
    assert cos > 0.99
    assert abs(corr_a - corr_b) < 0.02
    # 16-bit files: half the bytes of the float32 cache
    size = {
        d: sum(f.stat().st_size for f in (tmp_path / d / "cache").rglob("*.safetensors"))
        for d in runs
    }
    assert size["bfloat16"] < 0.6 * size["float32"]


@pytest.mark.parametrize("rule", ["label_signed_mean", "signed_mean", "abs_mean"])
def test_pre_prune_importance_equals_per_example_oracle(planted, rule):
    """The one-backward-per-batch accumulation equals explicit per-example gradients."""
    model, tok = planted["mlm"]
    lm = load_base_model((model, tok))
    obj = make_objective("auto", lm.kind, tok)
    comp = GradientComputer(lm, obj, ParamMap.from_model(model))
    items = [
        obj.item("the king said that [MASK] will come today .", ["he"], ["she"]),
        obj.item("the queen thinks that [MASK] will sing .", ["she"], ["he"]),
        obj.item("the boy knows that [MASK] will read .", ["he"], ["she"]),
    ]
    labels = [1.0, -1.0, 1.0]
    cfg = PrePruneConfig(rule=rule, batch_size=2)
    got = torch.cat([s.reshape(-1).float() for s in importance(comp, items, labels, cfg, False)])
    per = comp.per_example(items, cfg.source).double()
    if rule == "abs_mean":
        want = per.abs().mean(0)
    else:
        w = torch.tensor(labels if rule == "label_signed_mean" else [1.0] * 3).double()
        want = (w[:, None] * per).sum(0).abs() / 3
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in comp.params)  # nothing left behind in .grad


def test_chunked_selection_equals_topk(monkeypatch):
    monkeypatch.setattr(pruning, "_SMALL", 0)  # force the sample-and-bracket path
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.rand(n, generator=gen) for n in (5000, 1, 30000, 777)]
    chunks[2][:500] = 0.5  # ties around the cut
    flat = torch.cat(chunks)
    for k in (1, 10, 500, 3000, 0.37):
        got = select(chunks, k, None)
        kk = int(-(-k * len(flat) // 1)) if isinstance(k, float) else k
        assert len(got) == kk and torch.equal(got, torch.sort(got).values)
        assert len(set(got.tolist())) == kk
        dropped = torch.ones(len(flat), dtype=torch.bool)
        dropped[got] = False
        assert flat[got].min() >= flat[dropped].max()  # a true top-k (ties broken arbitrarily)
    got = select(chunks, 100, 0.999)  # threshold first, then top-k
    assert (flat[got] >= 0.999).all() and len(got) == min(100, int((flat >= 0.999).sum()))


def test_placement_arguments_are_checked_up_front():
    with pytest.raises(ValueError, match="not both"):
        TrainingArguments(device="cpu", base_model_device_map="auto")
    with pytest.raises(ValueError, match="gradient_cache_dtype"):
        TrainingArguments(gradient_cache_dtype="int8")
    with pytest.raises(ValueError, match="torch_dtype"):
        TrainingArguments(torch_dtype="float17")
    if not torch.cuda.is_available():
        from gradiend.lm.devices import resolve_device

        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_pipeline_on_cuda_with_bf16_base(planted, tmp_path, kind):
    model, tok = planted[kind]
    base = copy.deepcopy(model).to("cuda", torch.bfloat16)
    trainer, enc, dec, changed = _run((base, tok), tmp_path, f"cuda-{kind}")
    mwg = trainer.get_model()
    assert mwg.gradiend.W_e.device.type == "cuda" and mwg.gradiend.W_e.dtype == torch.float32
    assert next(changed.parameters()).device.type == "cuda"
    assert abs(enc["correlation"]) > 0.6
    # a GRADIEND saved from the GPU reloads onto the GPU and encodes the same
    from gradiend import ModelWithGradiend

    again = ModelWithGradiend.from_pretrained(trainer.model_dir, base_model=mwg.lm, device="cuda")
    x = torch.randn(3, mwg.gradiend.input_dim, device="cuda")
    torch.testing.assert_close(again.encode(x), mwg.encode(x))


@CUDA
@pytest.mark.cuda
def test_hub_style_load_defaults_to_cuda(planted, tmp_path):
    model, tok = planted["clm"]
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    trainer = TextPredictionTrainer(
        model=str(tmp_path / "base"),
        run_id="hub",
        data=he_she_data(),
        args=fast_args(tmp_path, max_steps=20, torch_dtype="bfloat16"),
        progress=False,
    )
    mwg = trainer.train()
    assert next(mwg.base_model.parameters()).device.type == "cuda"
    assert next(mwg.base_model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("mlm", RuntimeError("expected mat1 and mat2 to have the same dtype")),
        ("clm", RuntimeError("expected mat1 and mat2 to have the same dtype")),
        # torch 2.11 on a CPU: SDPA (e.g. T5, Llama) has no forward-mode rule
        ("clm", NotImplementedError("Trying to use forward AD with _scaled_dot_product_x")),
    ],
)
def test_double_backward_fallback_equals_explicit_gradients(planted, kind, error, monkeypatch):
    """Where forward-mode AD fails (bf16 layer norm on CUDA; an op without a forward-mode
    rule), encodings come from a double backward: the same directional derivatives."""
    model, tok = planted[kind]
    lm = load_base_model((model, tok))
    obj = make_objective("auto", lm.kind, tok)
    comp = GradientComputer(lm, obj, ParamMap.from_model(model))
    items = [
        obj.item("the king said that [MASK] will come today .", ["he"], ["she"]),
        obj.item("the queen thinks that [MASK] will sing .", ["she"], ["he"]),
    ]
    direction = torch.randn(comp.dim)

    def broken_jvp(*args, **kwargs):
        raise error

    monkeypatch.setattr(comp, "_jvp", broken_jvp)
    for kind_ in ("alternative", "diff"):
        explicit = comp.per_example(items, kind_) @ direction
        got = comp.directional(items, kind_, direction)
        torch.testing.assert_close(got, explicit, rtol=1e-4, atol=1e-5)
    assert comp._jvp_ok is False

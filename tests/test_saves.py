"""A save never destroys what was there, and a broken GRADIEND is refused (issue 22): an
interrupted rewrite keeps the earlier model, a rewrite replaces only an earlier rewrite's folder,
training replaces only an earlier GRADIEND's files, and NaN weights are never loaded or saved."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM

from gradiend import GradiendModel, ModelWithGradiend, TextPredictionTrainer
from gradiend.run_layout import MODEL_WEIGHTS, REWRITE_MANIFEST

LRS = [0.05, 0.1]


@pytest.fixture(scope="module")
def setup(planted, tmp_path_factory):
    """A trained he/she trainer on a base model loaded from its own folder, and its results."""
    tmp = tmp_path_factory.mktemp("saves")
    model, tok = planted["mlm"]
    base = tmp / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    trainer = TextPredictionTrainer(
        model=str(base),
        run_id="run",
        data=he_she_data(),
        eval_neutral_data=neutral_texts(),
        args=fast_args(tmp),
        progress=False,
    )
    trainer.train()
    res = trainer.evaluate_decoder(target_class="she", lrs=LRS, max_nll_increase=None)
    return trainer, res, base


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_interrupted_rewrite_keeps_the_earlier_model(setup, tmp_path, monkeypatch):
    trainer, res, _ = setup
    out = tmp_path / "rw"
    trainer.rewrite_base_model(res, target_class="she", output_dir=out)
    assert (out / REWRITE_MANIFEST).is_file()
    before = {
        k: v.clone() for k, v in AutoModelForMaskedLM.from_pretrained(out).state_dict().items()
    }

    def crash(self, folder, *args, **kwargs):
        (folder / MODEL_WEIGHTS).write_bytes(b"partial")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(type(trainer.get_model().base_model), "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.rewrite_base_model(res, target_class="she", output_dir=out)
    monkeypatch.undo()
    after = AutoModelForMaskedLM.from_pretrained(out).state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gradiend-")]


def test_an_earlier_rewrite_is_replaced(setup, tmp_path):
    trainer, res, _ = setup
    out = tmp_path / "rw"
    trainer.rewrite_base_model(res, target_class="she", output_dir=out)
    (out / MODEL_WEIGHTS).write_bytes(b"stale")
    trainer.rewrite_base_model(res, target_class="she", output_dir=out)
    assert (out / MODEL_WEIGHTS).read_bytes() != b"stale"
    AutoModelForMaskedLM.from_pretrained(out)
    (out / "notes.txt").write_text("mine")  # a file of the user's in a rewrite folder: kept
    with pytest.raises(FileExistsError, match="notes.txt"):
        trainer.rewrite_base_model(res, target_class="she", output_dir=out)


def test_the_base_model_folder_is_refused_and_untouched(setup):
    trainer, res, base = setup
    before = _snapshot(base)
    with pytest.raises(FileExistsError, match=f"{base}.*a model this library did not write"):
        trainer.rewrite_base_model(res, target_class="she", output_dir=base)
    assert _snapshot(base) == before


def test_the_gradiend_folder_is_refused(setup):
    trainer, res, _ = setup
    before = _snapshot(trainer.model_dir)
    with pytest.raises(FileExistsError, match="holds a GRADIEND.*another output_dir"):
        trainer.rewrite_base_model(res, target_class="she", output_dir=trainer.model_dir)
    assert _snapshot(trainer.model_dir) == before
    GradiendModel.from_pretrained(trainer.model_dir)


def test_training_refuses_an_output_dir_holding_a_users_model(planted, tmp_path):
    model, tok = planted["mlm"]
    mine = tmp_path / "mine"
    model.save_pretrained(mine)
    before = _snapshot(mine)
    with pytest.raises(FileExistsError, match=f"{mine}.*not a GRADIEND.*another output_dir"):
        TextPredictionTrainer(
            model=model,
            tokenizer=tok,
            run_id="run",
            data=he_she_data(),
            args=fast_args(tmp_path, output_dir=str(mine)),
            progress=False,
        )
    assert _snapshot(mine) == before


def test_a_users_readme_is_not_replaced_by_the_card(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="README.md"):
        GradiendModel(4).save_pretrained(folder)
    assert (folder / "README.md").read_text() == "my notes"
    again = tmp_path / "ours"
    GradiendModel(4).save_pretrained(again)
    GradiendModel(4).save_pretrained(again)  # the card an earlier save wrote is its own


def _poison(model_dir) -> None:
    path = model_dir / MODEL_WEIGHTS
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("decoder"))
    tensors[key][0] = float("nan")
    save_file(tensors, str(path))


def test_a_gradiend_with_nan_weights_is_refused_on_load(setup, tmp_path):
    trainer, _, _ = setup
    copy = tmp_path / "copy"
    trainer.get_model().gradiend.save_pretrained(copy)
    _poison(copy)
    with pytest.raises(ValueError, match=f"{copy / MODEL_WEIGHTS}.*NaN or inf.*Retrain"):
        GradiendModel.from_pretrained(copy)
    with pytest.raises(ValueError, match="NaN or inf"):
        ModelWithGradiend.from_pretrained(copy)


def test_a_rewrite_with_nan_weights_is_refused_and_not_saved(setup, tmp_path):
    trainer, res, _ = setup
    gradiend = trainer.get_model().gradiend
    saved = gradiend.W_d.detach().clone()
    out = tmp_path / "rw"
    try:
        with torch.no_grad():
            gradiend.W_d[0] = float("nan")
        lr = res["she"]["learning_rate"]
        # the fingerprint would refuse the changed GRADIEND first: results without one
        unpinned = {"she": {k: v for k, v in res["she"].items() if k != "gradiend_fingerprint"}}
        with pytest.raises(ValueError, match=f"class 'she' at learning rate {lr}.*non-finite"):
            trainer.rewrite_base_model(unpinned, target_class="she", output_dir=out)
    finally:
        with torch.no_grad():
            gradiend.W_d.copy_(saved)
    assert not out.exists()

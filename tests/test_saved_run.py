"""A saved run is evaluated and rewritten without a trainer: the numbers are the trainer's, no
training gradient is computed, and the rewrite reads no data at all."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts

import gradiend.trainer.text_trainer as text_trainer
import gradiend.trainer.training as training
from gradiend import ModelWithGradiend, TextPredictionTrainer
from gradiend.trainer.saved_run import saved_run


@pytest.fixture
def trained(planted, tmp_path):
    model, tok = planted["clm"]
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    data = he_she_data()
    kwargs = {"model": str(folder), "run_id": "run", "data": data}
    kwargs["eval_neutral_data"] = neutral_texts()
    args = fast_args(tmp_path)
    trainer = TextPredictionTrainer(**kwargs, args=args, progress=False)
    trainer.train()
    return trainer, kwargs, args


def _no_trainer(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a trainer or training gradients were built")

    monkeypatch.setattr(text_trainer.TextPredictionTrainer, "__init__", refuse)
    monkeypatch.setattr(training, "prepare", refuse)
    monkeypatch.setattr(training, "add_batches", refuse)


def test_saved_run_evaluates_like_the_trainer(trained, monkeypatch):
    trainer, kwargs, args = trained
    enc = trainer.evaluate_encoder(use_cache=False)
    dec = trainer.evaluate_decoder(max_size_training_like=10, max_size_neutral=10, use_cache=False)
    _no_trainer(monkeypatch)
    run = saved_run(kwargs, args, progress=False)
    enc2 = run.evaluate_encoder(use_cache=False)
    dec2 = run.evaluate_decoder(max_size_training_like=10, max_size_neutral=10, use_cache=False)
    assert enc2["correlation"] == enc["correlation"]
    assert enc2["mean_by_feature_class"] == enc["mean_by_feature_class"]
    for cls in ("he", "she"):
        assert dec2[cls]["learning_rate"] == dec[cls]["learning_rate"]
        assert dec2[cls]["value"] == dec[cls]["value"]


def test_rewrite_reads_no_data_and_matches_the_trainer(trained, monkeypatch, tmp_path):
    trainer, kwargs, args = trained
    dec = trainer.evaluate_decoder(target_class="she", max_size_training_like=10)
    want = trainer.rewrite_base_model(decoder_results=dec, target_class="she")
    _no_trainer(monkeypatch)
    # data that cannot be read: a rewrite must not look at it
    no_data = {**kwargs, "data": str(tmp_path / "missing.csv"), "eval_neutral_data": None}
    run = saved_run(no_data, args, progress=False, with_data=False)
    assert run.target_classes == ["he", "she"]  # from the GRADIEND's own record
    got = run.rewrite_base_model(target_class="she", output_dir=tmp_path / "out")
    for (n1, p1), (n2, p2) in zip(got.state_dict().items(), want.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert (tmp_path / "out" / "config.json").is_file()


def test_model_with_gradiend_rewrites_from_its_run_folder(trained):
    trainer, _, _ = trained
    dec = trainer.evaluate_decoder(target_class="he", max_size_training_like=10)
    want = trainer.rewrite_base_model(decoder_results=dec, target_class="he")
    mwg = ModelWithGradiend.from_pretrained(trainer.run_dir)
    got = mwg.rewrite_from_results(target_class="he")  # reads the run's decoder_results.json
    for p1, p2 in zip(got.parameters(), want.parameters()):
        assert torch.equal(p1.cpu(), p2.cpu())


def test_saved_run_without_a_model_says_what_to_do(tmp_path):
    args = fast_args(tmp_path)
    with pytest.raises(FileNotFoundError, match="train the run first"):
        saved_run({"model": "x", "run_id": "nothing", "data": he_she_data()}, args)

"""Collapse: detected during training, stopped early, remedied, and never evaluated silently.

The planted collapse: a tiny causal model pretrained on sentences whose pronoun slot holds "it"
nine times in ten (he/she agree with the subject otherwise). It predicts "it" for the he/she
rows, so the *alternative* gradients of both classes share a large part (the push away from
"it"); at a learning rate of 1e-2 the encoder saturates both classes on one side. The *diff*
gradients (factual − alternative) do not share that part and converge.
"""

from __future__ import annotations

import logging
import random

import pandas as pd
import pytest
import torch
from conftest import he_she_data
from tiny import make_model, sentence

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend._io import read_json
from gradiend.trainer.collapse import CollapseMonitor, CollapseRule
from gradiend.trainer.convergence_check import UnconvergedError, unconverged_banner
from gradiend.visualizer.convergence import unconverged_note

COLLAPSING_LR = 1e-2  # measured: seed 0 collapses with source="alternative", converges with diff


def _third_word_corpus(n: int, p_it: float = 0.9, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gender = rng.choice(["he", "she"])
        text = sentence(rng, gender)
        out.append(text.replace(f" {gender} ", " it ") if rng.random() < p_it else text)
    return out


@pytest.fixture(scope="module")
def collapsing():
    """A tiny causal model that mostly predicts a third word ("it") in the he/she slot."""
    torch.manual_seed(0)
    model, tok = make_model("clm")
    texts = _third_word_corpus(2000)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(200):
        enc = tok(texts[(step * 32) % len(texts) :][:32], return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model, tok


def _data() -> dict[str, pd.DataFrame]:
    return he_she_data(60)


def _trainer(model, tmp_path, run_id="run", **kw) -> TextPredictionTrainer:
    base = dict(
        experiment_dir=str(tmp_path),
        train_batch_size=4,
        max_steps=80,
        eval_steps=20,
        learning_rate=COLLAPSING_LR,
        max_seeds=1,
        plot_importance=False,
    )
    base.update(kw)
    return TextPredictionTrainer(
        model=model, run_id=run_id, data=_data(), args=TrainingArguments(**base), progress=False
    )


@pytest.fixture(scope="module")
def collapsed_run(collapsing, tmp_path_factory):
    """The planted collapse trained without remedies: ``(trainer, training stats)``."""
    trainer = _trainer(collapsing, tmp_path_factory.mktemp("collapsed"), auto_remedy=False)
    trainer.train()
    return trainer, trainer.get_training_stats()


# ---------------------------------------------------------------------------- detection
def test_alternative_collapses_and_is_stopped_early(collapsed_run):
    _, stats = collapsed_run
    assert stats["convergence_status"] == "collapsed"
    assert not stats["convergence_info"]["converged"]
    collapse = stats["collapse"]
    assert collapse["step"] == 40 and "one side" in collapse["reason"]
    means = list(collapse["mean_by_class"].values())
    assert means[0] * means[1] > 0  # both classes on one side
    assert [e["step"] for e in stats["evals"]] == [0, 20, 40]  # not the 80 steps asked for
    assert max(e["step"] for e in stats["losses"]) == 40
    assert stats["best_step"] == 0  # the untrained step: what was saved before this check
    assert "source='diff'" in stats["advice"] and "not a larger one" in stats["advice"]
    assert stats["remedies"]["tried"] == [] and not stats["remedies"]["enabled"]


def test_diff_source_converges_on_the_same_case(collapsing, tmp_path):
    trainer = _trainer(collapsing, tmp_path, source="diff", auto_remedy=False)
    trainer.train()
    stats = trainer.get_training_stats()
    assert stats["convergence_status"] == "converged" and stats["collapse"] is None
    assert stats["evals"][-1]["step"] == 80


def test_auto_remedy_finds_the_working_source(collapsing, tmp_path, caplog):
    trainer = _trainer(collapsing, tmp_path)  # auto_remedy=True is the default
    with caplog.at_level(logging.WARNING, logger="gradiend.trainer"):
        mwg = trainer.train()
    stats = trainer.get_training_stats()
    assert stats["convergence_status"] == "converged"
    remedies = stats["remedies"]
    assert remedies["adopted"] == "source='diff'" and remedies["source"] == "diff"
    assert [t["remedy"] for t in remedies["tried"]] == ["source='diff'"]
    assert remedies["tried"][0]["converged"]
    assert [(r["remedy"], r["converged"]) for r in stats["seeds"]] == [
        (None, False),
        ("source='diff'", True),
    ]
    assert mwg.gradiend.metadata["source"] == "diff"  # evaluations encode with what was trained
    saved = read_json(tmp_path / "run" / "model" / "gradiend_context.json")
    assert saved["source"] == "diff"
    assert "seed 0 collapsed at step 40" in caplog.text
    assert "trying source='diff'" in caplog.text and "converged with source='diff'" in caplog.text
    result = trainer.evaluate_encoder(max_size=10)  # a converged run evaluates as before
    assert result["correlation"] > 0.5


# ---------------------------------------------------------------------------- refusals
def test_unconverged_run_is_not_evaluated_or_rewritten_silently(collapsed_run, caplog):
    trainer, _ = collapsed_run
    for call in (
        lambda: trainer.evaluate_encoder(max_size=5),
        lambda: trainer.evaluate_decoder(max_size_training_like=4, max_size_neutral=4),
        lambda: trainer.rewrite_base_model(decoder_results={}),
    ):
        with pytest.raises(UnconvergedError, match="did not converge") as err:
            call()
        text = str(err.value)
        assert "collapsed at step 40" in text and "allow_unconverged=True" in text
        assert "source='diff'" in text
    with caplog.at_level(logging.WARNING, logger="gradiend.trainer.convergence_check"):
        result = trainer.evaluate_encoder(max_size=5, allow_unconverged=True)
    assert "correlation" in result
    assert "evaluate_encoder on a GRADIEND that did not converge" in caplog.text


def test_figure_and_report_mark_an_unconverged_run(collapsed_run):
    _, stats = collapsed_run
    note = unconverged_note(stats)
    assert note.startswith("collapsed at step 40") and "best step 0" in note
    banner = unconverged_banner(stats)
    assert "NOT CONVERGED" in banner and "collapsed at step 40" in banner
    converged = {**stats, "convergence_info": {**stats["convergence_info"], "converged": True}}
    assert unconverged_note(converged) is None and unconverged_banner(converged) == ""
    pytest.importorskip("matplotlib")
    from gradiend.visualizer import plot_training_convergence

    out = plot_training_convergence(stats, show=False)
    assert out["data"]["unconverged"] == note
    assert out["figure"].axes[0].get_title().startswith("NOT CONVERGED")


def test_fail_on_non_convergence_names_the_measured_remedies(collapsing, tmp_path):
    with pytest.raises(RuntimeError, match="collapsed") as err:
        _trainer(collapsing, tmp_path, auto_remedy=False, fail_on_non_convergence=True).train()
    assert "source='diff'" in str(err.value) and "10x smaller learning_rate" in str(err.value)


# ---------------------------------------------------------------------------- the rule
def _summary(step, a, b, sa=0.1, sb=0.1):
    return {
        "step": step,
        "correlation": 0.0,
        "mean_by_class": {"he": a, "she": b},
        "std_by_class": {"he": sa, "she": sb},
    }


def test_collapse_rule():
    rule, tcs = CollapseRule(), ("he", "she")
    assert rule.reason(_summary(1, -0.9, 0.8), tcs) is None  # apart: converging
    assert rule.reason(_summary(1, 0.05, 0.2), tcs) is None  # one side but barely moved
    assert "one side" in rule.reason(_summary(1, -1.0, -1.0, 0.0, 0.0), tcs)
    assert "not apart" in rule.reason(_summary(1, 0.01, -0.01, 0.3, 0.3), tcs)
    assert rule.reason({"step": 1, "mean_by_class": {"he": 0.9}}, tcs) is None


def test_monitor_needs_a_sustained_collapse_without_a_new_best():
    monitor = CollapseMonitor(CollapseRule(patience=2), ("he", "she"))
    assert monitor.update(_summary(20, 1.0, 1.0), improved=False) is None
    assert monitor.update(_summary(40, -0.9, 0.9), improved=True) is None  # streak broken
    assert monitor.update(_summary(60, 1.0, 1.0), improved=True) is None  # a new best
    assert monitor.update(_summary(80, 1.0, 1.0), improved=False) is None
    hit = monitor.update(_summary(100, 1.0, 0.9), improved=False)
    assert hit["step"] == 100 and hit["evaluations"] == 2


def test_collapse_arguments_are_checked():
    with pytest.raises(TypeError, match="auto_remedy"):
        TrainingArguments(auto_remedy="no")
    with pytest.raises(ValueError, match="collapse_patience"):
        TrainingArguments(collapse_patience=-1)
    assert TrainingArguments(collapse_patience=0).remedy_plan().rule.patience == 0

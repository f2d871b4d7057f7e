"""``convergent_metric="loss"``: every evaluation records the training loss since the previous
one, the best checkpoint is the lowest of them, and a planted run converges by it."""

from __future__ import annotations

import math

import pytest
from conftest import he_she_trainer

from gradiend import TrainingArguments
from gradiend.trainer.checkpoints import LoopProgress
from gradiend.trainer.loop import _keep_best, _window_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_planted_run_converges_by_the_loss_and_keeps_the_lowest(planted, tmp_path):
    trainer = he_she_trainer(
        planted["mlm"], tmp_path, convergent_metric="loss", plot_importance=False
    )
    stats = trainer.get_training_stats()
    evals = {int(e["step"]): e for e in stats["evals"]}
    losses = stats["losses"]
    assert "loss" not in evals[0]  # nothing trained before step 0
    steps = sorted(evals)
    for before, step in zip(steps, steps[1:], strict=False):  # the window's mean training loss
        window = [r["loss"] for r in losses if before < r["step"] <= step]
        assert evals[step]["loss"] == pytest.approx(sum(window) / len(window))
    best = stats["best_step"]
    lowest = min((e["loss"], s) for s, e in evals.items() if s > 0)[1]
    assert best == lowest
    assert stats["convergence_info"]["converged"] is True
    assert stats["convergence_info"]["convergence_metric"] == "loss"
    assert stats["seeds"][0]["best_step"] == best


def test_a_loss_threshold_below_the_reached_loss_is_not_converged(planted, tmp_path):
    trainer = he_she_trainer(
        planted["mlm"], tmp_path, run_id="strict", convergent_metric="loss",
        convergent_score_threshold=1e-12, plot_importance=False,
    )  # fmt: skip
    stats = trainer.get_training_stats()
    assert stats["convergence_info"]["converged"] is False
    assert min(e["loss"] for e in stats["evals"] if "loss" in e) > 1e-12


def test_best_by_loss_prefers_lower_and_ignores_an_evaluation_without_one():
    p = LoopProgress()
    p.best = {"step": 0, "correlation": 0.0}
    assert not _keep_best(p, {"correlation": 0.9}, 10, _Model(), "loss")  # no loss recorded
    assert _keep_best(p, {"correlation": 0.1, "loss": 2.0}, 20, _Model(), "loss")
    assert not _keep_best(p, {"correlation": 0.99, "loss": 3.0}, 30, _Model(), "loss")
    assert not _keep_best(p, {"correlation": 0.5, "loss": math.nan}, 35, _Model(), "loss")
    assert _keep_best(p, {"correlation": 0.2, "loss": 1.0}, 40, _Model(), "loss")
    assert p.best_step == 40
    assert _keep_best(p, {"correlation": 0.9, "loss": 5.0}, 50, _Model())  # |r| by default


def test_window_loss_reads_the_steps_since_the_last_evaluation():
    p = LoopProgress()
    p.losses = [{"step": s, "loss": float(s)} for s in range(1, 7)]
    assert _window_loss(p, 0) is None
    p.evals = [{"step": 0}, {"step": 3}]
    assert _window_loss(p, 6) == pytest.approx((4 + 5 + 6) / 3)


def test_the_rule_and_its_description():
    rule = TrainingArguments(convergent_metric="loss").convergence()
    means = {"he": 0.8, "she": -0.7}
    assert rule.is_convergent({"loss": 0.3, "correlation": 0.1, "mean_by_class": means}, 5,
                              ["he", "she"])  # fmt: skip
    assert not rule.is_convergent({"correlation": 0.9, "mean_by_class": means}, 5, ["he", "she"])
    apart = {"loss": 0.3, "mean_by_class": {"he": 0.8, "she": 0.7}}  # one side: not converged
    assert not rule.is_convergent(apart, 5, ["he", "she"])
    assert "lowest loss" in rule.describe()


class _Model:
    def state_dict(self) -> dict:
        return {}

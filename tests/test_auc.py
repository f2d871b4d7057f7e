"""AUC-family encoder metrics (issue 25, item 4): each metric against a hand computation, the
metrics in ``evaluate_encoder``'s result, and an AUC metric as the convergence criterion.

The hand computations below count pairs explicitly (no sort, no ``searchsorted``): a metric is
the share of (first group, second group) pairs where the first encodes higher, ties half."""

from __future__ import annotations

import logging
import random
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts
from tiny import ACTIONS, NEUTRAL, TIMES, VERBS, make_model

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend._io import read_json
from gradiend.evaluator.auc import AUC_METRICS, auc, auc_metrics
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.trainer.loop import orient_stats

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- by hand
def pair_auc(high, low) -> float | None:
    """P(high > low) + ½ P(tie) over every pair, counted one pair at a time."""
    high, low = list(high), list(low)
    if not high or not low:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in high for b in low)
    return wins / (len(high) * len(low))


def smallest(*values):
    present = [v for v in values if v is not None]
    return min(present) if present else None


def hand_metrics(df: pd.DataFrame) -> dict:
    """The module docstring's definitions, written out with ``pair_auc``."""
    tr = df[df["type"] == "training"]
    neutral = [abs(v) for v in df.loc[df["type"] != "training", "encoded"]]
    enc = dict(
        zip(("pos", "neg", "zero"), (tr.loc[tr["label"] == v, "encoded"] for v in (1, -1, 0)))
    )
    roc = pair_auc(enc["pos"], enc["neg"])
    rival = None if roc is None else max(roc, 1 - roc)
    targets = [abs(v) for v in tr.loc[tr["label"] != 0, "encoded"]]
    vs_neutral = pair_auc(targets, neutral)
    vs_other = pair_auc(targets, [abs(v) for v in enc["zero"]])
    excl = []
    for lab in (1, -1):
        mine = list(tr.loc[tr["label"] == lab, "encoded"])
        rest = list(tr.loc[tr["label"] != lab, "encoded"])
        rest += list(df.loc[df["type"] != "training", "encoded"])
        if mine and rest:
            s = 1 if np.mean(mine) >= np.mean(rest) else -1
            excl.append(pair_auc([s * v for v in mine], [s * v for v in rest]))
    exclusivity = min(excl) if excl else None
    return {
        "roc_auc": roc,
        "auc_rival": rival,
        "roc_auc_neutral": vs_neutral,
        "roc_auc_other": vs_other,
        "min_auc_n_o": smallest(vs_neutral, vs_other),
        "class_exclusivity": exclusivity,
        "encoding_e": smallest(vs_neutral, rival, exclusivity),
    }


def assert_same(got: dict, want: dict) -> None:
    for k in AUC_METRICS:
        if want[k] is None:
            assert got[k] is None, k
        else:
            assert got[k] == pytest.approx(want[k], abs=1e-12), k


def _rows(pos, neg, zero, neutral) -> pd.DataFrame:
    parts = [(pos, 1.0, "training"), (neg, -1.0, "training"), (zero, 0.0, "training")]
    parts.append((neutral, 0.0, "neutral_dataset"))
    return pd.DataFrame(
        [{"encoded": v, "label": lab, "type": t} for vals, lab, t in parts for v in vals]
    )


KNOWN = _rows([0.9, 0.4, -0.1], [-0.8, 0.2, -0.5], [0.1, -0.6], [0.05, -0.3, 0.5])


def test_each_metric_on_known_encodings():
    """Counted on paper (ties: |0.1| with the identity row 0.1, |-0.5| with the neutral 0.5)."""
    want = {
        "roc_auc": Fraction(8, 9),
        "auc_rival": Fraction(8, 9),
        "roc_auc_neutral": Fraction(25, 36),  # 12.5 of 18 pairs
        "roc_auc_other": Fraction(5, 8),  # 7.5 of 12 pairs
        "min_auc_n_o": Fraction(5, 8),
        "class_exclusivity": Fraction(3, 4),  # he: 19/24, she (negated): 18/24
        "encoding_e": Fraction(25, 36),
    }
    got = auc_metrics(KNOWN)
    assert_same(got, {k: float(v) for k, v in want.items()})
    assert_same(got, hand_metrics(KNOWN))
    assert auc([1, 2], [2]) == 0.25 and auc([], [1]) is None


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_pair_counts_on_random_encodings(seed):
    rng = np.random.default_rng(seed)
    draw = lambda n, loc: np.round(rng.normal(loc, 0.5, n), 1).tolist()  # noqa: E731 - ties
    df = _rows(draw(11, 0.3), draw(7, -0.2), draw(5, 0.0), draw(9, 0.1))
    assert_same(auc_metrics(df), hand_metrics(df))


def test_missing_groups_give_none_and_the_minimums_take_what_exists():
    no_extra = _rows([0.9, 0.4], [-0.8, -0.2], [], [])
    got = auc_metrics(no_extra)
    assert got["roc_auc_neutral"] is None and got["roc_auc_other"] is None
    assert got["min_auc_n_o"] is None
    assert got["encoding_e"] == min(got["auc_rival"], got["class_exclusivity"]) == 1.0
    assert_same(got, hand_metrics(no_extra))
    reversed_ = _rows([-0.9, -0.4], [0.8, 0.2], [], [])
    r = auc_metrics(reversed_)
    assert r["roc_auc"] == 0.0 and r["auc_rival"] == 1.0 and r["class_exclusivity"] == 1.0
    flipped = orient_stats({"correlation": -0.5, "roc_auc": 0.2, "auc_rival": 0.8})
    assert flipped["roc_auc"] == pytest.approx(0.8) and flipped["auc_rival"] == 0.8


def test_convergence_rule_reads_the_auc_and_its_threshold(caplog):
    means = {"mean_by_class": {"he": -0.8, "she": 0.7}, "correlation": 0.1}
    rule = ConvergenceRule(metric="roc_auc", score_threshold=0.9)
    assert rule.is_convergent({**means, "roc_auc": 0.95}, 10, ["he", "she"])
    assert rule.is_convergent({**means, "roc_auc": 0.05}, 10, ["he", "she"])  # either way
    assert not rule.is_convergent({**means, "roc_auc": 0.85}, 10, ["he", "she"])
    assert not ConvergenceRule().is_convergent({**means, "roc_auc": 0.95}, 10, ["he", "she"])
    assert ConvergenceRule("roc_auc", 0.8).is_convergent(
        {**means, "roc_auc": 0.85}, 10, ["he", "she"]
    )
    with caplog.at_level(logging.WARNING):
        rule = ConvergenceRule(metric="roc_auc_neutral", score_threshold=0.5)
        assert not rule.is_convergent({**means, "roc_auc_neutral": None}, 10, ["he", "she"])
    assert "cannot be measured" in caplog.text and "neutral rows" in caplog.text
    assert TrainingArguments(convergent_metric="encoding_e").convergence().score_threshold == 0.9


def test_bad_metric_name_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'roc_auc'"):
        TrainingArguments(convergent_metric="roc_acu")
    with pytest.raises(ValueError, match="did you mean 'encoding_e'"):
        TrainingArguments(convergence_metric="encodinge")


# --------------------------------------------------------------------------- trained runs
def they_data(n: int = 48, seed: int = 3) -> pd.DataFrame:
    """A third class: its rows become identity rows (label 0) of the he/she GRADIEND."""
    rng = random.Random(seed)
    s = [
        f"the {rng.choice(NEUTRAL)} {rng.choice(VERBS)} that [MASK] will "
        f"{rng.choice(ACTIONS)} {rng.choice(TIMES)} ."
        for _ in range(n)
    ]
    return pd.DataFrame({"masked": s, "they": "they"})


@pytest.fixture(scope="module")
def base():
    return make_model("mlm")


def _trainer(base, tmp_path, data=None, **kw) -> TextPredictionTrainer:
    trainer = TextPredictionTrainer(
        model=base,
        run_id="he_she",
        data=data or he_she_data(48),
        target_classes=["he", "she"],
        eval_neutral_data=neutral_texts(30),
        args=fast_args(tmp_path, max_steps=60, plot_importance=False, **kw),
        progress=False,
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def auc_run(base, tmp_path_factory):
    """he/she with identity rows of a third class, converged by roc_auc."""
    data = {**he_she_data(48), "they": they_data()}
    tmp = tmp_path_factory.mktemp("auc_run")
    return _trainer(
        base, tmp, data, convergent_metric="roc_auc", add_identity_for_other_classes=True
    )


def test_evaluate_encoder_holds_the_auc_metrics(auc_run):
    res = auc_run.evaluate_encoder(return_df=True, use_cache=False)
    df = res["encoder_df"]
    assert {"training", "neutral_dataset"} <= set(df["type"]) and (df["label"] == 0).any()
    assert_same(res, hand_metrics(df))
    assert all(res[k] is not None for k in AUC_METRICS)
    # an encoder that separates nothing: the same keys, now strictly inside (0, 1)
    gradiend = auc_run.get_model().gradiend
    trained = gradiend.W_e.detach().clone()
    try:
        with torch.no_grad():
            gradiend.W_e.copy_(
                torch.randn(trained.shape, generator=torch.Generator().manual_seed(0))
            )
        rand = auc_run.evaluate_encoder(return_df=True, use_cache=False)
    finally:
        with torch.no_grad():
            gradiend.W_e.copy_(trained)
    assert_same(rand, hand_metrics(rand["encoder_df"]))
    assert any(0 < rand[k] < 1 for k in AUC_METRICS if rand[k] is not None)
    assert rand["roc_auc_neutral"] != res["roc_auc_neutral"] or rand["roc_auc"] != res["roc_auc"]


def test_roc_auc_decides_convergence(auc_run):
    stats = read_json(auc_run.layout.training)
    info = stats["convergence_info"]
    assert info["convergence_metric"] == "roc_auc" and info["threshold"] == 0.9
    assert info["converged"] and stats["convergence_status"] == "converged"
    best = stats["best"]
    assert max(best["roc_auc"], 1 - best["roc_auc"]) >= 0.9
    assert all(k in e for e in stats["evals"] for k in AUC_METRICS)


def test_unmeasurable_auc_metric_is_not_converged(base, tmp_path, caplog):
    """Without identity rows roc_auc_other is None at every validation: not converged, although
    the correlation (0.99) and the class means would pass the correlation rule."""
    with caplog.at_level(logging.WARNING):
        trainer = _trainer(base, tmp_path, convergent_metric="roc_auc_other")
    stats = read_json(trainer.layout.training)
    assert not stats["convergence_info"]["converged"]
    assert stats["convergence_info"]["convergence_metric"] == "roc_auc_other"
    assert abs(stats["best"]["correlation"]) > 0.9 and stats["best"]["roc_auc_other"] is None
    assert ConvergenceRule().is_convergent(stats["best"], stats["best_step"], ["he", "she"])
    assert "cannot be measured" in caplog.text and "roc_auc_other ≥ 0.9" in caplog.text

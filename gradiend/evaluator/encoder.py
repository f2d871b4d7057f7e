"""Encoder metrics: how well encodings of held-out gradients separate the two target classes.

Input is a table with one row per encoded example (``encoded``, ``label`` ∈ {+1, −1, 0},
``type`` ∈ {training, neutral_training_masked, neutral_dataset}, ``factual_class``); the keys
of the result follow the incumbent's ``evaluate_encoder``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradiend.evaluator.auc import AUC_METRICS, NEEDS, auc_metrics

logger = logging.getLogger(__name__)

BOUNDARY = 0.5
TRAINING = "training"


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; 0 when either side has zero variance."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _ternary(v: np.ndarray) -> np.ndarray:
    return np.where(v >= BOUNDARY, 1, np.where(v <= -BOUNDARY, -1, 0))


def _block(df: pd.DataFrame, binary: bool = False) -> dict:
    enc, lab = df["encoded"].to_numpy(float), df["label"].to_numpy(float)
    if binary:
        acc = float(np.mean(np.where(enc >= 0, 1, -1) == lab)) if len(df) else float("nan")
        bounds = [0.0]
    else:
        acc = float(np.mean(_ternary(enc) == _ternary(lab))) if len(df) else float("nan")
        bounds = [-BOUNDARY, BOUNDARY]
    return {"correlation": pearson(enc, lab), "accuracy": acc, "boundaries": bounds, "n": len(df)}


def _stats_by(df: pd.DataFrame, key: str) -> dict[str, dict]:
    """mean/min/max/q1/q3/std/n of ``encoded`` grouped by ``key``, as ``{stat: {group: value}}``."""
    out: dict[str, dict] = {s: {} for s in ("mean", "min", "max", "q1", "q3", "std", "n")}
    for name, g in df.groupby(key, sort=True, dropna=True):
        v = g["encoded"].to_numpy(float)
        k = name.item() if hasattr(name, "item") else name
        out["mean"][k] = float(v.mean())
        out["min"][k] = float(v.min())
        out["max"][k] = float(v.max())
        out["q1"][k] = float(np.quantile(v, 0.25))
        out["q3"][k] = float(np.quantile(v, 0.75))
        out["std"][k] = float(v.std())
        out["n"][k] = len(v)
    return out


def class_summary(df: pd.DataFrame) -> dict:
    """Correlation and per-factual-class statistics (what training records at each eval)."""
    training = df[df["type"] == TRAINING]
    stats = _stats_by(training, "factual_class")
    return {
        "correlation": pearson(training["encoded"], training["label"]),
        **{f"{s}_by_class": v for s, v in stats.items()},
        **auc_metrics(df),  # the AUC family (evaluator.auc): convergence metrics too
    }


def encoder_metrics(df: pd.DataFrame, label_value_to_class_name: dict[int, str]) -> dict:
    """All encoder metrics of the incumbent's ``evaluate_encoder`` from the rows table."""
    training = df[df["type"] == TRAINING]
    targets = training[training["label"] != 0]
    if len(training) < 2 or training["label"].nunique() < 2:
        raise ValueError(
            "encoder metrics need at least two non-neutral rows with two label values; "
            "is the evaluated split empty for one class?"
        )
    by_label = _stats_by(df, "label")
    by_type = df.groupby("type")["encoded"]
    metrics = {
        "correlation": pearson(training["encoded"], training["label"]),
        "all_data": _block(df),
        "training_only": _block(training),
        "target_classes_only": _block(targets, binary=True),
        **{f"{s}_by_class": v for s, v in by_label.items()},
        "mean_by_feature_class": _stats_by(training, "factual_class")["mean"],
        "mean_by_transition": _stats_by(training, "transition")["mean"]
        if "transition" in training
        else {},
        "mean_by_type": by_type.mean().astype(float).to_dict(),
        "abs_mean_by_type": by_type.apply(lambda v: float(v.abs().mean())).to_dict(),
        "neutral_mean_by_type": {t: float(v.mean()) for t, v in by_type if t != TRAINING},
        "label_value_to_class_name": {int(k): v for k, v in label_value_to_class_name.items()},
        "n_samples": len(df),
        "sample_counts": df["type"].value_counts().astype(int).to_dict(),
        **auc_metrics(df),
    }
    return metrics


@dataclass(frozen=True)
class ConvergenceRule:
    """The incumbent's convergence criterion (``TrainingArguments.convergence()``): |r| and
    the oriented class means reach their thresholds (``metric="loss"``: the evaluation's loss,
    the mean training loss since the previous evaluation, is finite and at most
    ``loss_threshold`` when one is given, and the class means are checked as for correlation;
    an AUC metric of ``evaluator.auc``: it reaches ``score_threshold``, ``roc_auc`` in either
    orientation, and the class means are checked as for correlation)."""

    metric: str = "correlation"
    score_threshold: float = 0.5
    mean_threshold: float = 0.5
    loss_threshold: float | None = None

    def is_convergent(self, summary: dict, best_step: int, target_classes: list[str]) -> bool:
        """Whether the run converged; a split GRADIEND (``summary["components"]``) also
        converges when one of its components carries the feature (:meth:`component_verdicts`)."""
        if summary.get("components") and any(
            self.component_verdicts(summary, best_step, target_classes).values()
        ):
            return True
        return self._converges(summary, best_step, target_classes)

    def component_verdicts(
        self, summary: dict, best_step: int, target_classes: list[str]
    ) -> dict[str, bool]:
        """Component name → whether it carries the feature: its own latent meets the rule (the
        run's loss for ``metric="loss"``) with a correlation of the summary's sign."""
        rest = {k: v for k, v in summary.items() if k != "components"}
        sign = np.sign(summary["correlation"])
        out = {}
        for name, comp in (summary.get("components") or {}).items():
            agrees = sign != 0 and np.sign(comp["correlation"]) == sign
            out[name] = bool(
                agrees and self._converges({**rest, **comp}, best_step, target_classes)
            )
        return out

    def _converges(self, summary: dict, best_step: int, target_classes: list[str]) -> bool:
        if best_step <= 0:
            return False
        if self.metric == "loss":
            loss, thr = summary.get("loss"), self.loss_threshold
            if loss is None or not np.isfinite(loss) or (thr is not None and loss > thr):
                return False
        elif self.score(summary) < self.score_threshold:
            return False
        means = [summary["mean_by_class"].get(c) for c in target_classes]
        if any(m is None for m in means):
            return False
        return min(abs(m) for m in means) >= self.mean_threshold and means[0] * means[1] < 0

    def score(self, summary: dict) -> float:
        """The value compared with ``score_threshold``: |correlation| or the AUC metric (an
        AUC the rows cannot measure, e.g. without neutral rows, counts as 0, with a warning)."""
        if self.metric not in AUC_METRICS:
            return abs(summary["correlation"])
        value = summary.get(self.metric)
        if value is None:
            logger.warning(
                "convergent_metric=%r cannot be measured on the validation rows (it needs %s): "
                "the run counts as not converged; choose 'roc_auc', 'auc_rival', "
                "'class_exclusivity' or 'encoding_e' (docs/training.md \"AUC metrics\")",
                self.metric,
                NEEDS.get(self.metric, "rows of both target classes"),
            )
            return 0.0
        return max(value, 1.0 - value) if self.metric == "roc_auc" else value

    def describe(self) -> str:
        """The criterion in words, for the messages of an unconverged run."""
        means = f"class means ≥ {self.mean_threshold}"
        if self.metric == "loss":
            best = "lowest loss" if self.loss_threshold is None else f"loss ≤ {self.loss_threshold}"
            return f"{best}, {means}"
        what = "|correlation|" if self.metric not in AUC_METRICS else self.metric
        return f"{what} ≥ {self.score_threshold}, {means}"


def is_convergent(
    summary: dict, best_step: int, target_classes: list[str], rule: ConvergenceRule
) -> bool:
    """``rule.is_convergent(summary, best_step, target_classes)``."""
    return rule.is_convergent(summary, best_step, target_classes)

"""Per-component encoder metrics of a split GRADIEND (``gradiend.model.split``).

The ``encoded:<component>`` columns of the encoder table each get the same correlation and class
means as the summary encoding, reported under ``metrics["components"]``; during training each
validation summary carries the components' correlation and class means too, so the convergence
rule can judge each component (``ConvergenceRule.component_verdicts``).
"""

from __future__ import annotations

import logging

import pandas as pd
import torch

from gradiend.evaluator.encoder import ConvergenceRule, class_summary, encoder_metrics
from gradiend.evaluator.encoder_rows import COMPONENT_PREFIX

logger = logging.getLogger(__name__)

COMPONENT_KEYS = ("correlation", "mean_by_class", "mean_by_feature_class", "neutral_mean_by_type")
SPREAD_KEYS = (
    "q1_by_class",
    "q3_by_class",
    "min_by_class",
    "max_by_class",
)  # not kept per component


def component_summaries(frame: pd.DataFrame, enc: torch.Tensor, names: list[str]) -> dict:
    """Component name → ``class_summary`` of its latent (column ``k`` of ``enc``, ``[n, k]``)
    without the quartiles; empty for fewer than two components (the summary is the latent, and
    ``enc`` is not copied to the CPU)."""
    if len(names) < 2:
        return {}
    enc = enc.detach().float().cpu().numpy()
    out = {}
    for k, name in enumerate(names):
        one = class_summary(frame.assign(encoded=enc[:, k]))
        out[name] = {key: v for key, v in one.items() if key not in SPREAD_KEYS}
    return out


def component_record(summary: dict, rule: ConvergenceRule, best_step: int, classes) -> dict:
    """Component name → its correlation, class means and whether it carries the feature
    (``rule.component_verdicts``): the per-component part of the training record."""
    verdicts = rule.component_verdicts(summary, best_step, list(classes))
    return {
        name: {
            "correlation": comp["correlation"],
            "mean_by_class": comp["mean_by_class"],
            "converged": verdicts[name],
        }
        for name, comp in summary["components"].items()
    }


def with_components(df: pd.DataFrame, class_names: dict[int, str]) -> dict:
    """``encoder_metrics`` of ``df``, plus ``components`` (name → correlation, class means)
    when ``df`` has a column per component (more than one component)."""
    metrics = encoder_metrics(df, class_names)
    cols = [c for c in df.columns if str(c).startswith(COMPONENT_PREFIX)]
    if len(cols) < 2:
        return metrics
    base = df.drop(columns=[*cols, "encoded"])
    out = {}
    for col in cols:
        one = encoder_metrics(base.assign(encoded=df[col].to_numpy()), class_names)
        out[col[len(COMPONENT_PREFIX) :]] = {k: one[k] for k in COMPONENT_KEYS if k in one}
    return {**metrics, "components": out}


def with_training_verdicts(metrics: dict, stats: dict | None) -> dict:
    """``metrics`` with each component's ``converged``: its verdict on the validation rows at
    training (``training.json``'s ``convergence_info.components``; ``None`` without one)."""
    if "components" not in metrics:
        return metrics
    verdicts = ((stats or {}).get("convergence_info") or {}).get("components") or {}
    comps = {
        name: {**comp, "converged": (verdicts.get(name) or {}).get("converged")}
        for name, comp in metrics["components"].items()
    }
    return {**metrics, "components": comps}

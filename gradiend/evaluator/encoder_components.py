"""Per-component encoder metrics of a split GRADIEND (``gradiend.model.split``).

The ``encoded:<component>`` columns of the encoder table each get the same correlation and class
means as the summary encoding, reported under ``metrics["components"]``.
"""

from __future__ import annotations

import logging

import pandas as pd

from gradiend.evaluator.encoder import encoder_metrics
from gradiend.evaluator.encoder_rows import COMPONENT_PREFIX

logger = logging.getLogger(__name__)

COMPONENT_KEYS = ("correlation", "mean_by_class", "mean_by_feature_class", "neutral_mean_by_type")


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

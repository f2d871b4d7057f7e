"""Cross-encoding: each run's encoder applied to each run's held-out rows.

Cell (i, j) tells whether GRADIEND i responds to the feature that run j was trained on; it
needs base-model passes (one JVP pass per batch), unlike the weight-only comparisons in
``compare.py``. Runs must share the base model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gradiend.evaluator.encoder import pearson
from gradiend.evaluator.encoder_rows import cap_per_group
from gradiend.lm.items import build_items

if TYPE_CHECKING:
    from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)

METRICS = ("correlation", "positive_mean", "negative_mean", "positive_minus_negative")


def _cell(enc: np.ndarray, labels: np.ndarray, metric: str) -> float:
    pos, neg = enc[labels > 0], enc[labels < 0]
    if metric == "correlation":
        return pearson(enc, labels)
    if metric == "positive_mean":
        return float(pos.mean())
    if metric == "negative_mean":
        return float(neg.mean())
    return float(pos.mean() - neg.mean())


def compute_cross_encoding_matrix(
    trainers: dict[str, TextPredictionTrainer],
    split: str = "test",
    metric: str = "correlation",
    max_size: int | None = None,
) -> pd.DataFrame:
    """``[model i, data j]`` matrix of ``metric`` for model i's encodings of run j's rows.

    ``correlation``: Pearson r with run j's labels (+1 = pushes towards j's first class);
    ``positive_mean``/``negative_mean``: mean encoding of j's +1/−1 rows.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    labels = list(trainers)
    out = pd.DataFrame(index=labels, columns=labels, dtype=float)
    for li in labels:
        mwg = trainers[li].get_model()
        for lj in labels:
            tj = trainers[lj]
            rows = cap_per_group(tj.table.split(split), max_size, tj.args.seed)
            rows = rows[rows["factual_class"] != rows["alternative_class"]]
            items = build_items(rows, mwg.objective)
            enc = mwg.encode_items(
                items, mwg.source, tj.args.eval_batch_size, progress=False, split=True
            )
            out.loc[li, lj] = _cell(enc[:, 0].cpu().numpy(), tj.labels(rows), metric)
    out.index.name, out.columns.name = "model", "data"
    out.attrs.update({"measure": f"cross_encoding_{metric}", "split": split})
    return out

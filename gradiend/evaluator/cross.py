"""Cross-encoding: each run's encoder applied to each run's held-out rows.

Cell (i, j) tells whether GRADIEND i responds to the feature that run j was trained on; it
needs base-model passes (one JVP pass per batch), unlike the weight-only comparisons in
``compare.py``. Runs must share the base model. A model whose run did not converge is refused
(``UnconvergedError``) unless ``allow_unconverged=True``; its row label is then marked
``" (NOT CONVERGED)"`` (the data of such a run is still data: its column is not marked).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gradiend.data.examples import cap_per_group
from gradiend.evaluator.converged_runs import check_runs, marked
from gradiend.evaluator.encoder import pearson
from gradiend.lm.items import build_items

if TYPE_CHECKING:
    from gradiend.model.with_gradiend import ModelWithGradiend
    from gradiend.trainer.eval_data import EvalData
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


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


def cross_encoding_matrix(
    models: Mapping[str, ModelWithGradiend],
    rows: Mapping[str, tuple[pd.DataFrame, np.ndarray]],
    metric: str = "correlation",
    batch_size: int | Mapping[str, int] = 32,
    split: str | None = None,
    allow_unconverged: bool = False,
    unconverged: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``[model i, data j]`` matrix of ``metric`` for model i's encodings of run j's pair rows
    (``rows[j] = (rows, labels)``; ``batch_size`` per data run or one for all). ``unconverged``:
    the runs already checked (else the models' own training records are read)."""
    _check_metric(metric)
    if unconverged is None:
        groups = {label: [m] for label, m in models.items()}
        unconverged = check_runs(groups, "cross-encoding", allow_unconverged)
    labels = list(models)
    out = pd.DataFrame(index=labels, columns=labels, dtype=float)
    for li in labels:
        mwg = models[li]
        for lj in labels:
            df, lab = rows[lj]
            bs = batch_size if isinstance(batch_size, int) else batch_size[lj]
            items = build_items(df, mwg.objective)
            enc = mwg.encode_items(items, mwg.source, bs, progress=False, split=True)
            out.loc[li, lj] = _cell(enc[:, 0].cpu().numpy(), lab, metric)
    out.index = [marked(label, unconverged) for label in labels]
    out.index.name, out.columns.name = "model", "data"
    out.attrs.update({"measure": f"cross_encoding_{metric}", "split": split})
    out.attrs["unconverged"] = [marked(label, unconverged) for label in unconverged]
    return out


def compute_cross_encoding_matrix(
    trainers: Mapping[str, TextPredictionTrainer],
    split: str = "test",
    metric: str = "correlation",
    max_size: int | None = None,
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """``[model i, data j]`` matrix of ``metric`` for model i's encodings of run j's rows.

    ``correlation``: Pearson r with run j's labels (+1 = pushes towards j's first class);
    ``positive_mean``/``negative_mean``: mean encoding of j's +1/−1 rows. A trainer whose run
    did not converge is refused before any encoding unless ``allow_unconverged=True``.
    """
    _check_metric(metric)
    groups = {label: [t] for label, t in trainers.items()}
    bad = check_runs(groups, "cross-encoding", allow_unconverged)
    rows = {label: pair_rows(t.eval_data, split, max_size) for label, t in trainers.items()}
    models = {label: t.get_model() for label, t in trainers.items()}
    sizes = {label: t.args.eval_batch_size for label, t in trainers.items()}
    return cross_encoding_matrix(models, rows, metric, sizes, split, unconverged=bad)


def pair_rows(data: EvalData, split: str, max_size: int | None):
    """``(rows, labels)``: a run's pair rows of ``split`` (capped per transition)."""
    df = cap_per_group(data.split(split), max_size, data.seed)
    df = df[df["factual_class"] != df["alternative_class"]]
    return df, data.labels(df)

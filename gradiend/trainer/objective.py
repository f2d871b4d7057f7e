"""Choosing the prediction objective of a run, and the MLM head of decoder-only models.

``prediction_objective="auto"``: ``mlm_mask_token`` for masked LMs, ``seq2seq_encoder_mlm`` for
encoder-decoder models, and for decoder-only models ``clm_mlm_head`` when a trained head is in
the run directory (``<run_dir>/decoder_mlm_head``), else ``clm_next_token``. Naming
``clm_mlm_head`` trains the head when none matches (by fingerprint) and reuses it otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from gradiend.data.examples import ExampleTable
from gradiend.lm.loading import BaseLM
from gradiend.lm.mlm_head import HeadTraining, MLMHead, fit_or_load_head, head_rows
from gradiend.lm.objectives import Objective, make_objective
from gradiend.run_layout import MLM_HEAD, MLM_HEAD_CONFIG

logger = logging.getLogger(__name__)


def choose_objective(
    lm: BaseLM, name: str, head_dir: Path, mask: str, train_head: Callable[[], MLMHead]
) -> Objective:
    """The objective ``name`` (or ``"auto"``) resolves to for ``lm``; ``train_head`` is called
    when ``clm_mlm_head`` is named explicitly."""
    kwargs = {}
    if lm.kind == "clm" and name in ("auto", "clm_mlm_head"):
        if name == "clm_mlm_head":
            kwargs["head"] = train_head()
        elif (head_dir / MLM_HEAD_CONFIG).exists():
            logger.info("a trained MLM head is in %s: using clm_mlm_head", head_dir)
            kwargs["head"] = MLMHead.from_pretrained(head_dir)
            name = "clm_mlm_head"
    return make_objective(name, lm.kind, lm.tokenizer, mask=mask, **kwargs)


def train_head(
    lm: BaseLM,
    table: ExampleTable,
    cfg: HeadTraining,
    head_dir: Path,
    mask: str,
    use_cache: bool = True,
    progress: bool = True,
) -> MLMHead:
    """Train (or reuse, when data and settings match) the MLM head of a decoder-only model on
    the training split, with the backbone frozen; saved in ``head_dir``."""
    if lm.kind != "clm":
        raise ValueError(f"the MLM head is for decoder-only models; this one is {lm.kind!r}")
    return fit_or_load_head(
        lm,
        head_rows(table.split("train")),
        head_labels(table.df),
        head_dir,
        cfg,
        mask,
        validation=head_rows(table.split("validation")),
        use_cache=use_cache,
        progress=progress,
    )


def head_labels(df: pd.DataFrame) -> list[str]:
    """Every word the head must predict: the rows' factual and alternative words."""
    words = list(df["factual"].astype(str)) + list(df["alternative"].astype(str))
    if "mask_labels" in df.columns:
        words += [w for v in df["mask_labels"].dropna() for w in str(v).split("|") if w]
    return sorted(set(words))


def save_objective(objective: Objective, model_dir: Path) -> None:
    """Save what the GRADIEND needs beside it to be reloaded (the MLM head)."""
    head = getattr(objective, "head", None)
    if head is not None:
        head.save_pretrained(Path(model_dir) / MLM_HEAD)


def objective_for(objective: Objective, metadata: dict) -> Objective | None:
    """``objective`` when a loaded GRADIEND was trained with it, else ``None``."""
    return objective if metadata.get("prediction_objective") == objective.name else None

"""The encoder evaluation's flow: encode held-out rows and neutral texts, compute the
incumbent's metric keys, and cache both in the run folder (``encoded_values_*.csv/.json``).

Fed values: the model, the rows and their labels, the neutral texts and the words their
re-masking skips; the run's ``RunLayout`` says where the files go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradiend import distributed as dist
from gradiend._io import read_json_cache, write_json
from gradiend.data.fingerprint import data_hash
from gradiend.evaluator.encoder_components import with_components
from gradiend.evaluator.encoder_rows import encoder_rows
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTask:
    """One encoder evaluation: rows of ``split`` (capped at ``max_size``), their labels, the
    neutral texts, the words never re-masked and the class names of the labels."""

    split: str
    max_size: int | None
    rows: pd.DataFrame
    labels: np.ndarray
    neutral_texts: tuple[str, ...] | None
    excluded: frozenset[str]
    class_names: dict[int, str]
    batch_size: int = 32
    seed: int = 0
    model_fingerprint: Any = None  # the training run's cache fingerprint (the cache key)


def evaluate_encoder(
    mwg: ModelWithGradiend, task: EncoderTask, layout: RunLayout, use_cache: bool, neutral: bool
) -> tuple[pd.DataFrame, dict]:
    """``(encoder_df, metrics)``; reuses the saved files when their fingerprint matches, else
    encodes and (rank 0) writes them."""
    csv_path, json_path = layout.encoder_files(task.split, task.max_size)
    fp = {"model": task.model_fingerprint, "rows": data_hash(task.rows), "neutral": neutral}
    cached = read_json_cache(json_path) if use_cache and csv_path.exists() else None
    if cached is not None and cached.get("fingerprint") == fp:
        try:
            enc_df = pd.read_csv(csv_path)
            return enc_df, with_components(enc_df, task.class_names)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("cache file %s is unreadable (%s); recomputing", csv_path, err)
    enc_df = encoder_rows(
        mwg,
        task.rows,
        task.labels,
        None if task.neutral_texts is None else list(task.neutral_texts),
        set(task.excluded),
        task.batch_size,
        task.seed,
        include_neutral_training=neutral and task.split == "test",
    )
    metrics = with_components(enc_df, task.class_names)

    def write() -> None:  # rank 0 writes; the others see the files after it
        enc_df.to_csv(csv_path, index=False)
        write_json(json_path, {"fingerprint": fp, **metrics})

    dist.on_main(write, "writing the encoder results")
    return enc_df, metrics

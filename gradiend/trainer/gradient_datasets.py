"""Training samples of a GRADIEND as torch ``Dataset`` objects (gradiend 0.2.3's
``GradientTrainingDataset`` and ``TextGradientTrainingDataset``), for a custom training loop.

One sample is what ``TextPredictionTrainer`` trains on: for one batch of rows of the same
transition, the gradient of the batch-mean loss that the encoder reads (``source``), the one
the decoder reconstructs (``target``) and the batch's label (+1 towards ``target_classes[0]``,
−1 towards ``target_classes[1]``, 0 for identity rows). Gradients are computed on access, by
the same ``GradientComputer`` and row batching the trainer uses (the trainer caches them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from gradiend._kwargs import strict_kwargs
from gradiend.data.examples import build_examples
from gradiend.lm.gradients import KINDS, GradientComputer
from gradiend.lm.items import build_items, check_rows
from gradiend.lm.objectives import Item
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.trainer.eval_data import encoding_labels
from gradiend.trainer.gradient_data import schedule_batches

logger = logging.getLogger(__name__)

__all__ = ["GradientTrainingDataset", "TextGradientTrainingDataset"]

# the columns of the trainer's canonical rows (``ExampleTable.df``)
_CANONICAL = ("masked", "factual", "alternative", "factual_class", "alternative_class")


@strict_kwargs
class GradientTrainingDataset(Dataset):
    """``dataset[i]`` is ``{"source": vector, "target": vector, "label": scalar}`` for batch ``i``.

    Args:
        computer: The ``GradientComputer`` (or a ``ModelWithGradiend``, whose computer is used:
            the GRADIEND's parameters and pre-pruned dimensions).
        items: The rows as objective items (``gradiend.lm.items.build_items``).
        labels: One label per item; a batch's label is its rows' mean.
        batches: Item indices per sample (default: one item per sample).
        source: The gradient the encoder reads: ``"alternative"``, ``"factual"`` or ``"diff"``.
        target: The gradient the decoder reconstructs (same choices).
    """

    def __init__(
        self,
        computer: GradientComputer | ModelWithGradiend,
        items: Sequence[Item],
        labels: Sequence[float],
        batches: Sequence[Sequence[int]] | None = None,
        source: str = "alternative",
        target: str = "diff",
    ) -> None:
        if isinstance(computer, ModelWithGradiend):
            computer = computer.grads
        if not isinstance(computer, GradientComputer):
            raise TypeError(
                "computer must be a GradientComputer or a ModelWithGradiend, got "
                f"{type(computer).__name__}"
            )
        for name, kind in (("source", source), ("target", target)):
            if kind not in KINDS:
                raise ValueError(f"{name}={kind!r}: choose one of {list(KINDS)}")
        if len(labels) != len(items):
            raise ValueError(f"{len(labels)} labels for {len(items)} items: give one per item")
        self.computer, self.items, self.source, self.target = computer, list(items), source, target
        self.labels = np.asarray(labels, dtype=float)
        self.batches = [list(b) for b in batches] if batches is not None else [
            [i] for i in range(len(self.items))
        ]  # fmt: skip
        bad = [j for b in self.batches for j in b if not 0 <= j < len(self.items)]
        if bad or any(not b for b in self.batches):
            raise ValueError(f"batches must be non-empty lists of item indices (bad: {bad[:5]})")

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rows = self.batches[i]
        g = self.computer.batch([self.items[j] for j in rows], [self.source, self.target])
        label = torch.tensor(float(self.labels[rows].mean()), dtype=torch.float32)
        return {"source": g[self.source], "target": g[self.target], "label": label}

    @property
    def input_dim(self) -> int:
        """Length of each gradient vector (the GRADIEND's input size)."""
        return self.computer.dim


@strict_kwargs
class TextGradientTrainingDataset(GradientTrainingDataset):
    """The training samples of masked rows for ``model`` (a ``ModelWithGradiend``), batched as
    the trainer batches them: ``batch_size`` rows of one transition per sample.

    Args:
        data: The trainer's data (a per-class dict of frames or a merged frame; its
            ``split`` rows are used) or canonical rows (``trainer.table.split("train")``).
        model: The base model and GRADIEND whose gradients are computed.
        target_classes: The two classes (default: the GRADIEND's, else inferred).
        batch_size: Rows per sample (``TrainingArguments.train_batch_size``).
        source: The encoder's gradient (default: the GRADIEND's recorded source).
        target: The decoder's gradient (default: the GRADIEND's recorded target).
        seed: Seed of the row order (``TrainingArguments.seed``).
        max_size: Cap on rows per transition (``TrainingArguments.train_max_size``).
        split: The split of ``data`` used when it is not canonical rows.
    """

    def __init__(
        self,
        data: Any,
        model: ModelWithGradiend,
        target_classes: list[str] | None = None,
        batch_size: int = 32,
        source: str | None = None,
        target: str | None = None,
        seed: int = 0,
        max_size: int | None = None,
        split: str = "train",
    ) -> None:
        if not isinstance(model, ModelWithGradiend):
            raise TypeError(f"model must be a ModelWithGradiend, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        targets = target_classes or model.target_classes or None
        df, targets = _rows(data, targets, seed, split)
        check_rows(df, model.objective, str(model.lm.source))
        source = source or model.source
        target = target or model.gradiend.metadata.get("target", "diff")
        self.df, self.target_classes = df, targets
        super().__init__(
            model.grads,
            build_items(df, model.objective),
            encoding_labels(df, targets, target),
            schedule_batches(df, batch_size, seed, max_size),
            source,
            target,
        )


def _rows(data: Any, targets: list[str] | None, seed: int, split: str):
    """Canonical rows (index 0..n-1, a ``feature_class_id`` per transition) and the two
    target classes."""
    if isinstance(data, pd.DataFrame) and all(c in data.columns for c in _CANONICAL):
        df = data.reset_index(drop=True).copy()
        if not targets:
            classes = list(dict.fromkeys(df["factual_class"]))
            if len(classes) != 2:
                raise ValueError(f"the rows have classes {classes}: pass target_classes=[a, b]")
            targets = classes
        if "feature_class_id" not in df.columns:
            transition = df["factual_class"] + "→" + df["alternative_class"]
            df["feature_class_id"] = pd.factorize(transition)[0]
        return df, list(targets)
    table = build_examples(data, list(targets) if targets else None, seed=seed)
    return table.split(split).reset_index(drop=True), table.target_classes

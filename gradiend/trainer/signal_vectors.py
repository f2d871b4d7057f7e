"""The inputs of ``SignalTrainer``: vectors the user extracted, checked, split and batched.

Everything here runs before training and writes nothing: the vectors become float32 matrices
(bad shapes, non-finite values or too few rows are refused with the fix), each class is split
into train/validation/test by a seeded permutation, the training rows are batched like the text
trainer's rows (``train_batch_size`` rows of one class per sample, the sample being their mean)
and the validation rows are encoded one by one at each evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend.evaluator.encoder import class_summary
from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.gradient_data import schedule_batches, stable_hash

logger = logging.getLogger(__name__)

MIN_ROWS = 5  # per class: at least one row each for validation and test, three for training
SPLITS = ("train", "validation", "test")

# TrainingArguments fields that only mean something with a language model: a value other than
# the default is refused (docs/signals.md "Training on your own vectors")
LM_ONLY = (
    "source",
    "target",
    "add_identity_for_other_classes",
    "include_other_classes",
    "params",
    "signal",
    "signal_scope",
    "prediction_objective",
    "decoder_mlm_head_epochs",
    "decoder_mlm_head_batch_size",
    "decoder_mlm_head_lr",
    "decoder_mlm_head_max_size",
    "torch_dtype",
    "trust_remote_code",
    "device",
    "base_model_device_map",
    "base_model_max_memory",
    "encoder_decoder_same_device",
    "pre_prune_config",
    "decoder_eval_max_size_training_like",
    "decoder_eval_max_size_neutral",
    "decoder_eval_lrs",
    "decoder_eval_feature_factors",
    "mask_placeholder",
)


def as_matrix(value: Any, name: str, dim: int | None = None, min_rows: int = MIN_ROWS):
    """``value`` (a tensor, an array or a list of 1-D vectors) as a float32 ``[n, d]`` CPU
    tensor; a clear error for what cannot be one."""
    if value is None:
        raise ValueError(f"{name} is missing: pass a tensor or array of shape (n, d)")
    try:
        if isinstance(value, (list, tuple)) and value and all(torch.is_tensor(v) for v in value):
            value = torch.stack([v.detach().reshape(-1) for v in value])
        t = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value.detach())
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a tensor, an array or a list of equally long 1-D vectors, "
            f"got {type(value).__name__} ({err})"
        ) from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: pass at least {min_rows} vectors, shape (n, d)")
    if t.dim() != 2:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}: pass one vector per row, shape (n, d) "
            "(flatten each vector, e.g. x.reshape(len(x), -1))"
        )
    n, d = t.shape
    if n < min_rows or d == 0:
        raise ValueError(
            f"{name} has {n} row(s) of length {d}: give at least {min_rows} non-empty vectors "
            "(a few rows each go to validation and test)"
        )
    if dim is not None and d != dim:
        raise ValueError(
            f"{name} has vectors of length {d}, but the other vectors (or the GRADIEND) have "
            f"{dim}: every vector must come from the same extraction"
        )
    t = t.to(torch.float32).cpu()
    bad = (~torch.isfinite(t)).any(dim=1).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{name} has NaN or inf in {len(bad)} row(s) (first: {bad[:5].tolist()}): drop or "
            "fix those rows before training"
        )
    return t.contiguous()


def check_lm_free(args: TrainingArguments) -> None:
    """Refuse the fields that need a language model (set to anything but their default)."""
    defaults = {f.name: _default(f) for f in dataclasses.fields(TrainingArguments)}
    changed = [k for k in LM_ONLY if getattr(args, k) != defaults[k]]
    if changed:
        raise ValueError(
            f"SignalTrainer trains on vectors and has no language model, so {changed} cannot "
            "apply: leave them at their defaults (or train with TextPredictionTrainer)"
        )
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ValueError("give max_steps > 0 or num_train_epochs > 0")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def check_ratios(split_ratios: Any) -> tuple[float, float, float]:
    """Three non-negative fractions (train, validation, test) summing to 1, train and
    validation > 0."""
    try:
        ratios = tuple(float(r) for r in split_ratios)
    except (TypeError, ValueError):
        ratios = ()
    if (
        len(ratios) != 3
        or min(ratios) < 0
        or ratios[0] <= 0
        or ratios[1] <= 0
        or abs(sum(ratios) - 1) > 1e-6
    ):
        raise ValueError(
            f"split_ratios={split_ratios!r}: give (train, validation, test) fractions that sum "
            "to 1, train and validation > 0, e.g. (0.8, 0.1, 0.1)"
        )
    return ratios  # type: ignore[return-value]


def split_indices(n: int, ratios: tuple[float, float, float], seed: int) -> dict[str, list]:
    """A seeded split of ``range(n)``: validation and test get at least one row each when their
    fraction is > 0, training the rest."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(ratios[1] * n))
    n_test = max(1, round(ratios[2] * n)) if ratios[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} rows leave none for training: give more rows or other ratios")
    cut = [n_train, n_train + n_val]
    return {
        "train": sorted(order[: cut[0]].tolist()),
        "validation": sorted(order[cut[0] : cut[1]].tolist()),
        "test": sorted(order[cut[1] :].tolist()),
    }


@dataclass
class VectorData:
    """Both classes' vectors, their split, and the optional neutral vectors."""

    classes: tuple[str, str]
    vectors: tuple[torch.Tensor, torch.Tensor]
    neutral: torch.Tensor | None
    ratios: tuple[float, float, float]
    seed: int
    splits: tuple[dict, dict] = field(init=False)

    def __post_init__(self) -> None:
        self.splits = tuple(
            split_indices(len(v), self.ratios, self.seed + k) for k, v in enumerate(self.vectors)
        )  # type: ignore[assignment]

    @property
    def dim(self) -> int:
        return int(self.vectors[0].shape[1])

    def rows(self, split: str, max_size: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """``(vectors, labels)`` of ``split``: class 0 (+1) first, then class 1 (−1); at most
        ``max_size`` rows per class (the first of the seeded order)."""
        parts, labels = [], []
        for k, (vecs, split_of) in enumerate(zip(self.vectors, self.splits)):
            idx = split_of[split]
            if max_size is not None:
                keep = np.random.default_rng(self.seed).permutation(len(idx))[:max_size]
                idx = sorted(idx[i] for i in keep)
            parts.append(vecs[idx])
            labels += [1.0 if k == 0 else -1.0] * len(idx)
        return torch.cat(parts), np.asarray(labels)

    def class_names(self, labels: np.ndarray) -> np.ndarray:
        return np.where(labels > 0, self.classes[0], self.classes[1])

    def record(self) -> dict:
        """What ``training.json`` keeps of the split: the seed, the ratios, counts and rows."""
        return {
            "seed": self.seed,
            "ratios": list(self.ratios),
            "counts": {
                c: {s: len(sp[s]) for s in SPLITS} for c, sp in zip(self.classes, self.splits)
            },
            "indices": {c: sp for c, sp in zip(self.classes, self.splits)},
            "neutral_rows": 0 if self.neutral is None else len(self.neutral),
        }

    def sha(self) -> str:
        """The content hash of the vectors and their split (the run cache's data key)."""
        neutral = self.neutral if self.neutral is not None else "none"
        return stable_hash(*self.vectors, neutral, list(self.classes), self.record()["indices"])


@dataclass
class VectorSetup:
    """What the seeds train on: the map, the batches and the validation callback (the fields
    ``trainer.lr_search`` reads of a ``training.GradientSetup``)."""

    pmap: Any
    batches: list
    evaluate: Callable[[GradiendModel], dict]
    batch_rows: list
    train_labels: np.ndarray
    indices: Any = None
    timings: dict = field(default_factory=dict)


def build_setup(data: VectorData, args: TrainingArguments, pmap, indices) -> VectorSetup:
    """The training batches (mean of ``train_batch_size`` rows of one class each) and the
    validation callback (the validation rows encoded one by one)."""
    x, labels = data.rows("train")
    frame = pd.DataFrame({"feature_class_id": (labels < 0).astype(int)})
    batch_rows = schedule_batches(frame, args.train_batch_size, args.seed, args.train_max_size)
    needed = args.max_steps * (args.gradiend_batch_size or 1)
    if 0 < needed < len(batch_rows):  # a short run never visits every batch
        batch_rows = batch_rows[:needed]
    batches = []
    for rows in batch_rows:
        mean = x[rows].mean(dim=0)
        batches.append((mean, mean))  # the decoder reconstructs what the encoder reads
    val_x, val_labels = data.rows(
        "validation", args.encoder_eval_train_max_size or args.encoder_eval_max_size
    )
    val = pd.DataFrame(
        {"label": val_labels, "type": "training", "factual_class": data.class_names(val_labels)}
    )

    def evaluate(model: GradiendModel) -> dict:
        val["encoded"] = model.encode(val_x)[:, 0].detach().float().cpu().numpy()
        return class_summary(val)

    return VectorSetup(pmap, batches, evaluate, batch_rows, labels, indices)

"""From example rows to gradients: items, the batch schedule, the gradient cache, pre-pruning.

The base model is frozen, so every gradient is computed once: training batches are cached in
memory (and, with ``use_cache``, on disk one file per batch, so an interrupted extraction
resumes) and every epoch and seed trains on that cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gradiend.lm.gradients import GradientComputer
from gradiend.lm.objectives import Item

logger = logging.getLogger(__name__)


def schedule_batches(df: pd.DataFrame, batch_size: int, seed: int, max_size: int | None = None):
    """Row-index batches of one transition each (pure batches), remainders kept."""
    rng = np.random.default_rng(seed)
    batches = []
    for _, group in df.groupby("feature_class_id", sort=True):
        idx = rng.permutation(group.index.to_numpy())
        if max_size is not None:
            idx = idx[:max_size]
        batches += [idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def stable_hash(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(p.cpu().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class GradientBatches(Sequence):
    """``(source, target)`` gradient pairs per batch: cached in memory when they fit, on disk
    with ``cache_dir`` (resumable), else recomputed on access."""

    def __init__(
        self,
        computer: GradientComputer,
        items: list[Item],
        batches: list[list[int]],
        source: str,
        target: str,
        max_bytes: float,
        cache_dir: Path | None = None,
        progress: bool = True,
    ):
        self.computer, self.items, self.batches = computer, items, batches
        self.source, self.target = source, target
        self.cache_dir = cache_dir
        need = len(batches) * computer.dim * 4 * (1 if source == target else 2)
        self.in_memory = need <= max_bytes
        self._mem: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.computed = 0
        if not self.in_memory:
            logger.warning(
                "gradient cache would need %.1f GB (> gradient_cache_max_gb): gradients are "
                "recomputed at every step; pre-prune to make training fast",
                need / 1e9,
            )
            self.cache_dir = None
            return
        for i in tqdm(range(len(batches)), desc="training gradients", disable=not progress):
            self._mem[i] = self._load_or_compute(i)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i in self._mem:
            return self._mem[i]
        return self._compute(i)

    def _compute(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.items[j] for j in self.batches[i]]
        g = self.computer.batch(rows, [self.source, self.target])
        self.computed += 1
        return g[self.source], g[self.target]

    def _load_or_compute(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = None if self.cache_dir is None else self.cache_dir / f"batch_{i:05d}.safetensors"
        if path is not None and path.exists():
            t = load_file(str(path))
            return t["source"], t["target"]
        s, t = self._compute(i)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            save_file({"source": s.contiguous(), "target": t.contiguous()}, tmp)
            os.replace(tmp, path)
        return s, t


def per_example_matrix(
    computer: GradientComputer, items: list[Item], kind: str, batch_size: int, progress: bool = True
) -> torch.Tensor:
    """``[n, dim]`` per-example gradients (for in-training evaluation when they fit in memory)."""
    rows = []
    for start in tqdm(
        range(0, len(items), batch_size), desc="validation gradients", disable=not progress
    ):
        rows.append(computer.per_example(items[start : start + batch_size], kind))
    return torch.cat(rows)

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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gradiend import distributed as dist
from gradiend._io import clean_orphans, tmp_prefix
from gradiend.lm.checks import cache_dtype_for
from gradiend.lm.devices import storage_device, to_host
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
        dtype: torch.dtype = torch.bfloat16,
    ):
        self.computer, self.items, self.batches = computer, items, batches
        self.source, self.target = source, target
        self.cache_dir, self.dtype = cache_dir, dtype
        elem = torch.finfo(dtype).bits // 8
        need = len(batches) * computer.dim * elem * (1 if source == target else 2)
        self.in_memory = need <= max_bytes
        self.on_host = self.in_memory and (
            storage_device(computer.device, need, "gradient cache") == "host"
        )
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
        if dist.is_distributed():
            self._extract_split(progress)
            return
        for i in tqdm(range(len(batches)), desc="training gradients", disable=not progress):
            self._mem[i] = self._load_or_compute(i)

    def _extract_split(self, progress: bool) -> None:
        """Batch ``i`` on rank ``i % world``. With ``cache_dir`` each rank writes its batches'
        files (its shard; existing ones are kept: resume) and rank 0 reads them all back;
        without, rank 0 gathers the tensors round by round. Only rank 0 keeps the cache."""
        mine = dist.shard(range(len(self.batches)))
        desc = f"training gradients (rank {dist.rank()})"
        if self.cache_dir is not None:
            bar = tqdm(mine, desc=desc, disable=not progress)
            if dist.is_main():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                clean_orphans(self.cache_dir)
            dist.barrier("preparing the gradient cache folder")
            dist.everywhere(lambda: [self._ensure_file(i) for i in bar], "training gradients")
            self.computed = sum(dist.all_gather(self.computed, "counting computed batches"))
            if dist.is_main():
                lost = [i for i in range(len(self.batches)) if not self._path(i).exists()]
                if lost:
                    logger.warning(
                        "%d gradient shard(s) written by other ranks are not in %s (e.g. batch "
                        "%d of rank %d): is experiment_dir on a filesystem every node shares? "
                        "Rank 0 computes them itself",
                        len(lost),
                        self.cache_dir,
                        lost[0],
                        dist.owner(lost[0]),
                    )
                for i in range(len(self.batches)):
                    self._mem[i] = self._load_or_compute(i)
            return
        bar = tqdm(total=len(mine), desc=desc, disable=not progress)

        same = self.source == self.target

        def compute(i: int) -> torch.Tensor:  # source (and target) of batch i, one tensor
            s, t = self._compute(i)
            bar.update(1)
            return s[None] if same else torch.stack([s, t])

        shape = (1 if same else 2, self.computer.dim)
        rounds = dist.gather_tensor_rounds(
            len(self.batches), compute, shape, self.dtype, "training gradients"
        )
        for i, pair in rounds:
            self._mem[i] = self._place(pair[0], pair[0] if same else pair[1])
        bar.close()
        self.computed = sum(dist.all_gather(self.computed, "counting computed batches"))

    def _path(self, i: int) -> Path:
        return self.cache_dir / f"batch_{i:05d}.safetensors"

    def _ensure_file(self, i: int) -> None:
        """Batch ``i``'s cache file exists and is readable (computed and written if not)."""
        path = self._path(i)
        if path.exists():  # written atomically: complete (rank 0 re-checks when it reads)
            return
        self._write(path, *self._compute(i))

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
        self._fit_dtype([g[self.source], g[self.target]], f"training batch {i}")
        s = g[self.source].to(self.dtype)
        return s, (s if self.target == self.source else g[self.target].to(self.dtype))

    # -- issue 22: a 16-bit cache that a batch overflows is widened (lm.checks.cache_dtype_for)
    def _fit_dtype(self, tensors: list[torch.Tensor], where: str) -> None:
        """Widen the cache to float32 (and what it holds) when ``tensors`` would overflow its
        dtype; refused under torch.distributed without use_cache (one dtype for all ranks)."""
        fixed = dist.is_distributed() and self.cache_dir is None
        for x in tensors:
            dtype = cache_dtype_for(x, self.dtype, where, can_widen=not fixed)
            if dtype != self.dtype:
                self.dtype = dtype
                for k, (s, t) in self._mem.items():
                    ws = s.to(dtype)
                    self._mem[k] = self._place(ws, ws if t is s else t.to(dtype))

    def _place(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Into the cache's home: the GRADIEND's device, or pinned host memory."""
        move = to_host if self.on_host else (lambda x: x.to(self.computer.device))
        ms = move(s)
        return ms, (ms if t is s else move(t))

    def _load_or_compute(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = None if self.cache_dir is None else self._path(i)
        if path is not None and path.exists():
            cached = self._load(path)
            if cached is not None:
                return cached
        s, t = self._compute(i)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if i == 0 and not dist.is_distributed():
                clean_orphans(path.parent)
            self._write(path, s, t)
        return self._place(s, t)

    def _write(self, path: Path, s: torch.Tensor, t: torch.Tensor) -> None:
        """One batch's file, atomically (temporary file, then rename); with source == target
        only ``source`` is stored (safetensors refuses two names for one memory)."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name))
        os.close(fd)
        tensors = {"source": s.contiguous().cpu()}
        if not _same_tensor(s, t):
            tensors["target"] = t.contiguous().cpu()
            if _shares_memory(tensors["source"], tensors["target"]):  # distinct views of one
                tensors["target"] = tensors["target"].clone()
        try:
            save_file(tensors, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _load(self, path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A cached batch, or ``None`` (and the file removed) when it is corrupt or truncated."""
        try:
            t = load_file(str(path))
            self._fit_dtype(list(t.values()), f"cached batch {path.name}")
            s = t["source"].to(self.dtype)
            # no "target": source == target, stored once (older files hold both: still read)
            g = s if "target" not in t else t["target"].to(self.dtype)
            if s.shape[-1] != self.computer.dim or g.shape[-1] != self.computer.dim:
                raise ValueError(f"{s.shape[-1]} dimensions, expected {self.computer.dim}")
            return self._place(s, g)
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as err:
            logger.warning(
                "cached gradient batch %s is unreadable (%s): removed, recomputing it", path, err
            )
            path.unlink(missing_ok=True)
            return None


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``b`` is ``a`` itself or the same view of the same memory (one gradient, two roles)."""
    if a is b:
        return True
    return (
        a.device == b.device
        and a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors lie in one storage (safetensors cannot save them side by side)."""
    return a.device == b.device and a.untyped_storage().data_ptr() == (
        b.untyped_storage().data_ptr()
    )


def per_example_matrix(
    computer: GradientComputer,
    items: list[Item],
    kind: str,
    batch_size: int,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """``[n, dim]`` per-example gradients (for in-training evaluation when they fit in memory).

    Under ``torch.distributed`` row ``i`` is computed on rank ``i % world`` and the matrix is
    assembled on rank 0 only (the others return ``None``)."""
    if dist.is_distributed():

        def row(i: int) -> torch.Tensor:
            g = computer.per_example([items[i]], kind)[0]
            cache_dtype_for(g, dtype, f"validation row {i}", can_widen=False)  # one dtype: ranks
            return g

        out = None
        if dist.is_main():
            out = torch.empty(len(items), computer.dim, dtype=dtype, device=computer.device)
        rounds = dist.gather_tensor_rounds(
            len(items), row, (computer.dim,), dtype, "validation gradients"
        )
        for i, g in rounds:
            out[i] = g
        return out
    out = torch.empty(len(items), computer.dim, dtype=dtype, device=computer.device)
    i = 0
    for g in tqdm(
        computer.iter_per_example(items, kind),
        total=len(items),
        desc="validation gradients",
        disable=not progress,
    ):
        if cache_dtype_for(g, out.dtype, f"validation row {i}") != out.dtype:
            out = out.float()  # a 16-bit matrix this row overflows: widened (warned)
        out[i] = g
        i += 1
    return out

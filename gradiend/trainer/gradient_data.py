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

from gradiend.data.examples import row_words
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.objectives import Encoded, Item, Objective

logger = logging.getLogger(__name__)


def build_items(df: pd.DataFrame, objective: Objective) -> list[Item]:
    """One ``Item`` per row; errors name the offending row."""
    items = []
    for i, row in enumerate(df.to_dict("records")):
        factual, alternative = row_words(row)
        try:
            items.append(objective.item(row["masked"], factual, alternative))
        except ValueError as err:
            raise ValueError(f"row {i} ({row['factual_class']}): {err}") from None
    return items


def check_rows(df: pd.DataFrame, objective: Objective, model_name: str) -> None:
    """Fail fast, before any gradient: masks present and every word known to the tokenizer."""
    no_mask = df[~df["masked"].str.contains(objective.mask, regex=False)]
    if len(no_mask):
        cls = no_mask["factual_class"].iloc[0]
        raise ValueError(
            f"{len(no_mask)} row(s) have no {objective.mask} (first of class {cls!r}: "
            f"{no_mask['masked'].iloc[0][:80]!r}); mask the target word or set masked_col"
        )
    unk = objective.tokenizer.unk_token_id
    words = set(df["factual"]) | set(df["alternative"])
    if "mask_labels" in df.columns:
        for v in df["mask_labels"].dropna():
            words |= set(str(v).split("|"))
    for word in sorted(w for w in words if w):
        ids = objective.word_ids(word)
        if unk is not None and unk in ids:
            raise ValueError(
                f"the word {word!r} is not in the vocabulary of {model_name} (it becomes "
                f"{objective.tokenizer.unk_token!r}); drop those rows or use another model"
            )


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


def neutral_item(
    token_ids: list[int], objective: Objective, rng: np.random.Generator, excluded: set[str]
) -> Item | None:
    """Re-mask one random content token of a neutral text; identity item (factual = alternative).

    Masked LMs mask a token in place; causal LMs predict it from the prefix before it.
    """
    tok = objective.tokenizer
    special = set(tok.all_special_ids)
    pieces = tok.convert_ids_to_tokens(token_ids)
    ok = []
    for pos, (tid, piece) in enumerate(zip(token_ids, pieces)):
        word = piece.replace("##", "").replace("Ġ", "").replace("▁", "").strip().lower()
        if tid in special or not word.isalpha() or word in excluded:
            continue
        if objective.left_pad and pos < 1:
            continue
        ok.append(pos)
    if not ok:
        return None
    pos = int(rng.choice(ok))
    if objective.left_pad:
        enc = Encoded(token_ids[:pos], [pos - 1], [token_ids[pos]])
    else:
        ids = list(token_ids)
        ids[pos] = tok.mask_token_id
        enc = Encoded(ids, [pos], [token_ids[pos]])
    return Item(enc, enc)

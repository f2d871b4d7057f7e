"""Pre-pruning: choose the GRADIEND's input dimensions from a few samples' gradients.

Rules (``PrePruneConfig.rule``): ``label_signed_mean`` = |Σ label_i·g_i|/n (default; the two
directions add up instead of cancelling), ``abs_mean`` = Σ|g_i|/n, ``signed_mean`` = |Σ g_i|/n
(the incumbent's). Only one full-size accumulator is held in memory.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gradiend.lm.gradients import GradientComputer
from gradiend.lm.objectives import Item
from gradiend.trainer.arguments import PRE_PRUNE_RULES, PrePruneConfig

logger = logging.getLogger(__name__)

RULES = PRE_PRUNE_RULES


def stratified_sample(df: pd.DataFrame, n: int, seed: int) -> list[int]:
    """``n`` row positions split evenly over the two pair transitions (with replacement if few)."""
    rng = np.random.default_rng(seed)
    groups = [g for k, g in df.groupby("feature_class_id") if k in (0, 1)]
    out: list[int] = []
    for i, g in enumerate(groups):
        take = n // len(groups) + (1 if i < n % len(groups) else 0)
        pos = np.flatnonzero(df.index.isin(g.index))
        out += rng.choice(pos, size=take, replace=take > len(pos)).tolist()
    return out


def importance(
    computer: GradientComputer,
    items: list[Item],
    labels: list[float],
    cfg: PrePruneConfig,
    progress: bool = True,
) -> torch.Tensor:
    """Importance of every (unpruned) dimension from the samples' per-example gradients."""
    if cfg.rule not in RULES:
        raise ValueError(f"unknown pre-prune rule {cfg.rule!r}; choose one of {RULES}")
    acc = torch.zeros(computer.dim)
    bar = tqdm(total=len(items), desc="pre-prune gradients", disable=not progress)
    for start in range(0, len(items), cfg.batch_size):
        chunk = items[start : start + cfg.batch_size]
        for j, g in enumerate(computer.iter_per_example(chunk, cfg.source)):
            g = g.float().cpu()
            if cfg.rule == "abs_mean":
                acc.add_(g.abs_())
            else:
                acc.add_(g, alpha=labels[start + j] if cfg.rule == "label_signed_mean" else 1.0)
            bar.update()
    bar.close()
    return acc.abs_().div_(max(1, len(items)))


def select(scores: torch.Tensor, topk: int | float | None, threshold: float | None) -> torch.Tensor:
    """Local positions kept by ``threshold`` (≥) and then ``topk``, sorted ascending."""
    keep = torch.arange(len(scores)) if threshold is None else (scores >= threshold).nonzero()[:, 0]
    if topk is not None:
        k = math.ceil(topk * len(scores)) if isinstance(topk, float) else int(topk)
        k = max(1, min(k, len(keep)))
        keep = keep[torch.topk(scores[keep], k).indices]
    return torch.sort(keep).values


def pre_prune(
    computer: GradientComputer,
    items: list[Item],
    labels: list[float],
    cfg: PrePruneConfig,
    progress: bool = True,
) -> torch.Tensor:
    """Sorted base-global indices to keep."""
    scores = importance(computer, items, labels, cfg, progress)
    local = select(scores, cfg.topk, cfg.threshold)
    logger.info("pre-pruning keeps %d of %d dimensions", len(local), len(scores))
    return computer.param_map.local_to_global(local)

"""Pre-pruning: choose the GRADIEND's input dimensions from a few samples' gradients.

Rules (``PrePruneConfig.rule``): ``label_signed_mean`` = |Σ label_i·g_i|/n (default; the two
directions add up instead of cancelling), ``abs_mean`` = Σ|g_i|/n, ``signed_mean`` = |Σ g_i|/n
(the incumbent's). The accumulators are the only full-size vectors held, one float32 tensor per
parameter; the top-k is found chunk by chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gradiend import distributed as dist
from gradiend.lm.devices import storage_device
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
        if take > len(pos):
            logger.warning(
                "PrePruneConfig.n_samples=%d asks for %d rows of one transition, which has %d: "
                "sampling with replacement (repeated rows add no information); pass "
                "n_samples ≤ %d",
                n, take, len(pos), len(pos) * len(groups),
            )  # fmt: skip
        out += rng.choice(pos, size=take, replace=take > len(pos)).tolist()
    return out


def importance(
    computer: GradientComputer,
    items: list[Item],
    labels: list[float],
    cfg: PrePruneConfig,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Importance of every (unpruned) dimension, one tensor per selected parameter.

    The signed rules are linear in the gradients, so ``Σ w_i g_i`` is the gradient of
    ``Σ w_i L_i``: one backward per batch instead of one per sample, accumulated in place in the
    parameters' ``.grad`` (one vector of the full dimension, in the model's dtype). ``abs_mean``
    needs per-sample gradients and a float32 accumulator beside them.
    """
    if cfg.rule not in RULES:
        raise ValueError(f"unknown pre-prune rule {cfg.rule!r}; choose one of {RULES}")
    params = computer.params
    acc: list[torch.Tensor] = []
    if cfg.rule == "abs_mean":
        acc = _float_sums(params)
    else:
        logger.info("pre-prune sums accumulate in the parameters' .grad (%s)", params[0].device)
    for p in params:
        p.grad = None
    # under torch.distributed each rank sums its share of the batches; the sums are added up
    starts = dist.shard(range(0, len(items), cfg.batch_size))
    bar = tqdm(total=len(items), desc="pre-prune gradients", disable=not progress)
    dist.everywhere(
        lambda: _accumulate(computer, items, labels, cfg, starts, acc, bar), "pre-prune gradients"
    )
    bar.close()
    if cfg.rule != "abs_mean":  # the sums were accumulated in place, in the parameters' .grad
        acc = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        for p in params:
            p.grad = None
    for a in acc:
        dist.all_reduce_sum_(a, "adding up the pre-prune sums")
    for a in acc:
        a.abs_().div_(max(1, len(items)))
    return acc


def _float_sums(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``abs_mean``'s float32 accumulators, one per parameter, on its device when they fit."""
    need = 4.0 * sum(p.numel() for p in params)
    home = storage_device(params[0].device, need, "pre-prune sums (float32)")
    return [
        torch.zeros(p.shape, dtype=torch.float32, device=p.device if home == "device" else "cpu")
        for p in params
    ]


def _accumulate(
    computer: GradientComputer,
    items: list[Item],
    labels: list[float],
    cfg: PrePruneConfig,
    starts: Sequence[int],
    acc: list[torch.Tensor],
    bar: tqdm,
) -> None:
    """Add this rank's batches (starting at ``starts``) to the sums: per-example |g| into
    ``acc`` for ``abs_mean``, else the weighted gradient into the parameters' ``.grad``."""
    for n, start in enumerate(starts):
        chunk = items[start : start + cfg.batch_size]
        if cfg.rule == "abs_mean":
            for grads in computer.iter_per_example_params(chunk, cfg.source):
                for a, g in zip(acc, grads):
                    a.add_(g.abs().to(a.device))
                del grads
        else:
            w = labels[start : start + len(chunk)] if cfg.rule == "label_signed_mean" else None
            computer.accumulate_weighted(chunk, cfg.source, w or [1.0] * len(chunk), first=n == 0)
        bar.update(len(chunk))


def select(
    scores: torch.Tensor | list[torch.Tensor],
    topk: int | float | None,
    threshold: float | None,
) -> torch.Tensor:
    """Positions (in the concatenation of ``scores``) kept by ``threshold`` (≥) and then ``topk``,
    sorted ascending, as a CPU int64 tensor. Works chunk by chunk, so the scores of a model of
    billions of parameters are never concatenated."""
    chunks = [scores] if isinstance(scores, torch.Tensor) else list(scores)
    chunks = [c.reshape(-1) for c in chunks]
    n = sum(c.numel() for c in chunks)
    n_ok = n if threshold is None else _count_ge(chunks, threshold)
    k = n_ok
    if topk is not None:
        k = math.ceil(topk * n) if isinstance(topk, float) else int(topk)
        k = max(1, min(k, n_ok))
    if n_ok == 0:
        raise ValueError(f"no dimension has an importance ≥ threshold={threshold}")
    if k == n_ok and threshold is not None:
        return _positions(chunks, lambda c: c >= threshold)
    if k == n:
        return torch.arange(n)
    if n <= _SMALL:
        flat = torch.cat([c.float() for c in chunks])
        return torch.sort(torch.topk(flat, k).indices.cpu()).values
    lo, hi = _bracket(chunks, k, n)
    above = _count_gt(chunks, hi)
    # everything above the bracket, plus the largest candidates inside it (few by construction)
    cand = _positions(chunks, lambda c: (c >= lo) & (c <= hi))
    vals = _values(chunks, cand)
    take = cand[torch.topk(vals, k - above).indices] if k > above else cand[:0]
    keep = torch.cat([_positions(chunks, lambda c: c > hi), take])
    return torch.sort(keep).values


_SMALL = 1 << 26  # below this, one concatenated topk is simplest and fast


def _count_ge(chunks: list[torch.Tensor], t: float) -> int:
    return int(sum(int((c >= t).sum()) for c in chunks))


def _count_gt(chunks: list[torch.Tensor], t: float) -> int:
    return int(sum(int((c > t).sum()) for c in chunks))


def _positions(chunks: list[torch.Tensor], cond) -> torch.Tensor:
    out, offset = [], 0
    for c in chunks:
        out.append(cond(c).nonzero()[:, 0].cpu() + offset)
        offset += c.numel()
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _values(chunks: list[torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
    out, offset = [], 0
    for c in chunks:
        sel = positions[(positions >= offset) & (positions < offset + c.numel())] - offset
        out.append(c[sel.to(c.device)].float().cpu())
        offset += c.numel()
    return torch.cat(out)


def _bracket(
    chunks: list[torch.Tensor], k: int, n: int, size: int = 1 << 20
) -> tuple[float, float]:
    """Values ``lo ≤ hi`` with ``count(≥ lo) ≥ k`` and ``count(> hi) ≤ k`` from a sample of the
    scores; widened until the counts on the full scores confirm them."""
    gen = torch.Generator().manual_seed(0)
    sample = torch.cat(
        [
            c[
                torch.randint(c.numel(), (max(1, size * c.numel() // n),), generator=gen).to(
                    c.device
                )
            ]
            .float()
            .cpu()
            for c in chunks
        ]
    )
    q = 1.0 - k / n
    delta = max(4.0 * math.sqrt(q * (1 - q) / len(sample)), 4.0 / len(sample))
    while True:
        lo = float(torch.quantile(sample, max(0.0, q - delta)))
        hi = float(torch.quantile(sample, min(1.0, q + delta)))
        if q - delta <= 0:
            lo = float("-inf")
        if q + delta >= 1:
            hi = float("inf")
        if _count_ge(chunks, lo) >= k and _count_gt(chunks, hi) <= k:
            return lo, hi
        delta *= 4


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
    del scores
    local = dist.broadcast(local, "sharing the pre-pruned dimensions")  # one choice for all
    logger.info("pre-pruning keeps %d of %d dimensions", len(local), computer.param_map.numel)
    return computer.param_map.local_to_global(local)

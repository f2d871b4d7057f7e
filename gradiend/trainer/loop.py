"""The optimisation loop: a GRADIEND trained on cached gradient batches.

It knows nothing about data or base models: it receives the cached ``(source, target)`` batches
and an ``evaluate`` callback that returns the validation summary for the current weights.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from gradiend.lm.devices import resolve_dtype
from gradiend.lm.params import ParamMap
from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.collapse import CollapseMonitor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation loop's settings (``TrainingArguments.loop()``)."""

    max_steps: int = -1
    num_train_epochs: int = 3
    eval_steps: int = 250
    learning_rate: float = 1e-5
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    optim: str = "adamw"
    gradiend_batch_size: int = 1

    def steps(self, n_batches: int) -> int:
        """Optimiser steps of one seed: ``max_steps``, or epochs over the cached batches."""
        return self.max_steps if self.max_steps > 0 else self.num_train_epochs * n_batches


@dataclass(frozen=True)
class SeedPlan:
    """Which seeds run and when to stop (``TrainingArguments.seed_plan()``)."""

    seed: int = 0
    max_seeds: int = 3
    min_convergent_seeds: int = 1
    fail_on_non_convergence: bool = False

    def seeds(self) -> range:
        return range(self.seed, self.seed + max(1, self.max_seeds))


@dataclass(frozen=True)
class Architecture:
    """The GRADIEND's shape beyond its input size (the incumbent's compatibility fields)."""

    latent_dim: int = 1
    activation_encoder: str = "tanh"
    activation_decoder: str = "id"
    bias_decoder: bool = True
    dtype: str = "float32"

    def build(self, pmap: ParamMap, indices, meta: dict, seed: int) -> GradiendModel:
        torch.manual_seed(seed)  # initialised on the CPU: the same weights on every device
        dim = pmap.numel if indices is None else len(indices)
        return GradiendModel(
            dim,
            latent_dim=self.latent_dim,
            activation_encoder=self.activation_encoder,
            activation_decoder=self.activation_decoder,
            bias_decoder=self.bias_decoder,
            torch_dtype=resolve_dtype(self.dtype),
            param_map=pmap,
            indices=indices,
            **meta,
        )


@dataclass
class LoopResult:
    """Best weights (by |validation correlation|) and what happened on the way."""

    model: GradiendModel
    best_step: int
    best: dict
    evals: list[dict] = field(default_factory=list)
    losses: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    collapse: dict | None = None  # set when a CollapseMonitor stopped the run early


def train_loop(
    model: GradiendModel,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    evaluate: Callable[[GradiendModel], dict],
    *,
    steps: int,
    eval_steps: int,
    learning_rate: float,
    weight_decay: float = 0.01,
    adam_epsilon: float = 1e-8,
    optim: str = "adamw",
    gradiend_batch_size: int = 1,
    seed: int = 0,
    progress: bool = True,
    monitor: CollapseMonitor | None = None,
) -> LoopResult:
    """Run ``steps`` AdamW steps of MSE(decoder(encoder(s)), t), evaluating every ``eval_steps``;
    ``monitor`` ends the run early when the encodings collapse (``trainer.collapse``)."""
    start = time.perf_counter()
    opt_cls = torch.optim.AdamW if optim == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=learning_rate, eps=adam_epsilon, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    evals, losses, collapse = [], [], None
    pending: list[tuple[int, torch.Tensor]] = []  # losses read at evaluations: no sync per step
    device, dtype = model.W_e.device, model.W_e.dtype

    def record(step: int) -> dict:
        model.eval()
        with torch.no_grad():
            summary = {"step": step, **evaluate(model)}
        model.train()
        evals.append(summary)
        return summary

    best = record(0)
    best_step, best_state = 0, copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, steps + 1), desc="training GRADIEND", disable=not progress)
    for step in bar:
        idx = _draw(order, len(batches), gradiend_batch_size, gen)
        pending.append((step, _step(model, opt, [batches[i] for i in idx], device, dtype)))
        if step % eval_steps == 0 or step == steps:
            losses += [{"step": k, "loss": v.item()} for k, v in pending]
            pending.clear()
            summary = record(step)
            bar.set_postfix(corr=f"{summary['correlation']:.3f}")
            improved = abs(summary["correlation"]) > abs(best["correlation"])
            if improved:
                best, best_step = summary, step
                best_state = copy.deepcopy(model.state_dict())
            collapse = monitor.update(summary, improved) if monitor is not None else None
            if collapse is not None:
                break  # the remaining steps would not bring the classes apart
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    seconds = time.perf_counter() - start
    return LoopResult(model, best_step, best, evals, losses, seconds, collapse)


def _step(model: GradiendModel, opt, pairs: list, device, dtype) -> torch.Tensor:
    """One optimiser step of MSE(decoder(encoder(s)), t) on ``pairs``; the detached loss."""
    # the cache may hold 16-bit values in host memory: one cast and move per step
    s = torch.stack([p[0].to(device, dtype, non_blocking=True) for p in pairs])
    t = torch.stack([p[1].to(device, dtype, non_blocking=True) for p in pairs])
    loss = torch.nn.functional.mse_loss(model(s), t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def _draw(order: list[int], n: int, k: int, gen: torch.Generator) -> list[int]:
    """The next ``k`` batch indices: epochs of seeded permutations, consumed from the end."""
    idx = []
    for _ in range(k):
        if not order:
            order += torch.randperm(n, generator=gen).tolist()
        idx.append(order.pop())
    return idx


def orient_stats(summary: dict) -> dict:
    """The same summary seen after ``flip_sign``: correlation and encodings change sign."""
    out = dict(summary)
    if "correlation" in out:
        out["correlation"] = -out["correlation"]
    for key in ("mean", "q1", "q3", "min", "max"):
        k = f"{key}_by_class"
        if k in summary:
            partner = {"q1": "q3", "q3": "q1", "min": "max", "max": "min"}.get(key, key)
            out[k] = {c: -v for c, v in summary[f"{partner}_by_class"].items()}
    return out

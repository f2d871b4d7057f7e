"""The optimisation loop: a GRADIEND trained on cached gradient batches.

It knows nothing about data or base models: it receives the cached ``(source, target)`` batches
and an ``evaluate`` callback that returns the validation summary for the current weights.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from gradiend.lm.devices import resolve_dtype
from gradiend.lm.params import ParamMap
from gradiend.model.gradiend import GradiendModel
from gradiend.model.split import split_latents, split_loss
from gradiend.trainer.checkpoints import LoopProgress
from gradiend.trainer.collapse import CollapseMonitor
from gradiend.trainer.optim import grad_norms, make_optimizer

if TYPE_CHECKING:
    from gradiend.trainer.run_hooks import SeedHooks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation loop's settings (``TrainingArguments.loop()``)."""

    max_steps: int = -1
    num_train_epochs: int = 3
    eval_steps: int = 250
    learning_rate: float = 1e-5  # "auto" is resolved by trainer.lr_search before training
    learning_rate_decoder: float | str | None = None  # None: the encoder's; "auto": optim.py
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
    split: dict | None = None  # GradiendSplit JSON (gradiend.model.split); None: no components
    split_loss: str = "mean"

    def build(self, pmap: ParamMap, indices, meta: dict, seed: int) -> GradiendModel:
        torch.manual_seed(seed)  # initialised on the CPU: the same weights on every device
        dim = pmap.numel if indices is None else len(indices)
        latent_dim, meta = split_latents(self.split, self.split_loss, pmap, indices, meta)
        return GradiendModel(
            dim,
            latent_dim=latent_dim or self.latent_dim,
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
    objective: Callable | None = None,  # (model, s, t) -> loss; default MSE(model(s), t)
    learning_rate_decoder: float | None = None,
    hooks: SeedHooks | None = None,
    best_by: str = "correlation",
) -> LoopResult:
    """Run ``steps`` optimiser steps of MSE(decoder(encoder(s)), t), evaluating every
    ``eval_steps`` and keeping the best (``_keep_best``, by ``best_by``); ``monitor`` ends the run
    early when the encodings collapse; ``hooks`` run callbacks and checkpoints (run_hooks)."""
    start = time.perf_counter()
    opt = make_optimizer(
        model, optim, learning_rate, weight_decay, adam_epsilon, learning_rate_decoder
    )
    gen = torch.Generator().manual_seed(seed)
    p, collapse = LoopProgress(), None
    pending: list[tuple[int, torch.Tensor]] = []  # losses read at evaluations: no sync per step
    device, dtype = model.W_e.device, model.W_e.dtype

    def record(step: int) -> dict:
        return _record(model, evaluate, p, hooks, step)

    if hooks is None or not hooks.resume(model, opt, gen, p, monitor):
        p.best, p.best_state = record(0), copy.deepcopy(model.state_dict())
    bar = tqdm(range(p.step + 1, steps + 1), desc="training GRADIEND", disable=not progress)
    for step in bar:
        idx = _draw(p.order, len(batches), gradiend_batch_size, gen)
        pairs = [batches[i] for i in idx]
        pending.append((step, _step(model, opt, pairs, device, dtype, objective)))
        if hooks is not None:
            hooks.on_step(step, pending[-1][1][0])
        if step % eval_steps == 0 or step == steps:
            p.losses += _flush(pending)
            summary = record(step)
            bar.set_postfix(corr=f"{summary['correlation']:.3f}")
            improved = _keep_best(p, summary, step, model, best_by)
            collapse = monitor.update(summary, improved) if monitor is not None else None
            if collapse is not None:
                break  # the remaining steps would not bring the classes apart
        if hooks is not None and hooks.save_due(step):
            p.losses += _flush(pending)
            hooks.save(step, model, opt, gen, p, monitor)
    bar.close()
    model.load_state_dict(p.best_state)
    model.eval()
    seconds = time.perf_counter() - start
    return LoopResult(model, p.best_step, p.best, p.evals, p.losses, seconds, collapse)


def _record(model: GradiendModel, evaluate: Callable, p: LoopProgress, hooks, step: int) -> dict:
    """The validation summary at ``step`` (kept in ``p.evals``, passed to the hooks)."""
    model.eval()
    with torch.no_grad():
        summary = {"step": step, **evaluate(model)}
    model.train()
    loss = _window_loss(p, step)
    if loss is not None:  # an evaluate_fn's own "loss" (e.g. a validation loss) is kept
        summary.setdefault("loss", loss)
    p.evals.append(summary)
    if hooks is not None:
        hooks.on_evaluate(step, summary)
    return summary


def _window_loss(p: LoopProgress, step: int) -> float | None:
    """The mean training loss of the steps since the previous evaluation (None at step 0):
    the ``loss`` of an evaluation, which ``convergent_metric="loss"`` compares."""
    previous = p.evals[-1]["step"] if p.evals else 0
    window = []
    for record in reversed(p.losses):
        if record["step"] <= previous:
            break
        if record["step"] <= step:
            window.append(record["loss"])
    return sum(window) / len(window) if window else None


def _keep_best(
    p: LoopProgress, summary: dict, step: int, model: GradiendModel, best_by: str = "correlation"
) -> bool:
    """Keep ``summary``'s weights when its |correlation| beats the best so far (``best_by=
    "loss"``: when its loss is lower; an evaluation without a loss never is)."""
    if best_by == "loss":
        best = p.best.get("loss")
        improved = summary.get("loss", math.inf) < (math.inf if best is None else best)
    else:
        improved = abs(summary["correlation"]) > abs(p.best["correlation"])
    if improved:
        p.best, p.best_step = summary, step
        p.best_state = copy.deepcopy(model.state_dict())
    return improved


def _flush(pending: list[tuple[int, torch.Tensor]]) -> list[dict]:
    """The pending steps' loss records (one device sync), emptying ``pending``."""
    out = [_loss_record(k, v) for k, v in pending]
    pending.clear()
    return out


def _step(model: GradiendModel, opt, pairs: list, device, dtype, objective=None) -> torch.Tensor:
    """One optimiser step of MSE(decoder(encoder(s)), t) on ``pairs``; ``[loss, encoder
    gradient norm, decoder gradient norm]``, detached."""
    # the cache may hold 16-bit values in host memory: one cast and move per step
    s = torch.stack([p[0].to(device, dtype, non_blocking=True) for p in pairs])
    t = torch.stack([p[1].to(device, dtype, non_blocking=True) for p in pairs])
    if objective is None:  # MSE, or the split's per-component loss (gradiend.model.split)
        loss = split_loss(model, model(s), t)
    else:  # a criterion or a supervised baseline (trainer.supervised)
        loss = objective(model, s, t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norms = grad_norms(model)
    opt.step()
    return torch.cat([loss.detach().float().reshape(1), norms])


def _loss_record(step: int, values: torch.Tensor) -> dict:
    loss, enc, dec = values.tolist()
    return {"step": step, "loss": loss, "encoder_grad_norm": enc, "decoder_grad_norm": dec}


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
    if out.get("roc_auc") is not None:  # the only oriented AUC (evaluator.auc)
        out["roc_auc"] = 1.0 - out["roc_auc"]
    for key in ("mean", "q1", "q3", "min", "max"):
        k = f"{key}_by_class"
        if k in summary:
            partner = {"q1": "q3", "q3": "q1", "min": "max", "max": "min"}.get(key, key)
            out[k] = {c: -v for c, v in summary[f"{partner}_by_class"].items()}
    if "components" in summary:  # a split GRADIEND's latents flip with it
        out["components"] = {n: orient_stats(c) for n, c in summary["components"].items()}
    return out

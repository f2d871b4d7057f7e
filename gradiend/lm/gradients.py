"""Gradients of the base model over the selected (and possibly pre-pruned) parameters.

Three ways in, all over the same flat index space: batch-mean gradients for training (one forward,
one backward per requested kind), per-example gradients (one forward, one backward per row), and
per-example *directional derivatives* ``w · ∇L_i`` by forward-mode AD — the encoder's
pre-activation for a whole batch without any backward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from gradiend.lm.checks import check_finite_params
from gradiend.lm.loading import BaseLM
from gradiend.lm.objectives import Item, Objective
from gradiend.lm.params import ParamMap

logger = logging.getLogger(__name__)

KINDS = ("factual", "alternative", "diff")

# ids of the base models checked for NaN/inf weights in a ``finite_check_once`` scope
_ONCE: ContextVar[set[int] | None] = ContextVar("gradiend_finite_once", default=None)


@contextmanager
def finite_check_once(checked: set[int]) -> Iterator[None]:
    """Within: the first computer built on a base model checks its weights for NaN/inf and
    later ones skip it (a suite's children share one model); ``checked`` holds the ids."""
    token = _ONCE.set(checked)
    try:
        yield
    finally:
        _ONCE.reset(token)


def _kind_loss(losses: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "diff":
        return losses["factual"] - losses["alternative"]
    if kind in losses:
        return losses[kind]
    raise ValueError(f"unknown gradient kind {kind!r}; choose one of {KINDS}")


class GradientComputer:
    """Computes flat gradient vectors of ``lm`` restricted to ``param_map`` (and ``indices``)."""

    def __init__(
        self,
        lm: BaseLM,
        objective: Objective,
        param_map: ParamMap,
        indices: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        check_finite: bool = True,
    ):
        self.lm, self.objective, self.param_map = lm, objective, param_map
        self.params = [lm.model.get_parameter(s.name) for s in param_map.specs]
        # before the first gradient pass: a NaN/inf weight anywhere on the forward path (not
        # only in the selected parameters) makes every gradient non-finite (``check_finite``
        # off: the caller has checked this model already, e.g. a suite for its children)
        once = _ONCE.get()
        if check_finite and (once is None or id(lm.model) not in once):
            check_finite_params(lm.model.named_parameters(), lm.source)
            if once is not None:
                once.add(id(lm.model))
        # flat vectors (gradients, directions) live here: the GRADIEND's device
        self.device = torch.device(device) if device is not None else _last_device(self.params)
        self._jvp_ok = True  # switched off once forward-mode AD fails for this model's dtype
        self.set_indices(indices)

    def set_indices(self, indices: torch.Tensor | None) -> None:
        """Restrict to sorted base-global ``indices`` (``None``: every selected scalar)."""
        self.indices = indices
        self.dim = self.param_map.numel if indices is None else len(indices)
        self.local = None
        if indices is not None:  # positions inside each parameter, on that parameter's device
            split = self.param_map.split_indices(indices.cpu())
            self.local = [pos.to(p.device) for pos, p in zip(split, self.params)]

    def _flatten(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.local is None:
            return torch.cat([g.reshape(-1).to(self.device) for g in grads])
        return torch.cat([g.reshape(-1)[pos].to(self.device) for g, pos in zip(grads, self.local)])

    def _grad(self, loss: torch.Tensor, retain: bool) -> torch.Tensor:
        return self._flatten(self._param_grads(loss, retain)).detach()

    def _param_grads(self, loss: torch.Tensor, retain: bool = False) -> list[torch.Tensor]:
        grads = torch.autograd.grad(loss, self.params, retain_graph=retain, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)]

    def accumulate_weighted(
        self, items: list[Item], kind: str, weights: Sequence[float], first: bool = False
    ) -> None:
        """Add ``∇ Σ_i w_i L_i`` to the selected parameters' ``.grad`` (cleared first when
        ``first``): the weighted sum of per-example gradients in one forward and one backward,
        with no memory beyond the ``.grad`` tensors."""
        if first:
            for p in self.params:
                p.grad = None
        with _grad_enabled(self.params):
            loss = _kind_loss(self._losses(items), kind)
            w = torch.as_tensor(list(weights), dtype=loss.dtype, device=loss.device)
            (loss * w).sum().backward()

    def iter_per_example_params(self, items: list[Item], kind: str):
        """Yield each row's parameter-shaped gradients (nothing flattened, nothing copied)."""
        with _grad_enabled(self.params):
            for item in items:
                yield self._param_grads(_kind_loss(self._losses([item]), kind)[0])

    def _losses(self, items: list[Item], params: dict | None = None) -> dict[str, torch.Tensor]:
        return self.objective.losses(self.lm.model, items, params)

    def batch(self, items: list[Item], kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """Gradient of the batch-mean loss for each kind in ``kinds``: one forward in all."""
        kinds = list(dict.fromkeys(kinds))
        with _grad_enabled(self.params):
            losses = self._losses(items)
            return {
                k: self._grad(_kind_loss(losses, k).mean(), retain=i < len(kinds) - 1)
                for i, k in enumerate(kinds)
            }

    def per_example(self, items: list[Item], kind: str) -> torch.Tensor:
        """``[len(items), dim]`` per-example gradients (one forward, one backward per row)."""
        return torch.stack(list(self.iter_per_example(items, kind)))

    def iter_per_example(self, items: list[Item], kind: str):
        """Yield per-example gradients one at a time (memory: one vector, not a matrix).

        Each row gets its own forward and backward: a backward of one row's loss through a
        batched graph would cost a whole batch's backward.
        """
        with _grad_enabled(self.params):
            for item in items:
                loss = _kind_loss(self._losses([item]), kind)
                yield self._grad(loss[0], retain=False)

    def directional(self, items: list[Item], kind: str, direction: torch.Tensor) -> torch.Tensor:
        """``direction · ∇L_i`` for every row ``i`` by one forward-mode (JVP) pass (in the base
        model's dtype; the result is float32 on :attr:`device`).

        Where PyTorch's forward-mode rules fail for the model's dtype (on CUDA, layer norm in
        bf16 yields float32 tangents) or an op has none (SDPA on a CPU in torch 2.11), the
        same numbers come from a double backward instead.
        """
        if self._jvp_ok:
            try:
                return self._jvp(items, kind, direction)
            except RuntimeError as err:  # NotImplementedError included
                if "dtype" not in str(err) and not isinstance(err, NotImplementedError):
                    raise
                self._jvp_ok = False
                logger.warning(
                    "forward-mode AD failed for this model in %s (%s); encodings use a double "
                    "backward instead (same values, about twice the cost)",
                    self.params[0].dtype,
                    err,
                )
        return self._double_vjp(items, kind, direction)

    def _jvp(self, items: list[Item], kind: str, direction: torch.Tensor) -> torch.Tensor:
        tangents = self.scatter(direction)
        names = [s.name for s in self.param_map.specs]

        def fn(*ps: torch.Tensor) -> torch.Tensor:
            return _kind_loss(self._losses(items, dict(zip(names, ps))), kind)

        with torch.no_grad():
            primals = tuple(p.detach() for p in self.params)
            _, jvp = torch.func.jvp(fn, primals, tuple(tangents))
        return jvp.detach().float().to(self.device)

    def _double_vjp(self, items: list[Item], kind: str, direction: torch.Tensor) -> torch.Tensor:
        """``J w`` from reverse mode only: ``g(v) = Jᵀv`` is linear in ``v``, so the gradient of
        ``⟨g(v), w⟩`` with respect to ``v`` is ``J w`` for the whole batch."""
        tangents = self.scatter(direction)
        with _grad_enabled(self.params):
            losses = _kind_loss(self._losses(items), kind)
            v = torch.zeros_like(losses, requires_grad=True)
            grads = torch.autograd.grad(
                losses, self.params, grad_outputs=v, create_graph=True, allow_unused=True
            )
            dot = sum(
                (g.float() * t.float()).sum() for g, t in zip(grads, tangents) if g is not None
            )
            (jw,) = torch.autograd.grad(dot, v)
        return jw.detach().float().to(self.device)

    def scatter(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Parameter-shaped tensors that hold ``vector`` at the mapped positions, zeros elsewhere."""
        out, start = [], 0
        for i, p in enumerate(self.params):
            t = torch.zeros_like(p)
            if self.local is None:
                n = p.numel()
                t.view(-1).copy_(vector[start : start + n])
            else:
                pos = self.local[i]
                n = len(pos)
                t.view(-1)[pos] = vector[start : start + n].to(p.device, p.dtype)
            out.append(t)
            start += n
        return out

    @torch.no_grad()
    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the mapped entries only (the whole tensor when unpruned), for ``restore``."""
        if self.local is None:
            return [p.detach().clone() for p in self.params]
        return [p.view(-1)[pos].clone() for p, pos in zip(self.params, self.local)]

    @torch.no_grad()
    def restore(self, snap: list[torch.Tensor]) -> None:
        """Put the entries saved by ``snapshot`` back, bit for bit."""
        for i, (p, saved) in enumerate(zip(self.params, snap)):
            if self.local is None:
                p.copy_(saved)
            else:
                p.view(-1)[self.local[i]] = saved

    @torch.no_grad()
    def add_to_params(self, vector: torch.Tensor, scale: float = 1.0) -> None:
        """``θ[mapped] += scale · vector`` in place (rewrites and the decoder search); the sum is
        taken in float32 and cast back, so a bf16 model gets the rounded exact update."""
        start = 0
        for i, p in enumerate(self.params):
            flat = p.view(-1)
            pos = None if self.local is None else self.local[i]
            n = p.numel() if pos is None else len(pos)
            v = vector[start : start + n].to(p.device, torch.float32)
            start += n
            if pos is None:
                for lo in range(0, n, _CHUNK):  # bounded float32 temporaries for big tensors
                    part = flat[lo : lo + _CHUNK]
                    part.copy_(part.float().add_(v[lo : lo + _CHUNK], alpha=scale))
            else:
                flat[pos] = flat[pos].float().add_(v, alpha=scale).to(p.dtype)


_CHUNK = 1 << 26


def _last_device(params: list[torch.Tensor]) -> torch.device:
    return params[-1].device if params else torch.device("cpu")


class _grad_enabled:
    """Temporarily let the selected parameters require grad (the base model stays frozen)."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(True)
        self._ctx = torch.enable_grad()
        self._ctx.__enter__()

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
        for p in self.params:
            p.requires_grad_(False)

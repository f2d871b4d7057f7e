"""Per-item gradients of many encodings at once: one padded forward, one backward per slot.

A training step of one run takes one forward and one backward per *batch*; a suite's store needs
one gradient per *encoding*. The selected parameters' per-sample gradients come from one batched
pass, the way Opacus computes them: the forward records each owning module's input, one backward
of the summed losses gives the gradient at each module's output, and a module's per-sample
parameter gradient depends on that sample's input and output gradient only (``nn.Linear``: an
outer product summed over positions; any other module: ``torch.func.vjp`` under ``vmap``).

Encodings that share their input (a masked sentence scored for the factual and the alternative
word, a causal prefix with two next tokens) share one row of the batch; the row's encodings are
*slots*, and each slot gets its own backward pass over the same graph. The first pass of every
engine is checked against autograd's batch gradient (the sum of the per-sample gradients must
equal it); a model whose parameters are used outside their module (tied weights) fails the check
and the store falls back to one backward per encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from gradiend.lm.objectives import Encoded, Objective

logger = logging.getLogger(__name__)


class BatchedUnsupported(RuntimeError):
    """The batched per-sample path cannot serve this model (the store falls back)."""


class _Calls:
    """Forward hooks that record ``(module, args, kwargs, output)`` of each owning module. An
    embedding looked up once for the whole batch (positions ``[1, T]``, broadcast when added)
    has its output expanded to the ``n`` rows: the same sums, a gradient per row."""

    def __init__(self, modules: Sequence[nn.Module], n: int):
        self.modules, self.n, self.calls, self.handles = list(modules), n, [], []

    def __enter__(self) -> list:
        def hook(mod, args, kwargs, out):
            if not torch.is_tensor(out) or not out.requires_grad:
                raise BatchedUnsupported(f"{type(mod).__name__} returns no differentiable tensor")
            if isinstance(mod, nn.Embedding) and out.dim() > 1 and out.shape[0] == 1 < self.n:
                out = out.expand(self.n, *out.shape[1:])
            self.calls.append((mod, args, kwargs, out))
            return out

        self.handles = [m.register_forward_hook(hook, with_kwargs=True) for m in self.modules]
        return self.calls

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


class PerSampleGradients:
    """Flat float32 per-sample gradients of ``names`` (parameters of ``model``), in that order."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.model, self.names = model, list(names)
        self.params = [model.get_parameter(n) for n in self.names]
        # every module that holds a selected parameter (a tied one: each of its modules)
        index = {id(p): i for i, p in enumerate(self.params)}
        self.owners: dict[nn.Module, list[tuple[str, int]]] = {}
        for mod in model.modules():
            for local, p in mod.named_parameters(recurse=False):
                if id(p) in index:
                    self.owners.setdefault(mod, []).append((local, index[id(p)]))
        self.verified = False  # the first pass is checked against autograd's batch gradient

    def rows(self, objective: Objective, rows: Sequence[Sequence[Encoded]]):
        """Yield ``(row, slot, vector)`` for every encoding of ``rows`` (each row: encodings
        with the same input ids and positions) and count the passes in :attr:`passes`."""
        device = next(self.model.parameters()).device
        batch = objective.collate([r[0] for r in rows], device)
        with _Calls(list(self.owners), len(rows)) as calls:
            logits = objective.position_logits(self.model, batch)
        outs = [c[3] for c in calls]
        n, slots = len(rows), max(len(r) for r in rows)
        self.passes = 0
        for j in range(slots):
            tgt = torch.tensor([t for r in rows for t in r[min(j, len(r) - 1)].targets])
            live = [j < len(r) for r in rows]
            w = torch.tensor(live, dtype=torch.float32, device=logits.device)
            loss = (objective.row_nll(logits, batch, tgt, n) * w).sum()
            check = [] if self.verified else self.params
            grads = torch.autograd.grad(
                loss, outs + check, retain_graph=j < slots - 1, allow_unused=True
            )
            self.passes += 1
            per = self._per_sample(calls, grads[: len(outs)], n)
            if check:
                self._verify(per, grads[len(outs) :], live)
            for i in range(n):
                if live[i]:  # one copy per row: its own memory, nothing shared with the batch
                    yield i, j, torch.cat([g[i].reshape(-1) for g in per])

    def _per_sample(self, calls, out_grads, n: int) -> list[torch.Tensor]:
        """``[n, *shape]`` float32 per-sample gradients of every selected parameter."""
        per: list[torch.Tensor | None] = [None] * len(self.params)
        for (mod, args, kwargs, _), g in zip(calls, out_grads):
            if g is None:
                continue
            for i, value in self._module_grads(mod, args, kwargs, g, n).items():
                per[i] = value if per[i] is None else per[i] + value
        return [
            torch.zeros((n, *p.shape), device=p.device) if v is None else v
            for v, p in zip(per, self.params)
        ]

    def _module_grads(self, mod, args, kwargs, g: torch.Tensor, n: int) -> dict:
        x = args[0] if args else kwargs.get("input")
        shared = isinstance(mod, nn.Embedding) and torch.is_tensor(x) and x.shape[:1] == (1,)
        if not torch.is_tensor(x) or (x.shape[0] != n and not shared) or g.shape[0] != n:
            raise BatchedUnsupported(f"{type(mod).__name__}: no batch dimension first")
        owned = self.owners[mod]
        if type(mod) is nn.Linear and not kwargs and len(args) == 1:
            x2 = x.detach().reshape(n, -1, x.shape[-1]).float()
            g2 = g.reshape(n, -1, g.shape[-1]).float()
            out = {}
            for local, i in owned:
                if local == "weight":
                    out[i] = torch.einsum("bto,bti->boi", g2, x2)
                else:  # bias
                    out[i] = g2.sum(1)
            return out
        return _vjp_grads(mod, owned, args, kwargs, g, n)

    def _verify(self, per, batch_grads, live) -> None:
        """Raise :class:`BatchedUnsupported` unless the live rows' per-sample gradients sum to
        autograd's gradient of the summed loss (a structural check, not a rounding one)."""
        mask = torch.tensor(live, dtype=torch.float32)
        for name, p_s, g in zip(self.names, per, batch_grads):
            total = (p_s * mask.to(p_s.device).view(-1, *[1] * (p_s.dim() - 1))).sum(0)
            ref = torch.zeros_like(total) if g is None else g.float()
            err = float((total - ref).norm())
            if err > 1e-3 * float(ref.norm()) + 1e-6:
                raise BatchedUnsupported(
                    f"per-sample gradients of {name} do not sum to the batch gradient "
                    f"(error {err:.2e}): the parameter is used outside its module"
                )
        self.verified = True


def _vjp_grads(mod: nn.Module, owned, args, kwargs, g: torch.Tensor, n: int) -> dict:
    """Per-sample parameter gradients of any module: ``vjp`` of one sample, ``vmap``-ed."""
    locals_ = [local for local, _ in owned]
    own = dict(mod.named_parameters(recurse=False))
    fixed = {k: v.detach() for k, v in own.items() if k not in locals_}
    batched = [i for i, a in enumerate(args) if torch.is_tensor(a) and a.shape[:1] == (n,)]

    def one(xs, gi):
        full = list(args)
        for i, x in zip(batched, xs):
            full[i] = x[None]

        def f(ps):
            return torch.func.functional_call(mod, {**fixed, **ps}, tuple(full), kwargs)

        primals = {k: own[k].detach() for k in locals_}
        _, vjp = torch.func.vjp(f, primals)
        return vjp(gi[None].to(own[locals_[0]].dtype))[0]

    try:
        res = torch.func.vmap(one)(tuple(args[i].detach() for i in batched), g)
    except (RuntimeError, NotImplementedError, ValueError) as err:
        raise BatchedUnsupported(f"{type(mod).__name__}: {err}") from err
    return {i: res[local].float() for local, i in owned}


def group_rows(encs: Sequence[Encoded]) -> list[list[Encoded]]:
    """Encodings that share their input ids and positions, one row each, in first-seen order."""
    rows: dict[tuple, list[Encoded]] = {}
    for e in encs:
        rows.setdefault((tuple(e.input_ids), tuple(e.positions)), []).append(e)
    return list(rows.values())


def rows_per_pass(dim: int, batch_size: int, max_gb: float) -> int:
    """Rows of one batched pass: ``batch_size``, fewer when ``max_gb`` cannot hold the float32
    per-sample gradients twice over (the per-parameter tensors and their flat copy)."""
    by_memory = int(max_gb * 1e9 // max(1, 2 * 4 * dim))
    return max(1, min(batch_size, by_memory))

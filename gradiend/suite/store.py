"""One gradient per (sentence, word) for a whole suite: the shared per-item gradient store.

The children of a suite train on overlapping rows: in a symmetric suite over classes A, B, C the
sentences of A appear in the pairs (A, B) and (A, C), with the same factual word each time, and
syncretic classes (German ``der`` is masculine nominative *and* feminine dative) share the
alternative words too. A training batch gradient is the mean of its rows' per-item gradients and
``g_diff = g_factual - g_alternative``, so every batch of every child can be assembled from one
gradient per distinct *encoding* (token ids, scored positions, target ids): that is what the store
keeps. Each encoding's gradient is computed once (one backward pass); encodings that share a
context (a causal prefix, the same masked input) share one forward pass.

:class:`SharedGradientComputer` is a :class:`~gradiend.lm.gradients.GradientComputer` whose
batches, per-row gradients and pre-pruning sums come from the store; the children build it through
the factory that :meth:`GradientStore.factory` returns, so training code is unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from gradiend.lm.gradients import GradientComputer, _grad_enabled
from gradiend.lm.loading import BaseLM
from gradiend.lm.objectives import Encoded, Item, Objective
from gradiend.lm.params import ParamMap

logger = logging.getLogger(__name__)

EncKey = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass
class StoreStats:
    """Base-model passes of a suite, for the record (``suite.stats``)."""

    backward_passes: int = 0  # every reverse pass through the base model, of any kind
    forward_passes: int = 0  # forward passes made by the store
    items_computed: int = 0  # distinct (sentence, word) gradients computed
    items_served: int = 0  # per-item gradients handed to the children (hits included)
    double_backward_passes: int = 0  # JVP fall-backs (validation/encodings), counted above too

    def to_dict(self) -> dict:
        return asdict(self)


def enc_key(enc: Encoded) -> EncKey:
    """The identity of one (sentence, word) input: token ids, scored positions, targets."""
    return (tuple(enc.input_ids), tuple(enc.positions), tuple(enc.targets))


class GradientStore:
    """Full-dimension float32 per-item gradients, one table per gradient space (objective and
    parameter selection); ``max_gb`` bounds the memory (oldest entries are dropped first and
    computed again when asked for: the counters show it)."""

    def __init__(self, max_gb: float | None = None):
        self.max_bytes = None if max_gb is None else max_gb * 1e9
        self.stats = StoreStats()
        self._tables: dict[str, dict[EncKey, torch.Tensor]] = {}
        self._bytes = 0
        self.seen: dict[str, set[EncKey]] = {}

    def factory(self):
        """``(lm, objective, pmap, device) -> SharedGradientComputer`` for ``training.prepare``."""

        def make(lm: BaseLM, objective: Objective, pmap: ParamMap, device=None):
            return SharedGradientComputer(lm, objective, pmap, device=device, store=self)

        return make

    def table(self, space: str) -> dict[EncKey, torch.Tensor]:
        self.seen.setdefault(space, set())
        return self._tables.setdefault(space, {})

    def put(self, space: str, key: EncKey, vec: torch.Tensor) -> None:
        table = self.table(space)
        size = vec.numel() * vec.element_size()
        while self.max_bytes is not None and table and self._bytes + size > self.max_bytes:
            old = next(iter(table))
            self._bytes -= table.pop(old).numel() * 4
        table[key] = vec
        self.seen[space].add(key)
        self._bytes += size

    @property
    def distinct_items(self) -> int:
        """Distinct (sentence, word) gradients the suite has needed so far (every space)."""
        return sum(len(s) for s in self.seen.values())

    def clear(self) -> None:
        """Drop the stored gradients (the counters stay)."""
        self._tables.clear()
        self._bytes = 0


class SharedGradientComputer(GradientComputer):
    """A ``GradientComputer`` that reads per-item gradients from a :class:`GradientStore`."""

    def __init__(self, lm, objective, param_map, indices=None, device=None, *, store):
        self.store = store
        super().__init__(lm, objective, param_map, indices, device)
        self.space = json.dumps(
            {
                "model": id(lm.model),
                "objective": objective.name,
                "objective_fp": objective.fingerprint(),
                "params": [s.name for s in param_map.specs],
            },
            sort_keys=True,
            default=str,
        )
        self._fast = type(objective).losses is Objective.losses

    # -- positions of the kept coordinates inside a full-dimension vector -------------------
    def set_indices(self, indices: torch.Tensor | None) -> None:
        super().set_indices(indices)
        self._flat = None
        if indices is not None:
            split = self.param_map.split_indices(indices.cpu())
            starts, cum = [], 0
            for s in self.param_map.specs:
                starts.append(cum)
                cum += s.numel
            self._flat = torch.cat([pos + st for pos, st in zip(split, starts)]).to(self.device)

    def _select(self, vec: torch.Tensor) -> torch.Tensor:
        return vec if self._flat is None else vec[self._flat]

    # -- counting every reverse pass ----------------------------------------------------------
    def _param_grads(self, loss: torch.Tensor, retain: bool = False) -> list[torch.Tensor]:
        self.store.stats.backward_passes += 1
        return super()._param_grads(loss, retain)

    def _double_vjp(self, items, kind, direction):
        self.store.stats.backward_passes += 2
        self.store.stats.double_backward_passes += 1
        return super()._double_vjp(items, kind, direction)

    # -- per-item vectors ------------------------------------------------------------------
    def vectors(self, encs: Sequence[Encoded]) -> list[torch.Tensor]:
        """Full-dimension float32 gradients of each encoding's NLL (computed when missing)."""
        table = self.store.table(self.space)
        keys = [enc_key(e) for e in encs]
        # this call's vectors, held here: the memory bound may drop them from the table
        held = {k: table[k] for k in keys if k in table}
        missing = {k: e for k, e in zip(keys, encs) if k not in held}
        groups: dict[tuple, list[tuple[EncKey, Encoded]]] = {}
        for k, e in missing.items():
            groups.setdefault((k[0], k[1]), []).append((k, e))
        for group in groups.values():
            for k, vec in self._compute_group(group):
                self.store.put(self.space, k, vec)
                held[k] = vec
                self.store.stats.items_computed += 1
        self.store.stats.items_served += len(keys)
        return [held[k] for k in keys]

    def _compute_group(self, group: list[tuple[EncKey, Encoded]]):
        """One forward for encodings that share their input (only the targets differ), then one
        backward per encoding."""
        model = self.lm.model
        with _grad_enabled(self.params):
            if self._fast:
                device = next(model.parameters()).device
                batch = self.objective.collate([group[0][1]], device)
                logits = self.objective.position_logits(model, batch)
                self.store.stats.forward_passes += 1
                losses = [
                    self.objective.row_nll(logits, batch, torch.tensor(e.targets), 1)[0]
                    for _, e in group
                ]
            else:  # an objective with its own losses(): one forward per encoding
                losses = []
                for _, e in group:
                    losses.append(self.objective.losses(model, [Item(e, e)])["factual"][0])
                    self.store.stats.forward_passes += 1
            out = []
            for i, ((k, _), loss) in enumerate(zip(group, losses)):
                grads = self._param_grads(loss, retain=self._fast and i < len(group) - 1)
                vec = torch.cat([g.reshape(-1).to(self.device, torch.float32) for g in grads])
                out.append((k, vec.detach()))
        return out

    def _kind_vectors(self, items: Sequence[Item], kind: str) -> list[torch.Tensor]:
        if kind == "factual":
            return self.vectors([it.factual for it in items])
        if kind == "alternative":
            return self.vectors([it.alternative for it in items])
        if kind == "diff":
            f = self.vectors([it.factual for it in items])
            a = self.vectors([it.alternative for it in items])
            return [x - y for x, y in zip(f, a)]
        raise ValueError(f"unknown gradient kind {kind!r}; choose factual, alternative or diff")

    # -- the GradientComputer interface, from the store ------------------------------------
    def batch(self, items: list[Item], kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """The batch-mean gradient of each kind: the mean of the rows' stored gradients."""
        out = {}
        for k in dict.fromkeys(kinds):
            vecs = self._kind_vectors(items, k)
            out[k] = self._select(torch.stack(vecs).mean(0))
        return out

    def iter_per_example(self, items: list[Item], kind: str):
        for item in items:
            yield self._select(self._kind_vectors([item], kind)[0])

    def iter_per_example_params(self, items: list[Item], kind: str):
        for item in items:
            yield self._unflatten(self._kind_vectors([item], kind)[0])

    def accumulate_weighted(self, items, kind, weights, first: bool = False) -> None:
        """Add ``Σ_i w_i ∇L_i`` (from the store) to the selected parameters' ``.grad``."""
        if first:
            for p in self.params:
                p.grad = None
        total = None
        for vec, w in zip(self._kind_vectors(items, kind), weights):
            total = vec * float(w) if total is None else total.add_(vec, alpha=float(w))
        if total is None:
            return
        for p, g in zip(self.params, self._unflatten(total)):
            g = g.to(p.device, p.dtype)
            p.grad = g if p.grad is None else p.grad + g

    def _unflatten(self, vec: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for p in self.params:
            out.append(vec[start : start + p.numel()].view(p.shape))
            start += p.numel()
        return out

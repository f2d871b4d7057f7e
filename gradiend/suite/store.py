"""One gradient per (sentence, word) for a whole suite: the shared per-item gradient store.

The children of a suite train on overlapping rows: in a symmetric suite over classes A, B, C the
sentences of A appear in the pairs (A, B) and (A, C), with the same factual word each time, and
syncretic classes (German ``der`` is masculine nominative *and* feminine dative) share the
alternative words too. A training batch gradient is the mean of its rows' per-item gradients and
``g_diff = g_factual - g_alternative``, so every batch of every child can be assembled from one
gradient per distinct *encoding* (token ids, scored positions, target ids): that is what the store
keeps. Each encoding's gradient is computed once (one backward pass); encodings that share a
context (a causal prefix, the same masked input) share one row of a batch.

Missing gradients are computed many at once (``gradiend.suite.batched``): one padded forward and
one backward per slot for up to ``batch_size`` rows, the per-sample gradients taken from the
selected modules' inputs and output gradients. On the first miss a computer also *prefetches*:
it computes every registered child's training and validation encodings that the store can hold,
so the batches are full rather than a training batch's few rows. Objectives with their own
``losses()`` and models that fail the batched path's check keep the one-encoding-at-a-time path
(logged).

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

from gradiend.data.examples import cap_per_group
from gradiend.lm.gradients import GradientComputer, _grad_enabled
from gradiend.lm.items import build_items
from gradiend.lm.loading import BaseLM
from gradiend.lm.objectives import Encoded, Item, Objective
from gradiend.lm.params import ParamMap
from gradiend.suite.batched import BatchedUnsupported, PerSampleGradients, group_rows, rows_per_pass

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
    batched_passes: int = 0  # backward passes of the batched path (one per slot of a batch)
    batched_items: int = 0  # gradients those passes computed
    prefetched: int = 0  # gradients computed ahead for registered children

    @property
    def items_per_pass(self) -> float:
        """Gradients per backward pass of the batched path (0 when it never ran)."""
        return self.batched_items / self.batched_passes if self.batched_passes else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "items_per_pass": round(self.items_per_pass, 2)}


def enc_key(enc: Encoded) -> EncKey:
    """The identity of one (sentence, word) input: token ids, scored positions, targets."""
    return (tuple(enc.input_ids), tuple(enc.positions), tuple(enc.targets))


class GradientStore:
    """Full-dimension float32 per-item gradients, one table per gradient space (objective and
    parameter selection); ``max_gb`` bounds the memory: entries that no child still to be served
    asks for are dropped first, then the oldest (computed again when asked for: the counters
    show it). ``batch_size`` rows (fewer when ``batch_max_gb`` cannot hold their per-sample
    gradients) go through one batched pass; ``batch_size=1`` is the one-backward-per-encoding
    path."""

    def __init__(
        self, max_gb: float | None = None, batch_size: int = 32, batch_max_gb: float = 2.0
    ):
        if batch_size < 1 or batch_max_gb <= 0:
            raise ValueError(
                f"batch_size={batch_size}, batch_max_gb={batch_max_gb}: give batch_size >= 1 "
                "and batch_max_gb > 0"
            )
        self.max_bytes = None if max_gb is None else max_gb * 1e9
        self.batch_size, self.batch_max_gb = batch_size, batch_max_gb
        self.stats = StoreStats()
        self._tables: dict[str, dict[EncKey, torch.Tensor]] = {}
        self._bytes = 0
        self.seen: dict[str, set[EncKey]] = {}
        self.children: list = []  # trainers whose encodings a first miss prefetches
        self._planned: dict[str, set[int]] = {}  # per space: ids of children prefetched
        self.checked: set[int] = set()  # ids of base models checked for non-finite weights
        self.current = -1  # the index (in ``children``) of the child being served now
        self._last_use: dict[str, tuple[int, dict[EncKey, int]]] = {}  # per space

    def factory(self, child=None):
        """``(lm, objective, pmap, device) -> SharedGradientComputer`` for ``training.prepare``;
        ``child`` (a trainer with ``table`` and ``args``) is registered for prefetching."""
        if child is not None and all(c is not child for c in self.children):
            self.children.append(child)

        index = next((i for i, c in enumerate(self.children) if c is child), None)

        def make(lm: BaseLM, objective: Objective, pmap: ParamMap, device=None):
            return SharedGradientComputer(
                lm, objective, pmap, device=device, store=self, child=index
            )

        return make

    def room(self, space: str | None = None) -> int | None:
        """Bytes the store can still take before dropping entries that a child still to be
        served asks for (``None``: unbounded)."""
        if self.max_bytes is None:
            return None
        dead = sum(v.numel() * 4 for _, v in self._dead(space)) if space else 0
        return max(0, int(self.max_bytes - self._bytes + dead))

    def note_uses(self, space: str, objective: Objective) -> None:
        """Record, per entry of ``space``, the last registered child that asks for it (its
        training and validation encodings), once per set of children."""
        if self._last_use.get(space, (-1, {}))[0] == len(self.children):
            return
        last = {}
        for i, child in enumerate(self.children):
            for e in _child_encodings(child, objective):
                last[enc_key(e)] = i
        self._last_use[space] = (len(self.children), last)

    def _dead(self, space: str):
        """``(key, vector)`` of ``space``'s entries whose last asking child is already past."""
        last = self._last_use.get(space, (0, {}))[1]
        table = self._tables.get(space, {})
        return [(k, v) for k, v in table.items() if last.get(k, self.current) < self.current]

    def table(self, space: str) -> dict[EncKey, torch.Tensor]:
        self.seen.setdefault(space, set())
        return self._tables.setdefault(space, {})

    def put(self, space: str, key: EncKey, vec: torch.Tensor) -> None:
        table = self.table(space)
        size = vec.numel() * vec.element_size()
        if self.max_bytes is not None and self._bytes + size > self.max_bytes:
            dead = [k for k, _ in self._dead(space)]  # no child still to come asks for these
            while table and self._bytes + size > self.max_bytes:
                old = dead.pop(0) if dead else next(iter(table))
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

    def __init__(self, lm, objective, param_map, indices=None, device=None, *, store, child=None):
        self.store = store
        self.child = child  # this computer's child (its index in ``store.children``), if any
        # the base model's NaN/inf check runs once per suite operation (``finite_check_once``)
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
        self._engine: PerSampleGradients | bool | None = None  # the batched path, once known

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
        if missing:
            if self.child is not None:  # what the children before this one asked for can go
                self.store.current = self.child
                self.store.note_uses(self.space, self.objective)
            ahead = self._prefetch_encodings(set(missing))
            held.update(self._compute(list(missing.values()), ahead))
        self.store.stats.items_served += len(keys)
        return [held[k] for k in keys]

    def _compute(self, encs: list[Encoded], ahead: list[Encoded] = ()) -> dict:
        """Compute and store ``encs`` (returned) and ``ahead`` (prefetched, stored only)."""
        wanted = {enc_key(e) for e in encs}
        out = {}
        for k, vec in self._compute_all(list(encs) + list(ahead)):
            self.store.put(self.space, k, vec)
            self.store.stats.items_computed += 1
            if k in wanted:
                out[k] = vec
            else:
                self.store.stats.prefetched += 1
        return out

    def _compute_all(self, encs: list[Encoded]):
        """``(key, vector)`` of each encoding: batched where the path allows, else one by one."""
        rows = group_rows(encs)
        if self._batched_ok():
            per = rows_per_pass(
                self.param_map.numel, self.store.batch_size, self.store.batch_max_gb
            )
            done = 0
            try:
                for lo in range(0, len(rows), per):
                    yield from self._batched(rows[lo : lo + per])
                    done = lo + per
                return
            except BatchedUnsupported as err:
                self._engine = False
                logger.warning(
                    "batched per-item gradients are not available for this model (%s): the "
                    "store computes one backward pass per encoding",
                    err,
                )
                rows = rows[done:]
        for row in rows:
            yield from self._compute_group([(enc_key(e), e) for e in row])

    def _batched_ok(self) -> bool:
        if self._engine is None:
            self._engine = False
            if self.store.batch_size <= 1:
                pass
            elif not self._fast:
                logger.info(
                    "objective %s has its own losses(): the suite's store computes one backward "
                    "pass per encoding (no batched per-item gradients)",
                    self.objective.name,
                )
            else:
                names = [s.name for s in self.param_map.specs]
                self._engine = PerSampleGradients(self.lm.model, names)
        return self._engine is not False

    def _batched(self, rows: list[list[Encoded]]):
        """One padded forward for ``rows``, one backward per slot; yields ``(key, vector)``."""
        stats = self.store.stats
        engine = self._engine
        out = []
        with _grad_enabled(self.params):
            for i, j, vec in engine.rows(self.objective, rows):
                out.append((enc_key(rows[i][j]), vec.to(self.device)))
        stats.forward_passes += 1
        stats.backward_passes += engine.passes
        stats.batched_passes += engine.passes
        stats.batched_items += len(out)
        return out

    def _prefetch_encodings(self, missing: set[EncKey]) -> list[Encoded]:
        """The registered children's encodings not yet stored (this space), as many as the
        store can hold beside ``missing``; each child is planned once per space."""
        if not self._batched_ok():
            return []
        planned = self.store._planned.setdefault(self.space, set())
        table = self.store.table(self.space)
        room = self.store.room(self.space)
        cap = None if room is None else room // (4 * self.param_map.numel) - len(missing)
        ahead, seen = [], set(missing)
        for child in self.store.children:
            if id(child) in planned:
                continue
            encs = [e for e in _child_encodings(child, self.objective) if enc_key(e) not in seen]
            encs = [e for e in encs if enc_key(e) not in table]
            keys = {enc_key(e) for e in encs}
            if cap is not None and len(ahead) + len(keys) > cap:
                break  # the rest would push out what is prefetched: computed when asked for
            planned.add(id(child))
            seen |= keys
            ahead += list({enc_key(e): e for e in encs}.values())
        return ahead

    def _compute_group(self, group: list[tuple[EncKey, Encoded]]):
        """One forward for encodings that share their input (only the targets differ), then one
        backward per encoding: the path for objectives with their own ``losses()``."""
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

    def _chunks(self, items: list[Item]):
        """``items`` in pieces of one batched pass each (bounded memory, full batches)."""
        step = max(1, rows_per_pass(self.dim, self.store.batch_size, self.store.batch_max_gb))
        for lo in range(0, len(items), step):
            yield items[lo : lo + step]

    def iter_per_example(self, items: list[Item], kind: str):
        for chunk in self._chunks(items):
            yield from (self._select(v) for v in self._kind_vectors(chunk, kind))

    def directional(self, items: list[Item], kind: str, direction: torch.Tensor) -> torch.Tensor:
        """``direction · ∇L_i`` from the stored gradients (computed batched when missing, and
        then shared with the other children); the JVP path where the store cannot batch."""
        if not self._batched_ok():
            return super().directional(items, kind, direction)
        d = direction.to(self.device, torch.float32)
        out = [
            torch.stack([self._select(v) for v in self._kind_vectors(chunk, kind)]) @ d
            for chunk in self._chunks(items)
        ]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

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


def _child_encodings(child, objective: Objective) -> list[Encoded]:
    """A registered child's training and validation encodings (what its training asks for),
    built as ``training.prepare`` builds them; none when its rows do not encode (its own
    training then reports why)."""
    args = child.args
    val = cap_per_group(
        child.table.split("validation"),
        args.encoder_eval_train_max_size or args.encoder_eval_max_size,
        args.seed,
    )
    try:
        items = build_items(child.table.split("train"), objective) + build_items(val, objective)
    except ValueError as err:
        logger.debug("not prefetching %s: %s", getattr(child, "run_id", child), err)
        return []
    return [e for it in items for e in (it.factual, it.alternative)]

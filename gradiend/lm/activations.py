"""Activation signals: hidden states (or their loss gradients) at chosen token positions of
the scoped layers' outputs, over one flat index space (the sites end to end).

``ActivationComputer`` answers the calls training, encoder evaluation and decoder evaluation
make of a ``GradientComputer`` (batch means, per-example rows, ``w · s_i``, reversible updates),
so every later stage works on it unchanged. A pure activation needs a forward pass only (it
stops once the last site has run); the update is applied by forward hooks (``site_hooks``).

Activations are read from the factual input. For ``Signal.activation`` the kinds are
``factual`` = ``alternative`` = the centred activation ``a − μ`` at ``token_selector`` and
``diff`` = ``μ' − a`` at ``target_token_selector``, with ``μ``, ``μ'`` the mean of the two
classes' mean activations over the training rows (``fit``): the shift that moves a row towards the other
class, signed like ``g_f − g_a`` (adding either pushes the model towards the alternative word),
so the library's one sign convention holds: ``decoder(+1)`` strengthens ``target_classes[0]``.
For
``Signal.activation_gradient`` the kinds are the gradients of the factual, alternative and
difference losses with respect to the hidden state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import BaseLM
from gradiend.lm.objectives import Encoded, Item, Objective
from gradiend.lm.params import ParamMap, SiteMap
from gradiend.lm.signals import Signal, SignalScope
from gradiend.lm.site_hooks import SiteHooks
from gradiend.lm.topology import resolve_scope

logger = logging.getLogger(__name__)

CHUNK = 32  # rows per forward pass


class _Stop(Exception):
    """Raised by the last site's hook: a pure activation needs nothing after it."""


def selected_positions(selector, enc: Encoded, objective: Objective) -> list[int]:
    """Token positions of ``enc`` that ``selector`` picks (their hidden states are averaged)."""
    n = len(enc.input_ids)
    if callable(selector):
        got = selector(list(enc.input_ids), list(enc.positions))
        pos = [int(got)] if isinstance(got, (int, np.integer)) else [int(p) for p in got]
    elif isinstance(selector, int):
        pos = [selector + n if selector < 0 else selector]
    elif selector in ("all", "mean"):
        pos = list(range(n))
    elif selector == "cls":
        pos = [0]
    elif selector == "prediction":
        pos = list(enc.positions)
    elif selector == "pre_prediction":
        pos = [max(p - 1, 0) for p in enc.positions]
    elif selector == "mask":
        mask_id = getattr(objective.tokenizer, "mask_token_id", None)
        pos = [i for i, t in enumerate(enc.input_ids) if mask_id is not None and t == mask_id]
        if not pos:
            raise ValueError(
                "token_selector='mask' found no mask token in the input (a causal objective "
                "feeds the text before the mask only): use 'prediction' instead"
            )
    else:
        raise ValueError(f"unknown token selector {selector!r}")
    bad = [p for p in pos if not 0 <= p < n]
    if not pos or bad:
        raise ValueError(f"token selector {selector!r} picked positions {pos} of a {n}-token input")
    return pos


def site_widths(model: torch.nn.Module, sites: Sequence[str]) -> list[int]:
    """Hidden size of each site's output (the model's ``hidden_size``, else the site's last
    weight dimension)."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    hidden = hidden or getattr(cfg, "dim", None)
    out = []
    for site in sites:
        mod = model.get_submodule(site)
        width = getattr(mod, "embedding_dim", None) or hidden
        if width is None:
            raise ValueError(f"cannot tell the output width of site {site!r}")
        out.append(int(width))
    return out


def build_site_map(model: torch.nn.Module, signal: Signal, scope: SignalScope | None) -> SiteMap:
    """The index space of ``signal`` over the sites of ``scope`` (default: every block)."""
    sites = resolve_scope(model, scope).sites
    if not sites:
        raise ValueError(
            "an activation signal needs activation sites: give a scope by meaning "
            "(SignalScope.layers(), .layer(i), .embeddings()) or activation_sites=[...]"
        )
    return SiteMap.for_sites(sites, site_widths(model, sites), signal.to_json())


def _balanced_mean(x: torch.Tensor, labels: np.ndarray, values: list) -> torch.Tensor:
    """The mean of the class means (each class weighs the same, whatever its row count)."""
    return torch.stack([x[torch.as_tensor(labels == v)].mean(0) for v in values]).mean(0)


def _saved_signal(data: dict) -> Signal:
    """The signal of a saved site map; a callable selector (not saved) becomes one that says
    how to give it back."""
    data = dict(data)
    for key in ("token_selector", "target_token_selector"):
        value = data.get(key)
        if isinstance(value, str) and value.startswith("callable:"):
            data[key] = _missing_callable(value.split(":", 1)[1])
    return Signal.from_json(data)


def _missing_callable(name: str) -> Callable:
    def selector(input_ids, positions):
        raise ValueError(
            f"this activation signal was trained with the callable token selector {name}, "
            "which is not saved: pass it again, computer.use_signal(Signal.activation(<it>))"
        )

    return selector


def signal_computer(lm: BaseLM, objective: Objective, pmap: ParamMap, indices=None, device=None):
    """The computer of ``pmap``'s signal: activations for a ``SiteMap``, else gradients."""
    if isinstance(pmap, SiteMap):
        return ActivationComputer(lm, objective, pmap, indices, device=device)
    return GradientComputer(lm, objective, pmap, indices, device=device)


class ActivationComputer:
    """Activation (or activation-gradient) vectors of ``lm`` over ``site_map``'s sites."""

    def __init__(
        self,
        lm: BaseLM,
        objective: Objective,
        site_map: SiteMap,
        indices: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        signal: Signal | None = None,
    ):
        self.lm, self.objective, self.param_map = lm, objective, site_map
        self.signal = signal or _saved_signal(site_map.signal)
        self.params: list[torch.Tensor] = []  # no parameter is read
        self.device = torch.device(device) if device is not None else lm.device
        self.hooks = SiteHooks(lm.model, site_map.sites, [s.numel for s in site_map.specs])
        self._memo: dict[tuple, dict[str, torch.Tensor]] = {}
        self.set_indices(indices)

    def use_signal(self, signal: Signal) -> None:
        """Use ``signal``'s selectors (e.g. a callable one, which is not saved)."""
        self.signal = signal

    # ------------------------------------------------------------------ index space
    def set_indices(self, indices: torch.Tensor | None) -> None:
        """Restrict to sorted ``indices`` of the site space (``None``: every dimension)."""
        self.indices = indices
        self.dim = self.param_map.numel if indices is None else len(indices)
        self._keep = None if indices is None else indices.to(self.device)

    def _restrict(self, full: torch.Tensor) -> torch.Tensor:
        return full if self._keep is None else full[..., self._keep]

    def to_full(self, vector: torch.Tensor) -> torch.Tensor:
        """A vector of the GRADIEND's dimensions in the whole site space (zeros elsewhere)."""
        if self._keep is None:
            return vector.float()
        full = torch.zeros(self.param_map.numel, device=vector.device)
        full[self._keep.to(vector.device)] = vector.float()
        return full

    # ------------------------------------------------------------------ extraction
    def _channel(self, kind: str) -> str:
        if kind not in ("factual", "alternative", "diff"):
            raise ValueError(f"unknown kind {kind!r}; choose factual, alternative or diff")
        role = "tgt" if kind == "diff" else "src"
        return f"act:{role}" if self.signal.kind == "activation" else f"{kind}:{role}"

    def _raw(self, items: list[Item], channels: Sequence[str], memo: bool = False):
        """``{channel: [n, full_dim]}`` unscaled vectors (looked up when ``fit`` saw a row)."""
        channels = list(dict.fromkeys(channels))
        keys = [(tuple(it.factual.input_ids), tuple(it.factual.positions)) for it in items]
        todo = [
            i for i, k in enumerate(keys) if not all(c in self._memo.get(k, {}) for c in channels)
        ]
        fresh: dict[int, dict[str, torch.Tensor]] = {}
        for lo in range(0, len(todo), CHUNK):
            part = todo[lo : lo + CHUNK]
            got = self._compute([items[i] for i in part], channels)
            for j, i in enumerate(part):
                fresh[i] = {c: got[c][j] for c in channels}
                if memo:
                    self._memo.setdefault(keys[i], {}).update(fresh[i])
        rows = [fresh.get(i) or self._memo[keys[i]] for i in range(len(items))]
        return {c: torch.stack([r[c] for r in rows]) for c in channels}

    def _compute(self, items: list[Item], channels: Sequence[str]) -> dict[str, torch.Tensor]:
        """One forward (and, for activation gradients, one backward per kind) for ``items``."""
        pure = self.signal.kind == "activation"
        if not pure and not all(it.shared for it in items):
            raise ValueError(
                "activation gradients need the factual and the alternative input to be the "
                "same tokens (single-token words, or a causal objective); use "
                "Signal.activation() or Signal.gradient() for these rows"
            )
        model, captured = self.lm.model, {}
        handles = [m.register_forward_hook(self._capture(i, captured, pure))
                   for i, m in enumerate(self.hooks.modules)]  # fmt: skip
        try:
            with torch.set_grad_enabled(not pure):
                try:
                    losses = self.objective.losses(model, items)
                except _Stop:
                    losses = None
                hidden = [captured[i] for i in range(len(self.hooks.modules))]
                tensors = self._signal_tensors(hidden, losses, channels)
        finally:
            for h in handles:
                h.remove()
        weights = {role: self._weights(items, role) for role in ("src", "tgt")}
        out = {}
        for c in channels:
            w = weights[c.split(":")[1]]
            parts = [torch.einsum("bt,bth->bh", w.to(h.device), h.float()) for h in tensors[c]]
            out[c] = torch.cat([p.to(self.device) for p in parts], dim=1).detach()
        return out

    def _capture(self, i: int, captured: dict, pure: bool) -> Callable:
        n = len(self.hooks.modules)

        def hook(module, args, out):
            h = out[0] if isinstance(out, tuple) else out
            if not pure and not h.requires_grad:  # the first site: a leaf the loss depends on
                h = h.detach().requires_grad_(True)
                out = (h, *out[1:]) if isinstance(out, tuple) else h
            captured[i] = h if not pure else h.detach()
            if pure and len(captured) == n:
                raise _Stop
            return None if pure else out

        return hook

    def _signal_tensors(self, hidden, losses, channels) -> dict[str, list[torch.Tensor]]:
        if self.signal.kind == "activation":
            return {c: hidden for c in channels}
        out, kinds = {}, [c.split(":")[0] for c in channels]
        for j, (c, kind) in enumerate(zip(channels, kinds)):
            loss = losses["factual"] - losses["alternative"] if kind == "diff" else losses[kind]
            grads = torch.autograd.grad(
                loss.sum(), hidden, retain_graph=j < len(channels) - 1, allow_unused=True
            )
            out[c] = [torch.zeros_like(h) if g is None else g for g, h in zip(grads, hidden)]
        return out

    def _weights(self, items: list[Item], role: str) -> torch.Tensor:
        """``[rows, tokens]`` averaging weights of the selected positions in the padded batch."""
        selector = self.signal.token_selector if role == "src" else self.signal.target_selector
        encs = [it.factual for it in items]
        length = max(len(e.input_ids) for e in encs)
        w = torch.zeros(len(encs), length)
        for r, e in enumerate(encs):
            shift = length - len(e.input_ids) if self.objective.left_pad else 0
            pos = selected_positions(selector, e, self.objective)
            for p in pos:
                w[r, p + shift] += 1.0 / len(pos)
        return w

    # ------------------------------------------------------------------ scaling and centre
    def fit(self, items: list[Item], labels: Sequence[float], progress: bool = False) -> None:
        """Extract the training rows once (kept for ``batch``) and record on the site map the
        per-site scale (``scale="running_rms"``), the class-balanced centre of the targets and
        the typical vector norm (the decoder search's reference)."""
        channels = [self._channel("alternative"), self._channel("diff")]
        raw = {c: [] for c in channels}
        for lo in tqdm(
            range(0, len(items), CHUNK), desc="training activations", disable=not progress
        ):
            got = self._raw(items[lo : lo + CHUNK], channels, memo=True)
            for c in channels:
                raw[c].append(got[c])
        raw = {c: torch.cat(v) for c, v in raw.items()}
        pm, src = self.param_map, raw[channels[0]]
        if self.signal.scale == "running_rms":
            pm.site_scale = [float(src[:, s.offset : s.offset + s.numel].pow(2).mean().sqrt())
                             or 1.0 for s in pm.specs]  # fmt: skip
        if self.signal.kind == "activation":
            labels = np.asarray(labels, dtype=float)
            values = [v for v in np.unique(labels) if v != 0] or [0.0]  # the target classes
            pm.center = {
                role: _balanced_mean(raw[c] / self._scale_vector(), labels, values).tolist()
                for role, c in zip(("src", "tgt"), channels)
            }
        pm.reference_norm = float((src / self._scale_vector()).norm(dim=1).pow(2).mean().sqrt())

    def _scale_vector(self) -> torch.Tensor:
        pm = self.param_map
        if not pm.site_scale:
            return torch.ones(pm.numel, device=self.device)
        return torch.cat(
            [torch.full((s.numel,), float(v)) for s, v in zip(pm.specs, pm.site_scale)]
        ).to(self.device)

    def _vectors(self, items: list[Item], kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{kind: [n, dim]}``: scaled, centred (``diff`` of an activation) and restricted."""
        raw = self._raw(items, [self._channel(k) for k in kinds])
        out = {}
        for k in kinds:
            v = raw[self._channel(k)] / self._scale_vector()
            if self.signal.kind == "activation":
                if self.param_map.center is None:
                    raise ValueError("the activation centre is unknown: call fit(items, labels)")
                role = "tgt" if k == "diff" else "src"
                mu = torch.tensor(self.param_map.center[role], device=v.device)
                v = mu - v if k == "diff" else v - mu
            out[k] = self._restrict(v)
        return out

    def raw_vectors(self, items: list[Item], kind: str = "factual") -> torch.Tensor:
        """``[n, full_dim]`` vectors as read from the model: neither scaled nor centred."""
        channel = self._channel(kind)
        return torch.cat([self._raw(items[lo : lo + CHUNK], [channel])[channel]
                          for lo in range(0, len(items), CHUNK)])  # fmt: skip

    def reference_norm(self) -> float:
        """Typical norm of one row's vector (the decoder search's ``‖θ_S‖``), 0 if unknown."""
        return float(self.param_map.reference_norm or 0.0)

    # ------------------------------------------------------------------ what training calls
    def batch(self, items: list[Item], kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """Mean vector over ``items`` for each kind (as a batch-mean gradient)."""
        kinds = list(dict.fromkeys(kinds))
        return {k: v.mean(0) for k, v in self._vectors(items, kinds).items()}

    def per_example(self, items: list[Item], kind: str) -> torch.Tensor:
        """``[len(items), dim]`` vectors, one forward per ``CHUNK`` rows."""
        if not items:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat([self._vectors(items[lo : lo + CHUNK], [kind])[kind]
                          for lo in range(0, len(items), CHUNK)])  # fmt: skip

    def iter_per_example(self, items: list[Item], kind: str):
        for lo in range(0, len(items), CHUNK):
            yield from self._vectors(items[lo : lo + CHUNK], [kind])[kind]

    def directional(self, items: list[Item], kind: str, direction: torch.Tensor) -> torch.Tensor:
        """``direction · s_i`` for every row (the encoder's pre-activation), by forward passes."""
        return self.per_example(items, kind) @ direction.float().to(self.device)

    def _grad(self, loss: torch.Tensor, retain: bool) -> torch.Tensor:
        raise ValueError(
            "the neutral-text Fisher (snr importance, precondition='fisher') needs parameter "
            "gradients; an activation signal ranks its dimensions by decoder-fit"
        )

    def iter_per_example_params(self, items, kind):
        raise ValueError(_NO_PRE_PRUNE)

    def accumulate_weighted(self, *args, **kwargs) -> None:
        raise ValueError(_NO_PRE_PRUNE)

    # ------------------------------------------------------------------ steering by hooks
    def snapshot(self) -> list:
        return self.hooks.snapshot()

    def restore(self, snap: list) -> None:
        self.hooks.restore(snap)

    @torch.no_grad()
    def add_to_params(self, vector: torch.Tensor, scale: float = 1.0) -> None:
        """Add ``scale · vector`` (the GRADIEND's space) at the sites, by forward hooks."""
        full = self.to_full(vector.to(self.device)) * self._scale_vector()
        self.hooks.add(full, scale)


_NO_PRE_PRUNE = (
    "pre_prune_config needs parameter gradients; an activation signal has few dimensions "
    "(hidden size × sites): train without pre-pruning, post_prune_config still works"
)

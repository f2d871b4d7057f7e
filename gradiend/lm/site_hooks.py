"""Additive forward hooks at activation sites: the steering counterpart of a weight rewrite.

``SiteHooks`` adds a vector to the output of each site module (every batch row and token
position) while any vector is set; with none set no hook is registered at all, so removing
them leaves the model exactly as it was (its parameters are never touched).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _add(out, delta: torch.Tensor):
    """``out + delta`` for a tensor output or the first element of a tuple output."""
    if isinstance(out, tuple):
        return (_add(out[0], delta), *out[1:])
    return out + delta.to(device=out.device, dtype=out.dtype)


class SiteHooks:
    """Per-site additive updates on ``model`` (``widths``: each site's hidden size)."""

    def __init__(self, model: nn.Module, sites: Sequence[str], widths: Sequence[int]):
        self.model, self.sites = model, list(sites)
        self.modules = [model.get_submodule(s) for s in self.sites]
        self.widths = [int(w) for w in widths]
        self.deltas: list[torch.Tensor | None] = [None] * len(self.sites)
        self._handles: list = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def _sync(self) -> None:
        """Hooks registered while a delta is set, none otherwise."""
        want = any(d is not None for d in self.deltas)
        if want and not self._handles:
            for i, mod in enumerate(self.modules):
                self._handles.append(mod.register_forward_hook(self._hook(i)))
        elif not want and self._handles:
            for h in self._handles:
                h.remove()
            self._handles = []

    def _hook(self, i: int):
        def hook(module: nn.Module, args, out):
            d = self.deltas[i]
            return None if d is None else _add(out, d)

        return hook

    @torch.no_grad()
    def add(self, full: torch.Tensor, scale: float = 1.0) -> None:
        """Add ``scale · full`` (a site-space vector, sites end to end) to the updates."""
        start = 0
        for i, w in enumerate(self.widths):
            part = full[start : start + w].float() * float(scale)
            start += w
            self.deltas[i] = part if self.deltas[i] is None else self.deltas[i] + part
        self._sync()

    def set(self, deltas: Sequence[torch.Tensor | None]) -> None:
        """Replace every update (``None``: no update at that site)."""
        if len(deltas) != len(self.sites):
            raise ValueError(f"{len(deltas)} updates for {len(self.sites)} sites")
        self.deltas = [None if d is None else d.detach().float().clone() for d in deltas]
        self._sync()

    def snapshot(self) -> list[torch.Tensor | None]:
        return [None if d is None else d.clone() for d in self.deltas]

    def restore(self, snap: Sequence[torch.Tensor | None]) -> None:
        self.set(snap)

    def remove(self) -> None:
        """No update and no hook any more."""
        self.set([None] * len(self.sites))

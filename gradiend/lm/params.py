"""The flat index map: which base-model parameters a GRADIEND sees, and where they sit.

Every parameter of the base model gets an offset in one *base-global* index space (the
concatenation of all parameters in ``named_parameters()`` order, tied weights counted once).
A GRADIEND's input dimensions are base-global indices, so that runs with different parameter
selections or pruning compare on the same axis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamSpec:
    """One selected parameter: its name, shape and base-global offset."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class ParamMap:
    """Ordered selection of base-model parameters plus the size of the full index space."""

    def __init__(self, specs: Sequence[ParamSpec], total_numel: int):
        self.specs = list(specs)
        self.total_numel = int(total_numel)
        self._by_name = {s.name: s for s in self.specs}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: nn.Module, patterns: Iterable[str] | None = None) -> ParamMap:
        """Select the backbone's parameters (default) or those matching ``patterns``."""
        offsets: list[tuple[str, tuple[int, ...], int]] = []
        offset = 0
        for name, p in model.named_parameters():
            offsets.append((name, tuple(p.shape), offset))
            offset += p.numel()
        names = [n for n, _, _ in offsets]
        if patterns:
            chosen = set(match_param_patterns(names, list(patterns), _prefix(model)))
        else:
            prefix = _prefix(model)
            chosen = {n for n in names if prefix and n.startswith(prefix + ".")}
            if not chosen:  # a bare backbone (no head) was handed to us
                chosen = set(names)
        specs = [ParamSpec(n, s, o) for n, s, o in offsets if n in chosen]
        return cls(specs, offset)

    # ------------------------------------------------------------------ queries
    @property
    def numel(self) -> int:
        """Number of selected scalars (the unpruned GRADIEND input dimension)."""
        return sum(s.numel for s in self.specs)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def all_global_indices(self) -> torch.Tensor:
        """Base-global indices of every selected scalar, ascending (D int64 values)."""
        parts = [torch.arange(s.offset, s.offset + s.numel, dtype=torch.long) for s in self.specs]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def local_to_global(self, local: torch.Tensor) -> torch.Tensor:
        """Base-global indices of positions in the unpruned selected space (concatenation order)."""
        sizes = torch.tensor([s.numel for s in self.specs], dtype=torch.long)
        starts = torch.cumsum(sizes, 0) - sizes
        offsets = torch.tensor([s.offset for s in self.specs], dtype=torch.long)
        which = torch.searchsorted(starts, local, right=True) - 1
        return local - starts[which] + offsets[which]

    def split_indices(self, global_indices: torch.Tensor) -> list[torch.Tensor | None]:
        """Per selected param, the flat positions inside it that ``global_indices`` keeps.

        ``global_indices`` must be sorted ascending; ``None`` as input means all positions.
        """
        out: list[torch.Tensor | None] = []
        for s in self.specs:
            lo = torch.searchsorted(global_indices, s.offset)
            hi = torch.searchsorted(global_indices, s.offset + s.numel)
            out.append(global_indices[lo:hi] - s.offset)
        return out

    def decode_global_index(self, index: int) -> dict:
        """Parameter name and coordinates of one base-global index."""
        for s in self.specs:
            if s.offset <= index < s.offset + s.numel:
                coords = list(torch.unravel_index(torch.tensor(index - s.offset), s.shape))
                return {"param_name": s.name, "coords": [int(c) for c in coords]}
        raise IndexError(f"global index {index} is not in a selected parameter")

    # ------------------------------------------------------------------ io
    def to_json(self) -> dict:
        return {
            "total_numel": self.total_numel,
            "params": [{**asdict(s), "shape": list(s.shape)} for s in self.specs],
        }

    @classmethod
    def from_json(cls, data: dict) -> ParamMap:
        if data.get("signal"):  # activation sites, not parameters
            return SiteMap.from_json(data)
        specs = [ParamSpec(p["name"], tuple(p["shape"]), int(p["offset"])) for p in data["params"]]
        return cls(specs, data["total_numel"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ParamMap)
            and self.specs == other.specs
            and self.total_numel == other.total_numel
        )


class SiteMap(ParamMap):
    """The index space of an activation signal: one "spec" per site (a module path, shape
    ``(hidden,)``), laid end to end; it also carries the signal and what training measured
    (the per-site scale, the centre of the target vectors, the typical vector norm)."""

    def __init__(
        self,
        specs: Sequence[ParamSpec],
        signal: dict,
        site_scale: list[float] | None = None,
        center: dict[str, list[float]] | None = None,
        reference_norm: float | None = None,
    ):
        super().__init__(specs, sum(s.numel for s in specs))
        self.signal, self.site_scale, self.center = dict(signal), site_scale, center
        self.reference_norm = reference_norm

    @classmethod
    def for_sites(cls, sites: Sequence[str], widths: Sequence[int], signal: dict) -> SiteMap:
        specs, offset = [], 0
        for name, width in zip(sites, widths):
            specs.append(ParamSpec(name, (int(width),), offset))
            offset += int(width)
        return cls(specs, signal)

    @property
    def sites(self) -> list[str]:
        return self.names

    def to_json(self) -> dict:
        extra = {"site_scale": self.site_scale, "center": self.center}
        return {**super().to_json(), "signal": self.signal, **extra,
                "reference_norm": self.reference_norm}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> SiteMap:
        specs = [ParamSpec(p["name"], tuple(p["shape"]), int(p["offset"])) for p in data["params"]]
        return cls(
            specs, data["signal"], data.get("site_scale"), data.get("center"),
            data.get("reference_norm"),
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SiteMap) and self.specs == other.specs


def _prefix(model: nn.Module) -> str:
    return getattr(model, "base_model_prefix", "") or ""


def match_param_patterns(names: list[str], patterns: list[str], prefix: str = "") -> list[str]:
    """Names matching any pattern (full match, ``*`` wildcard); names may omit the backbone prefix.

    Raises ValueError naming each pattern that matches nothing.
    """
    chosen: list[str] = []
    for pat in patterns:
        rx = re.compile("^" + ".*".join(re.escape(part) for part in pat.split("*")) + "$")
        hits = [
            n
            for n in names
            if rx.match(n)
            or (prefix and n.startswith(prefix + ".") and rx.match(n[len(prefix) + 1 :]))
        ]
        if not hits:
            sample = ", ".join(names[:6])
            raise ValueError(
                f"params pattern {pat!r} matches no parameter of the base model. "
                f"Use full parameter names or '*' wildcards, e.g. {sample}, ..."
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen

"""GradiendSplit: virtual components over one encoder/decoder matrix.

The input vector (gradients over several tensors, or activations at several sites) is
partitioned into named components. ``by_tensor()`` gives each parameter tensor (or site) its own
latent: the encoder and decoder stay one matrix each, masked block-diagonally, so latent ``k``
reads and writes only component ``k``'s slice. ``none()`` is the plain GRADIEND; ``single()`` is
one component over everything (the component API on an unsplit model). The split lives in the
model's metadata (``config.json``), so a saved model reloads with it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradiend._kwargs import did_you_mean, strict_kwargs

if TYPE_CHECKING:
    from gradiend.lm.params import ParamMap

__all__ = ["ComponentView", "ComponentViews", "GradiendSplit", "split_loss", "summary_encoding"]

logger = logging.getLogger(__name__)

SPLIT_KINDS = ("none", "single", "by_tensor")
SPLIT_LOSSES = ("mean", "sum", "size_weighted", "full")
SPLIT_KEY, LOSS_KEY = "gradiend_split", "gradiend_split_loss"  # metadata keys


@strict_kwargs
@dataclass(frozen=True)
class GradiendSplit:
    """How the input vector is cut into components (``only``: keep just these names)."""

    kind: str = "none"
    name: str = "all"
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ValueError(
                f"unknown GradiendSplit kind {self.kind!r}{did_you_mean(self.kind, SPLIT_KINDS)} "
                "(use GradiendSplit.none(), .single() or .by_tensor())"
            )
        if self.only is not None:
            object.__setattr__(self, "only", tuple(str(n) for n in self.only))

    @classmethod
    def none(cls) -> GradiendSplit:
        """No components: the plain one-latent GRADIEND (the default)."""
        return cls("none")

    @classmethod
    def single(cls, name: str = "all") -> GradiendSplit:
        """One component ``name`` covering the whole input vector."""
        return cls("single", name)

    @classmethod
    def by_tensor(cls) -> GradiendSplit:
        """One component (and latent) per parameter tensor or activation site."""
        return cls("by_tensor")

    @property
    def is_none(self) -> bool:
        return self.kind == "none"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "only": None if self.only is None else list(self.only),
        }

    @classmethod
    def from_json(cls, data: dict) -> GradiendSplit:
        only = data.get("only")
        return cls(data["kind"], data.get("name", "all"), None if only is None else tuple(only))

    def component_names(self, param_map: ParamMap | None) -> list[str]:
        """Names of every component before ``only`` (tensor or site names for ``by_tensor``)."""
        if self.kind == "single":
            return [self.name]
        if self.kind == "by_tensor":
            if param_map is None:
                raise ValueError("GradiendSplit.by_tensor() needs the model's parameter map")
            return list(param_map.names)
        return []

    def resolve(self, param_map: ParamMap | None, gidx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Component name → input positions (``gidx``: base-global index of every input dim);
        components left empty by pruning are dropped; ``only`` keeps (and orders) those named."""
        if self.kind == "none":
            return {}
        if self.kind == "single":
            comps = {self.name: torch.arange(len(gidx))}
        else:
            comps = {}
            for s in param_map.specs if param_map is not None else []:
                pos = ((gidx >= s.offset) & (gidx < s.offset + s.numel)).nonzero().squeeze(1)
                if len(pos):
                    comps[s.name] = pos
        if self.only is not None:
            check_names(self.only, list(comps))
            comps = {n: comps[n] for n in self.only}
        return comps


def check_names(names: Any, known: list[str]) -> None:
    """Every name in ``names`` is a component; else a clear error listing them."""
    for n in names:
        if n not in known:
            raise ValueError(
                f"no component named {n!r}{did_you_mean(str(n), known)}; the split has "
                f"{len(known)} component(s): {', '.join(known[:8])}{', …' if len(known) > 8 else ''}"
            )


def as_split(value: GradiendSplit | str | dict | None) -> GradiendSplit:
    """A ``GradiendSplit`` from itself, a kind name (``"by_tensor"``), its JSON or None."""
    if value is None:
        return GradiendSplit.none()
    if isinstance(value, GradiendSplit):
        return value
    if isinstance(value, str):
        return GradiendSplit(value)
    if isinstance(value, dict):
        return GradiendSplit.from_json(value)
    raise TypeError(f"gradiend_split must be a GradiendSplit, a kind name or None; got {value!r}")


def check_loss(loss: str) -> str:
    """``loss`` if it is one of SPLIT_LOSSES, else a clear error."""
    if loss not in SPLIT_LOSSES:
        raise ValueError(
            f"unknown gradiend_split_loss {loss!r}{did_you_mean(str(loss), SPLIT_LOSSES)} "
            f"(choose one of {', '.join(SPLIT_LOSSES)})"
        )
    return loss


class _MaskedLinear(nn.Module):
    """``linear`` with its weight multiplied by a fixed 0/1 mask (state-dict keys unchanged)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("mask", mask.to(linear.weight), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight * self.mask
        return nn.functional.linear(x, w, self.linear.bias)


@dataclass(frozen=True)
class ComponentView:
    """One component's slice of the encoder or decoder: its positions, weights and bias."""

    name: str
    index: int  # the component's latent unit
    positions: torch.Tensor  # input dimensions of the component
    weight: torch.Tensor  # encoder: [n]; decoder: [n]
    bias: torch.Tensor | None  # encoder: the latent's bias; decoder: b_d over the positions


def summary_encoding(enc: torch.Tensor) -> torch.Tensor:
    """The one number per row the evaluation reads: the mean of the component latents (the
    latent itself for one unit, exactly)."""
    return enc.mean(-1)


def split_loss(model: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss of ``model``'s split: plain MSE without one (or ``"full"``), else the
    mean / sum / size-weighted mean of per-component MSEs."""
    comps = getattr(model, "component_positions", None) or {}
    loss = model.metadata.get(LOSS_KEY, "mean") if comps else "full"
    if loss == "full":
        return nn.functional.mse_loss(pred, target)
    per = [nn.functional.mse_loss(pred[..., p.to(pred.device)], target[..., p.to(pred.device)])
           for p in comps.values()]  # fmt: skip
    if loss == "sum":
        return torch.stack(per).sum()
    if loss == "size_weighted":
        sizes = torch.tensor([len(p) for p in comps.values()], dtype=pred.dtype, device=pred.device)
        return (torch.stack(per) * sizes).sum() / sizes.sum()
    return torch.stack(per).mean()


class ComponentViews:
    """The component API of a GradiendModel (mixed into it): masks, views and restrictions."""

    component_positions: dict[str, torch.Tensor]

    @property
    def split(self) -> GradiendSplit:
        return as_split(self.metadata.get(SPLIT_KEY))

    @property
    def component_names(self) -> list[str]:
        return list(self.component_positions)

    def _init_split(self) -> None:
        """Resolve the split of the metadata and mask encoder and decoder block-diagonally
        (weights outside the blocks set to 0; they get no gradient, so they stay 0)."""
        split = self.split
        if LOSS_KEY in self.metadata:
            check_loss(self.metadata[LOSS_KEY])
        self.component_positions = split.resolve(self.param_map, self.global_indices())
        if split.is_none:
            return
        if len(self.component_positions) != self.latent_dim:
            raise ValueError(
                f"the split has {len(self.component_positions)} components but latent_dim="
                f"{self.latent_dim}: a split GRADIEND has one latent per component"
            )
        mask = torch.zeros(self.latent_dim, self.input_dim)
        for k, pos in enumerate(self.component_positions.values()):
            mask[k, pos] = 1.0
        enc, dec = self.encoder[0], self.decoder[0]
        self.encoder[0] = _MaskedLinear(enc.linear, mask)
        self.decoder[0] = _MaskedLinear(dec.linear, mask.t().contiguous())
        with torch.no_grad():
            self.W_e.mul_(self.encoder[0].mask)
            self.W_d.mul_(self.decoder[0].mask)

    def _views(self, part: str) -> dict[str, ComponentView]:
        if not self.component_positions:
            raise ValueError(
                "this GRADIEND has no components (GradiendSplit.none()); train with "
                "gradiend_split=GradiendSplit.single() or .by_tensor() for component views"
            )
        out = {}
        for k, (name, pos) in enumerate(self.component_positions.items()):
            p = pos.to(self.W_e.device)
            if part == "encoder":
                out[name] = ComponentView(name, k, pos, self.W_e[k, p], self.b_e[k])
            else:
                b = None if self.b_d is None else self.b_d[p]
                out[name] = ComponentView(name, k, pos, self.W_d[p, k], b)
        return out

    @property
    def encoders(self) -> dict[str, ComponentView]:
        """Component name → its encoder row (weights over its slice, its latent's bias)."""
        return self._views("encoder")

    @property
    def decoders(self) -> dict[str, ComponentView]:
        """Component name → its decoder column over its slice (and the decoder bias there)."""
        return self._views("decoder")

    def encode_components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Component name → its encoding of ``x`` (``[...]`` per component)."""
        enc = self.encode(x)
        names = self.component_names or ["all"]
        return {n: enc[..., k] for k, n in enumerate(names)}

    def with_components(self, names: list[str] | tuple[str, ...]) -> Any:
        """A copy restricted to the components ``names``: their latents only, and a decoder
        (bias included) that writes nothing outside their slices, e.g. to rewrite with them."""
        check_names(names, self.component_names)
        if not names:
            raise ValueError("with_components needs at least one component name")
        rows = torch.tensor([self.component_names.index(n) for n in names])
        split = GradiendSplit(self.split.kind, self.split.name, tuple(names))
        out = self._copy_with({**self.metadata, SPLIT_KEY: split.to_json()}, len(names))
        keep = torch.cat([self.component_positions[n] for n in names])
        with torch.no_grad():
            dev = self.W_e.device
            out.W_e.copy_(self.W_e[rows.to(dev)])
            out.b_e.copy_(self.b_e[rows.to(dev)])
            out.W_d.copy_(self.W_d[:, rows.to(dev)])
            if self.b_d is not None:
                inside = torch.zeros(self.input_dim, dtype=torch.bool)
                inside[keep] = True
                out.b_d.copy_(self.b_d * inside.to(dev, self.b_d.dtype))
        return out

    def without_split(self) -> Any:
        """The same weights (and function) as a plain GradiendModel with ``latent_dim``
        latents and no component API (``GradiendSplit.none()``)."""
        meta = {k: v for k, v in self.metadata.items() if k not in (SPLIT_KEY, LOSS_KEY)}
        out = self._copy_with(meta, self.latent_dim)
        with torch.no_grad():
            for mine, theirs in zip(out.parameters(), self.parameters()):
                mine.copy_(theirs)
        return out

    def _copy_with(self, metadata: dict, latent_dim: int) -> Any:
        out = type(self)(
            self.input_dim, latent_dim, self.activation_encoder, self.activation_decoder,
            self.bias_decoder, self.W_e.dtype, self.param_map, self.indices, **metadata,
        )  # fmt: skip
        out.decoder_fit = None if self.decoder_fit is None else copy.deepcopy(self.decoder_fit)
        return out.to(self.W_e.device)


def split_latents(
    split: dict | None, loss: str, pmap: ParamMap, indices: torch.Tensor | None, meta: dict
) -> tuple[int | None, dict]:
    """``(latent units, metadata)`` of a model built with ``split``: one latent per component
    and the split recorded in the metadata; ``(None, meta)`` without a split."""
    s = as_split(split)
    if s.is_none:
        return None, meta
    gidx = pmap.all_global_indices() if indices is None else indices.to(torch.long)
    n = len(s.resolve(pmap, gidx))
    return n, {**meta, SPLIT_KEY: s.to_json(), LOSS_KEY: check_loss(loss)}

"""Stitching a split GRADIEND's components from several models (e.g. the seeds of one run).

A ``GradiendSplit.by_tensor()`` GRADIEND is one masked encoder and decoder matrix in which
component ``k`` owns encoder row ``k`` (and bias entry ``b_e[k]``), decoder column ``k`` and the
decoder-bias entries at its positions (``b_d`` is one vector over the whole input, so its slice
of component ``k`` is ``b_d[positions_k]``). Nothing else couples the components, so a model
whose component ``k`` is ``models[pick[k]]``'s encodes, for that component, exactly like it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import torch

from gradiend.model.gradiend import GradiendModel

__all__ = ["STITCH_KEY", "check_stitchable", "require_components", "stitch_components"]

logger = logging.getLogger(__name__)

STITCH_KEY = "stitched_components"  # metadata: component name → index of its source model
SPLIT_HINT = "train with TrainingArguments(gradiend_split=GradiendSplit.by_tensor())"


def require_components(n_components: int, what: str) -> None:
    """A clear error when a GRADIEND has fewer than two components (``what`` needs them)."""
    if n_components < 2:
        kind = "is not split" if n_components == 0 else "has a single component"
        raise ValueError(
            f"{what} needs a GRADIEND split into components, but this one {kind}; {SPLIT_HINT} "
            "(one latent per parameter tensor or activation site)"
        )


def _shape(model: GradiendModel) -> tuple:
    """What every stitched model must share: architecture, split, map, indices, positions."""
    return (
        model.input_dim,
        model.latent_dim,
        model.activation_encoder,
        model.activation_decoder,
        model.bias_decoder,
        model.W_e.dtype,
    )


def check_stitchable(models: Sequence[GradiendModel]) -> list[str]:
    """The shared component names of ``models``; a ValueError naming the first difference
    (split, parameter map, indices, shape or component positions) otherwise."""
    if not models:
        raise ValueError("stitch_components needs at least one model")
    first = models[0]
    require_components(len(first.component_names), "stitch_components")
    pmap = None if first.param_map is None else first.param_map.to_json()
    for i, other in enumerate(models[1:], start=1):
        where = f"models[{i}] and models[0] differ in their"
        if other.split != first.split or other.component_names != first.component_names:
            raise ValueError(f"{where} split: {other.split} ({len(other.component_names)} "
                             f"components) vs {first.split} ({len(first.component_names)})")  # fmt: skip
        if _shape(other) != _shape(first):
            raise ValueError(f"{where} shape (input_dim, latent_dim, activations, bias, dtype): "
                             f"{_shape(other)} vs {_shape(first)}")  # fmt: skip
        if (None if other.param_map is None else other.param_map.to_json()) != pmap:
            raise ValueError(f"{where} parameter map: they were trained on other parameters")
        if not torch.equal(other.global_indices().cpu(), first.global_indices().cpu()):
            raise ValueError(f"{where} input indices: they were pruned differently")
    return list(first.component_names)


def _as_pick(pick: Sequence[int] | Mapping[str, int], names: list[str], n: int) -> list[int]:
    """``pick`` as one model index per component, in component order (checked)."""
    if isinstance(pick, Mapping):
        unknown = [k for k in pick if k not in names]
        missing = [k for k in names if k not in pick]
        if unknown or missing:
            raise ValueError(
                f"pick must name every component exactly: unknown {unknown}, missing {missing} "
                f"(the components: {', '.join(names)})"
            )
        pick = [pick[k] for k in names]
    pick = [int(p) for p in pick]
    if len(pick) != len(names):
        raise ValueError(f"pick has {len(pick)} entries for {len(names)} components {names}")
    bad = [p for p in pick if not 0 <= p < n]
    if bad:
        raise ValueError(f"pick holds model indices {bad} outside 0..{n - 1} ({n} models given)")
    return pick


@torch.no_grad()
def stitch_components(
    models: Sequence[GradiendModel],
    pick: Sequence[int] | Mapping[str, int],
    flip: Iterable[str] = (),
) -> GradiendModel:
    """One GRADIEND whose component ``k`` (encoder row and bias entry, decoder column and its
    decoder-bias slice) is ``models[pick[k]]``'s; ``pick`` is one model index per component (in
    component order) or a dict name → index. ``flip`` names components whose latent is negated
    (the encoding changes sign, the reconstruction does not, as in ``flip_sign``), e.g. to
    orient a component whose correlation was negative. The models must share split, parameter
    map, indices and shape. The stitched model has no fitted decoder (``decoder_fit``): the
    seeds' fits are joint over their own latents; ``fit_importance`` refits it."""
    names = check_stitchable(models)
    pick = _as_pick(pick, names, len(models))
    flip = set(flip)
    if flip - set(names):
        raise ValueError(f"flip names unknown components {sorted(flip - set(names))}")
    first = models[0]
    meta = {**first.metadata, STITCH_KEY: dict(zip(names, pick, strict=True))}
    out = first._copy_with(meta, first.latent_dim)
    out.decoder_fit = None
    for mine, theirs in zip(out.parameters(), first.parameters(), strict=True):
        mine.copy_(theirs)  # positions outside every component keep models[0]'s values
    dev = out.W_e.device
    for k, (name, src) in enumerate(zip(names, pick, strict=True)):
        donor = models[src]
        sign = -1.0 if name in flip else 1.0
        pos = first.component_positions[name].to(dev)
        out.W_e[k].copy_(sign * donor.W_e[k].to(dev))
        out.b_e[k].copy_(sign * donor.b_e[k].to(dev))
        out.W_d[:, k].copy_(sign * donor.W_d[:, k].to(dev))
        if out.b_d is not None:
            out.b_d[pos] = donor.b_d.to(dev)[pos]
    out.neutral_fisher = first.neutral_fisher
    logger.info("stitched %d components from models %s", len(names), sorted(set(pick)))
    return out

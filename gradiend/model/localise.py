"""Where a feature lives: a GRADIEND's importance summed per parameter tensor, layer and module.

Every input dimension is a base-global index inside one base parameter (``ParamMap``), so the
importance vector (``GradiendModel.get_weight_importance``) and the top-k dimensions can be
attributed to parameter tensors, and tensors to a layer (the number after ``layers.``, ``h.``,
``layer.``, ``blocks.``) and a module type (the name without the layer part and without
``.weight``/``.bias``, e.g. ``mlp.down_proj``). Shares are of the total importance mass and of
the top-k dimensions of one ``region`` (default ``rest``: every dimension but the feature words'
own embedding rows, ``gradiend.model.word_rows``), so they add up to 1 over all tensors; the
ranking is ``GradiendModel.get_topk_weights`` with the same region.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from gradiend.model.word_rows import DEFAULT_REGION, region_positions, word_mask

if TYPE_CHECKING:
    from gradiend.model.gradiend import GradiendModel

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
_SUFFIX = re.compile(r"\.(weight|bias)$")
COLUMNS = ["param", "layer", "module", "dims", "mass", "mass_share", "topk", "topk_share"]


def split_name(name: str) -> tuple[int | None, str]:
    """``(layer, module type)`` of a parameter name; layer ``None`` outside the layer stack.

    >>> split_name("model.layers.29.mlp.down_proj.weight")
    (29, 'mlp.down_proj')
    >>> split_name("model.norm.weight")
    (None, 'norm')
    """
    match = _LAYER.search(name)
    if match is None:
        module = name.split(".", 1)[1] if name.startswith("model.") else name
        return None, _SUFFIX.sub("", module)
    return int(match.group(1)), _SUFFIX.sub("", name[match.end() :]) or name


def importance_table(
    model: GradiendModel,
    part: str | None = None,
    topk: int | float = 1000,
    region: str = DEFAULT_REGION,
) -> pd.DataFrame:
    """One row per base parameter tensor holding GRADIEND dimensions of ``region`` (see
    ``COLUMNS``).

    ``mass`` is the summed importance of ``part`` over the tensor's dimensions in the region,
    ``topk`` the number of the region's top-``topk`` dimensions inside it; ``*_share`` divide by
    the totals.
    """
    pmap = model.param_map
    if pmap is None:
        raise ValueError(
            "this GRADIEND has no parameter map, so its dimensions cannot be attributed to "
            "parameters; train it with TextPredictionTrainer or build it with param_map="
        )
    importance = model.get_weight_importance(part).double().cpu()
    gidx = model.global_indices().cpu()
    positions = region_positions(model, region)
    if positions is not None:
        gidx, importance = gidx[positions], importance[positions]
    order = torch.argsort(gidx)
    gidx, importance = gidx[order], importance[order]
    top_local = model.get_topk_weights(part, topk, global_indices=True, region=region).cpu()
    top_sorted = torch.sort(top_local).values
    rows = []
    for spec in pmap.specs:
        lo, hi = (int(torch.searchsorted(gidx, b)) for b in (spec.offset, spec.offset + spec.numel))
        if hi == lo:
            continue
        t_lo, t_hi = (
            int(torch.searchsorted(top_sorted, b)) for b in (spec.offset, spec.offset + spec.numel)
        )
        layer, module = split_name(spec.name)
        rows.append(
            {
                "param": spec.name,
                "layer": layer,
                "module": module,
                "dims": hi - lo,
                "mass": float(importance[lo:hi].sum()),
                "topk": t_hi - t_lo,
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if not c.endswith("_share")])
    return _with_shares(frame)


def _with_shares(frame: pd.DataFrame) -> pd.DataFrame:
    mass, top = float(frame["mass"].sum()), float(frame["topk"].sum())
    frame["mass_share"] = frame["mass"] / mass if mass > 0 else np.nan
    frame["topk_share"] = frame["topk"] / top if top > 0 else np.nan
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def group_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sum a per-tensor table over ``by`` (e.g. ``["layer"]``, ``["module"]``); shares re-summed."""
    grouped = frame.groupby(by, dropna=False, sort=True)[["dims", "mass", "topk"]].sum()
    grouped = grouped.reset_index()
    total_mass, total_top = float(frame["mass"].sum()), float(frame["topk"].sum())
    grouped["mass_share"] = grouped["mass"] / total_mass if total_mass > 0 else np.nan
    grouped["topk_share"] = grouped["topk"] / total_top if total_top > 0 else np.nan
    return grouped


def by_module(
    model: GradiendModel,
    part: str | None = None,
    topk: int | float = 1000,
    level: str = "param",
    region: str = DEFAULT_REGION,
) -> pd.DataFrame:
    """Shares per parameter tensor (``level="param"``) or per module type (``"module"``) of
    ``region``, largest importance mass first."""
    frame = importance_table(model, part, topk, region)
    if level == "module":
        frame = group_table(frame, ["module"])
    elif level != "param":
        raise ValueError(f"level must be 'param' or 'module', got {level!r}")
    return frame.sort_values("mass", ascending=False, kind="stable").reset_index(drop=True)


def by_layer(
    model: GradiendModel,
    part: str | None = None,
    topk: int | float = 1000,
    by_module_type: bool = False,
    region: str = DEFAULT_REGION,
) -> pd.DataFrame:
    """Shares of ``region`` per layer (``layer`` is ``<NA>`` for parameters outside the layer
    stack), or per (layer, module type) with ``by_module_type`` — the table behind the
    localisation figure."""
    frame = importance_table(model, part, topk, region)
    return group_table(frame, ["layer", "module"] if by_module_type else ["layer"])


def region_summary(
    model: GradiendModel, part: str | None = None, topk: int | float = 1000
) -> dict[str, float | int | None]:
    """How much of the ranking over every dimension the feature words' own rows take: their
    number of dimensions, share of the importance mass and of the top-``topk`` of ``"all"``
    (None when the GRADIEND records no word rows)."""
    words = region_positions(model, "word_rows") if word_mask(model) is not None else None
    if words is None:
        return {"word_row_dims": None, "mass_share": None, "topk_share": None}
    importance = model.get_weight_importance(part).double().cpu()
    total = float(importance.sum())
    top = model.get_topk_weights(part, topk, global_indices=False, region="all")
    in_words = torch.isin(top, words)
    return {
        "word_row_dims": len(words),
        "mass_share": float(importance[words].sum()) / total if total > 0 else None,
        "topk_share": float(in_words.double().mean()) if len(top) else None,
    }

"""The feature words' own rows: a region of a GRADIEND's input dimensions of its own.

A run's data trains a few target tokens (" he", " she", …). Their rows of the input embedding
and of the output embedding (the LM head, and its bias where it has one; for tied embeddings the
one shared matrix) receive the largest, most consistent gradients of all, so an importance
ranking over every dimension is dominated by them: it says *which words were trained*, not what
was learned elsewhere in the model. These dimensions are the ``word_rows`` region; every other
dimension is ``rest``. Rankings, localisation and comparisons look at one ``region``:

* ``"rest"`` (``DEFAULT_REGION``): every dimension outside the word rows;
* ``"word_rows"``: only the feature tokens' rows;
* ``"all"``: every dimension (the ranking before regions existed).

The trainer records the region in the GRADIEND's ``metadata["word_rows"]`` (``record``): the
token ids its training items target and the names of the embedding parameters. A GRADIEND saved
before that (or built by hand) has no record; ``set_word_rows`` adds one, and until then
``"rest"`` falls back to ``"all"`` with a logged note.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from gradiend.lm.params import ParamMap
    from gradiend.model.gradiend import GradiendModel

logger = logging.getLogger(__name__)

REGIONS = ("rest", "word_rows", "all")
DEFAULT_REGION = "rest"
METADATA_KEY = "word_rows"
# embedding parameter names of common architectures, for a record without names
_EMBEDDING_NAME = re.compile(
    r"(embed_tokens|word_embeddings|wte|embed_in|shared|lm_head|embed_out)\.weight$"
)

_noted: weakref.WeakSet = weakref.WeakSet()  # models whose missing record was logged
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (key, word mask)


def check_region(region: str) -> str:
    """``region`` itself when it is one of ``REGIONS``, else a ValueError naming them."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {REGIONS}")
    return region


def embedding_names(model: nn.Module) -> dict[str, str | None]:
    """Names (as ``named_parameters`` spells them, tied weights once) of the base model's input
    embedding, output embedding and output bias; None where the model has none."""
    names = {id(p): n for n, p in model.named_parameters()}

    def name_of(module: Any, attr: str) -> str | None:
        tensor = getattr(module, attr, None) if module is not None else None
        return names.get(id(tensor)) if tensor is not None else None

    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        "input": name_of(inp, "weight"),
        "output": name_of(out, "weight"),
        "output_bias": name_of(out, "bias"),
    }


def record(model: nn.Module, token_ids: Iterable[int]) -> dict:
    """The ``metadata["word_rows"]`` entry of a run: its target token ids and the base model's
    embedding parameter names (the same name twice when the embeddings are tied)."""
    names = embedding_names(model)
    return {"token_ids": sorted({int(t) for t in token_ids}), **names}


def target_token_ids(items: Iterable[Any]) -> list[int]:
    """Every token id that training items (``Item``: factual and alternative encodings) score."""
    ids: set[int] = set()
    for item in items:
        for enc in (item.factual, item.alternative):
            ids.update(int(t) for t in enc.targets)
    return sorted(ids)


def set_word_rows(
    gradiend: GradiendModel,
    token_ids: Iterable[int],
    base_model: nn.Module | None = None,
    names: Iterable[str] | None = None,
) -> dict:
    """Record the word-row region of a GRADIEND that has none (e.g. saved before it was
    recorded): ``token_ids`` are its target tokens (``tokenizer(" he")`` …), the embedding
    parameters come from ``base_model``, from ``names``, or else from the parameter map's names
    (``embed_tokens``, ``word_embeddings``, ``wte``, ``lm_head``, …)."""
    if base_model is not None:
        entry = record(base_model, token_ids)
    else:
        pmap = gradiend.param_map
        found = list(names) if names is not None else _guess_names(pmap)
        if not found:
            raise ValueError(
                "no embedding parameter found in this GRADIEND's parameter map: pass "
                "base_model= (the base model) or names= (the embedding parameter names)"
            )
        entry = {"token_ids": sorted({int(t) for t in token_ids}), "names": found}
    gradiend.metadata[METADATA_KEY] = entry
    _cache.pop(gradiend, None)
    return entry


def _guess_names(pmap: ParamMap | None) -> list[str]:
    return [] if pmap is None else [n for n in pmap.names if _EMBEDDING_NAME.search(n)]


def word_row_indices(pmap: ParamMap, entry: dict) -> torch.Tensor:
    """Sorted base-global indices of the recorded tokens' rows (and output-bias entries) in the
    selected parameters of ``pmap``; a parameter that is not selected contributes nothing."""
    tokens = torch.tensor(entry.get("token_ids") or [], dtype=torch.long)
    wanted = entry.get("names") or [entry.get(k) for k in ("input", "output", "output_bias")]
    by_name = {s.name: s for s in pmap.specs}
    parts = []
    for name in dict.fromkeys(n for n in wanted if n):  # tied: one name, counted once
        spec = by_name.get(name)
        if spec is None or not spec.shape:
            continue
        rows = tokens[tokens < spec.shape[0]]
        width = spec.numel // spec.shape[0]  # a row of a matrix, one entry of a bias vector
        cols = torch.arange(width, dtype=torch.long)
        parts.append((spec.offset + rows[:, None] * width + cols[None, :]).reshape(-1))
    if not parts:
        return torch.zeros(0, dtype=torch.long)
    return torch.unique(torch.cat(parts))


def word_mask(gradiend: GradiendModel) -> torch.Tensor | None:
    """Bool over the GRADIEND's input dimensions, True on the word rows; None when it records
    no word rows (or has no parameter map to place them)."""
    entry = gradiend.metadata.get(METADATA_KEY) if isinstance(gradiend.metadata, dict) else None
    if not entry or gradiend.param_map is None:
        return None
    key = (gradiend.input_dim, repr(entry))
    cached = _cache.get(gradiend)
    if cached is not None and cached[0] == key:
        return cached[1]
    words = word_row_indices(gradiend.param_map, entry)
    mask = torch.isin(gradiend.global_indices().cpu(), words)
    _cache[gradiend] = (key, mask)
    return mask


def region_positions(gradiend: GradiendModel, region: str) -> torch.Tensor | None:
    """Positions (local indices, ascending) of the GRADIEND's dimensions in ``region``; None for
    every dimension (``"all"``, or ``"rest"`` of a GRADIEND without a word-row record)."""
    check_region(region)
    if region == "all":
        return None
    mask = word_mask(gradiend)
    if mask is None:
        if region == "word_rows":
            raise ValueError(
                "this GRADIEND records no word rows (its feature tokens' embedding rows): it "
                "was saved before they were recorded or built by hand. Retrain it, or call "
                "gradiend.model.word_rows.set_word_rows(model, token_ids, base_model=...)"
            )
        if gradiend not in _noted:
            _noted.add(gradiend)
            logger.info(
                "this GRADIEND records no word rows (trained before they were recorded): "
                "region 'rest' ranks every dimension, as 'all'; set_word_rows(model, token_ids) "
                "in gradiend.model.word_rows records them"
            )
        return None
    chosen = mask if region == "word_rows" else ~mask
    return chosen.nonzero().squeeze(1)

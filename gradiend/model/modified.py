"""The modified model of an activation signal: the base model with fixed forward hooks that
add the decoder's update at the trained sites, saved as data and reloaded without code.

``modify_model`` returns the weight-rewritten model for gradient signals and a ``HookedModel``
for activation signals. ``HookedModel.save_pretrained_modified(path)`` writes the base model
reference and the hook specification (JSON) and the update tensors (safetensors);
``load_modified_model(path)`` rebuilds it (no pickle, nothing executed from the folder).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gradiend._io import atomic_dir, check_replaceable, read_json, write_json
from gradiend._kwargs import strict_kwargs
from gradiend.lm.activations import ActivationComputer, site_widths
from gradiend.lm.loading import BaseLM, load_base_model
from gradiend.lm.site_hooks import SiteHooks
from gradiend.model.rewrite import (
    check_results_match,
    gradiend_fingerprint,
    read_results,
    summary_key,
)
from gradiend.run_layout import RunLayout

if TYPE_CHECKING:
    from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

HOOK_SPEC = "hook_spec.json"
HOOK_UPDATES = "hook_updates.safetensors"
FORMAT = "gradiend-hooked-model"
FORMAT_VERSION = 1


@strict_kwargs
class HookedModel(nn.Module):
    """``model`` with an additive forward hook at each site (every row and token position);
    its forward and ``generate`` give the steered outputs."""

    def __init__(
        self,
        model: nn.Module,
        sites: Sequence[str],
        updates: Sequence[torch.Tensor],
        base_model: str | None = None,
        info: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.base_model_reference = base_model
        self.info = dict(info or {})
        self.hooks = SiteHooks(model, sites, [u.numel() for u in updates])
        self.hooks.set([u.detach().float().reshape(-1) for u in updates])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, **kwargs)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def sites(self) -> list[str]:
        return list(self.hooks.sites)

    @property
    def updates(self) -> list[torch.Tensor]:
        """The vector each site adds (float32)."""
        return [d.clone() for d in self.hooks.deltas]

    def remove_hooks(self) -> nn.Module:
        """The base model without the hooks (exactly the model the hooks were put on)."""
        self.hooks.remove()
        return self.model

    def save_pretrained_modified(self, path: str | Path) -> Path:
        """Write the hook specification, the updates and the base model reference into
        ``path`` (atomically); ``load_modified_model(path)`` restores the same outputs."""
        path = Path(path)
        check_replaceable(path, {HOOK_SPEC, HOOK_UPDATES}, "hooked model")
        with atomic_dir(path) as tmp:
            self.save_pretrained(tmp)
        return path

    def save_pretrained(self, path: str | Path) -> None:
        """The two files of ``save_pretrained_modified`` written into ``path`` as it is (what
        ``rewrite_base_model(output_dir=...)`` of an activation signal saves, beside the
        tokenizer)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.base_model_reference is None:
            logger.warning(
                "the base model was passed as an object, so %s cannot name it: reload it with "
                "load_modified_model(path, model_loader=...)",
                path,
            )
        spec = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "base_model": self.base_model_reference,
            "model_class": type(self.model).__name__,
            "sites": self.sites,
            "positions": "all",
            **self.info,
        }
        tensors = {f"site_{i}": d.contiguous().cpu() for i, d in enumerate(self.hooks.deltas)}
        save_file(tensors, str(path / HOOK_UPDATES))
        write_json(path / HOOK_SPEC, spec)


def load_modified_model(
    path: str | Path,
    model_loader: Callable[[str | None], Any] | None = None,
    device: str | torch.device | None = None,
) -> HookedModel:
    """A ``HookedModel`` saved by ``save_pretrained_modified``: the base model from its recorded
    reference (or ``model_loader(reference)``, which may return a model, a ``(model,
    tokenizer)`` pair or a loaded ``BaseLM``) with the saved hooks."""
    path = Path(path)
    if not (path / HOOK_SPEC).is_file():
        raise FileNotFoundError(
            f"{path} holds no {HOOK_SPEC}: is it a folder written by save_pretrained_modified? "
            "(a weight-rewritten model is a plain Hugging Face folder: use from_pretrained)"
        )
    spec = read_json(path / HOOK_SPEC)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"{path / HOOK_SPEC} is not a {FORMAT} specification")
    if int(spec.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer gradiend (format {spec['format_version']})"
        )
    tensors = load_file(str(path / HOOK_UPDATES))
    sites = [str(s) for s in spec["sites"]]
    updates = [tensors[f"site_{i}"] for i in range(len(sites))]
    ref = spec.get("base_model")
    if model_loader is None:
        if not ref:
            raise ValueError(
                f"{path} records no base model (it was passed as an object): pass "
                "model_loader=lambda reference: <the base model>"
            )
        model = load_base_model(ref, device=device).model
    else:
        model = _as_module(model_loader(ref))
    _check_sites(model, sites, updates, path)
    info = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
    return HookedModel(model, sites, updates, ref, info)


_SPEC_KEYS = {"format", "format_version", "base_model", "model_class", "sites", "positions"}


def _as_module(loaded: Any) -> nn.Module:
    if isinstance(loaded, BaseLM):
        return loaded.model
    if isinstance(loaded, tuple):
        loaded = loaded[0]
    if not isinstance(loaded, nn.Module):
        raise TypeError(f"model_loader must return a model, got {type(loaded).__name__}")
    return loaded


def _check_sites(model: nn.Module, sites: list[str], updates: list[torch.Tensor], path) -> None:
    try:
        widths = site_widths(model, sites)
    except AttributeError as err:
        raise ValueError(f"the base model lacks a hooked site of {path}: {err}") from None
    for site, width, u in zip(sites, widths, updates):
        if u.numel() != width:
            raise ValueError(
                f"site {site!r} of {path} adds {u.numel()} values but the base model's output "
                f"there has {width}: is it the same architecture?"
            )


def modify_model(
    mwg: ModelWithGradiend,
    decoder_results: Mapping | None = None,
    target_class: str | None = None,
    increase_target_probabilities: bool = True,
    run_dir: str | Path | RunLayout | None = None,
):
    """The base model at ``target_class``'s selected decoder point: weight-rewritten for a
    gradient signal, a ``HookedModel`` (a copy of the base model with hooks) for an activation
    signal."""
    if not isinstance(mwg.grads, ActivationComputer):
        return mwg.rewrite_from_results(
            decoder_results, target_class, increase_target_probabilities, run_dir=run_dir
        )
    if decoder_results is None:
        source = run_dir or getattr(mwg.gradiend, "source_dir", None)
        layout = source if isinstance(source, RunLayout) or source is None else None
        if layout is None and source is not None:
            layout = RunLayout.locate(source)
        decoder_results = read_results(layout)
    check_results_match(decoder_results, gradiend_fingerprint(mwg.gradiend))
    cls = target_class or mwg.target_classes[0]
    key = summary_key(cls, increase_target_probabilities)
    if key not in decoder_results:
        raise KeyError(f"the decoder results have no entry {key!r}; run evaluate_decoder() first")
    entry = decoder_results[key]
    lr, ff, part = entry["learning_rate"], entry["feature_factor"], entry.get("part", "decoder")
    return hooked_copy(mwg, lr, ff, part, {"target_class": cls, "key": key})


def hooked_copy(
    mwg: ModelWithGradiend, learning_rate: float, feature_factor: float, part: str, info: dict
) -> HookedModel:
    """A copy of the base model with ``learning_rate · decoder(feature_factor)`` hooked in."""
    grads = mwg.grads
    snap = grads.snapshot()
    grads.restore([None] * len(snap))  # no live hook is copied with the model
    try:
        model = copy.deepcopy(mwg.base_model)
    finally:
        grads.restore(snap)
    full = grads.to_full(mwg.get_update_vector(feature_factor, part).to(grads.device))
    full = full * grads._scale_vector() * float(learning_rate)
    updates, start = [], 0
    for spec in grads.param_map.specs:
        updates.append(full[start : start + spec.numel].cpu())
        start += spec.numel
    info = {**info, "learning_rate": float(learning_rate), "feature_factor": float(feature_factor),
            "part": part, "signal": grads.param_map.signal}  # fmt: skip
    return HookedModel(
        model, grads.param_map.sites, updates, mwg.gradiend.metadata.get("base_model"), info
    )

"""ModelWithGradiend: a base language model together with a trained GRADIEND.

It encodes examples (by forward-mode AD, no per-example backward), gives the decoder's update
vector in parameter space, and rewrites the base model — in place and reversibly for sweeps, or
on a copy for a saved checkpoint.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gradiend import distributed as dist
from gradiend._io import read_json
from gradiend._kwargs import strict_kwargs
from gradiend.lm.activations import ActivationComputer, signal_computer, site_widths
from gradiend.lm.devices import gradiend_device
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import BaseLM, load_base_model
from gradiend.lm.mlm_head import MLMHead
from gradiend.lm.objectives import Item, Objective, make_objective
from gradiend.lm.params import ParamMap, SiteMap
from gradiend.model.files import warn_if_unconverged
from gradiend.model.gradiend import GradiendModel
from gradiend.model.modified import hooked_copy, modify_model
from gradiend.model.rewrite import rewrite_from_results
from gradiend.model.steering import SteeringMixin
from gradiend.run_layout import CONTEXT, MLM_HEAD, MODEL_CONFIG, RunLayout, find_model_dir

logger = logging.getLogger(__name__)


@strict_kwargs
class ModelWithGradiend(SteeringMixin):
    """Base model + parameter map + GRADIEND. ``decoder(+1)`` strengthens ``target_classes[0]``.

    Steering (``steer``, ``generate``, ``steer_generations``) comes from ``SteeringMixin``.
    """

    def __init__(
        self,
        lm: BaseLM,
        gradiend: GradiendModel,
        objective_name: str = "auto",
        objective: Objective | None = None,
    ):
        check_parts(lm, gradiend)
        if gradiend.param_map is None:
            raise ValueError("the GRADIEND has no parameter map; it cannot be tied to a base model")
        self.lm, self.gradiend = lm, gradiend
        self.objective = objective or make_objective(
            gradiend.metadata.get("prediction_objective", objective_name),
            lm.kind,
            lm.tokenizer,
            mask=gradiend.metadata.get("mask", "[MASK]"),
        )
        self.grads = signal_computer(  # gradients, or activations at sites (lm.activations)
            lm, self.objective, gradiend.param_map, gradiend.indices, device=gradiend.W_e.device
        )
        # per-dimension factor of the update vector (neutral-Fisher preconditioning), or None
        self.update_scale: torch.Tensor | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def base_model(self) -> torch.nn.Module:
        return self.lm.model

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def param_map(self) -> ParamMap:
        return self.gradiend.param_map

    @property
    def source(self) -> str:
        return self.gradiend.metadata.get("source", "alternative")

    @property
    def target_classes(self) -> list[str]:
        return list(self.gradiend.metadata.get("target_classes", []))

    # ------------------------------------------------------------------ encoding
    def encode(self, gradients: torch.Tensor) -> torch.Tensor:
        """Encode gradient vectors already in the GRADIEND's index space."""
        with torch.no_grad():
            return self.gradiend.encode(gradients)

    def encode_items(
        self,
        items: list[Item],
        kind: str | None = None,
        batch_size: int = 32,
        progress: bool = True,
        split: bool = False,
        desc: str = "encoding examples",
    ) -> torch.Tensor:
        """Encodings ``[n, latent_dim]`` of examples, by one JVP pass per batch and latent unit;
        ``desc`` labels the progress bar (say what is encoded).

        ``split``: under ``torch.distributed`` (every rank calls it with the same items) the
        batches are spread over the ranks and every rank gets the whole result."""
        return jvp_encode(
            self.gradiend, self.grads, items, kind or self.source, batch_size, progress, split, desc
        )

    # ------------------------------------------------------------------ rewriting
    def get_update_vector(self, feature_factor: float = 1.0, part: str = "decoder") -> torch.Tensor:
        """The vector added to the weights: ``decoder(ff)`` (or ``part``), times ``update_scale``."""
        u = self.gradiend.get_update_vector(feature_factor, part)
        if self.update_scale is None:
            return u
        return u * self.update_scale.to(device=u.device, dtype=u.dtype)

    @contextmanager
    def scaled_updates(self, scale: torch.Tensor | None) -> Iterator[ModelWithGradiend]:
        """Temporarily multiply every update vector by ``scale`` (``None``: unchanged)."""
        saved, self.update_scale = self.update_scale, scale
        try:
            yield self
        finally:
            self.update_scale = saved

    @contextmanager
    def applied(
        self,
        learning_rate: float,
        feature_factor: float = 1.0,
        part: str = "decoder",
        update: torch.Tensor | None = None,
    ) -> Iterator[torch.nn.Module]:
        """Temporarily ``θ += η·u`` in place; restored bit-for-bit on exit."""
        u = self.get_update_vector(feature_factor, part) if update is None else update
        saved = self.grads.snapshot()
        self.grads.add_to_params(u, learning_rate)
        try:
            yield self.lm.model
        finally:
            self.grads.restore(saved)

    def rewrite_base_model(
        self,
        learning_rate: float,
        feature_factor: float = 1.0,
        part: str = "decoder",
        inplace: bool = False,
    ) -> torch.nn.Module:
        """The base model with ``θ + η · decoder(ff)`` applied (a copy unless ``inplace``); for
        an activation signal a ``HookedModel`` (the update added by forward hooks)."""
        if isinstance(self.grads, ActivationComputer) and not inplace:
            return hooked_copy(self, learning_rate, feature_factor, part, {})
        if inplace:
            self.grads.add_to_params(self.get_update_vector(feature_factor, part), learning_rate)
            return self.lm.model
        with self.applied(learning_rate, feature_factor, part) as model:
            rewritten = copy.deepcopy(model)
        for p in rewritten.parameters():
            p.requires_grad_(True)
        return rewritten

    def rewrite_from_results(
        self,
        decoder_results: dict | None = None,
        target_class: str | list[str] | None = None,
        increase_target_probabilities: bool = True,
        output_dir: str | Path | None = None,
        run_dir: str | Path | RunLayout | None = None,
    ):
        """The base model rewritten at the point ``evaluate_decoder`` selected for
        ``target_class`` (a list gives one model per class), saved to ``output_dir`` when given
        (a sub-folder per class for a list) so that ``AutoModelFor*.from_pretrained`` reloads
        it. Without ``decoder_results`` the run's ``decoder_results.json`` is read; ``run_dir``
        defaults to the run this GRADIEND was loaded from."""
        source = run_dir or getattr(self.gradiend, "source_dir", None)
        layout = source if isinstance(source, RunLayout) else None
        if layout is None and source is not None:
            layout = RunLayout.locate(source)
        return rewrite_from_results(
            self, decoder_results, target_class, increase_target_probabilities, output_dir, layout
        )

    def modify_model(
        self,
        decoder_results: dict | None = None,
        target_class: str | None = None,
        increase_target_probabilities: bool = True,
        run_dir: str | Path | RunLayout | None = None,
    ):
        """The base model at the selected decoder point of ``target_class``: rewritten weights
        (gradient signals) or a ``HookedModel`` (activation signals; ``save_pretrained_modified``
        saves it, ``gradiend.load_modified_model`` reloads it)."""
        return modify_model(
            self, decoder_results, target_class, increase_target_probabilities, run_dir
        )

    def intervene(self, value: float = 1.0, part: str = "decoder", strength: float = 1.0):
        """Context manager: within it the model carries ``strength · decoder(value)`` (weights or
        hooks); on exit, also after an exception, it is restored bit for bit."""
        return self.steer(feature_factor=value, strength=strength, part=part)

    # ------------------------------------------------------------------ pruning / top-k
    def prune_gradiend(
        self,
        mask: torch.Tensor | None = None,
        topk: int | float | None = None,
        threshold: float | None = None,
        part: str | None = None,
        inplace: bool = True,
        return_mask: bool = False,
    ):
        """Prune the GRADIEND (see ``GradiendModel.prune``); the base model is untouched."""
        pruned, keep = self.gradiend.prune(
            mask, topk, threshold, part, inplace=False, return_mask=True
        )
        target = self if inplace else ModelWithGradiend(self.lm, pruned)
        if inplace:
            self.gradiend = pruned
            self.grads.set_indices(pruned.indices)
        return (target, keep) if return_mask else target

    def get_prune_mask(self, topk=None, threshold=None, part: str | None = None) -> torch.Tensor:
        """Boolean keep-mask over the current dimensions, without pruning."""
        return self.gradiend.prune(None, topk, threshold, part, inplace=False, return_mask=True)[1]

    def get_topk_weights(self, part: str | None = None, topk: int | float = 1000) -> torch.Tensor:
        """Base-global indices of the top dimensions, most important first."""
        return self.gradiend.get_topk_weights(part, topk)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        return self.gradiend.save_pretrained(path)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the GRADIEND (not the base model) with its card; see
        ``GradiendModel.push_to_hub``."""
        return self.gradiend.push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        base_model=None,
        device: str | torch.device | None = None,
        *,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        **load_kwargs,
    ) -> ModelWithGradiend:
        """Load a GRADIEND (a folder or a hub id, see ``GradiendModel.from_pretrained``) and its
        base model (by the recorded id/path unless ``base_model``).

        ``device`` places the base model (when it is loaded here) and the GRADIEND; by default
        CUDA when available. ``load_kwargs`` go to ``load_base_model`` (``torch_dtype``,
        ``device_map``, ``max_memory``, …); ``cache_dir`` and ``token`` to the hub download.
        """
        gradiend = GradiendModel.from_pretrained(path, cache_dir=cache_dir, token=token)
        warn_if_unconverged(getattr(gradiend, "source_dir", None))
        if base_model is None:
            base_model = gradiend.metadata.get("base_model")
            if not base_model:
                raise ValueError(f"{path} records no base model; pass base_model=")
        if isinstance(base_model, BaseLM):
            lm = base_model
        else:
            if "device_map" not in load_kwargs:
                load_kwargs["device"] = device
            lm = load_base_model(base_model, **load_kwargs)
        gradiend.to(gradiend_device(lm.model, device))
        pmap = _model_map(lm, gradiend)
        if pmap != gradiend.param_map:
            raise ValueError(
                "the base model's parameters do not match the GRADIEND's parameter map; "
                "is it the same architecture and checkpoint?"
            )
        objective = None
        if gradiend.metadata.get("prediction_objective") == "clm_mlm_head":
            head = MLMHead.from_pretrained(Path(gradiend.source_dir) / MLM_HEAD)
            mask = gradiend.metadata.get("mask", "[MASK]")
            objective = make_objective("clm_mlm_head", lm.kind, lm.tokenizer, mask, head=head)
        return cls(lm, gradiend, objective=objective)


def _model_map(lm: BaseLM, gradiend: GradiendModel) -> ParamMap:
    """The base model's own map for this GRADIEND: its parameters, or (for an activation
    signal) the same sites with the model's widths."""
    saved = gradiend.param_map
    if not isinstance(saved, SiteMap):
        return ParamMap.from_model(lm.model, gradiend.metadata.get("params"))
    try:
        widths = site_widths(lm.model, saved.sites)
    except AttributeError as err:  # a site the model does not have
        raise ValueError(
            f"the base model lacks an activation site of the GRADIEND: {err}"
        ) from None
    return SiteMap.for_sites(saved.sites, widths, saved.signal)


def check_parts(lm: Any, gradiend: Any) -> None:
    """``ModelWithGradiend(lm, gradiend)`` gets a loaded base model and a GRADIEND, in order."""
    if isinstance(lm, GradiendModel) and not isinstance(gradiend, GradiendModel):
        raise TypeError(
            f"ModelWithGradiend(lm, gradiend) got the GRADIEND first ({type(lm).__name__}, "
            f"{type(gradiend).__name__}): pass the base model first, ModelWithGradiend(lm, "
            "gradiend), or load both with ModelWithGradiend.from_pretrained(gradiend_folder, "
            "base_model=(model, tokenizer))"
        )
    if not isinstance(gradiend, GradiendModel):
        raise TypeError(
            "ModelWithGradiend's second argument must be a GradiendModel (e.g. "
            f"GradiendModel.from_pretrained(folder)); got a {type(gradiend).__name__}"
        )
    if not isinstance(lm, BaseLM):
        raise TypeError(
            "ModelWithGradiend's first argument must be the base model as a BaseLM "
            f"(load_base_model((model, tokenizer)) of gradiend.lm.loading); got a "
            f"{type(lm).__name__}. A (model, tokenizer) pair can also go to "
            "ModelWithGradiend.from_pretrained(gradiend_folder, base_model=(model, tokenizer))"
        )


def jvp_encode(
    gradiend: GradiendModel,
    grads: GradientComputer,
    items: list[Item],
    kind: str,
    batch_size: int = 32,
    progress: bool = False,
    split: bool = False,
    desc: str = "encoding examples",
) -> torch.Tensor:
    """``act_e(W_e · ∇L_i + b_e)`` for every item without a per-item backward pass: one JVP
    pass per batch and latent unit (``grads`` must use the GRADIEND's index space). ``split``:
    batch ``k`` on rank ``k % world`` (same batches as one process), gathered on every rank."""
    w, b = gradiend.W_e.detach(), gradiend.b_e.detach()
    out = encode_batches(
        w, b, gradiend.encoder[1], grads, items, kind, batch_size, progress, split, desc=desc
    )
    return out if out is not None else torch.zeros(0, gradiend.latent_dim, device=w.device)


def encode_batches(
    w: torch.Tensor,
    b: torch.Tensor,
    act: torch.nn.Module,
    grads: GradientComputer,
    items: list[Item],
    kind: str,
    batch_size: int,
    progress: bool = False,
    split: bool = False,
    everyone: bool = True,
    desc: str = "encoding examples",
) -> torch.Tensor | None:
    """The encoder ``act(w · ∇L_i + b)`` of :func:`jvp_encode` from its raw weights; with
    ``split`` the batches are spread over the ranks and gathered (on rank 0 only when not
    ``everyone``; ``None`` elsewhere and for no items)."""
    starts = list(range(0, len(items), batch_size))
    split = split and dist.is_distributed()
    mine = dist.shard(range(len(starts))) if split else range(len(starts))

    def encode() -> dict[int, torch.Tensor]:
        out = {}
        for k in tqdm(mine, desc=desc, disable=not progress):
            chunk = items[starts[k] : starts[k] + batch_size]
            pre = torch.stack(
                [grads.directional(chunk, kind, w[r]) for r in range(w.shape[0])], dim=1
            )
            out[k] = act(pre.to(w.device, w.dtype) + b)
        return out

    if split:
        local = dist.everywhere(lambda: {k: v.cpu() for k, v in encode().items()}, "encoding")
        parts = dist.gather_in_order(local, len(starts), "encodings", everyone)
        out = [v.to(w.device) for v in parts]
        if not everyone and not dist.is_main():
            return None
    else:
        done = encode()
        out = [done[k] for k in range(len(starts))]
    return torch.cat(out) if out else None


def load_context(path: str | Path) -> dict:
    """The small JSON context saved beside a GRADIEND (``gradiend_context.json``: source,
    target, classes, encoding direction), else the metadata in its ``config.json``."""
    folder = find_model_dir(path)
    context = read_json(folder / CONTEXT) if (folder / CONTEXT).is_file() else None
    if isinstance(context, dict) and context.get("target_classes"):
        return context
    return read_json(folder / MODEL_CONFIG).get("metadata", {})

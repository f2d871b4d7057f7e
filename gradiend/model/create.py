"""``create_model_with_gradiend``: a base model paired with a new, untrained GRADIEND (gradiend
0.2.3's name), for code that trains or inspects a GRADIEND outside ``TextPredictionTrainer``.

The trainer builds the same pair itself (base model, objective, parameter map, a GRADIEND
initialised from the seed); this gives it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from gradiend.lm.devices import gradiend_device as place_gradiend
from gradiend.lm.devices import resolve_dtype
from gradiend.lm.gradients import KINDS
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import MASK, make_objective
from gradiend.lm.params import ParamMap
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

__all__ = ["create_model_with_gradiend"]


def create_model_with_gradiend(
    model: Any,
    params: Sequence[str] | None = None,
    latent_dim: int = 1,
    *,
    tokenizer: Any = None,
    prediction_objective: str = "auto",
    mask: str = MASK,
    source: str = "alternative",
    target: str = "diff",
    activation_encoder: str = "tanh",
    activation_decoder: str = "id",
    bias_decoder: bool = True,
    seed: int | None = 0,
    torch_dtype: Any = None,
    gradiend_dtype: Any = "float32",
    device: str | torch.device | None = None,
    gradiend_device: str | torch.device | None = None,
) -> ModelWithGradiend:
    """A ``ModelWithGradiend`` over ``model`` with a freshly initialised ``GradiendModel`` whose
    input is the gradient over the parameters ``params`` select (``gradiend.input_dim`` is their
    number of scalars).

    Args:
        model: A hub id or folder, a loaded model (with ``tokenizer``), a ``(model, tokenizer)``
            pair or a loaded ``BaseLM``.
        params: Names or ``*`` patterns (as ``TrainingArguments.params``); default: the
            objective's choice, else every backbone parameter.
        latent_dim: Latent units of the GRADIEND.
        tokenizer: The tokenizer of a loaded ``model``.
        prediction_objective: As ``TrainingArguments.prediction_objective`` (not
            ``"clm_mlm_head"``, which needs a head the trainer trains).
        mask: The mask string of the rows the model will see.
        source: Recorded as the encoder's gradient (0.2.3's default was ``"factual"``; this is
            the trainer's); ``target``: as the decoder's.
        activation_encoder: The encoder's activation (``activation_decoder``, ``bias_decoder``:
            the decoder's activation and bias).
        seed: Seeds torch before the weights are drawn (``None``: the current state).
        torch_dtype: dtype of a base model loaded here (``gradiend_dtype``: of the GRADIEND).
        device: Device of a base model loaded here (default: CUDA when available);
            ``gradiend_device``: of the GRADIEND (default: the base model's last device).
    """
    lm, objective = _base_and_objective(model, tokenizer, prediction_objective, mask, source,
                                        target, torch_dtype, device)  # fmt: skip
    patterns = list(params) if params else objective.default_params(lm.model)
    pmap = ParamMap.from_model(lm.model, patterns)
    if pmap.numel == 0:
        raise ValueError(f"params={patterns!r} select no parameter of {lm.source}")
    logger.info("new GRADIEND over %d parameters of %s", pmap.numel, lm.source)
    meta = {"base_model": lm.source if isinstance(model, str) else None, "kind": lm.kind,
            "prediction_objective": objective.name, "params": patterns, "source": source,
            "target": target, "mask": mask}  # fmt: skip
    if seed is not None:
        torch.manual_seed(seed)  # drawn on the CPU: the same weights on every device
    arch = {"activation_encoder": activation_encoder, "activation_decoder": activation_decoder,
            "bias_decoder": bias_decoder}  # fmt: skip
    dtype = resolve_dtype(gradiend_dtype, "gradiend_dtype")
    gradiend = GradiendModel(pmap.numel, latent_dim, torch_dtype=dtype, param_map=pmap, **arch,
                             **meta).to(place_gradiend(lm.model, gradiend_device))  # fmt: skip
    return ModelWithGradiend(lm, gradiend, objective=objective)


def _base_and_objective(model, tokenizer, name, mask, source, target, torch_dtype, device):
    """The loaded base model and its objective, after the cheap checks."""
    for what, kind in (("source", source), ("target", target)):
        if kind not in KINDS:
            raise ValueError(f"{what}={kind!r}: choose one of {list(KINDS)}")
    if name == "clm_mlm_head":
        raise ValueError(
            "prediction_objective='clm_mlm_head' needs a trained MLM head: train with "
            "TextPredictionTrainer (it trains the head), or choose 'clm_next_token'"
        )
    lm = load_base_model(model, tokenizer, torch_dtype=torch_dtype, device=device)
    return lm, make_objective(name, lm.kind, lm.tokenizer, mask=mask)

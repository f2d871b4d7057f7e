"""The GRADIEND's optimiser: AdamW, Adam or SGD, an encoder and a decoder learning rate, and the
per-step gradient norms of both halves (``training.json``'s diagnostics).

The decoder may learn at its own rate (``TrainingArguments.learning_rate_decoder``): a float, or
``"auto"``, the *reachability floor* — the decoder weights must travel from their small initial
values to about the target gradients' size (``|h| ≈ 1`` after ``tanh``), and an Adam-type step
moves each weight by about the learning rate, so the rate that reaches that distance in a
quarter of the run is ``4 · rms(target) / steps``; ``"auto"`` takes the larger of that and the
encoder's rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from gradiend.model.gradiend import GradiendModel

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "adam", "sgd")
AUTO = "auto"
# the decoder reaches the target's scale within 1/REACH of the run under "auto"
REACH = 4.0
# cached batches read to measure the target's scale for "auto"
AUTO_BATCHES = 8


def make_optimizer(
    model: GradiendModel,
    optim: str,
    learning_rate: float,
    weight_decay: float = 0.01,
    adam_epsilon: float = 1e-8,
    learning_rate_decoder: float | None = None,
) -> torch.optim.Optimizer:
    """The optimiser of ``model``: one parameter group for the encoder, one for the decoder
    (at ``learning_rate_decoder``, or the encoder's rate when ``None``)."""
    groups = [
        {"params": list(model.encoder.parameters()), "lr": learning_rate},
        {
            "params": list(model.decoder.parameters()),
            "lr": learning_rate if learning_rate_decoder is None else learning_rate_decoder,
        },
    ]
    if optim == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate, weight_decay=weight_decay)
    if optim not in ("adamw", "adam"):
        raise ValueError(f"optim={optim!r} is not known: pass one of {', '.join(OPTIMIZERS)}")
    cls = torch.optim.AdamW if optim == "adamw" else torch.optim.Adam
    return cls(groups, lr=learning_rate, eps=adam_epsilon, weight_decay=weight_decay)


def grad_norms(model: GradiendModel) -> torch.Tensor:
    """``[‖∇ encoder‖, ‖∇ decoder‖]`` of the current step, on the device (no host sync)."""
    out = []
    for part in (model.encoder, model.decoder):
        grads = [
            p.grad.detach().float().pow(2).sum() for p in part.parameters() if p.grad is not None
        ]
        out.append(
            torch.stack(grads).sum().sqrt() if grads else torch.zeros((), device=model.W_e.device)
        )
    return torch.stack(out)


def split_norms(losses: Sequence[dict]) -> tuple[list[dict], dict]:
    """The loop's loss records without their gradient norms, and the norms as
    ``encoder_grad_norms``, ``decoder_grad_norms`` and ``decoder_over_encoder_grad_ratio`` (one
    entry per optimiser step, at ``grad_norm_steps``), as ``training.json`` keeps them."""
    keys = ("encoder_grad_norm", "decoder_grad_norm")
    rows = [r for r in losses if keys[0] in r]
    enc = [r[keys[0]] for r in rows]
    dec = [r[keys[1]] for r in rows]
    ratio = [d / e if e > 0 else None for e, d in zip(enc, dec, strict=True)]
    plain = [{k: v for k, v in r.items() if k not in keys} for r in losses]
    return plain, {
        "grad_norm_steps": [r["step"] for r in rows],
        "encoder_grad_norms": enc,
        "decoder_grad_norms": dec,
        "decoder_over_encoder_grad_ratio": ratio,
    }


def decoder_rate(value: float | str | None, learning_rate: float, batches, steps: int):
    """The decoder's learning rate: ``None`` (the encoder's), a float, or ``"auto"`` (the
    reachability floor of the module docstring, measured on the first cached batches)."""
    if value is None or value != AUTO:
        return value
    n = min(len(batches), AUTO_BATCHES)
    if n == 0:
        return learning_rate
    sq = sum(float(batches[i][1].float().pow(2).mean()) for i in range(n)) / n
    floor = REACH * math.sqrt(sq) / max(1, steps)
    rate = max(learning_rate, floor)
    logger.info(
        "learning_rate_decoder='auto': %.3g (reachability floor %.3g over %d steps, encoder %.3g)",
        rate, floor, steps, learning_rate,
    )  # fmt: skip
    return rate

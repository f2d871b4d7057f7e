"""Importance of a GRADIEND's input dimensions: one signed weight table per ranking ``part``.

Each part in ``PARTS`` is defined once, in ``_WEIGHTS``, as the signed weights of every input
dimension per latent unit (``[input_dim, latent_dim]``) and an optional per-dimension divisor.
The importance of a dimension is the absolute weight summed over the latent units, the signed
vector that of the first latent unit, both divided by the divisor (``snr``: ``√(F + ε)``).
``fit_decoder`` computes the least-squares decoder behind ``decoder-fit`` and ``snr``;
``normalised_fisher`` checks the neutral texts' Fisher behind ``snr``.

The default is ``snr`` when the model knows its neutral gradient scale, else ``decoder-fit``.
``decoder-fit`` is |least-squares decoder|, the decoder that the MSE objective converges to for
the trained encoder, ``cov(h, t_d) / var(h)`` over the training batches (``fit_importance``). Adam
moves every coordinate with a consistent gradient sign by about the same step, so the top of
|W_d| is flat and which dimensions come first is decided by the initialisation and data order;
the fitted decoder ranks the same dimensions by how strongly the feature's gradients move them.
``snr`` divides it by the root mean square of neutral texts' gradients in each dimension (``√F``,
the diagonal Fisher; ``set_neutral_scale``): the feature's signal over the dimension's
sensitivity to any text, i.e. where the feature lives rather than where every text moves the
model (``docs/pruning.md`` has the measurements). ``decoder-weight`` (|W_d|, the incumbent's)
stays.

Rankings look at one ``region`` of the dimensions (``gradiend.model.word_rows``): by default the
``rest``, i.e. everything but the feature tokens' own embedding rows, which otherwise take the
top of every ranking; ``topk_indices`` ranks inside a region.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from gradiend.model.word_rows import DEFAULT_REGION, region_positions

if TYPE_CHECKING:
    from gradiend.model.gradiend import GradiendModel

logger = logging.getLogger(__name__)

DEFAULT_PART = None  # snr when the neutral scale is known, else decoder-fit (resolve_part)
SNR_EPS = 1e-6  # added to F (mean 1) so a dimension no neutral text moves gets a finite score

# (signed weights [input_dim, latent_dim], divisor [input_dim] or None) of a model
Weights = tuple[torch.Tensor, torch.Tensor | None]


def bias(model: GradiendModel) -> torch.Tensor:
    """The decoder bias, zeros when the decoder has none."""
    if model.b_d is not None:
        return model.b_d
    return torch.zeros(model.input_dim, dtype=model.W_d.dtype, device=model.W_d.device)


def neutral_rms(model: GradiendModel) -> torch.Tensor:
    """Root mean square of the neutral texts' gradient per dimension, ``√(F + ε)``."""
    return torch.sqrt(model.neutral_fisher.float() + SNR_EPS).to(model.decoder_fit.device)


_WEIGHTS: dict[str, Callable[[GradiendModel], Weights]] = {
    "snr": lambda m: (m.decoder_fit, neutral_rms(m)),
    "decoder-fit": lambda m: (m.decoder_fit, None),
    "decoder-weight": lambda m: (m.W_d, None),
    "encoder-weight": lambda m: (m.W_e.T, None),
    "decoder-bias": lambda m: (bias(m)[:, None], None),
    "decoder-sum": lambda m: ((m.W_d.sum(dim=1) + bias(m))[:, None], None),
}
PARTS = tuple(_WEIGHTS)  # snr, decoder-fit, decoder-weight, encoder-weight, decoder-bias, …-sum


def resolve_part(model: GradiendModel, part: str | None) -> str:
    """``part`` itself, or the default ranking: ``snr`` when the neutral scale is known, else
    ``decoder-fit``, else ``decoder-weight`` (no fitted decoder, e.g. built by hand)."""
    if part is None:
        part = "snr" if model.neutral_fisher is not None else "decoder-fit"
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {PARTS}")
    if part == "snr" and model.neutral_fisher is None:
        raise ValueError(
            "part='snr' needs the neutral texts' gradient scale: train with "
            "eval_neutral_data (TrainingArguments.importance_neutral_texts > 0) or call "
            "set_neutral_scale(fisher)"
        )
    if part in ("snr", "decoder-fit") and model.decoder_fit is None:
        if not model._warned_no_fit:
            logger.warning(
                "this GRADIEND has no fitted decoder (trained before it was recorded, or "
                "built by hand): ranking by |W_d| ('decoder-weight'); call "
                "fit_importance(batches) to rank by 'decoder-fit'"
            )
            model._warned_no_fit = True
        return "decoder-weight"
    return part


@torch.no_grad()
def importance(model: GradiendModel, part: str | None = None) -> torch.Tensor:
    """Importance of every input dimension for ``part``: |weights| summed over latent units."""
    weights, divisor = _WEIGHTS[model.resolve_part(part)](model)
    out = weights.abs().sum(dim=1).float()
    return out if divisor is None else out / divisor


@torch.no_grad()
def weight_vector(model: GradiendModel, part: str = "encoder-weight") -> torch.Tensor:
    """Signed weights of ``part`` per input dimension (first latent unit)."""
    weights, divisor = _WEIGHTS[model.resolve_part(part)](model)
    out = weights[:, 0].float()
    return out.clone() if divisor is None else out / divisor


def resolve_k(topk: int | float, n: int) -> int:
    """``topk`` as a count out of ``n``: an int as it is (at most ``n``), a float a fraction of
    ``n`` rounded up (at least 1 when ``n`` > 0)."""
    if isinstance(topk, float):
        if not 0 < topk <= 1:
            raise ValueError(f"a fractional topk must be in (0, 1], got {topk}")
        return max(min(1, n), min(n, math.ceil(topk * n)))
    if topk < 1:
        raise ValueError(f"topk must be ≥ 1, got {topk}")
    return min(int(topk), n)


@torch.no_grad()
def topk_indices(
    model: GradiendModel,
    part: str | None = None,
    topk: int | float = 1000,
    global_indices: bool = True,
    region: str = DEFAULT_REGION,
) -> torch.Tensor:
    """The ``topk`` most important dimensions of ``region`` by ``part``, most important first;
    base-global indices (or local positions). A fractional ``topk`` is of the region's size."""
    scores = importance(model, part)
    positions = region_positions(model, region)
    if positions is None:
        local = torch.topk(scores, resolve_k(topk, len(scores))).indices.cpu()
    else:
        k = resolve_k(topk, len(positions))
        local = positions[torch.topk(scores[positions.to(scores.device)], k).indices.cpu()]
    return model.global_indices()[local] if global_indices else local


@torch.no_grad()
def fit_decoder(
    model: GradiendModel, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor | None:
    """The least-squares decoder ``cov(t, h) · var(h)⁻¹`` of ``(source, target)`` batches for the
    model's encoder, ``[input_dim, latent_dim]``; None when the encodings do not vary."""
    dev = model.W_e.device
    hs: list[torch.Tensor] = []
    sum_th = torch.zeros(model.input_dim, model.latent_dim, dtype=torch.float64, device=dev)
    sum_t = torch.zeros(model.input_dim, dtype=torch.float64, device=dev)
    for s, t in batches:  # one pass: batches may be recomputed on access
        h = model.encode(s.to(dev)).reshape(-1).double()
        t = t.to(dev).reshape(-1).double()
        sum_th.addr_(t, h)
        sum_t.add_(t)
        hs.append(h)
    h = torch.stack(hs) if hs else torch.zeros(0, model.latent_dim, dtype=torch.float64)
    hc = h - h.mean(dim=0)
    gram = hc.T @ hc
    if len(h) < 2 or float(torch.linalg.matrix_norm(gram)) < 1e-12:
        logger.warning("encodings of the training batches do not vary: no decoder fitted")
        return None
    cross = sum_th - torch.outer(sum_t, h.mean(dim=0))  # Σ_b t_b (h_b − h̄)ᵀ
    return (cross @ torch.linalg.pinv(gram)).float()


def normalised_fisher(fisher: torch.Tensor, input_dim: int) -> torch.Tensor:
    """The neutral texts' diagonal Fisher as a flat float vector of mean 1 (checked: one finite,
    non-negative entry per input dimension; an all-zero ``F`` stays zero)."""
    fisher = fisher.detach().float().reshape(-1)
    if len(fisher) != input_dim:
        raise ValueError(f"fisher has {len(fisher)} entries, the model has {input_dim}")
    if not bool(torch.isfinite(fisher).all()) or bool((fisher < 0).any()):
        raise ValueError("fisher must be finite and non-negative")
    mean = float(fisher.mean())
    return fisher / mean if mean > 0 else fisher

"""Post-pruning that keeps what it reports: slice, re-fit the encoder, measure again.

Slicing a trained GRADIEND to its top dimensions drops the dropped dimensions' share of every
encoder pre-activation, so the class means shrink towards 0 (on SmolLM2 ±0.997 became about
±0.7). After the slice the encoder is re-fitted by a rescale: the weighted sum of the pruned
encoder on the cached training batches is regressed onto the unpruned one through the origin,
``w_e·s ≈ a·(w_e[kept]·s[kept])``, and ``w_e[kept] ← a·w_e[kept]`` (closed form, one number).
The bias is kept: a bias fitted to the two classes' (saturated, asymmetric) pre-activations moved
neutral encodings far from 0 (SmolLM2 demo: −0.09 / 0.02 became 0.37 / 0.54). The decoder is
not touched. The validation
summary of the unpruned, the sliced and the re-fitted model is returned for ``training.json``.

Post-pruning ranks every dimension (``region="all"``), the feature words' own embedding rows
included: they carry the trained words themselves and a rewrite needs them, so they are kept
when they rank high. The views that ask *where* the feature lives (``get_topk_weights``,
localisation, ``compare``) rank the ``rest`` by default (``gradiend.model.word_rows``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.arguments import PostPruneConfig

logger = logging.getLogger(__name__)

REGION = "all"  # post-pruning keeps the most important dimensions overall, word rows included
_SUMMARY_KEYS = ("correlation", "mean_by_class", "std_by_class", "n_by_class")


def lifted(model: GradiendModel, positions: torch.Tensor, dim: int) -> GradiendModel:
    """The pruned model's encoder over the ``dim``-dimensional space it was pruned from (zeros
    at dropped positions), so an evaluator of that space encodes it exactly as pruned."""
    big = GradiendModel(
        dim,
        model.latent_dim,
        model.activation_encoder,
        model.activation_decoder,
        bias_decoder=False,
        torch_dtype=model.W_e.dtype,
    ).to(model.W_e.device)
    with torch.no_grad():
        big.W_e.zero_()
        big.W_e[:, positions.to(model.W_e.device)] = model.W_e
        big.b_e.copy_(model.b_e)
    return big


def pre_activations(model: GradiendModel, sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """``w_e · s`` (first latent unit, no bias) of each source gradient."""
    w = model.W_e[0].detach()
    with torch.no_grad():
        return torch.stack([s.to(w.device, w.dtype) @ w for s in sources]).double()


def refit_scale(full: torch.Tensor, pruned: torch.Tensor) -> float:
    """Least-squares ``a`` with ``full ≈ a·pruned`` (through the origin); 1 when degenerate."""
    var = float(pruned @ pruned)
    if var <= 0.0 or not torch.isfinite(pruned).all():
        return 1.0
    return float(pruned @ full) / var


def post_prune(
    model: GradiendModel,
    cfg: PostPruneConfig,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    evaluate: Callable[[GradiendModel], dict] | None = None,
    refit: bool = True,
    mask: torch.Tensor | None = None,
    before: dict | None = None,
) -> dict:
    """Prune ``model`` in place by ``cfg`` (or exactly to ``mask``) and re-fit its encoder;
    return the record.

    ``batches`` are the cached ``(source, target)`` training gradients in the model's current
    (unpruned) index space; ``evaluate`` gives a validation summary of a model of that space;
    ``before`` is the unpruned model's summary when already known (else it is evaluated).
    """
    before_dim = model.input_dim
    sources = [b[0] for b in batches]
    with torch.no_grad():
        full = pre_activations(model, sources)
    record: dict = {
        "part": model.resolve_part(cfg.part),
        "region": REGION,
        "topk": cfg.topk,
        "threshold": cfg.threshold,
        "dims_before": before_dim,
    }
    if before is not None:
        record["before"] = _summary(before)
    elif evaluate is not None:
        record["before"] = _summary(evaluate(model))
    if mask is None:
        _, keep = model.prune(
            topk=cfg.topk, threshold=cfg.threshold, part=cfg.part, return_mask=True
        )
    else:
        _, keep = model.prune(mask=mask, return_mask=True)
    positions = keep.nonzero().squeeze(1)
    record["dims_after"] = model.input_dim
    logger.info("post-pruning keeps %d of %d dimensions", model.input_dim, before_dim)
    if evaluate is not None:
        record["sliced"] = _summary(evaluate(lifted(model, positions, before_dim)))
    if refit:
        kept = [s[positions.to(s.device)] for s in sources]
        a = refit_scale(full, pre_activations(model, kept))
        with torch.no_grad():
            model.W_e.mul_(a)
        record["refit"] = {"method": "rescale", "scale": a, "bias": float(model.b_e[0].detach())}
        logger.info("post-pruning re-fit the encoder: w_e × %.3f (bias kept)", a)
        if evaluate is not None:
            record["after"] = _summary(evaluate(lifted(model, positions, before_dim)))
    elif "sliced" in record:
        record["after"] = record["sliced"]
    return record


def _summary(stats: dict) -> dict:
    return {k: stats[k] for k in _SUMMARY_KEYS if k in stats}

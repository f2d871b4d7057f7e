"""Supervised baselines, a custom loss and a custom evaluation, on the same cached gradients.

The GRADIEND itself is unsupervised: it reconstructs the target gradient from the source
gradient and never sees a label. Its baselines (``TrainingArguments.supervised_encoder`` /
``supervised_decoder``) use the labels of the cached batches (+1: the batch pushes towards
``target_classes[0]``, −1: towards the other class, 0: identity) and nothing else changes:

* **encoder**: ``criterion(encoder(s), label)`` (MSE by default) trained with the run's
  optimiser, steps and validation; the decoder keeps its initial weights.
* **decoder**: ``decoder(label) ≈ t`` solved exactly by least squares per dimension
  (``W_d = cov(label, t) / var(label)``, ``b_d = mean(t) − W_d·mean(label)``): the optimum that
  training the same MSE heads towards, in one pass over the cache and without a learning
  rate. Alone, the encoder keeps its initial weights (so the run does not converge: there is
  no encoder to judge); with ``supervised_encoder`` both parts are supervised. When the
  encoder's validation correlation is negative the fitted ``W_d`` is negated, so that after
  the seeds' orientation (``flip_sign``) ``decoder(+1)`` is still the fit at label +1.

``LoopVariant.fit`` has the signature of ``trainer.loop.train_loop``, which it calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.loop import LoopResult, train_loop

logger = logging.getLogger(__name__)

__all__ = ["LabeledBatches", "LoopVariant", "fit_decoder", "loop_variant"]


class LabeledBatches(Sequence):
    """``(source, label)`` per cached batch: the encoder baseline's inputs and targets."""

    def __init__(self, batches: Sequence, labels: Sequence[float], latent_dim: int = 1):
        if len(labels) != len(batches):
            raise ValueError(f"{len(labels)} labels for {len(batches)} gradient batches")
        self.batches, self.latent_dim = batches, latent_dim
        self.labels = [torch.full((latent_dim,), float(v)) for v in labels]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[i][0], self.labels[i]


@torch.no_grad()
def fit_decoder(model: GradiendModel, batches: Sequence, labels: Sequence[float]) -> float:
    """Set the decoder to the least-squares fit of the targets on the labels; its MSE."""
    if model.latent_dim != 1 or model.b_d is None:
        raise ValueError(
            "the supervised decoder baseline needs latent_dim=1 and a decoder bias "
            "(bias_decoder=True)"
        )
    if not isinstance(model.decoder[-1], torch.nn.Identity):
        raise ValueError("the supervised decoder baseline needs activation_decoder='id'")
    y = np.asarray(labels, dtype=np.float64)
    if np.unique(y).size < 2:
        raise ValueError(
            "the supervised decoder baseline needs batches of two label values; the cached "
            f"batches all have label {y[0] if y.size else None}"
        )
    dev = model.W_d.device
    ybar = float(y.mean())
    t_sum = torch.zeros(model.W_d.shape[0], dtype=torch.float64, device=dev)
    cov = torch.zeros_like(t_sum)
    for (_, t), v in zip(batches, y):
        t = t.to(dev, torch.float64)
        t_sum += t
        cov += (v - ybar) * t
    w = cov / float(((y - ybar) ** 2).sum())
    b = t_sum / len(y) - w * ybar
    model.W_d.copy_(w.reshape(model.W_d.shape).to(model.W_d.dtype))
    model.b_d.copy_(b.to(model.b_d.dtype))
    err = sum(
        float(((w * v + b - t.to(dev, torch.float64)) ** 2).mean()) for (_, t), v in zip(batches, y)
    )
    return err / len(y)


@dataclass(frozen=True)
class LoopVariant:
    """What the run changes about the loop: the loss, a custom evaluation, the baselines."""

    criterion: Callable | None = None
    evaluate_fn: Callable | None = None
    supervised_encoder: bool = False
    supervised_decoder: bool = False
    labels: tuple[float, ...] = ()  # the label of each cached batch, in batch order

    def fit(self, model: GradiendModel, batches: Sequence, evaluate: Callable, **kwargs: Any):
        """``train_loop(model, batches, evaluate, **kwargs)`` with this variant applied."""
        evaluate = self._evaluate(evaluate)
        loss = self.criterion or torch.nn.functional.mse_loss
        if self.supervised_encoder:
            inputs = LabeledBatches(batches, self.labels, model.latent_dim)
            res = train_loop(
                model, inputs, evaluate, objective=lambda m, s, y: loss(m.encode(s), y), **kwargs
            )
        elif self.supervised_decoder:
            res = self._decoder_only(model, evaluate)
        else:
            res = train_loop(
                model, batches, evaluate, objective=lambda m, s, t: loss(m(s), t), **kwargs
            )
        if self.supervised_decoder:
            mse = fit_decoder(model, batches, self.labels)
            if res.best["correlation"] < 0:  # the seeds' flip negates W_d: pre-negate it
                with torch.no_grad():
                    model.W_d.neg_()
            res.losses.append({"step": res.best_step, "loss": mse, "supervised_decoder": True})
            logger.info("supervised decoder baseline: least-squares fit, MSE %.3g", mse)
        return res

    def _evaluate(self, evaluate: Callable) -> Callable:
        if self.evaluate_fn is None:
            return evaluate

        def with_custom(model: GradiendModel) -> dict:
            summary = evaluate(model)
            summary["evaluate_fn"] = self.evaluate_fn(model)
            return summary

        return with_custom

    def _decoder_only(self, model: GradiendModel, evaluate: Callable) -> LoopResult:
        """The encoder keeps its initial weights, oriented so that its validation correlation
        is not negative (the seeds' orientation flip would otherwise negate the decoder)."""
        model.eval()
        with torch.no_grad():
            summary = evaluate(model)
            if summary["correlation"] < 0:
                model.W_e.neg_()
                model.b_e.neg_()
                summary = evaluate(model)
        best = {"step": 0, **summary}
        return LoopResult(model, 0, best, [best], [])


def loop_variant(args: Any, batch_rows: Sequence[Sequence[int]], labels: np.ndarray):
    """The run's ``LoopVariant`` (``None`` when it trains the plain GRADIEND): ``batch_rows``
    are the training rows of each cached batch, ``labels`` the training rows' labels."""
    if not (
        args.criterion or args.evaluate_fn or args.supervised_encoder or args.supervised_decoder
    ):
        return None
    per_batch = tuple(float(np.mean(labels[list(rows)])) for rows in batch_rows)
    return LoopVariant(
        criterion=args.criterion,
        evaluate_fn=args.evaluate_fn,
        supervised_encoder=args.supervised_encoder,
        supervised_decoder=args.supervised_decoder,
        labels=per_batch,
    )

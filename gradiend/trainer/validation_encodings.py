"""Validation encodings during training: the held-out rows' encodings under the current
GRADIEND, by the cheapest way that fits.

When the per-row validation gradients fit in memory they are computed once and every evaluation
is a matrix product; otherwise each evaluation encodes the rows by JVP passes. Under
``torch.distributed`` rank 0 trains and the other ranks *serve* those passes
(:class:`SharedValidation`): at each evaluation rank 0 broadcasts the encoder's weights, every
rank encodes its share of the batches (the one-process batches, so the numbers are the same)
and rank 0 gathers them. When training ends, rank 0 tells the others to stop (and whether it
failed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from gradiend import distributed as dist
from gradiend.evaluator.encoder import class_summary
from gradiend.evaluator.encoder_components import component_summaries
from gradiend.lm.devices import resolve_dtype, storage_device
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.objectives import Item
from gradiend.model.gradiend import GradiendModel
from gradiend.model.split import summary_encoding
from gradiend.model.with_gradiend import encode_batches, jvp_encode
from gradiend.trainer.gradient_data import per_example_matrix

logger = logging.getLogger(__name__)


class SharedValidation:
    """Validation encodings of a GRADIEND, computed by every rank (see module doc)."""

    def __init__(self, computer: GradientComputer, items: list[Item], kind: str, batch_size: int):
        self.computer, self.items, self.kind, self.batch_size = computer, items, kind, batch_size

    def _encode(self, w: torch.Tensor, b: torch.Tensor, act: torch.nn.Module):
        dev = self.computer.device
        return encode_batches(
            w.to(dev), b.to(dev), act, self.computer, self.items, self.kind, self.batch_size,
            split=True, everyone=False,
        )  # fmt: skip

    def encode(self, model: GradiendModel) -> torch.Tensor:
        """Rank 0: ``[n, latent_dim]`` encodings of the validation rows under ``model``."""
        w, b = model.W_e.detach(), model.b_e.detach()
        dist.broadcast(("encode", w.cpu(), b.cpu(), model.encoder[1]), "validation request")
        out = self._encode(w, b, model.encoder[1])
        return out if out is not None else torch.zeros(0, model.latent_dim, device=w.device)

    def serve(self) -> None:
        """Other ranks: encode on request until rank 0 stops; its failure is raised here."""
        while True:
            msg = dist.broadcast(None, "waiting for rank 0 to train the GRADIEND")
            if msg[0] == "stop":
                if msg[1] is not None:
                    raise dist.DistributedError(f"training the GRADIEND failed on rank 0: {msg[1]}")
                return
            _, w, b, act = msg
            try:
                self._encode(w, b, act)
            except Exception as err:  # noqa: BLE001 - rank 0 was told; keep serving its next try
                logger.warning("validation encodings failed on rank %d: %s", dist.rank(), err)

    def stop(self, error: BaseException | None = None) -> None:
        """Rank 0: end the other ranks' :meth:`serve` (with rank 0's error, if any)."""
        text = None if error is None else f"{type(error).__name__}: {error}"
        dist.broadcast(("stop", text), "ending the shared validation")


def train_on_main(fit: Callable[[], None], shared: SharedValidation | None) -> None:
    """Run ``fit`` on rank 0 while the other ranks wait, or serve ``shared``'s validation
    passes; a failure on rank 0 is raised on every rank."""
    if shared is None:
        dist.on_main(fit, "training the GRADIEND")
    elif not dist.is_main():
        shared.serve()
    else:
        try:
            fit()
        except BaseException as err:
            shared.stop(err)
            raise
        shared.stop()


@dataclass(frozen=True)
class ValidationPlan:
    """What the validation callback needs: how the rows are read and the memory it may use."""

    source: str  # the gradient the encoder reads
    batch_size: int
    cache_dtype: str
    cache_max_gb: float
    max_steps: int
    eval_steps: int
    progress: bool = True
    runs: int = 1  # training runs that evaluate on these rows (seeds)
    extra_evals: int = 0  # evaluations beyond the runs' (the learning-rate search's probes)


def validation_evaluator(
    computer: GradientComputer, items: list[Item], labels: np.ndarray, classes, plan: ValidationPlan
) -> tuple[Callable[[GradiendModel], dict], SharedValidation | None]:
    """A callback giving the validation summary of a GRADIEND (matrix product when the
    per-example gradients fit in memory, else a JVP pass per evaluation, shared by the ranks
    under torch.distributed), and the :class:`SharedValidation` the other ranks serve
    (``None`` when there is none)."""
    frame = pd.DataFrame({"label": labels, "type": "training", "factual_class": classes})
    kind = plan.source
    dtype = resolve_dtype(plan.cache_dtype)
    fits = _matrix_fits(computer, items, dtype, plan)
    matrix = None  # on rank 0 only under torch.distributed (the others never evaluate)
    if fits:
        matrix = per_example_matrix(computer, items, kind, plan.batch_size, plan.progress, dtype)
    shared = None
    if not fits and dist.is_distributed():
        shared = SharedValidation(computer, items, kind, plan.batch_size)

    def evaluate(model: GradiendModel) -> dict:
        if matrix is not None:
            # in chunks: the 16-bit matrix is never copied whole to float32
            enc = torch.cat([model.encode(m) for m in matrix.split(8)])
        elif shared is not None:
            enc = shared.encode(model)
        else:
            enc = jvp_encode(model, computer, items, kind, plan.batch_size)
        frame["encoded"] = summary_encoding(enc).detach().float().cpu().numpy()
        summary = class_summary(frame)
        comps = component_summaries(frame, enc, model.component_names)
        return {**summary, "components": comps} if comps else summary

    return evaluate, shared


def _matrix_fits(computer, items, dtype, plan: ValidationPlan) -> bool:
    """Whether the per-row gradients fit (in half the cache budget, on the device) and cost
    fewer passes than the JVP passes of every evaluation; rank 0 decides for all."""
    need = len(items) * computer.dim * (torch.finfo(dtype).bits // 8)
    fits = need <= plan.cache_max_gb * 0.5e9
    fits = fits and storage_device(computer.device, need, "validation gradients") == "device"
    steps = plan.max_steps if plan.max_steps > 0 else 10**9
    n_evals = plan.runs * (steps // plan.eval_steps + 2) + plan.extra_evals
    jvp_passes = n_evals * -(-len(items) // plan.batch_size)
    fits = fits and len(items) <= jvp_passes  # else JVP passes are the cheaper way
    return dist.broadcast(fits, "choosing the validation path")  # rank 0's free memory

"""Validation by JVP passes shared by the ranks while rank 0 trains the GRADIEND.

When the per-row validation gradients do not fit in memory, every evaluation of the training
loop encodes the validation rows by JVP passes. Under ``torch.distributed`` rank 0 trains and
the other ranks *serve*: at each evaluation rank 0 broadcasts the encoder's weights, every rank
encodes its share of the batches (the one-process batches, so the numbers are the same) and
rank 0 gathers them. When training ends, rank 0 tells the others to stop (and whether it failed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from gradiend import distributed as dist
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.objectives import Item
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import encode_batches

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

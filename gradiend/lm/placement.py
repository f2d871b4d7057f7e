"""Where the base model and the GRADIEND go, and in which precision (``TrainingArguments.placement()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gradiend import distributed as dist
from gradiend.lm.devices import gradiend_device
from gradiend.lm.loading import BaseLM, load_base_model


@dataclass(frozen=True)
class Placement:
    """The placement fields of a run (docs/gpu.md); ``base_device`` and ``gradiend_device``
    resolve them, with a torchrun rank's own GPU as the default under a launcher."""

    device: str | None = None
    device_map: str | dict | None = None
    max_memory: dict | None = None
    torch_dtype: str | None = None
    trust_remote_code: bool = False
    gradiend: str | None = None  # force the GRADIEND's device
    encoder_decoder_same_device: bool = False

    def base_device(self) -> Any:
        """The device a base model loaded by name goes to (``None``: the loader's default)."""
        if self.device_map is None and self.device is None:
            return dist.rank_device()  # under torchrun with GPUs: this rank's own GPU
        return self.device

    def load(self, model: Any, tokenizer: Any = None) -> BaseLM:
        """``load_base_model`` with this placement's dtype, device (map) and code trust."""
        return load_base_model(
            model,
            tokenizer,
            self.torch_dtype,
            self.trust_remote_code,
            device=self.base_device(),
            device_map=self.device_map,
            max_memory=self.max_memory,
        )

    def gradiend_device(self, model: torch.nn.Module) -> torch.device:
        """Where the GRADIEND, its optimiser state and (when it fits) the gradient cache live."""
        # under torchrun every GPU belongs to a rank: the GRADIEND stays on this rank's
        same = self.encoder_decoder_same_device or dist.rank_device() is not None
        return gradiend_device(model, self.gradiend, same)

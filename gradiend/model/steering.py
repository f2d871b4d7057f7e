"""Inference-time steering: the decoder's update applied to the live model, undone on exit.

``ModelWithGradiend.steer(target_class=… | feature_factor=…, strength=η)`` adds ``η · decoder(ff)``
to the mapped base parameters for the duration of a ``with`` block — the reversible counterpart of
``rewrite_base_model`` (like peft's merge/unmerge, without saving a new model). The addition is
done in float32 and cast back to each parameter's dtype; the touched entries are copied before and
written back on exit, so the model is restored bit for bit even for bf16/fp16 weights, and even
when the block raises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

logger = logging.getLogger(__name__)


class SteeringMixin:
    """``steer`` / ``generate`` / ``steer_generations`` for ``ModelWithGradiend``.

    Uses the host's ``grads`` (a ``GradientComputer`` over the GRADIEND's index space),
    ``get_update_vector``, ``target_classes``, ``objective``, ``lm`` and ``tokenizer``.
    """

    def steering_factor(
        self, target_class: str | None = None, feature_factor: float | None = None
    ) -> float:
        """The feature factor that strengthens ``target_class`` (+1 for ``target_classes[0]``,
        −1 for ``target_classes[1]``), or ``feature_factor`` as given; exactly one is needed."""
        if (target_class is None) == (feature_factor is None):
            raise ValueError("steer needs exactly one of target_class= or feature_factor=")
        if feature_factor is not None:
            return float(feature_factor)
        classes = list(self.target_classes)
        if target_class not in classes:
            raise ValueError(
                f"unknown target_class {target_class!r}; this GRADIEND's classes are {classes}"
            )
        return 1.0 if target_class == classes[0] else -1.0

    @contextmanager
    def steer(
        self,
        target_class: str | None = None,
        *,
        feature_factor: float | None = None,
        strength: float = 1.0,
        part: str = "decoder",
    ) -> Iterator[torch.nn.Module]:
        """Within the block the base model is ``θ + strength · decoder(ff)``; exactly ``θ`` after.

        ``strength`` is the step size η of the decoder evaluation (its selected
        ``learning_rate`` is a good start); a negative strength pushes the other way.
        """
        if not math.isfinite(float(strength)):
            raise ValueError(f"strength must be a finite number, got {strength!r}")
        ff = self.steering_factor(target_class, feature_factor)
        update = self.get_update_vector(ff, part).float()
        saved = self.grads.snapshot()  # exact copies of every entry that will change
        try:
            self.grads.add_to_params(update, float(strength))  # float32 sum, cast back
            yield self.lm.model
        finally:
            self.grads.restore(saved)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self, prompts: str | Sequence[str], max_new_tokens: int = 20, **generate_kwargs: Any
    ) -> list[str]:
        """Greedy continuations of ``prompts`` by the model as it is now (steered inside a
        ``steer`` block). Masked LMs fill each mask with their top token instead."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.lm.kind == "mlm":
            return [self._fill_masks(p) for p in prompts]
        tok, model = self.tokenizer, self.lm.model
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, return_tensors="pt", padding=True).to(self.lm.device)
        finally:
            tok.padding_side = side
        kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generate_kwargs}
        kwargs.setdefault("pad_token_id", tok.pad_token_id)
        out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        return [t for t in tok.batch_decode(new, skip_special_tokens=True)]

    def _fill_masks(self, prompt: str) -> str:
        tok, model = self.tokenizer, self.lm.model
        text = prompt.replace(self.objective.mask, tok.mask_token)
        enc = tok(text, return_tensors="pt").to(self.lm.device)
        ids = enc["input_ids"][0].clone()
        where = (ids == tok.mask_token_id).nonzero().squeeze(1)
        if len(where) == 0:
            raise ValueError(f"a masked LM steers fill-in prompts: put {self.objective.mask} in it")
        logits = model(**enc).logits[0]
        ids[where] = logits[where].argmax(-1)
        return tok.decode(ids, skip_special_tokens=True)

    def steer_generations(
        self,
        prompts: str | Sequence[str],
        strength: float,
        target_class: str | None = None,
        feature_factor: float | None = None,
        max_new_tokens: int = 20,
        part: str = "decoder",
        **generate_kwargs: Any,
    ) -> list[dict[str, str]]:
        """``[{"prompt", "base", "steered"}]``: each prompt's generation without and with
        steering (greedy, so the difference is the steering's alone)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        base = self.generate(prompts, max_new_tokens, **generate_kwargs)
        with self.steer(target_class, feature_factor=feature_factor, strength=strength, part=part):
            steered = self.generate(prompts, max_new_tokens, **generate_kwargs)
        return [
            {"prompt": p, "base": b, "steered": s}
            for p, b, s in zip(prompts, base, steered, strict=True)
        ]

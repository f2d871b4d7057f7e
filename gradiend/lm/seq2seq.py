"""``seq2seq_encoder_mlm``: encoder-decoder models (T5, BART, mT5) as masked LMs.

The encoder reads the sentence with the mask token (the tokenizer's, else T5's first sentinel
``<extra_id_0>``) at the target; the shared output head (``lm_head``, with T5's output scaling
and BART's ``final_logits_bias``) applied to the encoder's hidden state at the mask predicts the
word. Gradients are taken over the shared embeddings and the encoder (the decoder gets none
from this loss); decoder evaluation scores the same way, so the rewritten model is the full
encoder-decoder model.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from gradiend.lm.objectives import MASK, MaskedLMObjective, call_with, register_objective

logger = logging.getLogger(__name__)

SENTINEL = "<extra_id_0>"


def encoder_head_logits(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows, pos
) -> torch.Tensor:
    """Vocabulary logits of the encoder's hidden states at ``(rows, pos)``."""
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    h = hidden.last_hidden_state[rows, pos]
    if getattr(model.config, "scale_decoder_outputs", False) or (
        model.config.model_type in ("t5", "mt5", "umt5")
        and getattr(model.config, "tie_word_embeddings", False)
        and not hasattr(model.config, "scale_decoder_outputs")
    ):
        h = h * (model.config.d_model**-0.5)
    logits = model.get_output_embeddings()(h)
    bias = getattr(model, "final_logits_bias", None)
    return logits + bias[0] if bias is not None else logits


@register_objective
class Seq2SeqEncoderMLMObjective(MaskedLMObjective):
    """Masked-word prediction by the encoder and the shared output head (see module doc)."""

    name = "seq2seq_encoder_mlm"

    def __init__(self, tokenizer: Any, mask: str = MASK, max_length: int | None = None):
        super().__init__(tokenizer, mask, max_length)
        token = tokenizer.mask_token
        if token is None and SENTINEL in tokenizer.get_vocab():
            token = SENTINEL
        if token is None:
            raise ValueError(
                "seq2seq_encoder_mlm needs a mask token: the tokenizer has neither mask_token "
                f"nor T5's {SENTINEL!r}"
            )
        self._mask_token = token
        self._mask_token_id = tokenizer.convert_tokens_to_ids(token)

    @property
    def mask_token(self) -> str:
        return self._mask_token

    @property
    def mask_token_id(self) -> int:
        return self._mask_token_id

    def default_params(self, model: nn.Module) -> list[str] | None:
        """The shared input embeddings and every encoder parameter."""
        encoder = model.get_encoder()
        prefix = next(n for n, m in model.named_modules() if m is encoder)
        names = [n for n, _ in model.named_parameters()]
        emb = model.get_input_embeddings().weight
        shared = [n for n, p in model.named_parameters() if p is emb]
        return shared + [n for n in names if n.startswith(prefix + ".") and n not in shared]

    def position_logits(self, model: nn.Module, batch: dict, params: dict | None = None):
        return call_with(
            model,
            params,
            encoder_head_logits,
            batch["input_ids"],
            batch["attention_mask"],
            batch["rows"],
            batch["pos"],
        )

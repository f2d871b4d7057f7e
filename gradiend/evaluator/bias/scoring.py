"""Sentence scores from any LM: pseudo-log-likelihood for masked LMs, log-likelihood for causal.

Every text is scored as ``(prefix, text)``: only ``text``'s tokens count, conditioned on
``prefix`` (StereoSet's intersentence context); the forwards are batched by length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradiend.lm.loading import detect_kind

logger = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    """Batching knobs: ``batch_tokens`` padded tokens per forward (memory vs speed)."""

    batch_tokens: int = 4096
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.batch_tokens < 1 or self.max_length < 2:
            raise ValueError(
                f"ScoreConfig needs batch_tokens >= 1 and max_length >= 2, got "
                f"{self.batch_tokens} and {self.max_length}"
            )


@dataclass
class Encoded:
    """One tokenised text: its ids and the positions whose tokens are scored."""

    ids: list[int]
    scored: list[int]


def model_kind(model: nn.Module) -> str:
    """``mlm`` or ``clm`` (gradiend's own detection); encoder-decoders are refused up front."""
    kind = detect_kind(model)
    if kind not in ("mlm", "clm"):
        raise ValueError(
            f"bias scoring needs a masked or causal LM, got a {kind} model "
            f"({type(model).__name__}); load it with AutoModelForMaskedLM or AutoModelForCausalLM"
        )
    return kind


def encode(tokenizer, kind: str, prefix: str, text: str, max_length: int) -> Encoded:
    """Token ids of ``prefix + " " + text`` and the positions of ``text``'s tokens."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "bias scoring needs a fast tokenizer (offsets); load it with "
            "AutoTokenizer.from_pretrained(name, use_fast=True)"
        )
    full = f"{prefix} {text}" if prefix else text
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    start = len(prefix)
    scored = [i for i, (a, b) in enumerate(offsets) if b > a and b > start]
    lead = _lead_token(tokenizer) if kind == "clm" else None
    if lead is not None and (not ids or ids[0] != lead):
        ids, scored = [lead, *ids], [i + 1 for i in scored]
    if kind == "clm":
        scored = [i for i in scored if i > 0]  # the first token has nothing to condition on
    if len(ids) > max_length:
        raise ValueError(
            f"text of {len(ids)} tokens exceeds ScoreConfig.max_length={max_length}: "
            f"{full[:60]!r}...; raise max_length"
        )
    return Encoded(ids, scored)


def _lead_token(tokenizer) -> int | None:
    for name in ("bos_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None:
            return int(tid)
    return None


def _batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped by similar length so that padded tokens per batch stay under budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > batch_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def _pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


def _token_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return logits.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(logits, -1)


def causal_token_logprobs(model, tokenizer, encoded: list[Encoded], cfg: ScoreConfig) -> list:
    """Per-text arrays of log P(token | earlier tokens) at the scored positions."""
    out: list = [None] * len(encoded)
    device = next(model.parameters()).device
    for batch in _batches([len(e.ids) for e in encoded], cfg.batch_tokens):
        ids, mask = _pad([encoded[i].ids for i in batch], _pad_id(tokenizer), device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for r, i in enumerate(batch):
            pos = torch.tensor(encoded[i].scored, dtype=torch.long, device=device)
            lp = _token_logprob(logits[r, pos - 1], ids[r, pos])
            out[i] = lp.cpu().numpy()
    return out


def masked_token_logprobs(model, tokenizer, encoded: list[Encoded], cfg: ScoreConfig) -> list:
    """Per-text arrays of log P(token | all others), each scored token masked in turn; the
    masked copies of all texts are batched together."""
    if tokenizer.mask_token_id is None:
        raise ValueError("a masked LM's tokenizer needs a mask_token for pseudo-log-likelihood")
    copies = [(i, j, p) for i, e in enumerate(encoded) for j, p in enumerate(e.scored)]
    out = [np.zeros(len(e.scored)) for e in encoded]
    device = next(model.parameters()).device
    for batch in _batches([len(encoded[i].ids) for i, _, _ in copies], cfg.batch_tokens):
        seqs = [list(encoded[copies[k][0]].ids) for k in batch]
        targets, positions = [], []
        for s, k in zip(seqs, batch):
            p = copies[k][2]
            targets.append(s[p])
            positions.append(p)
            s[p] = tokenizer.mask_token_id
        ids, mask = _pad(seqs, _pad_id(tokenizer), device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        rows = torch.arange(len(batch), device=device)
        pos = torch.tensor(positions, device=device)
        lp = _token_logprob(logits[rows, pos], torch.tensor(targets, device=device)).cpu()
        for k, v in zip(batch, lp.numpy()):
            i, j, _ = copies[k]
            out[i][j] = v
    return out


@torch.inference_mode()
def score_texts(
    model, tokenizer, texts: list[tuple[str, str]], cfg: ScoreConfig | None = None
) -> list[np.ndarray]:
    """Per-token log-probabilities of each ``(prefix, text)``: PLL terms for masked LMs, LL
    terms for causal LMs (sum them for a sentence score, average for a length-normalised one)."""
    cfg = cfg or ScoreConfig()
    kind = model_kind(model)
    encoded = [encode(tokenizer, kind, p, t, cfg.max_length) for p, t in texts]
    was_training = model.training
    model.eval()
    try:
        fn = masked_token_logprobs if kind == "mlm" else causal_token_logprobs
        return fn(model, tokenizer, encoded, cfg)
    finally:
        model.train(was_training)


def sentence_scores(
    model, tokenizer, texts: list[tuple[str, str]], cfg=None, mean: bool = False
) -> np.ndarray:
    """One score per text: summed (or, with ``mean``, per-token mean) log-probability."""
    per = score_texts(model, tokenizer, texts, cfg)
    agg = np.mean if mean else np.sum
    return np.array([agg(p) if len(p) else 0.0 for p in per], dtype=float)

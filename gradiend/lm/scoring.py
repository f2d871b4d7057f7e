"""Token-probability scoring of word sets and the language-modelling score (LMS).

Both scorers tokenize and collate their inputs once, at construction, so that a decoder grid
point costs only forward passes of the (rewritten) model.

``TargetScorer``: for every row, the probability of each class's words at the row's target
position. Masked LMs: a word of ``k`` sub-tokens is scored with ``k`` consecutive masks and
``P(w) = Π_j p_j(t_j)``. Causal LMs: the word's first token (in its leading-space form when it
follows text) from the logits of the prefix's last token, with left padding (the objective's
``collate``). Probabilities of a class's words are summed; two spellings that give the same
token ids count once.

``LMSScorer``: masked LMs — accuracy of the argmax prediction at seeded random masks on
non-special tokens; causal LMs — ``1 / (1 + mean NLL)`` of every next token, with the causal
shift (logits at position ``t`` predict token ``t + 1``); encoder-decoder models (``seq2seq``) —
``1 / (1 + mean NLL)`` of the decoder reproducing the text, teacher-forced. Tokens in ``ignore_ids`` are never
masked nor scored (the target words when the fallback texts contain them).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradiend.lm.objectives import Encoded, Objective

logger = logging.getLogger(__name__)


def case_variants(word: str) -> list[str]:
    """The word as written, lower case, Title case and UPPER case (deduplicated, in order)."""
    return list(
        dict.fromkeys([word, word.lower(), word[:1].upper() + word[1:].lower(), word.upper()])
    )


@dataclass
class RowTargets:
    """One scored row: a text with exactly one target mask and the candidate words per class."""

    text: str
    words: dict[str, list[str]]


@dataclass
class _Batch:
    inputs: dict[str, torch.Tensor]
    pair_pos: torch.Tensor  # flat scored position of every (term, sub-token) pair
    pair_tok: torch.Tensor  # its token id
    pair_term: torch.Tensor  # the term it belongs to
    term_cell: torch.Tensor  # row * n_classes + class of every term
    n_terms: int


class TargetScorer:
    """Per-row probability of each class's word set at the target position (see module doc)."""

    def __init__(
        self,
        objective: Objective,
        rows: Sequence[RowTargets],
        classes: Sequence[str],
        batch_size: int = 32,
        device: torch.device | str = "cpu",
    ):
        self.objective, self.classes = objective, list(classes)
        self.n_rows = len(rows)
        unk = objective.tokenizer.unk_token_id
        encs: list[Encoded] = []
        terms: list[tuple[int, int, list[int]]] = []  # (encoding, cell, targets)
        for r, row in enumerate(rows):
            keys: dict[tuple, int] = {}
            seen: set[tuple] = set()
            for c, cls in enumerate(self.classes):
                for word in row.words.get(cls, []):
                    enc = objective.encode(row.text, [word])
                    if objective.left_pad:  # causal: the word's first token only
                        enc = Encoded(enc.input_ids, enc.positions[:1], enc.targets[:1])
                    if unk is not None and unk in enc.targets:
                        continue
                    if (c, tuple(enc.targets)) in seen:
                        continue
                    seen.add((c, tuple(enc.targets)))
                    key = (tuple(enc.input_ids), tuple(enc.positions))
                    if key not in keys:
                        keys[key] = len(encs)
                        encs.append(enc)
                    terms.append((keys[key], r * len(self.classes) + c, enc.targets))
        self.batches = self._plan(encs, terms, batch_size, torch.device(device))

    def _plan(self, encs, terms, batch_size, device) -> list[_Batch]:
        by_enc: dict[int, list] = {}
        for e, cell, tgt in terms:
            by_enc.setdefault(e, []).append((cell, tgt))
        out = []
        for start in range(0, len(encs), batch_size):
            chunk = encs[start : start + batch_size]
            inputs = self.objective.collate(chunk, device)
            pos, tok, term, cells = [], [], [], []
            offset = 0
            for i, enc in enumerate(chunk):
                for cell, tgt in by_enc.get(start + i, []):
                    for j, t in enumerate(tgt):
                        pos.append(offset + j)
                        tok.append(t)
                        term.append(len(cells))
                    cells.append(cell)
                offset += len(enc.positions)
            as_t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
            out.append(_Batch(inputs, as_t(pos), as_t(tok), as_t(term), as_t(cells), len(cells)))
        return out

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> np.ndarray:
        """``[n_rows, n_classes]`` probabilities under ``model``."""
        n_cells = self.n_rows * len(self.classes)
        device = next(model.parameters()).device
        total = torch.zeros(n_cells, dtype=torch.float64, device=device)
        for b in self.batches:
            logits = self.objective.position_logits(model, b.inputs)
            logp = torch.log_softmax(logits.float(), dim=-1)[b.pair_pos, b.pair_tok].double()
            term_logp = torch.zeros(b.n_terms, dtype=torch.float64, device=device)
            term_logp.index_add_(0, b.pair_term, logp)
            total.index_add_(0, b.term_cell, term_logp.exp())
        return total.view(self.n_rows, len(self.classes)).cpu().numpy()


class LMSScorer:
    """Language-modelling score of a model on fixed texts (see module doc)."""

    def __init__(
        self,
        tokenizer,
        kind: str,
        texts: Sequence[str],
        ignore_ids: Sequence[int] = (),
        batch_size: int = 32,
        seed: int = 42,
        max_length: int = 512,
        mask_fraction: float = 0.15,
        device: torch.device | str = "cpu",
    ):
        self.kind, self.tokenizer = kind, tokenizer
        device = torch.device(device)
        skip = torch.tensor(
            sorted(set(tokenizer.all_special_ids) | set(ignore_ids)), dtype=torch.long
        )
        enc = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
        enc = [ids for ids in enc if len(ids) >= (1 if kind == "mlm" else 2)]
        rng = random.Random(seed)
        self.batches = []
        for start in range(0, len(enc), batch_size):
            chunk = [torch.tensor(ids) for ids in enc[start : start + batch_size]]
            ids, att = _pad_right(chunk, tokenizer.pad_token_id)
            scored = att.bool() & ~torch.isin(ids, skip)
            if kind == "mlm":
                labels, ids = _random_masks(
                    ids, scored, tokenizer.mask_token_id, rng, mask_fraction
                )
            else:
                labels = torch.where(scored, ids, torch.full_like(ids, -100))
            self.batches.append(
                {
                    "input_ids": ids.to(device),
                    "attention_mask": att.to(device),
                    "labels": labels.to(device),
                }
            )
        if not self.batches:
            logger.warning("no text to compute the language-modelling score on")

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``{"lms": score, "n_tokens": scored tokens}`` (accuracy for MLM, 1/(1+NLL) causal)."""
        hits, nll, n = 0.0, 0.0, 0
        for b in self.batches:
            labels = b["labels"]
            if self.kind == "seq2seq":  # decoder inputs: the labels shifted right, by the model
                logits = model(**b).logits
                keep = labels != -100
                logp = torch.log_softmax(logits[keep].float(), dim=-1)
                nll += -logp.gather(1, labels[keep][:, None]).sum().item()
                n += int(keep.sum())
                continue
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            if self.kind == "mlm":
                keep = labels != -100
                hits += (logits[keep].argmax(-1) == labels[keep]).sum().item()
                n += int(keep.sum())
            else:  # the causal shift: position t predicts token t + 1
                tgt = labels[:, 1:]
                keep = tgt != -100
                logp = torch.log_softmax(logits[:, :-1][keep].float(), dim=-1)
                nll += -logp.gather(1, tgt[keep][:, None]).sum().item()
                n += int(keep.sum())
        if n == 0:
            return {"lms": float("nan"), "n_tokens": 0}
        score = hits / n if self.kind == "mlm" else 1.0 / (1.0 + nll / n)
        return {"lms": float(score), "n_tokens": n}


def _pad_right(seqs: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], att[i, : len(s)] = s, 1
    return ids, att


def _random_masks(
    ids: torch.Tensor, candidates: torch.Tensor, mask_id: int, rng: random.Random, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``max(1, ⌊fraction · #candidates⌋)`` candidate positions per row (seeded)."""
    labels = torch.full_like(ids, -100)
    masked = ids.clone()
    for i in range(ids.shape[0]):
        pos = candidates[i].nonzero().squeeze(1).tolist()
        if not pos:
            continue
        for p in rng.sample(pos, max(1, math.floor(fraction * len(pos)))):
            labels[i, p] = ids[i, p]
            masked[i, p] = mask_id
    return labels, masked

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
the decoder reproducing the text, teacher-forced. Tokens in ``ignore_ids`` are never
masked nor scored (the target words when the fallback texts contain them). All also report the
mean NLL of the scored tokens (the neutral-NLL budget of the decoder search), and per-text sums
so that a subset of the texts can screen a point before the rest confirms it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from gradiend import distributed as dist
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
        self.split = False  # True: batches spread over the ranks of torch.distributed

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
        split = self.split and dist.is_distributed()
        todo = dist.shard(range(len(self.batches))) if split else range(len(self.batches))

        def score() -> dict[int, torch.Tensor]:
            probs = {}
            for k in todo:
                b = self.batches[k]
                logits = self.objective.position_logits(model, b.inputs)
                logp = torch.log_softmax(logits.float(), dim=-1)[b.pair_pos, b.pair_tok].double()
                term_logp = torch.zeros(b.n_terms, dtype=torch.float64, device=device)
                term_logp.index_add_(0, b.pair_term, logp)
                probs[k] = term_logp.exp()
            return probs

        if split:  # every rank adds all batches' terms in batch order: one-process sums
            local = dist.everywhere(lambda: {k: v.cpu() for k, v in score().items()}, "scoring")
            probs = dist.gather_in_order(local, len(self.batches), "target probabilities")
        else:
            done = score()
            probs = [done[k] for k in range(len(self.batches))]
        total = torch.zeros(n_cells, dtype=torch.float64, device=device)
        for b, p in zip(self.batches, probs):
            total.index_add_(0, b.term_cell, p.to(device))
        return total.view(self.n_rows, len(self.classes)).cpu().numpy()


@dataclass
class TextStats:
    """Per-text sums of one LMS scoring: ``text`` indices, token-NLL sums, scored tokens and
    (masked LMs) argmax hits. Concatenate two with ``TextStats.join``."""

    text: np.ndarray
    nll: np.ndarray
    n: np.ndarray
    hits: np.ndarray

    @classmethod
    def join(cls, parts: Sequence[TextStats]) -> TextStats:
        names = [f.name for f in fields(cls)]
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    @classmethod
    def empty(cls) -> TextStats:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0))

    def to_dict(self) -> dict[str, list]:
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TextStats:
        return cls(
            np.asarray(d["text"], dtype=np.int64),
            *(np.asarray(d[k], dtype=np.float64) for k in ("nll", "n", "hits")),
        )


def lms_summary(kind: str, stats: TextStats) -> dict[str, float]:
    """``{"lms", "nll", "n_tokens", "n_texts"}`` from per-text sums (LMS: accuracy for masked
    LMs, ``1 / (1 + mean NLL)`` for causal ones; ``nll``: mean NLL of the scored tokens)."""
    n = float(stats.n.sum())
    if n == 0:
        return {"lms": float("nan"), "nll": float("nan"), "n_tokens": 0, "n_texts": 0}
    nll = float(stats.nll.sum()) / n
    lms = float(stats.hits.sum()) / n if kind == "mlm" else 1.0 / (1.0 + nll)
    return {"lms": lms, "nll": nll, "n_tokens": int(n), "n_texts": len(stats.text)}


class LMSScorer:
    """Language-modelling score of a model on fixed texts (see module doc).

    ``groups`` (one id per text) lets a caller score part of the texts — e.g. a screening
    subset first and the rest only for points that may win; texts are batched within their
    group, sorted by length so that little padding is scored.
    """

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
        groups: Sequence[int] | None = None,
    ):
        self.kind, self.tokenizer = kind, tokenizer
        device = torch.device(device)
        skip = torch.tensor(
            sorted(set(tokenizer.all_special_ids) | set(ignore_ids)), dtype=torch.long
        )
        groups = [0] * len(texts) if groups is None else list(groups)
        enc = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
        keep = [i for i, ids in enumerate(enc) if len(ids) >= (1 if kind == "mlm" else 2)]
        rng = random.Random(seed)
        self.batches: list[dict] = []
        for g in sorted(set(groups)):
            members = sorted((i for i in keep if groups[i] == g), key=lambda i: len(enc[i]))
            for start in range(0, len(members), batch_size):
                idx = members[start : start + batch_size]
                ids, att = _pad_right([torch.tensor(enc[i]) for i in idx], tokenizer.pad_token_id)
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
                        "text": np.asarray(idx, dtype=np.int64),
                        "group": g,
                    }
                )
        if not self.batches:
            logger.warning("no text to compute the language-modelling score on")
        self.split = False  # True: batches spread over the ranks of torch.distributed

    @torch.no_grad()
    def per_text(self, model: nn.Module, groups: Sequence[int] | None = None) -> TextStats:
        """Per-text NLL sums, token counts and hits of the texts in ``groups`` (all: None)."""
        todo = [k for k, b in enumerate(self.batches) if groups is None or b["group"] in groups]
        split = self.split and dist.is_distributed()
        if split:  # batch k of this call on rank k % world, joined in batch order
            mine = dist.shard(range(len(todo)))
            local = dist.everywhere(
                lambda: {j: self._batch_stats(model, self.batches[todo[j]]) for j in mine},
                "scoring texts",
            )
            parts = dist.gather_in_order(local, len(todo), "per-text sums")
        else:
            parts = [self._batch_stats(model, self.batches[k]) for k in todo]
        if not parts:
            return TextStats.empty()
        return TextStats.join(parts)

    def _batch_stats(self, model: nn.Module, b: dict) -> TextStats:
        """Per-text sums of one batch."""
        logits, labels = predicted_logits(model, self.kind, b)
        return self._sums(logits, labels, b)

    def _sums(self, logits: torch.Tensor, labels: torch.Tensor, b: dict) -> TextStats:
        keep = labels != -100
        row, col = keep.nonzero(as_tuple=True)
        picked, gold = logits[row, col].float(), labels[row, col]
        tok_nll = -torch.log_softmax(picked, dim=-1).gather(1, gold[:, None]).squeeze(1)
        sums = torch.zeros((3, labels.shape[0]), dtype=torch.float64, device=labels.device)
        sums[0].index_add_(0, row, tok_nll.double())
        sums[1].index_add_(0, row, torch.ones_like(tok_nll, dtype=torch.float64))
        if self.kind == "mlm":
            sums[2].index_add_(0, row, (picked.argmax(-1) == gold).double())
        nll, n, hits = sums.cpu().numpy()
        return TextStats(b["text"], nll, n, hits)

    @torch.no_grad()
    def with_token_probs(
        self, model: nn.Module, id_sets: Sequence[Sequence[int]]
    ) -> tuple[TextStats, np.ndarray]:
        """Per-text sums of all texts (as ``per_text``, one process) and, per id set, the
        probability of its tokens summed over every scored position: the same pass gives the
        NLL of a held-out check and how likely a target word became on neutral text."""
        parts, totals = [], np.zeros(len(id_sets))
        for b in self.batches:
            logits, labels = predicted_logits(model, self.kind, b)
            parts.append(self._sums(logits, labels, b))
            probs = torch.softmax(logits[labels != -100].float(), dim=-1).double()
            for k, ids in enumerate(id_sets):
                if len(ids):
                    totals[k] += float(probs[:, list(ids)].sum())
        return (TextStats.join(parts) if parts else TextStats.empty()), totals

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``{"lms", "nll", "n_tokens", "n_texts"}`` over all texts (see ``lms_summary``)."""
        return lms_summary(self.kind, self.per_text(model))


def predicted_logits(model: nn.Module, kind: str, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of an ``LMSScorer`` batch and the labels they predict, aligned (causal: position
    t predicts token t + 1; seq2seq: the model shifts the labels into its decoder inputs)."""
    labels = b["labels"]
    inputs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    if kind == "seq2seq":
        return model(**inputs, labels=labels).logits, labels
    logits = model(**inputs).logits
    if kind != "mlm":
        logits, labels = logits[:, :-1], labels[:, 1:]
    return logits, labels


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

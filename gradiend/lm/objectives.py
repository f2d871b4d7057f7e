"""Prediction objectives: how a masked sentence becomes token ids, scored positions and targets.

``mlm_mask_token`` (BERT-like): every ``[MASK]`` becomes as many mask tokens as its word has
sub-tokens, each mask keeps its own word. ``clm_next_token`` (GPT-like): the text before the first
``[MASK]`` (right-stripped) is the prefix; the target is the first token of ``" " + word`` scored
from the logits of the prefix's last token. Objectives are registered by name in ``OBJECTIVES``
(``register_objective``); ``clm_mlm_head`` lives in ``gradiend.lm.mlm_head`` and
``seq2seq_encoder_mlm`` in ``gradiend.lm.seq2seq``, which register themselves when the package
``gradiend.lm`` is imported (always before this module), so this module imports neither.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

MASK = "[MASK]"
MAX_LENGTH = 512


@dataclass
class Encoded:
    """Token ids of one input, the positions that are scored and the target id at each."""

    input_ids: list[int]
    positions: list[int]
    targets: list[int]


@dataclass
class Item:
    """One example: the encoding for the factual word and for the alternative word."""

    factual: Encoded
    alternative: Encoded

    @property
    def shared(self) -> bool:
        return (
            self.factual.input_ids == self.alternative.input_ids
            and self.factual.positions == self.alternative.positions
        )


class Objective:
    """Base class; subclasses turn texts into ``Encoded`` and logits into per-row NLL."""

    name = ""
    left_pad = False

    def __init__(self, tokenizer: Any, mask: str = MASK, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.mask = mask
        limit = getattr(tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH
        self.max_length = max_length or min(int(limit), MAX_LENGTH)

    # -- how the other stages use this objective ----------------------------------------
    def scorer(self) -> Objective:
        """The objective that decoder evaluation scores with (the LM's own, usually this one)."""
        return self

    def default_params(self, model: nn.Module) -> list[str] | None:
        """Parameter patterns the gradients are taken over when ``params`` is not given."""
        return None

    def neutral_encoding(self, token_ids: list[int], pos: int) -> Encoded:
        """An identity input that predicts the token at ``pos`` of a neutral text."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What beyond the objective's name changes its gradients (e.g. a trained head)."""
        return {}

    # -- building inputs ---------------------------------------------------------------
    def encode(self, masked: str, words: list[str]) -> Encoded:
        raise NotImplementedError

    def item(self, masked: str, factual: list[str], alternative: list[str]) -> Item:
        return Item(self.encode(masked, factual), self.encode(masked, alternative))

    def word_ids(self, word: str, after_text: bool = True) -> list[int]:
        """Token ids of ``word`` as it appears in running text."""
        raise NotImplementedError

    # -- scoring -------------------------------------------------------------------------
    def collate(self, encs: list[Encoded], device: torch.device) -> dict[str, torch.Tensor]:
        """Pad a batch (per batch, never to a fixed length) and flatten the scored positions."""
        pad = self.tokenizer.pad_token_id
        length = max(len(e.input_ids) for e in encs)
        ids = torch.full((len(encs), length), pad, dtype=torch.long)
        att = torch.zeros((len(encs), length), dtype=torch.long)
        rows, pos, tgt = [], [], []
        for i, e in enumerate(encs):
            shift = length - len(e.input_ids) if self.left_pad else 0
            ids[i, shift : shift + len(e.input_ids)] = torch.tensor(e.input_ids)
            att[i, shift : shift + len(e.input_ids)] = 1
            rows += [i] * len(e.positions)
            pos += [p + shift for p in e.positions]
            tgt += e.targets
        batch = {
            "input_ids": ids.to(device),
            "attention_mask": att.to(device),
            "rows": torch.tensor(rows, device=device),
            "pos": torch.tensor(pos, device=device),
            "tgt": torch.tensor(tgt, device=device),
        }
        if self.left_pad:
            batch["position_ids"] = (att.cumsum(-1) - 1).clamp(min=0).to(device)
        return batch

    def position_logits(self, model: nn.Module, batch: dict, params: dict | None = None):
        """Logits at the scored positions, shape ``[n_positions, vocab]``."""
        kwargs = {
            k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch
        }
        kwargs.update(self._extra_kwargs(model, batch))
        if params is None:
            logits = model(**kwargs).logits
        else:
            logits = torch.func.functional_call(model, params, args=(), kwargs=kwargs).logits
        offset = batch["input_ids"].shape[1] - logits.shape[1]
        dev = logits.device  # the last shard's device when the model is split over GPUs
        return logits[batch["rows"].to(dev), (batch["pos"] - offset).to(dev)]

    def _extra_kwargs(self, model: nn.Module, batch: dict) -> dict:
        return {}

    @staticmethod
    def row_nll(logits: torch.Tensor, batch: dict, targets: torch.Tensor, n_rows: int):
        """Mean negative log-likelihood of ``targets`` per row."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(1, targets.to(logp.device)[:, None]).squeeze(1)
        rows = batch["rows"].to(nll.device)
        sums = torch.zeros(n_rows, device=nll.device, dtype=nll.dtype).index_add(0, rows, nll)
        counts = torch.zeros(n_rows, device=nll.device).index_add(0, rows, torch.ones_like(nll))
        return sums / counts

    def losses(
        self, model: nn.Module, items: list[Item], params: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-row NLL of the factual and the alternative word; one forward when inputs agree."""
        device = next(model.parameters()).device
        n = len(items)
        if all(it.shared for it in items):
            batch = self.collate([it.factual for it in items], device)
            logits = self.position_logits(model, batch, params)
            alt_tgt = torch.tensor(
                [t for it in items for t in it.alternative.targets], device=device
            )
            return {
                "factual": self.row_nll(logits, batch, batch["tgt"], n),
                "alternative": self.row_nll(logits, batch, alt_tgt, n),
            }
        out = {}
        for side in ("factual", "alternative"):
            batch = self.collate([getattr(it, side) for it in items], device)
            logits = self.position_logits(model, batch, params)
            out[side] = self.row_nll(logits, batch, batch["tgt"], n)
        return out


class MaskedLMObjective(Objective):
    """BERT-like: predict the word at its mask(s); multi-token words get consecutive masks."""

    name = "mlm_mask_token"

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    @property
    def mask_token_id(self) -> int:
        return self.tokenizer.mask_token_id

    def neutral_encoding(self, token_ids: list[int], pos: int) -> Encoded:
        ids = list(token_ids)
        ids[pos] = self.mask_token_id
        return Encoded(ids, [pos], [token_ids[pos]])

    def word_ids(self, word: str, after_text: bool = True) -> list[int]:
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the word {word!r} has no tokens in this tokenizer")
        return ids

    def encode(self, masked: str, words: list[str]) -> Encoded:
        pieces = masked.split(self.mask)
        k = len(pieces) - 1
        if k == 0:
            raise ValueError(f"no {self.mask} in text: {masked[:80]!r}")
        words = [words[min(i, len(words) - 1)] for i in range(k)]
        word_ids = [self.word_ids(w) for w in words]
        mask_tok = self.mask_token
        text = pieces[0]
        for ids, piece in zip(word_ids, pieces[1:]):
            text += mask_tok * len(ids) + piece
        input_ids = self.tokenizer(text)["input_ids"]
        mid = self.mask_token_id
        positions = [i for i, t in enumerate(input_ids) if t == mid]
        targets = [t for ids in word_ids for t in ids]
        if len(positions) != len(targets):
            raise ValueError(
                f"text already contains the tokenizer's mask token or splits it: {masked[:80]!r}"
            )
        return _truncate_around(Encoded(input_ids, positions, targets), self.max_length)


class CausalLMObjective(Objective):
    """GPT-like: the word's first token after the prefix, from the prefix's last position."""

    name = "clm_next_token"
    left_pad = True

    def neutral_encoding(self, token_ids: list[int], pos: int) -> Encoded:
        return Encoded(token_ids[:pos], [pos - 1], [token_ids[pos]])

    def word_ids(self, word: str, after_text: bool = True) -> list[int]:
        ids = self.tokenizer((" " + word) if after_text else word, add_special_tokens=False)[
            "input_ids"
        ]
        if not ids:
            raise ValueError(f"the word {word!r} has no tokens in this tokenizer")
        return ids

    def encode(self, masked: str, words: list[str]) -> Encoded:
        if self.mask not in masked:
            raise ValueError(f"no {self.mask} in text: {masked[:80]!r}")
        prefix = masked.split(self.mask, 1)[0].rstrip()
        input_ids = self.tokenizer(prefix)["input_ids"] if prefix else []
        if not input_ids:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise ValueError(
                    f"a causal LM needs left context before {self.mask}: {masked[:80]!r}"
                )
            input_ids = [bos]
        input_ids = input_ids[-self.max_length :]  # keep the end: the target follows it
        target = self.word_ids(words[0], after_text=bool(prefix))[0]
        return Encoded(input_ids, [len(input_ids) - 1], [target])

    def _extra_kwargs(self, model: nn.Module, batch: dict) -> dict:
        if _accepts(model, "logits_to_keep"):
            return {"logits_to_keep": 1}  # left padding: every scored position is the last
        return {}


class _Bound(nn.Module):
    """``fn(model, ...)`` as a module, so ``functional_call`` can swap the model's parameters."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.m, self.fn = model, fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.m, *args)


def call_with(model: nn.Module, params: dict | None, fn, *args: Any) -> Any:
    """``fn(model, *args)``, with ``params`` (names of ``model``) replacing its parameters."""
    if params is None:
        return fn(model, *args)
    renamed = {f"m.{k}": v for k, v in params.items()}
    return torch.func.functional_call(_Bound(model, fn), renamed, args)


def _accepts(model: nn.Module, arg: str) -> bool:
    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _truncate_around(enc: Encoded, max_length: int) -> Encoded:
    """Cut a window that keeps every scored position (and the first/last special tokens)."""
    n = len(enc.input_ids)
    if n <= max_length:
        return enc
    lo, hi = min(enc.positions), max(enc.positions)
    if hi - lo + 3 > max_length:
        raise ValueError("the masks of one text are further apart than the model's max length")
    start = max(1, min(lo - (max_length - 2 - (hi - lo + 1)) // 2, n - 1 - (max_length - 2)))
    body = enc.input_ids[start : start + max_length - 2]
    ids = [enc.input_ids[0], *body, enc.input_ids[-1]]
    return Encoded(ids, [p - start + 1 for p in enc.positions], enc.targets)


OBJECTIVES: dict[str, type[Objective]] = {}

# what prediction_objective="auto" means for each model kind (``gradiend.lm.loading``)
AUTO = {"mlm": "mlm_mask_token", "clm": "clm_next_token", "seq2seq": "seq2seq_encoder_mlm"}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available as ``prediction_objective=cls.name``."""
    OBJECTIVES[cls.name] = cls
    return cls


register_objective(MaskedLMObjective)
register_objective(CausalLMObjective)


def make_objective(
    name: str, kind: str, tokenizer: Any, mask: str = MASK, **kwargs: Any
) -> Objective:
    """The objective named ``name``, or the one for the model ``kind`` when ``name == "auto"``.

    ``kwargs`` go to the objective (``clm_mlm_head`` takes ``head=``).
    """
    if name == "auto":
        name = AUTO[kind]
    if name not in OBJECTIVES:
        raise ValueError(f"unknown prediction_objective {name!r}; choose one of {list(OBJECTIVES)}")
    return OBJECTIVES[name](tokenizer, mask=mask, **kwargs)

"""``clm_mlm_head``: a masked-word head for decoder-only models, so the right context counts.

A next-token objective sees only the text before the mask: for "[MASK] told me that her train
was late" the class is invisible to it. This objective puts a learned mask vector at the mask
(via ``inputs_embeds``: the tokenizer and the vocabulary stay as they are), runs the causal
backbone, and a linear head over the label words reads the mean of the last hidden states at
the mask and the next ``pooling_length - 1`` positions — which have seen the words after the
mask. The head is trained first with the backbone frozen (on pooled states computed once); the
GRADIEND then learns from the gradients of the head's cross-entropy through the backbone.
Decoder evaluation and rewrites act on the original causal LM (``scorer()`` is
``clm_next_token``); the parameter map is the causal LM's own, so a rewrite is a plain causal LM.

The mask vector is the mean input embedding (the value a resized embedding row starts from),
kept fixed like the rest of the backbone. A neutral input (no class) has target ``-1``: the
loss is the mean cross-entropy over all labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from gradiend import run_layout
from gradiend._io import atomic_dir, read_json, write_json
from gradiend.data.examples import row_words
from gradiend.lm.objectives import (
    MASK,
    CausalLMObjective,
    Encoded,
    Item,
    Objective,
    call_with,
    register_objective,
)

logger = logging.getLogger(__name__)

HEAD_DIR = run_layout.MLM_HEAD
POOLING_LENGTH = 3
HEAD_MAX_LENGTH = 128


@dataclass
class HeadTraining:
    """How the head is trained (the incumbent's ``decoder_mlm_head_*`` arguments)."""

    epochs: int = 5
    batch_size: int = 4
    lr: float = 1e-4
    max_size: int | None = None
    seed: int = 0
    pooling_length: int = POOLING_LENGTH


class MLMHead(nn.Module):
    """Linear head over label words, the fixed mask vector and a small record (fingerprint)."""

    def __init__(
        self,
        hidden_size: int,
        labels: Sequence[str],
        pooling_length: int = POOLING_LENGTH,
        mask_embedding: torch.Tensor | None = None,
        record: dict | None = None,
    ):
        super().__init__()
        self.labels = list(labels)
        self.pooling_length = int(pooling_length)
        self.linear = nn.Linear(hidden_size, len(self.labels))
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)
        emb = torch.zeros(hidden_size) if mask_embedding is None else mask_embedding
        self.register_buffer("mask_embedding", emb.detach().float().clone())
        self.record = dict(record or {})
        self._index = {w: i for i, w in enumerate(self.labels)}
        self.requires_grad_(False)

    @property
    def fingerprint(self) -> str | None:
        return self.record.get("fingerprint")

    def label_id(self, word: str) -> int:
        if word not in self._index:
            raise ValueError(
                f"the word {word!r} is not a label of the MLM head ({self.labels[:8]}…); "
                "retrain it with trainer.train_decoder_only_mlm_head() on this data"
            )
        return self._index[word]

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_dir(path) as tmp:
            tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(tensors, str(tmp / run_layout.MLM_HEAD_WEIGHTS))
            config = {
                "labels": self.labels,
                "pooling_length": self.pooling_length,
                "hidden_size": self.linear.in_features,
                **self.record,
            }
            write_json(tmp / run_layout.MLM_HEAD_CONFIG, config)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MLMHead:
        path = Path(path)
        if not (path / run_layout.MLM_HEAD_CONFIG).exists():
            raise FileNotFoundError(f"no MLM head in {path} ({run_layout.MLM_HEAD_CONFIG} missing)")
        cfg = read_json(path / run_layout.MLM_HEAD_CONFIG)
        record = {k: v for k, v in cfg.items() if k not in ("labels", "pooling_length")}
        head = cls(cfg["hidden_size"], cfg["labels"], cfg["pooling_length"], record=record)
        head.load_state_dict(load_file(str(path / run_layout.MLM_HEAD_WEIGHTS)))
        return head


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, getattr(model, "base_model_prefix", ""), None) or model.model


def pooled_states(model, input_ids, attention_mask, rows, pos, mask_vec, length: int):
    """Mean last hidden state over ``pos … pos + length − 1`` (real tokens only) per scored
    position, with ``mask_vec`` as the input embedding at every scored position."""
    x = model.get_input_embeddings()(input_ids)
    at_mask = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    at_mask[rows, pos] = True
    x = torch.where(at_mask[..., None], mask_vec.to(x.dtype), x)
    h = _backbone(model)(inputs_embeds=x, attention_mask=attention_mask).last_hidden_state
    idx = pos[:, None] + torch.arange(length, device=pos.device)
    valid = idx < attention_mask.sum(-1)[rows][:, None]
    window = h[rows[:, None], idx.clamp(max=h.shape[1] - 1)]
    w = valid[..., None].to(window.dtype)
    return (window * w).sum(1) / w.sum(1)


@register_objective
class MLMHeadObjective(Objective):
    """Masked-word classification by the head (see module doc); targets are label indices."""

    name = "clm_mlm_head"

    def __init__(
        self,
        tokenizer: Any,
        mask: str = MASK,
        max_length: int | None = None,
        head: MLMHead | None = None,
    ):
        if head is None:
            raise ValueError(
                "prediction_objective='clm_mlm_head' needs a trained head: call "
                "trainer.train_decoder_only_mlm_head() (train() does it when asked for this "
                "objective)"
            )
        super().__init__(tokenizer, mask, max_length or HEAD_MAX_LENGTH)
        self.head = head
        self._causal = CausalLMObjective(tokenizer, mask=mask)

    def scorer(self) -> Objective:
        return self._causal

    def fingerprint(self) -> dict:
        return {"mlm_head": self.head.fingerprint}

    def word_ids(self, word: str, after_text: bool = True) -> list[int]:
        return self._causal.word_ids(word, after_text)  # vocabulary check of the causal LM

    # -- inputs ------------------------------------------------------------------------
    @property
    def placeholder(self) -> int:
        return self.tokenizer.pad_token_id

    def encode(self, masked: str, words: list[str]) -> Encoded:
        pieces = masked.split(self.mask)
        if len(pieces) < 2:
            raise ValueError(f"no {self.mask} in text: {masked[:80]!r}")
        rest = pieces[1]
        for i, piece in enumerate(pieces[2:], start=1):  # later masks keep their own words
            rest += words[min(i, len(words) - 1)] + piece
        prefix = self.tokenizer(pieces[0].rstrip())["input_ids"]  # special tokens even if empty
        suffix = self.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
        keep_right = min(len(suffix), self.max_length // 2)
        suffix = suffix[:keep_right]
        prefix = prefix[max(0, len(prefix) - (self.max_length - 1 - keep_right)) :]
        ids = [*prefix, self.placeholder, *suffix]
        return Encoded(ids, [len(prefix)], [self.head.label_id(words[0])])

    def item(self, masked: str, factual: list[str], alternative: list[str]) -> Item:
        fact = self.encode(masked, factual)
        alt = Encoded(fact.input_ids, fact.positions, [self.head.label_id(alternative[0])])
        return Item(fact, alt)

    def neutral_encoding(self, token_ids: list[int], pos: int) -> Encoded:
        ids = list(token_ids)
        ids[pos] = self.placeholder
        return Encoded(ids, [pos], [-1])

    # -- scoring -----------------------------------------------------------------------
    def pooled(self, model: nn.Module, batch: dict, params: dict | None = None) -> torch.Tensor:
        mask_vec = self.head.mask_embedding.to(batch["input_ids"].device)
        args = (batch["input_ids"], batch["attention_mask"], batch["rows"], batch["pos"])
        return call_with(model, params, pooled_states, *args, mask_vec, self.head.pooling_length)

    def position_logits(self, model: nn.Module, batch: dict, params: dict | None = None):
        pooled = self.pooled(model, batch, params)
        if self.head.linear.weight.device != pooled.device:
            self.head.to(pooled.device)
        return self.head.linear(pooled.to(self.head.linear.weight.dtype))

    @staticmethod
    def row_nll(logits: torch.Tensor, batch: dict, targets: torch.Tensor, n_rows: int):
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
        nll = -torch.where(targets >= 0, picked, logp.mean(-1))
        sums = torch.zeros(n_rows, device=nll.device).index_add(0, batch["rows"], nll)
        counts = torch.zeros(n_rows, device=nll.device).index_add(
            0, batch["rows"], torch.ones_like(nll)
        )
        return sums / counts


# --------------------------------------------------------------------------- training
def head_fingerprint(base: dict, texts: list[str], words: list[str], labels, cfg, mask) -> str:
    h = hashlib.sha256()
    payload = {"base": base, "labels": list(labels), "cfg": asdict(cfg), "mask": mask}
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    for t, w in zip(texts, words):
        h.update(f"{t}\x00{w}\x01".encode())
    return h.hexdigest()[:16]


def mean_embedding(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.get_input_embeddings().weight.float().mean(0)


def _features(objective: MLMHeadObjective, model, encs: list[Encoded], progress: bool):
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(encs), 16), desc="MLM head inputs", disable=not progress):
            batch = objective.collate(encs[start : start + 16], device)
            out.append(objective.pooled(model, batch).float())
    return torch.cat(out), torch.tensor([e.targets[0] for e in encs], device=device)


def _subsample(texts: list[str], words: list[list[str]], cfg: HeadTraining):
    if cfg.max_size is None or len(texts) <= cfg.max_size:
        return texts, words
    keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(cfg.seed))
    keep = sorted(keep[: cfg.max_size].tolist())
    return [texts[i] for i in keep], [words[i] for i in keep]


def head_rows(df) -> tuple[list[str], list[list[str]]]:
    """``(masked texts, factual word per mask)`` of the distinct sentences of example rows."""
    rows = df.drop_duplicates(subset=["masked", "factual"]).to_dict("records")
    return [r["masked"] for r in rows], [row_words(r)[0] for r in rows]


def fit_or_load_head(
    lm,
    train: tuple[list[str], list[list[str]]],
    labels: Sequence[str],
    folder: str | Path,
    cfg: HeadTraining,
    mask: str = MASK,
    validation: tuple[list[str], list[list[str]]] | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> MLMHead:
    """The head saved in ``folder`` when its fingerprint (base model, data, labels, settings)
    matches, else a newly trained one (saved there)."""
    texts, words = _subsample(*train, cfg)
    fp = head_fingerprint(lm.fingerprint, texts, [w[0] for w in words], labels, cfg, mask)
    folder = Path(folder)
    if use_cache and (folder / run_layout.MLM_HEAD_CONFIG).exists():
        head = MLMHead.from_pretrained(folder)
        if head.fingerprint == fp:
            logger.info("reusing the MLM head in %s", folder)
            return head
        logger.info("the MLM head in %s was trained on other data or settings; retraining", folder)
    head = train_head(lm, (texts, words), labels, cfg, fp, mask, validation, progress)
    head.save_pretrained(folder)
    return head


def train_head(
    lm,
    train: tuple[list[str], list[list[str]]],
    labels: Sequence[str],
    cfg: HeadTraining,
    fingerprint: str | None = None,
    mask: str = MASK,
    validation: tuple[list[str], list[list[str]]] | None = None,
    progress: bool = True,
) -> MLMHead:
    """Train a head on ``(masked texts, words per mask)`` with the backbone frozen.

    The pooled states do not change while the backbone is frozen, so they are computed once and
    every epoch trains the linear layer on them.
    """
    texts, words = train
    model = lm.model
    hidden = model.get_input_embeddings().weight.shape[1]
    torch.manual_seed(cfg.seed)
    head = MLMHead(hidden, labels, cfg.pooling_length, mean_embedding(model))
    head.record = {"fingerprint": fingerprint, "training": asdict(cfg), "n_train": len(texts)}
    objective = MLMHeadObjective(lm.tokenizer, mask, head=head)
    encs = [objective.encode(t, w) for t, w in zip(texts, words)]
    x, y = _features(objective, model, encs, progress)
    head.to(x.device)
    linear = head.linear.requires_grad_(True)
    opt = torch.optim.AdamW(linear.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in tqdm(range(cfg.epochs), desc="MLM head epochs", disable=not progress):
        total = 0.0
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            idx = idx.to(x.device)
            loss = nn.functional.cross_entropy(linear(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(1, len(y)))
    linear.requires_grad_(False)
    head.record["epoch_losses"] = losses
    head.record["train_accuracy"] = accuracy(head, x, y)
    if validation is not None and validation[0]:
        encs = [objective.encode(t, w) for t, w in zip(*validation)]
        head.record["validation_accuracy"] = accuracy(
            head, *_features(objective, model, encs, False)
        )
    logger.info(
        "MLM head: train accuracy %.3f, validation accuracy %s",
        head.record["train_accuracy"],
        head.record.get("validation_accuracy"),
    )
    return head


def accuracy(head: MLMHead, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head.linear(x).argmax(-1) == y).float().mean())

"""Neutral-text Fisher preconditioning of the rewrite: spend the language-modelling budget where
it buys the most of the feature.

The decoder's update vector ``u`` says which way each parameter moves the feature; the diagonal
empirical Fisher ``F`` of the base model on neutral text says what moving it costs the language
model (to second order, the neutral NLL grows by ``½ Σ_d F_d δ_d²``). Maximising the feature
shift for a fixed cost gives ``δ ∝ u / F``; with damping ``λ`` (relative to the mean of ``F``)
the rewritten direction is ``u ⊘ (F / mean(F) + λ)``, and the step size is then searched as
usual. ``F`` is estimated on neutral texts that the LMS/NLL budget does not score, so the budget
stays an out-of-sample check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gradiend import run_layout
from gradiend._io import tmp_prefix
from gradiend._kwargs import strict_kwargs
from gradiend.lm.gradients import _grad_enabled
from gradiend.lm.scoring import LMSScorer, predicted_logits

logger = logging.getLogger(__name__)

FISHER_FILE = run_layout.FISHER
MIN_TEXTS = 8


@strict_kwargs
@dataclass
class FisherConfig:
    """``evaluate_decoder(precondition=FisherConfig(...))``: rewrite along ``u ⊘ (F/mean F + λ)``.

    ``texts``: neutral texts to estimate ``F`` on (default: the trainer's neutral texts that the
    budget does not use, i.e. those after ``max_size_neutral``); at most ``max_texts`` of them.
    """

    damping: float = 0.01
    max_texts: int = 32
    texts: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.damping > 0:
            raise ValueError(f"FisherConfig.damping must be > 0, not {self.damping}")
        if self.max_texts < MIN_TEXTS:
            raise ValueError(f"FisherConfig.max_texts must be ≥ {MIN_TEXTS}, not {self.max_texts}")


def as_fisher_config(precondition) -> FisherConfig | None:
    """``None``, ``"fisher"`` or a ``FisherConfig`` → the config (or None)."""
    if precondition is None or isinstance(precondition, FisherConfig):
        return precondition
    if precondition == "fisher":
        return FisherConfig()
    raise ValueError(f"precondition must be None, 'fisher' or a FisherConfig, not {precondition!r}")


def select_texts(cfg: FisherConfig | None, pool: list[str], lms_texts: list[str]) -> list[str]:
    """Texts for ``F``: the config's, else the neutral ``pool`` texts that the LMS/NLL budget
    does not score; at most ``cfg.max_texts``, never fewer than ``MIN_TEXTS``."""
    if cfg is None:
        return []
    if cfg.texts is not None:
        texts = [str(t) for t in cfg.texts]
        shared = len(set(texts) & set(lms_texts))
        if shared:
            logger.warning(
                "%d of the Fisher texts are also scored by the LMS/NLL budget: the budget "
                "is then no longer an out-of-sample check",
                shared,
            )
    else:
        used = set(lms_texts)
        texts = [t for t in pool if t not in used]
    texts = texts[: cfg.max_texts]
    if len(texts) < MIN_TEXTS:
        raise ValueError(
            f"precondition='fisher' needs at least {MIN_TEXTS} neutral texts that the LMS/NLL "
            f"budget does not score; found {len(texts)} ({len(pool)} neutral texts, "
            f"{len(lms_texts)} scored by the budget). Pass more eval_neutral_data than "
            "max_size_neutral, lower max_size_neutral, or give FisherConfig(texts=[...])"
        )
    return texts


def texts_hash(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def neutral_fisher(mwg, texts: list[str], progress: bool = True) -> torch.Tensor:
    """Diagonal empirical Fisher over the GRADIEND's dimensions: the mean over ``texts`` of the
    squared gradient of each text's mean token NLL (causal: next token; masked: 15 % random
    masks, seeded), normalised to mean 1."""
    return fisher_of(mwg.lm, mwg.grads, mwg.objective.scorer().max_length, texts, progress)


def fisher_of(lm, grads, max_length: int | None, texts: list[str], progress: bool = True):
    """``neutral_fisher`` from its parts: the loaded base model, the ``GradientComputer`` of the
    GRADIEND's dimensions and the objective's ``max_length`` (usable before training)."""
    device = next(lm.model.parameters()).device
    scorer = LMSScorer(
        lm.tokenizer, lm.kind, texts, batch_size=1, max_length=max_length, device=device
    )
    total = torch.zeros(grads.dim, dtype=torch.float64, device=grads.device)
    n = 0
    with _grad_enabled(grads.params):
        for b in tqdm(scorer.batches, desc="Fisher of neutral texts", disable=not progress):
            loss = _mean_nll(lm.model, lm.kind, b)
            if loss is None:
                continue
            g = grads._grad(loss, False).double()
            total.add_(g * g)
            n += 1
    if n == 0:
        raise ValueError("no neutral text had a token to score: no Fisher can be estimated")
    fisher = total / n
    mean = float(fisher.mean())
    if mean <= 0:
        raise ValueError("the neutral texts' gradients are zero on the selected parameters")
    return (fisher / mean).float()


def _mean_nll(model, kind: str, b: dict) -> torch.Tensor | None:
    logits, labels = predicted_logits(model, kind, b)
    keep = labels != -100
    if not bool(keep.any()):
        return None
    return torch.nn.functional.cross_entropy(logits[keep].float(), labels[keep])


def scale_vector(fisher: torch.Tensor, damping: float) -> torch.Tensor:
    """The per-dimension factor the update vector is multiplied by: ``1 / (F + λ)``."""
    return 1.0 / (fisher.float() + damping)


def load_or_compute(
    run_dir: Path, mwg, texts: list[str], key: str, cache: bool, progress: bool, write: bool = True
):
    """``F`` for ``texts`` and this GRADIEND's dimensions, from ``run_dir`` when the key matches,
    else computed (and, with ``write``, written atomically)."""
    path = Path(run_dir) / FISHER_FILE
    if cache and path.exists():
        try:
            fisher, stored = _read(path)
            if stored == key:
                return fisher
        except Exception as err:  # a damaged file is recomputed
            logger.warning("ignoring unreadable %s (%s)", path, err)
    fisher = neutral_fisher(mwg, texts, progress)
    if write:
        save_fisher(path, fisher, key)
    return fisher


def save_fisher(path: Path, fisher: torch.Tensor, key: str) -> None:
    tmp = path.with_name(tmp_prefix(path.name) + path.name)
    key_t = torch.tensor(list(key.encode()), dtype=torch.uint8)
    save_file({"fisher": fisher.detach().cpu().contiguous(), "key": key_t}, str(tmp))
    tmp.replace(path)


def load_fisher(run_dir: Path, key: str) -> torch.Tensor:
    """The stored ``F`` whose key is ``key`` (the rewrite of a preconditioned selection)."""
    path = Path(run_dir) / FISHER_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the selection was preconditioned by the neutral Fisher; "
            "rerun evaluate_decoder(precondition=...) to recompute it"
        )
    fisher, stored = _read(path)
    if stored != key:
        raise ValueError(
            f"{path} belongs to another decoder evaluation (different texts or GRADIEND); "
            "rerun evaluate_decoder(precondition=...) before rewriting"
        )
    return fisher


def _read(path: Path) -> tuple[torch.Tensor, str]:
    """The stored ``F`` and the key it was computed under."""
    data = load_file(str(path))
    return data["fisher"], bytes(data["key"].tolist()).decode()

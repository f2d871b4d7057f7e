"""A budget that holds out of sample: the neutral texts split into a selection part and a
held-out part, and the step back when the held-out NLL exceeds the budget.

The decoder search picks the step size on the texts whose NLL increase it bounds, so the
selected point sits at the edge of the budget *on those texts* and costs more on others (on
SmolLM2, +1 % selected was +1.2–1.4 % on 200 other sentences). So a seeded share of the
distinct neutral texts (``HeldoutConfig.fraction``, default 1/3, at least ``min_texts``) is
held out; the search selects under ``budget · (1 − margin)`` on the rest; the selected point is
re-scored on the held-out texts; where its held-out NLL increase still exceeds the budget, the
selection steps back to the next smaller step size (a confirmed point of the search, else a new
one) and checks again, at most ``max_step_backs`` times. Too few texts for two parts: a warning,
and the selection runs on all texts with the reason recorded (``split.fallback``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradiend.evaluator.decoder import Budget, Entry, is_estimate, lr_of, nll_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldoutConfig:
    """How the neutral texts are split and how much of the budget the selection keeps back.

    ``fraction`` of the distinct texts (at least ``min_texts``) are held out, chosen with
    ``seed``; the selection keeps ``NLL ≤ (1 + budget · (1 − margin)) · NLL(base)`` on the
    others; a held-out figure above the budget steps back at most ``max_step_backs`` times.
    """

    fraction: float = 1 / 3
    min_texts: int = 8
    margin: float = 0.2
    max_step_backs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"HeldoutConfig.fraction must be in (0, 1), got {self.fraction}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"HeldoutConfig.margin must be in [0, 1), got {self.margin}")
        if self.min_texts < 1 or self.max_step_backs < 0:
            raise ValueError(
                "HeldoutConfig.min_texts must be >= 1 and max_step_backs >= 0, got "
                f"{self.min_texts} and {self.max_step_backs}"
            )


def as_heldout_config(value: object) -> HeldoutConfig | None:
    """``None``/``True`` → the default split; ``False`` → no held-out part; a float → that
    share held out; a ``HeldoutConfig`` as it is."""
    if value is None or value is True:
        return HeldoutConfig()
    if value is False:
        return None
    if isinstance(value, HeldoutConfig):
        return value
    if isinstance(value, (int, float)):
        return HeldoutConfig(fraction=float(value))
    raise TypeError(
        f"heldout must be a HeldoutConfig, a share of the texts, True or False; got {value!r}"
    )


@dataclass(frozen=True)
class TextSplit:
    """The selection texts, the held-out texts (empty on a fallback) and why there are none."""

    selection: tuple[str, ...]
    heldout: tuple[str, ...]
    fallback: str | None = None


def split_texts(texts: Sequence[str], cfg: HeldoutConfig | None, min_selection: int) -> TextSplit:
    """Split by *distinct* text (a repeated text stays on one side), seeded; order is kept."""
    texts = tuple(texts)
    if cfg is None:
        return TextSplit(texts, (), "switched off (heldout=False)")
    distinct = list(dict.fromkeys(texts))
    k = max(cfg.min_texts, math.ceil(cfg.fraction * len(distinct)))
    if len(distinct) - k < min_selection:
        reason = (
            f"{len(distinct)} distinct neutral texts: holding out {k} would leave fewer than "
            f"{min_selection} to select on"
        )
        logger.warning(
            "the decoder's held-out budget check is skipped (%s), so the selected point's NLL "
            "is measured on the texts that selected it. Fix: pass at least %d distinct neutral "
            "texts (eval_neutral_data, and a max_size_neutral that keeps them)",
            reason,
            min_selection + k,
        )
        return TextSplit(texts, (), reason)
    held = {distinct[i] for i in random.Random(cfg.seed).sample(range(len(distinct)), k)}
    return TextSplit(tuple(t for t in texts if t not in held), tuple(t for t in texts if t in held))


def heldout_increase(check: dict, base_check: dict) -> float:
    """Relative NLL change on the held-out texts of a checked point against the base."""
    base = base_check["heldout"]["nll"]
    return check["heldout"]["nll"] / base - 1.0 if base else float("nan")


def step_back(
    selected: Entry,
    points: list[Entry],
    base: Entry,
    selection: Budget,
    max_nll_increase: float,
    increase_of: Callable[[Entry], float],
    new_point: Callable[[float], Entry],
    cfg: HeldoutConfig,
) -> tuple[Entry, list[dict], bool]:
    """From ``selected`` down until the held-out NLL increase (``increase_of``) keeps
    ``max_nll_increase``: each step takes the next smaller confirmed point inside the
    selection budget, else scores a new one (``new_point(lr)``) at the step size that the
    held-out usage suggests (cost ≈ η²). Returns the point, the trail and whether it holds."""
    entry, trail = selected, []
    while True:
        inc = increase_of(entry)
        trail.append(
            {
                "learning_rate": lr_of(entry),
                "nll_increase": nll_of(entry) / nll_of(base) - 1.0,
                "heldout_nll_increase": inc,
            }
        )
        if inc <= max_nll_increase:
            return entry, trail, True
        if len(trail) > cfg.max_step_backs:
            return entry, trail, False
        lr = lr_of(entry)
        smaller = [
            e for e in points if lr_of(e) < lr and not is_estimate(e) and selection.inside(e, base)
        ]
        if smaller:
            entry = max(smaller, key=lr_of)
        else:
            usage = inc / max_nll_increase if max_nll_increase > 0 else math.inf
            factor = math.sqrt((1.0 - cfg.margin) / usage) if math.isfinite(usage) else 0.25
            entry = new_point(lr * min(max(factor, 0.25), 0.8))

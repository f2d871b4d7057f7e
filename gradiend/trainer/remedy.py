"""Automatic remedies for a collapsed GRADIEND, tried as part of seed selection.

When a seed's attempt collapses (``trainer.collapse``: both classes encode to one side, the run
stopped early) and ``TrainingArguments.auto_remedy`` is on, the same seed is trained again with
one change at a time, in the order measured to work best (docs/training.md, "Collapse"):

1. ``source="diff"`` (when the run read another source): the difference of the factual and the
   alternative gradient has no part that both classes share, so the classes cannot land on one
   side by a shared offset;
2. a learning rate ten times smaller: a slower encoder does not saturate ``tanh`` before it
   found the direction that separates the classes;
3. both changes at once.

The first remedy that converges is kept for the remaining seeds; the next seed is the last
resort (what multi-seed selection does anyway). Remedies are tried once per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gradiend.trainer.collapse import CollapseRule

logger = logging.getLogger(__name__)

# a source whose gradients (factual − alternative) have no part shared by both classes
SAFE_SOURCE = "diff"


@dataclass(frozen=True)
class Attempt:
    """What one training attempt of a seed reads: the encoder's input gradient and the learning
    rate; ``remedy`` says what changed from the configured run (``None``: as configured)."""

    source: str
    learning_rate: float
    remedy: str | None = None

    def record(self) -> dict:
        return {"source": self.source, "learning_rate": self.learning_rate, "remedy": self.remedy}


@dataclass(frozen=True)
class RemedyPlan:
    """Collapse detection and the automatic remedies (``TrainingArguments.remedy_plan()``);
    ``rule.patience == 0`` never stops a run early."""

    enabled: bool = True
    rule: CollapseRule = field(default_factory=CollapseRule)
    lr_factor: float = 0.1

    def remedies(self, base: Attempt, can_switch_source: bool) -> list[Attempt]:
        """The attempts to try after ``base`` collapsed, in the measured order."""
        lr = base.learning_rate * self.lr_factor
        smaller = Attempt(base.source, lr, f"learning_rate={lr:.3g}")
        if not can_switch_source or base.source == SAFE_SOURCE:
            return [smaller]
        return [
            Attempt(SAFE_SOURCE, base.learning_rate, f"source={SAFE_SOURCE!r}"),
            smaller,
            Attempt(SAFE_SOURCE, lr, f"source={SAFE_SOURCE!r}, learning_rate={lr:.3g}"),
        ]


# (batches, evaluate) of one source: the cached training gradients and the validation callback
Inputs = tuple
Variant = Callable[[str], Inputs]


class RemedyRun:
    """The attempts of each seed: the current setting, and after a first collapse the remedies
    (see the module docstring). ``observe`` must be called with each attempt's record."""

    def __init__(self, plan: RemedyPlan, base: Attempt, inputs: Inputs, variant: Variant | None):
        self.plan, self.current, self.variant = plan, base, variant
        self._inputs = {base.source: inputs}
        self._last: dict | None = None
        self.used = False
        self.tried: list[dict] = []

    def inputs(self, attempt: Attempt) -> Inputs:
        """The gradients and validation callback of ``attempt``'s source (built on first use)."""
        if attempt.source not in self._inputs:
            self._inputs[attempt.source] = self.variant(attempt.source)
        return self._inputs[attempt.source]

    def observe(self, record: dict) -> None:
        self._last = record

    def attempts(self, seed: int) -> Iterator[Attempt]:
        """The current setting, then (once per run, after a collapse) each remedy until one
        converges; a converged remedy becomes the setting of the remaining seeds."""
        yield self.current
        first = self._last
        if self.used or not self.plan.enabled or not _collapsed(first):
            return
        self.used = True
        for attempt in self.plan.remedies(self.current, self.variant is not None):
            logger.warning("seed %d: trying %s after the collapse", seed, attempt.remedy)
            yield attempt
            record = self._last or {}
            self.tried.append({"seed": seed, **attempt.record(), **_outcome(record)})
            if record.get("converged"):
                logger.warning(
                    "seed %d converged with %s (correlation %.3f at step %d); the remaining "
                    "seeds use it",
                    seed, attempt.remedy, record["correlation"], record["best_step"],
                )  # fmt: skip
                self.current = attempt
                return
            logger.warning("seed %d with %s: %s", seed, attempt.remedy, _describe(record))
        logger.warning("no automatic remedy converged for seed %d", seed)

    def summary(self) -> dict:
        """``training.json``'s ``remedies``: what was tried and what the run kept."""
        return {
            "enabled": self.plan.enabled,
            "tried": self.tried,
            "adopted": self.current.remedy,
            "source": self.current.source,
            "learning_rate": self.current.learning_rate,
        }


def _collapsed(record: dict | None) -> bool:
    return bool(record) and record.get("collapse") is not None and not record.get("converged")


def _outcome(record: dict) -> dict:
    return {
        "converged": bool(record.get("converged")),
        "correlation": record.get("correlation"),
        "best_step": record.get("best_step"),
        "collapse": record.get("collapse"),
    }


def _describe(record: dict) -> str:
    collapse = record.get("collapse")
    if collapse:
        return f"collapsed again at step {collapse['step']} ({collapse['reason']})"
    if record.get("failed"):
        return f"failed ({record.get('error')})"
    return f"did not converge (correlation {record.get('correlation')})"


def status(record: dict) -> str:
    """``"converged"``, ``"collapsed"`` or ``"not_converged"`` for a seed's record."""
    if record.get("converged"):
        return "converged"
    return "collapsed" if record.get("collapse") else "not_converged"


def advice(records: list[dict], plan: RemedyPlan, tried: list[dict]) -> str:
    """What to change when no seed converged, by what the attempts showed."""
    if not any(r.get("collapse") for r in records):
        return "the encodings moved too little: try a larger learning_rate or more steps"
    if tried:
        done = " | ".join(t["remedy"] for t in tried)
        return (
            f"the encoder collapsed (both classes on one side) and the automatic remedies ({done}) "
            f"did not converge either: try more steps with source={SAFE_SOURCE!r} and a 10x "
            "smaller learning_rate, or check that the base model predicts the class words at "
            "the mask (not a third word); not a larger learning_rate"
        )
    off = "" if plan.enabled else " (auto_remedy=False: no remedy was tried)"
    return (
        f"the encoder collapsed (both classes on one side){off}: try "
        f"source={SAFE_SOURCE!r}, a 10x smaller learning_rate, or both; not a larger one"
    )

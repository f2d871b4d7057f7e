"""Collapse: an encoder that sends both target classes to one side, detected during training.

A GRADIEND *collapses* when its encoder stops separating the two target classes: both class
means of the validation encodings land on the same side (``tanh`` saturates, its gradient
vanishes and the run never recovers), or the gap between the class means vanishes against their
spread. :class:`CollapseMonitor` reads the validation summary the loop already computes at each
evaluation and reports a collapse once it was seen at ``patience`` evaluations in a row after
step 0 without a new best correlation; the loop then stops that attempt early.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollapseRule:
    """When validation encodings count as collapsed (see the module docstring).

    ``min_offset``: both class means on one side, each at least this far from 0 (encodings
    lie in [−1, 1]: ``tanh`` saturated); ``max_separation``: half the gap between the class
    means below this fraction of their pooled standard deviation and below ``max_gap``;
    ``patience``: evaluations in a row. (A first rule, midpoint ≥ 0.5 from 0, also fired on
    healthy planted runs whose bias moves before the classes separate.)
    """

    patience: int = 2
    min_offset: float = 0.9
    max_separation: float = 0.1
    max_gap: float = 0.02

    def reason(self, summary: dict, target_classes: tuple[str, ...]) -> str | None:
        """Why this evaluation looks collapsed, or ``None`` when the classes are apart."""
        means = summary.get("mean_by_class", {})
        stds = summary.get("std_by_class", {})
        if len(target_classes) < 2 or any(means.get(c) is None for c in target_classes[:2]):
            return None
        a, b = (float(means[c]) for c in target_classes[:2])
        if not (math.isfinite(a) and math.isfinite(b)):
            return None
        gap = abs(a - b) / 2
        names = f"{target_classes[0]} {a:+.2f}, {target_classes[1]} {b:+.2f}"
        if a * b > 0 and min(abs(a), abs(b)) >= self.min_offset:
            return f"both classes encode to one side ({names})"
        sa, sb = (float(stds.get(c) or 0.0) for c in target_classes[:2])
        spread = math.sqrt((sa * sa + sb * sb) / 2)
        if gap <= min(self.max_separation * spread, self.max_gap) or gap < 1e-6:
            return f"the class means are not apart ({names}, spread {spread:.2f})"
        return None


class CollapseMonitor:
    """Feed it every evaluation after step 0; it returns the collapse record (step, reason,
    class means) once the rule held ``patience`` times in a row without a new best step."""

    def __init__(self, rule: CollapseRule, target_classes: tuple[str, ...]):
        self.rule, self.target_classes = rule, tuple(target_classes)
        self.streak = 0

    def update(self, summary: dict, improved: bool) -> dict | None:
        reason = self.rule.reason(summary, self.target_classes)
        self.streak = self.streak + 1 if reason is not None and not improved else 0
        if self.streak < self.rule.patience:
            return None
        return {
            "step": int(summary["step"]),
            "reason": reason,
            "evaluations": self.streak,
            "mean_by_class": {c: summary["mean_by_class"][c] for c in self.target_classes[:2]},
        }

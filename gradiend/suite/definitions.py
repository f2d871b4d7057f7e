"""What a suite trains: one child per pair of classes (symmetric) or per positive feature.

Plain values: a child's id names its run folder (``<experiment_dir>/<run_id>/<child_id>/``), its
label names it in figures and tables.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gradiend._kwargs import strict_kwargs

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_id(text: str) -> str:
    """``text`` as one folder name (anything but letters, digits and ``._+-`` becomes ``-``)."""
    out = _SAFE.sub("-", str(text)).strip("-")
    if not out or out in (".", ".."):
        raise ValueError(f"{text!r} gives no usable folder name: pass child_id=...")
    return out


@strict_kwargs
@dataclass(frozen=True)
class SuitePairDefinition:
    """One child of a symmetric suite: its two classes (``target_classes[0]`` encodes to +1),
    its folder name (default ``a__b``) and its label (default ``a/b``)."""

    target_classes: tuple[str, str]
    child_id: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.target_classes)
        if len(classes) != 2 or classes[0] == classes[1]:
            raise ValueError(
                f"SuitePairDefinition needs two different classes, got {self.target_classes!r}"
            )
        object.__setattr__(self, "target_classes", classes)
        cid = self.child_id or f"{safe_id(classes[0])}__{safe_id(classes[1])}"
        object.__setattr__(self, "child_id", safe_id(cid))
        object.__setattr__(self, "label", self.label or f"{classes[0]}/{classes[1]}")


@strict_kwargs
@dataclass(frozen=True)
class PositiveFeatureDefinition:
    """One child of a positive suite: ``positive_feature_class`` (encodes to +1) against
    ``negative_feature_class`` (one class, or several merged into one, default name
    ``non_<positive>``)."""

    positive_feature_class: str
    negative_feature_class: str | Sequence[str]
    label: str | None = None
    child_id: str | None = None
    negative_name: str | None = None

    def __post_init__(self) -> None:
        neg = self.negative_feature_class
        negs = (str(neg),) if isinstance(neg, str) else tuple(str(c) for c in neg)
        pos = str(self.positive_feature_class)
        if not negs or pos in negs:
            raise ValueError(
                f"PositiveFeatureDefinition: negative_feature_class {neg!r} must name at least "
                f"one class other than the positive class {pos!r}"
            )
        object.__setattr__(self, "positive_feature_class", pos)
        object.__setattr__(self, "negative_feature_class", negs[0] if len(negs) == 1 else negs)
        name = self.negative_name or (negs[0] if len(negs) == 1 else f"non_{pos}")
        object.__setattr__(self, "negative_name", name)
        object.__setattr__(self, "child_id", safe_id(self.child_id or f"{pos}__{name}"))
        object.__setattr__(self, "label", self.label or f"{pos} vs {name}")

    @property
    def negatives(self) -> tuple[str, ...]:
        neg = self.negative_feature_class
        return (neg,) if isinstance(neg, str) else tuple(neg)

    @property
    def target_classes(self) -> tuple[str, str]:
        return (self.positive_feature_class, self.negative_name)

    @property
    def merge_map(self) -> dict[str, list[str]]:
        """The merged negative class, when it is made of several classes."""
        return {self.negative_name: list(self.negatives)} if len(self.negatives) > 1 else {}


def symmetric_definitions(
    target_classes: Sequence[str] | None,
    target_pairs: Sequence[Sequence[str]] | None,
    pair_definitions: Sequence[SuitePairDefinition] | None,
) -> list[SuitePairDefinition]:
    """The children of a symmetric suite: every unordered pair of ``target_classes`` (in their
    order), or the pairs given, or the definitions given (exactly one of the three)."""
    given = [x is not None for x in (target_classes, target_pairs, pair_definitions)]
    if sum(given) != 1:
        raise ValueError(
            "SymmetricTrainerSuite needs exactly one of target_classes=[...] (every pair), "
            "target_pairs=[(a, b), ...] or pair_definitions=[SuitePairDefinition(...), ...]"
        )
    if pair_definitions is not None:
        defs = list(pair_definitions)
    elif target_pairs is not None:
        defs = [SuitePairDefinition(target_classes=tuple(p)) for p in target_pairs]
    else:
        classes = list(dict.fromkeys(str(c) for c in target_classes))
        if len(classes) < 2:
            raise ValueError(f"target_classes needs at least two classes, got {target_classes!r}")
        defs = [SuitePairDefinition(target_classes=p) for p in itertools.combinations(classes, 2)]
    _check_unique(defs)
    seen = {}
    for d in defs:
        key = frozenset(d.target_classes)
        if key in seen:
            raise ValueError(
                f"the pair {d.target_classes} is listed twice (also as {seen[key]}): a symmetric "
                "suite trains each unordered pair once"
            )
        seen[key] = d.target_classes
    return defs


def positive_definitions(
    definitions: Sequence[PositiveFeatureDefinition] | None,
    feature_class_group: Sequence[str] | None,
    mode: str,
) -> list[PositiveFeatureDefinition]:
    """``mode="single"``: the definitions given; ``mode="all_but_one"``: one child per class
    of ``feature_class_group``, against the rest of the group merged into ``non_<class>``."""
    if mode == "single":
        if not definitions:
            raise ValueError(
                "PositiveTrainerSuite(mode='single') needs definitions=[PositiveFeatureDefinition("
                "positive_feature_class=..., negative_feature_class=...), ...]"
            )
        defs = list(definitions)
    elif mode == "all_but_one":
        group = list(dict.fromkeys(str(c) for c in feature_class_group or []))
        if len(group) < 2:
            raise ValueError(
                "PositiveTrainerSuite(mode='all_but_one') needs feature_class_group=[...] with at "
                f"least two classes, got {feature_class_group!r}"
            )
        defs = [
            PositiveFeatureDefinition(
                positive_feature_class=c, negative_feature_class=[x for x in group if x != c]
            )
            for c in group
        ]
    else:
        raise ValueError(f"mode must be 'single' or 'all_but_one', got {mode!r}")
    _check_unique(defs)
    return defs


def _check_unique(defs) -> None:
    ids = [d.child_id for d in defs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"child ids must be unique; repeated: {dup} (pass child_id=...)")
    if not defs:
        raise ValueError("a suite needs at least one child")

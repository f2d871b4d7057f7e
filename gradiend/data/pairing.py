"""From base rows (sentence, factual word, class) to transition rows: merged classes, the
classes a run uses, and the counterfactual words drawn for each transition.

``ClassOptions`` holds the trainer's keywords for this stage (``class_merge_map``,
``class_merge_transition_groups``, ``all_classes``, ``max_counterfactuals_per_sentence``,
``random_state``, ``split_ratios``, ``transition_selection``). Everything here is table work:
no model is used, so bad input fails before anything expensive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradiend.data.formats import check_ratios

logger = logging.getLogger(__name__)

__all__ = [
    "ClassOptions",
    "draw_transitions",
    "fill_paired_classes",
    "merge_classes",
    "pre_paired",
    "restrict_classes",
]

RAW = "raw_class"  # the class a row had before class_merge_map merged it


def _ratios(value: Any) -> tuple[float, float, float]:
    if isinstance(value, Mapping):
        unknown = set(value) - {"train", "validation", "val", "test"}
        if unknown:
            raise ValueError(
                f"split_ratios keys must be train/validation/test, got {sorted(unknown)}"
            )
        value = (
            value.get("train", 0.0),
            value.get("validation", value.get("val", 0.0)),
            value.get("test", 0.0),
        )
    if isinstance(value, (str, bytes)) or len(value) != 3:
        raise ValueError(
            f"split_ratios must be three numbers (train, validation, test) or a dict of them, "
            f"got {value!r}"
        )
    return check_ratios(*value)


@dataclass(frozen=True)
class ClassOptions:
    """How the trainer turns classes into transition rows (the incumbent's keyword names)."""

    class_merge_map: Mapping[str, Sequence[str]] | None = None
    class_merge_transition_groups: Sequence[Sequence[str]] | Mapping | None = None
    all_classes: Sequence[str] | None = None
    max_counterfactuals_per_sentence: int = 1
    random_state: int | None = None
    split_ratios: Any = (0.8, 0.1, 0.1)
    transition_selection: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_ratios", _ratios(self.split_ratios))
        k = self.max_counterfactuals_per_sentence
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"max_counterfactuals_per_sentence must be an integer ≥ 1, got {k!r}")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, (int, np.integer))):
            raise TypeError(f"random_state must be an integer or None, got {rs!r}")
        if self.class_merge_map is not None:
            _check_merge_map(self.class_merge_map)
        elif self.class_merge_transition_groups is not None:
            raise ValueError(
                "class_merge_transition_groups restricts the raw transitions of merged classes: "
                "pass class_merge_map too"
            )
        if self.all_classes is not None and (
            isinstance(self.all_classes, str) or not len(self.all_classes)
        ):
            raise ValueError(f"all_classes must be a non-empty list of classes, got "
                             f"{self.all_classes!r}")  # fmt: skip

    def seed(self, default: int) -> int:
        """The drawing seed: ``random_state``, else the run's seed (always reproducible)."""
        return default if self.random_state is None else int(self.random_state)

    def raw_groups(self) -> list[set[str]] | None:
        groups = self.class_merge_transition_groups
        if groups is None:
            return None
        values = groups.values() if isinstance(groups, Mapping) else groups
        out = []
        for g in values:
            if isinstance(g, str) or len(g) < 2:
                raise ValueError(
                    f"each class_merge_transition_groups entry lists ≥ 2 raw classes, got {g!r}"
                )
            out.append({str(c) for c in g})
        return out


def _check_merge_map(merge_map: Mapping[str, Sequence[str]]) -> None:
    if not isinstance(merge_map, Mapping) or not merge_map:
        raise TypeError(
            f"class_merge_map must map a merged class to its raw classes, e.g. "
            f"{{'singular': ['he', 'she']}}; got {merge_map!r}"
        )
    seen: dict[str, str] = {}
    for merged, members in merge_map.items():
        if isinstance(members, str) or not len(members):
            raise ValueError(
                f"class_merge_map[{merged!r}] must be a non-empty list of raw classes, got "
                f"{members!r}"
            )
        for m in members:
            if str(m) in seen and seen[str(m)] != str(merged):
                raise ValueError(
                    f"raw class {m!r} is in class_merge_map[{seen[str(m)]!r}] and "
                    f"class_merge_map[{merged!r}]; a class merges into one class only"
                )
            seen[str(m)] = str(merged)


def merge_classes(base: pd.DataFrame, options: ClassOptions) -> pd.DataFrame:
    """Rename raw classes to their merged class (``raw_class`` keeps the raw one)."""
    base = base.copy()
    base[RAW] = base["factual_class"]
    if options.class_merge_map is None:
        return base
    mapping = {str(m): str(k) for k, ms in options.class_merge_map.items() for m in ms}
    present = set(base["factual_class"])
    unknown = sorted(set(mapping) - present)
    if unknown:
        raise ValueError(
            f"class_merge_map names raw class(es) {unknown} that the data does not have; "
            f"classes are {sorted(present)}"
        )
    clash = sorted(set(mapping.values()) & (present - set(mapping)))
    if clash:
        raise ValueError(
            f"merged class name(s) {clash} are also unmerged classes of the data; rename them"
        )
    groups = options.raw_groups()
    if groups is not None:
        bad = sorted({c for g in groups for c in g} - set(mapping))
        if bad:
            raise ValueError(
                f"class_merge_transition_groups names class(es) {bad} that class_merge_map "
                f"does not merge; merged raw classes are {sorted(mapping)}"
            )
    base["factual_class"] = base["factual_class"].map(lambda c: mapping.get(c, c))
    if "alternative_class" in base.columns:
        base["alternative_raw"] = base["alternative_class"]
        base["alternative_class"] = base["alternative_class"].map(lambda c: mapping.get(c, c))
    logger.info("merged classes: %s", {k: list(v) for k, v in options.class_merge_map.items()})
    return base


def restrict_classes(base: pd.DataFrame, options: ClassOptions) -> pd.DataFrame:
    """Keep the rows of ``all_classes`` (every class when it is None)."""
    if options.all_classes is None:
        return base
    wanted = [str(c) for c in options.all_classes]
    present = list(dict.fromkeys(base["factual_class"]))
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise ValueError(
            f"all_classes names class(es) {unknown} that the data does not have; classes are "
            f"{present}"
        )
    base = base[base["factual_class"].isin(wanted)]
    if "alternative_class" in base.columns:
        keep = base["alternative_class"].isna() | base["alternative_class"].isin(wanted)
        base = base[keep]
    return base.reset_index(drop=True)


def _allowed(groups: list[set[str]] | None, raw: str, other_raw: str) -> bool:
    return groups is None or any(raw in g and other_raw in g for g in groups)


def _vocab(words: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    counts = words.str.lower().value_counts(normalize=True)
    return counts.index.to_numpy(), counts.to_numpy()


def _draw(rng, words, probs, n: int, k: int) -> list[list[str]]:
    """``k`` distinct words per row (fewer when the class has fewer words), by frequency."""
    if k == 1:
        return [[w] for w in rng.choice(words, size=n, p=probs)]
    m = min(k, len(words))
    return [list(rng.choice(words, size=m, replace=False, p=probs)) for _ in range(n)]


def draw_transitions(
    base: pd.DataFrame,
    transitions: Sequence[tuple[str, str]],
    options: ClassOptions,
    seed: int,
    by_split: bool = False,
) -> pd.DataFrame:
    """One row per (sentence, counterfactual word) of each transition ``x→y``.

    Rows that came with an alternative of class ``y`` keep it; otherwise up to
    ``max_counterfactuals_per_sentence`` distinct words are drawn from class ``y``'s words
    (case-folded frequencies; with ``by_split`` only words of the row's split, so held-out
    words stay held out; with ``class_merge_transition_groups`` only words of raw classes in a
    group with the row's raw class). ``x→x`` gives identity rows.
    """
    rng = np.random.default_rng(seed)
    groups, k = options.raw_groups(), options.max_counterfactuals_per_sentence
    given_alt = "alternative_class" in base.columns
    sentence = [c for c in ("masked", "factual", RAW, "split") if c in base.columns]
    parts = []
    for x, y in transitions:
        rows = base[base["factual_class"] == x]
        if given_alt:
            given = rows[rows["alternative_class"] == y]
            if len(given):  # the data's own pairs; draw only for rows that came unpaired
                parts.append(given)
                rows = rows[rows["alternative_class"].isna()]
                if not len(rows) or x == y:
                    continue
            rows = rows.drop_duplicates(subset=sentence)  # one row per sentence to draw for
        if x == y:
            rows = rows.drop_duplicates(subset=sentence)
            parts.append(rows.assign(alternative=rows["factual"], alternative_class=x))
            continue
        parts.append(_drawn(rows, base[base["factual_class"] == y], y, rng, groups, k, by_split))
    return pd.concat(parts, ignore_index=True) if parts else base.iloc[:0]


def _drawn(rows, pool, y, rng, groups, k, by_split) -> pd.DataFrame:
    """Rows of one transition ``x→y`` with drawn alternatives, in the rows' order."""
    keys = ["split"] if by_split else []
    if groups is not None:
        keys.append(RAW)
    grouped = rows.groupby(keys).indices if keys else {(): np.arange(len(rows))}
    drawn: list[tuple[int, int, str]] = []
    for key, pos in grouped.items():
        key = key if isinstance(key, tuple) else (key,)
        sub = pool
        if by_split:
            same = sub[sub["split"] == key[0]]
            sub = same if len(same) else sub
        if groups is not None:
            sub = sub[[_allowed(groups, key[-1], r) for r in sub[RAW]]]
            if not len(sub):
                continue  # no raw class of y may pair with this raw class
        words, probs = _vocab(sub["factual"].astype(str))
        for p, ws in zip(pos, _draw(rng, words, probs, len(pos), k), strict=True):
            drawn += [(int(p), j, str(w)) for j, w in enumerate(ws)]
    drawn.sort()
    out = rows.iloc[[p for p, _, _ in drawn]].copy()
    out["alternative"] = [
        match_case(w, f) for (_, _, w), f in zip(drawn, out["factual"], strict=True)
    ]
    out["alternative_class"] = y
    return out


def pre_paired(df: pd.DataFrame, masked_col: str, split_col, classes, alt_classes):
    """Rows that come paired: ``source`` is the factual word, ``target`` the alternative
    (their classes: ``source_id`` / ``target_id`` columns, else the frame's class)."""
    if masked_col not in df.columns:
        raise ValueError(f"pre-paired rows need a {masked_col!r} column; columns are "
                         f"{list(df.columns)}")  # fmt: skip
    n = len(df)
    out = pd.DataFrame(
        {
            "masked": df[masked_col].astype(str).values,
            "factual": df["source"].astype(str).values,
            "factual_class": pd.Series(classes, index=df.index).astype(str).values
            if not isinstance(classes, str) else [classes] * n,
            "alternative": df["target"].astype(str).values,
            "alternative_class": [None] * n if alt_classes is None
            else pd.Series(alt_classes, index=df.index).astype(str).values,
        }
    )  # fmt: skip
    if "mask_labels" in df.columns:
        out["mask_labels"] = df["mask_labels"].values
    if split_col and split_col in df.columns:
        out["split"] = df[split_col].values
    return out


def fill_paired_classes(base: pd.DataFrame, targets: list[str], classes: list[str]) -> None:
    """Pre-paired rows without a ``target_id``: their alternative is of the other class of
    the pair (the only reading when there are two classes)."""
    if "alternative_class" not in base.columns or not base["alternative_class"].isna().any():
        return
    missing = base["alternative_class"].isna() & base["alternative"].notna()
    stray = base.loc[missing, "factual_class"][~base.loc[missing, "factual_class"].isin(targets)]
    if len(stray):
        raise ValueError(
            f"pre-paired rows of class {stray.iloc[0]!r} have a 'target' word but no "
            f"'target_id' class, and {stray.iloc[0]!r} is not in the pair {targets}; add a "
            f"target_id column naming the target word's class (classes are {classes})"
        )
    other = {targets[0]: targets[1], targets[1]: targets[0]}
    base.loc[missing, "alternative_class"] = base.loc[missing, "factual_class"].map(other)


def match_case(word: str, like: str) -> str:
    """``word`` with the casing pattern of ``like`` (lower, UPPER, Title, else unchanged)."""
    if like.islower():
        return word.lower()
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper() and like[1:].islower():
        return word[:1].upper() + word[1:].lower()
    return word

"""Held-out-vocabulary splits: every factual word of a class in exactly one split.

Asked for with ``split_col="heldout"`` or ``split_col=None`` (never chosen silently). Rows are grouped per factual class
by their factual word (stripped, case-folded), and whole groups go to train/validation/test in
the proportions 0.8/0.1/0.1 (by rows), so the test split measures whether a GRADIEND
generalises to words it never saw.
"""

from __future__ import annotations

import logging

import pandas as pd

from gradiend.data.formats import SPLITS, class_rng, group_splits

logger = logging.getLogger(__name__)

MODE = "held_out_vocabulary"


def word_key(words: pd.Series) -> pd.Series:
    return words.astype(str).str.strip().str.casefold()


def vocabulary_split(
    base: pd.DataFrame, seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[pd.Series, dict]:
    """The ``split`` of every row of ``base`` and a record of which words went where."""
    out = pd.Series("train", index=base.index, dtype=object)
    words: dict[str, dict[str, list[str]]] = {}
    needed = sum(r > 0 for r in ratios)
    for cls, idx in base.groupby("factual_class", sort=False).groups.items():
        keys = word_key(base.loc[idx, "factual"])
        if keys.nunique() < needed:
            raise ValueError(
                f"split_col='heldout' (or None) asks for a held-out-vocabulary split, but class "
                f"{cls!r} has "
                f"{keys.nunique()} distinct word(s) ({', '.join(sorted(keys.unique())[:5])}) "
                f"and {needed} splits need at least {needed}; pass split_col='split' to use the "
                "data's splits, or add words"
            )
        labels = group_splits(keys, ratios, class_rng(seed, str(cls), "vocab"), str(cls))
        out[idx] = labels
        words[str(cls)] = {s: sorted(set(keys[labels == s])) for s in SPLITS}
    record = {"mode": MODE, "ratios": list(ratios), "seed": seed, "words": words}
    logger.info("held-out-vocabulary split: %s", {c: len(w["train"]) for c, w in words.items()})
    return out, record

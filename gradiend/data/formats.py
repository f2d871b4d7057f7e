"""Shaping collected rows: balancing, per-class splits and the per_class/unified/minimal formats.

The column contract is docs/data-format.md.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
PER_CLASS_COLUMNS = ["text", "masked", "label", "mask_labels", "token_count"]


def class_rng(seed: int, class_id: str, salt: str = "") -> np.random.Generator:
    """A generator that depends on the seed and the class, not on the order classes are handled."""
    return np.random.default_rng([seed, zlib.crc32(f"{salt}:{class_id}".encode())])


def check_ratios(train: float, validation: float, test: float) -> tuple[float, float, float]:
    """Validate the split ratios: non-negative, summing to 1."""
    ratios = (float(train), float(validation), float(test))
    if min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(
            f"train/validation/test ratios must be >= 0 and sum to 1, got {ratios} "
            f"(sum {sum(ratios):.3f})"
        )
    return ratios


def balance_frames(
    frames: dict[str, pd.DataFrame], balance: str | bool, seed: int, min_rows_per_target: int = 1
) -> dict[str, pd.DataFrame]:
    """Apply the balance mode.

    ``"try"`` shuffles each class (seeded); ``"strict"`` additionally gives every label
    (case-folded) of a class as many rows as its rarest label and cuts every class to the size of
    the smallest non-empty class (labels with fewer than ``min_rows_per_target`` rows are dropped
    first, so one rare word does not shrink the class); ``False`` keeps the order rows were found.
    """
    if balance not in ("try", "strict", False):
        raise ValueError(f"balance must be 'try', 'strict' or False, got {balance!r}")
    if balance is False:
        return {cid: df.reset_index(drop=True) for cid, df in frames.items()}
    out = {}
    for cid, df in frames.items():
        rng = class_rng(seed, cid, "shuffle")
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        if balance == "strict" and len(df):
            keys = df["label"].str.casefold()
            counts = keys.value_counts()
            counts = counts[counts >= min_rows_per_target]
            floor = int(counts.min()) if len(counts) else 0
            keep = keys.isin(counts.index) & (keys.groupby(keys).cumcount() < floor)
            df = df[keep.to_numpy()].reset_index(drop=True)
        out[cid] = df
    if balance == "strict":
        sizes = [len(df) for df in out.values() if len(df)]
        if sizes:
            out = {cid: df.iloc[: min(sizes)] for cid, df in out.items()}
    return out


def _counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Rows per split: every split with a positive ratio gets at least one row."""
    counts = [int(round(n * r)) for r in ratios]
    for i in (1, 2):
        if ratios[i] > 0 and counts[i] == 0:
            counts[i] = 1
    counts[0] = n - counts[1] - counts[2]
    return counts


def random_splits(
    n: int, ratios: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Assign ``n`` rows to train/validation/test at random in the given proportions."""
    counts = _counts(n, ratios)
    labels = np.repeat(np.array(SPLITS, dtype=object), counts)
    return labels[rng.permutation(n)]


def group_splits(
    groups: pd.Series, ratios: tuple[float, float, float], rng: np.random.Generator, class_id: str
) -> np.ndarray:
    """Held-out splits: all rows of a group (e.g. a target word) land in the same split."""
    keys = groups.astype(str).str.strip().str.casefold()
    sizes = keys.value_counts()
    needed = sum(r > 0 for r in ratios)
    if len(sizes) < needed:
        raise ValueError(
            f"class {class_id!r} has {len(sizes)} distinct value(s) of the split_group_col "
            f"({', '.join(map(repr, sizes.index[:5]))}) but a held-out split into "
            f"{needed} parts needs at least {needed}; add target words or pass split_group_col=None."
        )
    order = list(sizes.index[rng.permutation(len(sizes))])
    # Give each positive-ratio split one group first, then fill by cumulative row share.
    assignment: dict[str, str] = {}
    for name, r in zip(SPLITS, ratios, strict=True):
        if r > 0:
            assignment[order.pop(0)] = name
    total = len(keys)
    filled = {s: sum(sizes[g] for g, a in assignment.items() if a == s) for s in SPLITS}
    for g in order:
        deficit = {s: ratios[i] * total - filled[s] for i, s in enumerate(SPLITS) if ratios[i] > 0}
        target = max(deficit, key=deficit.get)
        assignment[g] = target
        filled[target] += sizes[g]
    return keys.map(assignment).to_numpy(dtype=object)


def add_splits(
    frames: dict[str, pd.DataFrame],
    ratios: tuple[float, float, float],
    seed: int,
    group_col: str | None,
) -> dict[str, pd.DataFrame]:
    """Add the ``split`` column to every class frame (seeded per class)."""
    out = {}
    for cid, df in frames.items():
        rng = class_rng(seed, cid, "split")
        df = df.copy()
        if group_col is None:
            df["split"] = random_splits(len(df), ratios, rng)
        else:
            if group_col not in df.columns:
                raise KeyError(
                    f"split_group_col {group_col!r} is not a column; use one of {list(df.columns)}"
                )
            df["split"] = group_splits(df[group_col], ratios, rng, cid)
        out[cid] = df
    return out


def per_class_frame(rows: list[dict], class_id: str) -> pd.DataFrame:
    """The per-class table of docs/data-format.md (the class column repeats ``label``)."""
    df = pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)
    if class_id not in df.columns and class_id != "split":
        df[class_id] = df["label"]
    return df


def copy_case(template: str, word: str) -> str:
    """Give ``word`` the casing pattern of ``template`` (lower, UPPER or Title)."""
    if template.islower():
        return word.lower()
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:].lower()
    return word


def to_unified(frames: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """One row per (sentence, other class); the alternative word is drawn from that class's words."""
    vocab = {}
    for cid, df in frames.items():
        counts = df["label"].str.casefold().value_counts()
        vocab[cid] = (counts.index.to_numpy(), (counts / counts.sum()).to_numpy())
    parts = []
    for cid, df in frames.items():
        for other in frames:
            if other == cid:
                continue
            words, probs = vocab[other]
            drawn = class_rng(seed, f"{cid}->{other}", "alt").choice(words, size=len(df), p=probs)
            alternative = [copy_case(f, a) for f, a in zip(df["label"], drawn, strict=True)]
            parts.append(
                pd.DataFrame(
                    {
                        "masked": df["masked"].to_numpy(),
                        "label": df["label"].to_numpy(),
                        "label_class": cid,
                        "alternative": alternative,
                        "alternative_class": other,
                        "transition": f"{cid}→{other}",
                        "feature_class_id": cid,
                        "mask_labels": df["mask_labels"].to_numpy(),
                        "split": df["split"].to_numpy(),
                    }
                )
            )
    columns = [
        "masked", "label", "label_class", "alternative", "alternative_class", "transition",
        "feature_class_id", "mask_labels", "split",
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def to_minimal(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All classes stacked: ``masked``, ``label``, ``label_class``, ``split``, ``mask_labels``."""
    parts = [
        df[["masked", "label", "split", "mask_labels"]].assign(label_class=cid)
        for cid, df in frames.items()
    ]
    columns = ["masked", "label", "label_class", "split", "mask_labels"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]

"""Rows of the canonical table → objective items (token ids, scored positions, targets).

Also the cheap checks that run before any gradient: masks present, words in the vocabulary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradiend.data.examples import row_words
from gradiend.lm.objectives import Item, Objective


def build_items(df: pd.DataFrame, objective: Objective) -> list[Item]:
    """One ``Item`` per row; errors name the offending row."""
    items = []
    for i, row in enumerate(df.to_dict("records")):
        factual, alternative = row_words(row)
        try:
            items.append(objective.item(row["masked"], factual, alternative))
        except ValueError as err:
            raise ValueError(f"row {i} ({row['factual_class']}): {err}") from None
    return items


def check_rows(df: pd.DataFrame, objective: Objective, model_name: str) -> None:
    """Fail fast, before any gradient: masks present and every word known to the tokenizer."""
    no_mask = df[~df["masked"].str.contains(objective.mask, regex=False)]
    if len(no_mask):
        cls = no_mask["factual_class"].iloc[0]
        raise ValueError(
            f"{len(no_mask)} row(s) have no {objective.mask} (first of class {cls!r}: "
            f"{no_mask['masked'].iloc[0][:80]!r}); mask the target word or set masked_col"
        )
    unk = objective.tokenizer.unk_token_id
    words = set(df["factual"]) | set(df["alternative"])
    if "mask_labels" in df.columns:
        for v in df["mask_labels"].dropna():
            words |= set(str(v).split("|"))
    for word in sorted(w for w in words if w):
        ids = objective.word_ids(word)
        if unk is not None and unk in ids:
            raise ValueError(
                f"the word {word!r} is not in the vocabulary of {model_name} (it becomes "
                f"{objective.tokenizer.unk_token!r}); drop those rows or use another model"
            )


def neutral_item(
    token_ids: list[int], objective: Objective, rng: np.random.Generator, excluded: set[str]
) -> Item | None:
    """Re-mask one random content token of a neutral text; identity item (factual = alternative).

    The objective builds the input (``Objective.neutral_encoding``): masked LMs mask the token in
    place, causal LMs predict it from the prefix before it.
    """
    tok = objective.tokenizer
    special = set(tok.all_special_ids)
    pieces = tok.convert_ids_to_tokens(token_ids)
    ok = []
    for pos, (tid, piece) in enumerate(zip(token_ids, pieces)):
        word = piece.replace("##", "").replace("Ġ", "").replace("▁", "").strip().lower()
        if tid in special or not word.isalpha() or word in excluded:
            continue
        if objective.left_pad and pos < 1:
            continue
        ok.append(pos)
    if not ok:
        return None
    pos = int(rng.choice(ok))
    enc = objective.neutral_encoding(token_ids, pos)
    return Item(enc, enc)

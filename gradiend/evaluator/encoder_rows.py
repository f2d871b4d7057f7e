"""The rows that ``evaluate_encoder`` encodes: test pairs and the two neutral variants.

``training``: held-out pair rows, encoded from the training ``source`` gradient.
``neutral_training_masked``: the same sentences with the factual word filled in and one other
content token re-masked. ``neutral_dataset``: the same re-masking on ``eval_neutral_data``.
Neutral rows are identity examples (factual = alternative), label 0.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from gradiend.data.examples import row_words
from gradiend.lm.items import build_items, neutral_item
from gradiend.lm.objectives import Item
from gradiend.model.split import summary_encoding
from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

COMPONENT_PREFIX = "encoded:"  # per-component encoding columns (a split GRADIEND)

# what each neutral group's progress bar says it encodes
NEUTRAL_DESC = {
    "neutral_training_masked": "neutral rows (class sentences, word filled in, other token masked)",
    "neutral_dataset": "neutral rows (eval_neutral_data sentences)",
}


def fill_masks(row: dict, mask: str) -> str:
    """The sentence with every mask replaced by its factual word."""
    words, _ = row_words(row)
    parts = row["masked"].split(mask)
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += words[min(i, len(words) - 1)] + part
    return out


def neutral_items(
    texts: list[str], mwg: ModelWithGradiend, excluded: set[str], seed: int
) -> tuple[list[Item], list[str]]:
    """Identity items with one random content token re-masked per text (texts without one skipped)."""
    rng = np.random.default_rng(seed)
    tok = mwg.tokenizer
    items, kept = [], []
    for text in texts:
        ids = tok(text, truncation=True, max_length=mwg.objective.max_length)["input_ids"]
        item = neutral_item(ids, mwg.objective, rng, excluded)
        if item is not None:
            items.append(item)
            kept.append(text)
    return items, kept


def component_columns(mwg: ModelWithGradiend, enc: torch.Tensor) -> dict[str, np.ndarray]:
    """``encoded:<component>`` columns of a GRADIEND split into more than one component."""
    names = mwg.gradiend.component_names
    if len(names) < 2:
        return {}
    return {f"{COMPONENT_PREFIX}{n}": enc[:, k].cpu().numpy() for k, n in enumerate(names)}


def encoder_rows(
    mwg: ModelWithGradiend,
    rows: pd.DataFrame,
    labels: np.ndarray,
    neutral_texts: list[str] | None,
    excluded: set[str],
    batch_size: int,
    seed: int,
    include_neutral_training: bool = True,
) -> pd.DataFrame:
    """Encode the evaluated rows and return the ``encoder_df`` table."""
    items = build_items(rows, mwg.objective)
    classes = ", ".join(str(c) for c in dict.fromkeys(rows["factual_class"]))
    desc = f"encoding {len(items)} class rows ({classes})"
    enc_all = mwg.encode_items(items, mwg.source, batch_size, split=True, desc=desc)
    enc = summary_encoding(enc_all).cpu().numpy()
    frames = [
        pd.DataFrame(
            {
                "text": rows["masked"].to_numpy(),
                "encoded": enc,
                "label": labels,
                "type": "training",
                "factual_class": rows["factual_class"].to_numpy(),
                "alternative_class": rows["alternative_class"].to_numpy(),
                "transition": rows["transition"].to_numpy(),
                "factual": rows["factual"].to_numpy(),
                "alternative": rows["alternative"].to_numpy(),
                **component_columns(mwg, enc_all),
            }
        )
    ]
    groups = []
    if include_neutral_training:
        filled = [fill_masks(r, mwg.objective.mask) for r in rows.to_dict("records")]
        groups.append(("neutral_training_masked", list(dict.fromkeys(filled))))
    if neutral_texts:
        groups.append(("neutral_dataset", neutral_texts))
    for kind, texts in groups:
        n_items, kept = neutral_items(texts, mwg, excluded, seed)
        if not n_items:
            logger.warning("no %s rows could be re-masked", kind)
            continue
        desc = f"encoding {len(n_items)} {NEUTRAL_DESC[kind]}"
        n_all = mwg.encode_items(n_items, "factual", batch_size, split=True, desc=desc)
        values = summary_encoding(n_all).cpu().numpy()
        extra = component_columns(mwg, n_all)
        frames.append(
            pd.DataFrame({"text": kept, "encoded": values, "label": 0, "type": kind, **extra})
        )
    return pd.concat(frames, ignore_index=True)

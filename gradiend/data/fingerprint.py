"""Content hash of example rows: the key caches of every stage use for "the same data"."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

# the columns that change a result (row order included: it sets the batches)
DATA_COLUMNS = (
    "masked",
    "factual",
    "alternative",
    "factual_class",
    "alternative_class",
    "split",
    "mask_labels",
    "feature_class_id",
)


def data_hash(df: pd.DataFrame) -> str:
    """Content hash of the example rows that matter (row order included: it sets the batches)."""
    cols = [c for c in DATA_COLUMNS if c in df.columns]
    values = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    h = hashlib.sha256(values.tobytes())
    h.update(json.dumps(cols).encode())
    return h.hexdigest()[:16]

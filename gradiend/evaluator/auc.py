"""AUC-family encoder metrics: how cleanly the encodings rank one group of rows above another.

Unlike the correlation these ignore the scale of the encodings: an AUC is the probability
that a random row of the first group encodes above a random row of the second (ties count
half), so 1 is a perfect separation and 0.5 chance. A key is ``None`` when a group it needs
is empty (e.g. no neutral rows were encoded); the two minimums take the parts that exist.

* ``roc_auc``: label +1 rows against label −1 rows (oriented: 0 means perfectly reversed).
* ``auc_rival``: the same pair without orientation, ``max(roc_auc, 1 − roc_auc)``.
* ``roc_auc_neutral``: |encoding| of the target rows against that of neutral rows.
* ``roc_auc_other``: |encoding| of the target rows against the identity (label 0) rows of
  the ``training`` type (other classes' rows with ``add_identity_for_other_classes``).
* ``min_auc_n_o``: the smaller of the two above (whichever exist).
* ``class_exclusivity``: for each target class, its rows against every other row, in the
  direction its mean encodes; the worse class.
* ``encoding_e``: ``min(roc_auc_neutral, auc_rival, class_exclusivity)`` (whichever exist).

The validation during training encodes no neutral rows, so there ``roc_auc_neutral`` is
``None`` and ``encoding_e`` is the smaller of ``auc_rival`` and ``class_exclusivity``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from gradiend.metric_names import AUC_METRICS as AUC_METRICS  # re-exported: its home before

logger = logging.getLogger(__name__)

TRAINING = "training"
# what a metric needs beyond the two target classes (the reason when it is None)
NEEDS = {
    "roc_auc_neutral": "neutral rows (the validation during training encodes none)",
    "roc_auc_other": "identity rows (label 0: other classes with add_identity_for_other_classes)",
    "min_auc_n_o": "neutral or identity rows",
}


def auc(high, low) -> float | None:
    """P(a row of ``high`` > a row of ``low``) + ½ P(tie) (Mann–Whitney); None if one is empty."""
    a, b = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return None
    b = np.sort(b)
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    u = float(below.sum() + 0.5 * ties.sum())
    return float(u / (len(a) * len(b)))


def _min(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _exclusivity(training: pd.DataFrame, rest: np.ndarray) -> float | None:
    """Per target label: its rows against every other row, in the direction its mean takes."""
    worst = None
    for lab in (1.0, -1.0):
        mine = training.loc[training["label"] == lab, "encoded"].to_numpy(float)
        others = np.concatenate([training.loc[training["label"] != lab, "encoded"], rest])
        if len(mine) == 0 or len(others) == 0:
            continue
        sign = 1.0 if mine.mean() >= others.mean() else -1.0
        worst = _min(worst, auc(sign * mine, sign * others))
    return worst


def auc_metrics(df: pd.DataFrame) -> dict[str, float | None]:
    """The AUC family of the rows table (``encoded``, ``label``, ``type``; see the module)."""
    training = df[df["type"] == TRAINING] if "type" in df else df
    enc, lab = training["encoded"].to_numpy(float), training["label"].to_numpy(float)
    neutral = df.loc[df["type"] != TRAINING, "encoded"].to_numpy(float) if "type" in df else []
    target_mag = np.abs(enc[lab != 0])
    roc = auc(enc[lab > 0], enc[lab < 0])
    rival = None if roc is None else max(roc, 1.0 - roc)
    vs_neutral = auc(target_mag, np.abs(neutral))
    vs_other = auc(target_mag, np.abs(enc[lab == 0]))
    exclusivity = _exclusivity(training, np.asarray(neutral, dtype=float))
    return {
        "roc_auc": roc,
        "auc_rival": rival,
        "roc_auc_neutral": vs_neutral,
        "roc_auc_other": vs_other,
        "min_auc_n_o": _min(vs_neutral, vs_other),
        "class_exclusivity": exclusivity,
        "encoding_e": _min(vs_neutral, rival, exclusivity),
    }

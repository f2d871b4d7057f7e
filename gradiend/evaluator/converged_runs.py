"""Comparisons refuse runs that did not converge, unless asked; allowed ones are marked.

A collapsed or too-short run keeps an untrained (or barely trained) GRADIEND whose rankings and
encodings describe no learned feature, so an overlap or cross-encoding with it measures nothing.
``check_runs`` reads each run's training record (``training.json`` in its model folder; for a
loaded model, the folder it was loaded from) before any comparison work and raises
:class:`UnconvergedError` naming every such run, unless ``allow_unconverged=True``: then each is
returned so the comparison can mark it (its label gains ``MARK``, which every figure and table
drawn from the comparison shows). A run without a record (built in memory, a hub id) passes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradiend._io import read_json
from gradiend.run_layout import TRAINING, find_model_dir

logger = logging.getLogger(__name__)

MARK = " (NOT CONVERGED)"


def training_record(run: Any) -> Path | None:
    """The ``training.json`` of a run folder, model folder or loaded model, if it has one."""
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        if not path.exists():
            return None  # a hub id: no local record to read
        try:
            folder = find_model_dir(path)
        except FileNotFoundError:
            return None
    else:
        gradiend = getattr(run, "gradiend", run)
        layout = getattr(run, "layout", None)  # a trainer or a saved run's evaluation
        folder = getattr(layout, "model_dir", None) or getattr(gradiend, "source_dir", None)
        if folder is None:
            return None
    record = Path(folder) / TRAINING
    return record if record.is_file() else None


def unconverged_of(run: Any) -> str | None:
    """What the run's record says when it did not converge (None when it did or has none)."""
    from gradiend.trainer.convergence_check import convergence_of  # the trainer imports this

    record = training_record(run)
    if record is None:
        return None
    try:
        stats = read_json(record)
    except (OSError, ValueError) as err:
        logger.warning(
            "training record %s is unreadable (%s): convergence not checked", record, err
        )
        return None
    converged, what = convergence_of(stats)
    return None if converged else what


def check_runs(
    groups: Mapping[str, Sequence[Any]], action: str, allow_unconverged: bool
) -> dict[str, str]:
    """Label → what its record says, for every run (or seed group with such a member) that did
    not converge; raises :class:`UnconvergedError` for them unless ``allow_unconverged``."""
    found: dict[str, str] = {}
    for label, members in groups.items():
        for member in members:
            what = unconverged_of(member)
            if what is not None:
                found.setdefault(label, what)
    if not found:
        return found
    from gradiend.trainer.convergence_check import UnconvergedError  # the trainer imports us

    listed = "; ".join(f"{label!r}: {what}" for label, what in found.items())
    if not allow_unconverged:
        raise UnconvergedError(
            f"{action} refused: {len(found)} of the runs did not converge ({listed}), so their "
            "rankings and encodings describe no learned feature and a comparison with them "
            "measures nothing. Retrain them (their training logs say what to change), or pass "
            f"allow_unconverged=True (gradiend compare/report: --allow-unconverged) to {action} "
            f"anyway; such runs are then labelled '…{MARK}'"
        )
    logger.warning("%s with runs that did not converge (%s)", action, listed)
    return found


def marked(label: str, unconverged: Mapping[str, str] | Sequence[str]) -> str:
    """``label`` with ``MARK`` appended when it is one of the unconverged runs."""
    return f"{label}{MARK}" if label in unconverged else label

"""The files of a saved GRADIEND, read as untrusted input: only files inside its own folder
(a config naming an absolute path, a ``..`` part or a symlink out is refused), only safetensors
(nothing is ever unpickled), and weights without NaN or inf."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from gradiend._io import read_json
from gradiend._warn import warn
from gradiend.lm.checks import (
    GRADIEND_NONFINITE_FIX,
    nonfinite_counts,
    nonfinite_error,
    read_safetensors,
)
from gradiend.run_layout import HF_CONFIG, TRAINING

logger = logging.getLogger(__name__)

_DRIVE = re.compile(r"^[A-Za-z]:")


def inside(folder: Path, name: Any, key: str) -> Path:
    """``folder / name`` for a file that the GRADIEND config in ``folder`` names under ``key``,
    refused when it leads outside the folder (a hub snapshot's files may link to its blobs)."""
    text = str(name)
    parts = text.replace("\\", "/").split("/")
    target = folder / text
    outside = (
        not isinstance(name, str)
        or text == ""
        or Path(text).is_absolute()
        or text.startswith(("/", "\\", "~"))
        or bool(_DRIVE.match(text))
        or ".." in parts
    )
    if not outside and (target.exists() or target.is_symlink()):
        real = target.resolve()
        outside = not any(real.is_relative_to(root) for root in _roots(folder))
    if outside:
        raise ValueError(
            f"{folder / HF_CONFIG}: {key} {text!r} leads outside the GRADIEND folder "
            f"{folder} (an absolute path, a '..' part or a symlink out), and a GRADIEND reads "
            "only files inside its own folder. Fix: name a file in the folder (as "
            "save_pretrained writes it, e.g. 'mapping_indices.safetensors'), or re-save the "
            "GRADIEND with save_pretrained."
        )
    return target


def _roots(folder: Path) -> list[Path]:
    """Where a GRADIEND's files may really lie: its folder, and for a hub snapshot
    (``…/snapshots/<commit>``) the repository's ``blobs`` folder its files link to."""
    roots = [folder.resolve()]
    if folder.parent.name == "snapshots":
        roots.append((folder.parent.parent / "blobs").resolve())
    return roots


def read_tensors(folder: Path, name: Any, key: str, what: str) -> dict[str, torch.Tensor]:
    """The safetensors file ``name`` of the GRADIEND in ``folder`` (see ``inside``)."""
    return read_safetensors(inside(folder, name, key), what)


def finite_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The saved weights, refused when any holds NaN or inf (a diverged or damaged GRADIEND
    would rewrite the base model into garbage); worded like the base model's check."""
    path = inside(folder, name, "the weights file")
    tensors = read_safetensors(path, "GRADIEND weights")
    bad = nonfinite_counts(sorted(tensors.items()))
    if bad:
        raise nonfinite_error("GRADIEND", path, bad, GRADIEND_NONFINITE_FIX)
    return tensors


def warn_if_unconverged(folder: str | Path | None) -> bool:
    """Warn (``gradiend._warn``) when the training record beside a loaded GRADIEND says it did
    not converge: its encodings and rewrites would describe no learned feature. True if so."""
    path = None if folder is None else Path(folder) / TRAINING
    if path is None or not path.is_file():
        return False
    try:
        stats = read_json(path)
    except (OSError, ValueError):
        return False  # an unreadable record says nothing about convergence
    info = stats.get("convergence_info") or {}
    if info.get("converged", True):
        return False
    best = (stats.get("best_score_checkpoint") or {}).get("correlation")
    corr = f"{best:.3f}" if isinstance(best, (int, float)) else "unknown"
    warn(
        logger,
        f"the GRADIEND in {folder} did not converge (status "
        f"{stats.get('convergence_status') or 'not_converged'}, validation correlation {corr}): "
        "its encodings and rewrites describe no learned feature; retrain it (see "
        "docs/training.md) or pass allow_unconverged=True where a call refuses it",
    )
    return True

"""The warning for results that would mean little, shared by every stage."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)


class MeaninglessResultWarning(UserWarning):
    """The run can go on, but (part of) its result would mean nothing."""


def warn(logger: logging.Logger, message: str, stacklevel: int | None = None) -> None:
    """Log ``message`` and raise it as a ``MeaninglessResultWarning``.

    The warning points at the caller's own line: the first frame outside this package (the
    constructor wrappers and delegations in between would otherwise be named instead)."""
    logger.warning(message)
    warnings.warn(message, MeaninglessResultWarning, stacklevel=stacklevel or _user_level())


def _user_level() -> int:
    """``stacklevel`` of the first frame outside the package, counted from ``warn``'s caller."""
    frame, level = sys._getframe(2), 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level

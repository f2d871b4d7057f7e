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
    while frame is not None and (_inside(frame.f_code) or _dataclass_init(frame.f_code)):
        frame, level = frame.f_back, level + 1
    return level


def _inside(code) -> bool:
    return str(Path(code.co_filename).resolve()).startswith(_PACKAGE)


def _dataclass_init(code) -> bool:
    """The ``__init__`` that ``dataclasses`` generates (its file is ``<string>``)."""
    return code.co_filename == "<string>" and code.co_name == "__init__"

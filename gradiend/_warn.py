"""The warning for results that would mean little, shared by every stage."""

from __future__ import annotations

import logging
import warnings


class MeaninglessResultWarning(UserWarning):
    """The run can go on, but (part of) its result would mean nothing."""


def warn(logger: logging.Logger, message: str, stacklevel: int = 3) -> None:
    """Log ``message`` and raise it as a ``MeaninglessResultWarning``."""
    logger.warning(message)
    warnings.warn(message, MeaninglessResultWarning, stacklevel=stacklevel)

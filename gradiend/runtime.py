"""Process-wide settings a script makes once: the library's log output and the random seeds.

``setup_logging`` shows the ``gradiend`` loggers' records on a stream (one handler, however often
it is called); ``get_logger`` names a logger under that hierarchy, so a script's own messages go
the same way; ``set_seed`` seeds every generator a run draws from (Python, NumPy, torch and its
CUDA devices), optionally with torch's deterministic kernels. Training seeds itself from
``TrainingArguments.seed``; ``set_seed`` is for what a script does around it.
"""

from __future__ import annotations

import logging
import os
import random
from typing import IO

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_FORMAT", "ROOT_LOGGER", "get_logger", "set_seed", "setup_logging"]

ROOT_LOGGER = "gradiend"
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# torch's documented value for deterministic cuBLAS (https://pytorch.org/docs/stable/notes/randomness.html)
CUBLAS_WORKSPACE = ":4096:8"
_MARK = "_gradiend_setup_logging"  # tags the handler setup_logging owns


def setup_logging(
    level: int | str = "INFO",
    fmt: str = DEFAULT_FORMAT,
    stream: IO[str] | None = None,
    propagate: bool = False,
) -> logging.Logger:
    """Show the library's log records at ``level`` and above on ``stream`` (default stderr).

    Configures the ``gradiend`` logger only (the root logger and other libraries stay as they
    are). Calling it again replaces its handler's level, format and stream instead of adding a
    second handler, so records never appear twice. ``propagate=False`` keeps the records from
    also reaching the root logger's handlers (set it to ``True`` when the application collects
    every log there).

    Args:
        level: A ``logging`` level or its name (``"DEBUG"``, ``"INFO"``, ``"WARNING"``, ...).
        fmt: The ``logging.Formatter`` format of each record.
        stream: Where records go (default ``sys.stderr``).
        propagate: Also pass records on to the root logger.

    Returns:
        The configured ``gradiend`` logger.
    """
    log = logging.getLogger(ROOT_LOGGER)
    resolved = _level(level)
    for old in [h for h in log.handlers if getattr(h, _MARK, False)]:
        log.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(resolved)
    setattr(handler, _MARK, True)
    log.addHandler(handler)
    log.setLevel(resolved)
    log.propagate = propagate
    return log


def _level(level: int | str) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        raise TypeError(f"level must be a logging level or its name, got {level!r}")
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        names = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
        raise ValueError(f"unknown logging level {level!r}; choose one of {names}")
    return value


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger ``name`` under the ``gradiend`` hierarchy (``None``: ``gradiend`` itself), so
    ``setup_logging`` governs it: ``get_logger("my_script")`` is ``gradiend.my_script``; a name
    that already starts with ``gradiend`` is used as it is."""
    if not name:
        return logging.getLogger(ROOT_LOGGER)
    if name == ROOT_LOGGER or name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    ``deterministic=True`` also asks torch for deterministic algorithms
    (``torch.use_deterministic_algorithms(True)``, cuDNN deterministic and not benchmarking)
    and sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set), which deterministic cuBLAS needs;
    an operation without a deterministic implementation then raises instead of varying. It is
    slower on GPUs and stays on for the process. ``PYTHONHASHSEED`` is set for subprocesses
    (this process's string hashing was fixed when it started).

    Args:
        seed: A non-negative integer.
        deterministic: Also switch torch to deterministic algorithms.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy global generator takes 32 bits
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    logger.debug("seeded python, numpy and torch with %d (deterministic=%s)", seed, deterministic)

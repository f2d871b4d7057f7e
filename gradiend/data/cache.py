"""Cache of generated data: a fingerprint of inputs and settings, stored in the stats JSON.

With ``use_cache=True`` a second run with the same data, filters and settings reads the files it
wrote instead of scanning the corpus again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .output import read_frame

logger = logging.getLogger(__name__)


def describe_data(data: Any) -> Any:
    """A cheap identity of the base data: content hash for in-memory text, stat for files."""
    if isinstance(data, (list, tuple)):
        h = hashlib.sha256()
        for t in data:
            h.update(str(t).encode() + b"\0")
        return h.hexdigest()
    if isinstance(data, pd.DataFrame):
        return str(pd.util.hash_pandas_object(data, index=False).sum())
    if isinstance(data, (str, Path)) and Path(data).exists():
        st = Path(data).stat()
        return [str(Path(data).resolve()), st.st_size, st.st_mtime_ns]
    fingerprint = getattr(data, "_fingerprint", None)
    return fingerprint if fingerprint is not None else str(data)


def fingerprint(parts: Iterable[Any]) -> str:
    """SHA-256 over the JSON of ``parts`` (objects without JSON form by their ``str``)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, default=str, sort_keys=True).encode())
    return h.hexdigest()


def read_stats(out_dir: Path, basename: str) -> dict[str, Any] | None:
    path = out_dir / f"{basename}_stats.json"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_cached(
    out_dir: Path, basename: str, key: str, output_format: str
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]] | None:
    """The frames listed in ``<basename>_stats.json`` when its key is ``key``, with the stats."""
    stats = read_stats(out_dir, basename)
    if stats is None or stats.get("cache_key") != key:
        return None
    files = stats.get("files", {})
    if not files or not all(Path(p).exists() for p in files.values()):
        return None
    logger.info("Loading cached data from %s (use_cache=True, same inputs)", out_dir)
    return {k: read_frame(Path(p), output_format) for k, p in files.items()}, stats

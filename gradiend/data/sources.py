"""Base-data sources: lists, DataFrames, CSV/Parquet files and Hugging Face datasets as text streams.

Every source is validated eagerly (missing files or columns fail before any work) and then read
lazily, so memory does not grow with the corpus. ``base_max_size`` takes a seeded random sample:
an exact one for in-memory data and files (reservoir sampling), a buffered shuffle for streamed
Hugging Face datasets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .hub import not_found_error

logger = logging.getLogger(__name__)

DATA_EXTRA_HINT = "pip install gradiend[data]"
_CSV_CHUNK = 20_000
_HF_SHUFFLE_BUFFER = 10_000


def _missing_column(column: str, available: Iterable[str], where: str) -> KeyError:
    cols = ", ".join(repr(str(c)) for c in available)
    return KeyError(
        f"text_column {column!r} not found in {where}; available columns: {cols}. "
        f"Pass text_column=<one of these>."
    )


def _clean(values: Iterable[Any]) -> Iterator[str]:
    """Yield the string values, skipping missing ones (None/NaN)."""
    for v in values:
        if isinstance(v, str):
            yield v
        elif v is not None and not (isinstance(v, float) and np.isnan(v)):
            yield str(v)


def _reservoir(values: Iterable[str], k: int, rng: np.random.Generator) -> list[str]:
    """Uniform random sample of ``k`` items from a stream of unknown length, in random order."""
    sample: list[str] = []
    for i, v in enumerate(values):
        if i < k:
            sample.append(v)
        else:
            j = int(rng.integers(0, i + 1))
            if j < k:
                sample[j] = v
    order = rng.permutation(len(sample))
    return [sample[i] for i in order]


def _lazy_reservoir(values: Iterable[str], k: int, rng: np.random.Generator) -> Iterator[str]:
    yield from _reservoir(values, k, rng)


def _sample_in_memory(values: list[Any], k: int | None, rng: np.random.Generator) -> Iterator[str]:
    if k is None or k >= len(values):
        if k is not None:
            values = [values[i] for i in rng.permutation(len(values))]
        return _clean(values)
    return _clean(values[i] for i in rng.permutation(len(values))[:k])


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("datasets.")


def _csv_kwargs(path: Path) -> dict[str, Any]:
    # Only empty cells are missing: a sentence "NA" or "null" stays text.
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return {"sep": sep, "keep_default_na": False, "na_values": [""]}


def _iter_csv(path: Path, column: str) -> Iterator[str]:
    for chunk in pd.read_csv(path, usecols=[column], chunksize=_CSV_CHUNK, **_csv_kwargs(path)):
        yield from _clean(chunk[column].tolist())


def _iter_parquet(path: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq  # optional extra: pyarrow (checked in _file_stream)

    for batch in pq.ParquetFile(path).iter_batches(columns=[column], batch_size=_CSV_CHUNK):
        yield from _clean(batch.column(0).to_pylist())


def _file_stream(path: Path, column: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        header = pd.read_csv(path, nrows=0, **_csv_kwargs(path)).columns
        if column not in header:
            raise _missing_column(column, header, str(path))
        return _iter_csv(path, column)
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq  # optional extra: pyarrow (gradiend[data])
        except ImportError as err:
            raise ImportError(f"Reading Parquet needs pyarrow: {DATA_EXTRA_HINT}") from err
        names = pq.read_schema(path).names
        if column not in names:
            raise _missing_column(column, names, str(path))
        return _iter_parquet(path, column)
    if suffix == ".txt":
        return _iter_lines(path)
    if path.is_dir() and (path / "dataset_info.json").exists():  # datasets.save_to_disk folder
        import datasets  # optional extra: datasets (a save_to_disk folder)

        return _hf_stream(datasets.load_from_disk(str(path)), column, None, 0)
    raise ValueError(
        f"Unsupported base_data file type {suffix!r} ({path}); use .csv, .parquet or .txt"
    )


def _iter_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")


def _hf_stream(data: Any, column: str, k: int | None, seed: int) -> Iterator[str]:
    """Stream the ``column`` texts of a ``datasets`` object, seeded-sampled to ``k`` rows."""
    names = getattr(data, "column_names", None)
    if isinstance(names, dict):  # DatasetDict
        raise ValueError(
            f"base_data is a DatasetDict with splits {list(names)}; pass one split, e.g. ds['train']"
        )
    if names is not None and column not in names:
        raise _missing_column(column, names, "the dataset")
    if hasattr(data, "select") and hasattr(data, "__len__"):  # in-memory Dataset
        n = len(data)
        if k is not None:
            idx = np.random.default_rng(seed).permutation(n)[: min(k, n)]
            data = data.select(idx.tolist())
        return _iter_hf_batches(data.select_columns([column]), column)
    if k is not None:  # IterableDataset
        data = data.shuffle(seed=seed, buffer_size=_HF_SHUFFLE_BUFFER).take(k)
    return _clean(row[column] for row in data)


def _iter_hf_batches(data: Any, column: str) -> Iterator[str]:
    for batch in data.iter(batch_size=1000):
        yield from _clean(batch[column])


def _load_hf(name: str, hf_config: str | None, split: str) -> Any:
    try:
        import datasets  # optional extra: datasets (gradiend[data])
    except ImportError as err:
        raise ImportError(
            f"Loading Hugging Face datasets needs `datasets`: {DATA_EXTRA_HINT}"
        ) from err
    logger.info("Streaming Hugging Face dataset %s (config=%s, split=%s)", name, hf_config, split)
    try:
        return datasets.load_dataset(name, hf_config, split=split, streaming=True)
    except (FileNotFoundError, ConnectionError) as err:  # not found, or the hub is offline
        raise not_found_error("base_data", name, err, noun="dataset") from err


def resolve_base_data(
    base_data: Any,
    text_column: str = "text",
    split: str = "train",
    hf_config: str | None = None,
    base_max_size: int | None = None,
    seed: int = 42,
) -> Iterator[str]:
    """Validate ``base_data`` now and return a lazy iterator over its texts.

    Accepts a list/tuple of strings, a pandas DataFrame, a path to a .csv/.parquet/.txt file, a
    ``datasets.Dataset``/``IterableDataset``, or a Hugging Face dataset id (loaded with
    ``hf_config`` and ``split``, streamed). Raises ``KeyError`` listing the columns when
    ``text_column`` is missing, ``FileNotFoundError``/``ValueError`` for unusable inputs.
    """
    if base_max_size is not None and base_max_size < 1:
        raise ValueError(f"base_max_size must be >= 1 or None, got {base_max_size}")
    rng = np.random.default_rng(seed)
    k = base_max_size
    if isinstance(base_data, (list, tuple)):
        return _sample_in_memory(list(base_data), k, rng)
    if isinstance(base_data, pd.Series):
        return _sample_in_memory(base_data.tolist(), k, rng)
    if isinstance(base_data, pd.DataFrame):
        if text_column not in base_data.columns:
            raise _missing_column(text_column, base_data.columns, "the DataFrame")
        return _sample_in_memory(base_data[text_column].tolist(), k, rng)
    if _is_hf_dataset(base_data):
        return _hf_stream(base_data, text_column, k, seed)
    if isinstance(base_data, (str, os.PathLike)):
        path = Path(base_data)
        if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq", ".txt") or path.exists():
            if not path.exists():
                raise FileNotFoundError(f"base_data file not found: {path}")
            stream = _file_stream(path, text_column)
            return _lazy_reservoir(stream, k, rng) if k is not None else stream
        return _hf_stream(_load_hf(str(base_data), hf_config, split), text_column, k, seed)
    if isinstance(base_data, Iterable):
        stream = _clean(base_data)
        return _lazy_reservoir(stream, k, rng) if k is not None else stream
    raise TypeError(
        "base_data must be a list of strings, a DataFrame, a .csv/.parquet path, a datasets.Dataset "
        f"or a Hugging Face dataset id, got {type(base_data).__name__}"
    )

"""Atomic writing and reading of generated data (csv, parquet, Hugging Face ``save_to_disk``).

Every write goes to a temporary file or folder in the target directory and is moved into place
with ``os.replace``, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend._io import replace_dir, tmp_prefix, write_text

FORMATS = ("csv", "parquet", "hf")
_HINT = "pip install gradiend[data]"


def check_format(output_format: str) -> str:
    if output_format not in FORMATS:
        raise ValueError(f"output_format must be one of {FORMATS}, got {output_format!r}")
    return output_format


def safe_name(name: str) -> str:
    """A file-name-safe version of a class id."""
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "class"


def frame_path(directory: Path, basename: str, output_format: str) -> Path:
    suffix = {"csv": ".csv", "parquet": ".parquet", "hf": ""}[output_format]
    return directory / f"{basename}{suffix}"


def write_frame(df: pd.DataFrame, path: Path, output_format: str) -> Path:
    """Write ``df`` atomically as csv, parquet or a ``datasets`` folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if output_format == "hf":
        try:
            import datasets  # optional extra: datasets (gradiend[data])
        except ImportError as err:
            raise ImportError(f"output_format='hf' needs `datasets`: {_HINT}") from err
        if path.is_dir() and any(path.iterdir()) and not (path / "dataset_info.json").exists():
            raise FileExistsError(
                f"refusing to replace {path}: it holds files that are not a saved dataset. "
                "Pass another output folder or move those files away."
            )
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=tmp_prefix(path.name)))
        try:
            datasets.Dataset.from_pandas(df, preserve_index=False).save_to_disk(str(tmp))
            replace_dir(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    try:
        if output_format == "csv":
            df.to_csv(tmp_name, index=False)
        else:
            df.to_parquet(tmp_name, index=False)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return path


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    return path


def read_frame(path: Path, output_format: str) -> pd.DataFrame:
    """Read back a frame written by :func:`write_frame`."""
    if output_format == "csv":
        return pd.read_csv(path, keep_default_na=False)
    if output_format == "parquet":
        return pd.read_parquet(path)
    import datasets  # optional extra: datasets (only hf-format output reaches here)

    return datasets.load_from_disk(str(path)).to_pandas()

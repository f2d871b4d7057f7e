"""Hugging Face datasets as trainer input: a hub id or a local dataset folder.

Two layouts. *One config per class* (e.g. ``aieng-lab/de-gender-case-articles`` with configs
``masc_nom``, ``fem_nom``, …): the configs the run needs are loaded and returned as a per-class
dict of DataFrames. *One table* (a single config, or the one named by ``hf_config``): returned as
one DataFrame. Either way the dataset's splits become the ``split`` column (unless the data has
its own), and ``hf_split`` restricts which splits are read.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

DATA_EXTRA_HINT = "pip install gradiend[data]"


def _datasets():
    try:
        import datasets  # optional extra: datasets (gradiend[data])
    except ImportError:
        raise ImportError(f"loading data from the hub needs `{DATA_EXTRA_HINT}`") from None
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (not a hub-layout folder)."""
    return path.is_dir() and (
        (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()
    )


def config_names(name: str) -> list[str]:
    """The configs of a hub id or local dataset folder (``["default"]`` when it has none)."""
    return list(_datasets().get_dataset_config_names(str(name)))


def splits_to_frame(data: Any, splits: Sequence[str] | None = None) -> pd.DataFrame:
    """A ``Dataset``/``DatasetDict`` as one DataFrame; dataset splits become the ``split`` column."""
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    if not hasattr(data, "items"):
        raise TypeError(f"not a datasets object: {type(data).__name__}")
    if splits is not None:
        missing = [s for s in splits if s not in data]
        if missing:
            raise ValueError(f"split(s) {missing} not in the dataset; it has {list(data)}")
        data = {s: data[s] for s in splits}
    frames = []
    for split, ds in data.items():
        df = ds.to_pandas()
        if "split" not in df.columns:
            df["split"] = split
        frames.append(df)
    if not frames:
        raise ValueError("the dataset has no splits")
    return pd.concat(frames, ignore_index=True)


def _load(name: str, config: str | None, splits: Sequence[str] | None) -> pd.DataFrame:
    if not Path(name).is_dir():
        return splits_to_frame(_datasets().load_dataset(str(name), config), splits)
    # a local folder can change under the same path, and the datasets cache would not notice:
    # build it in a throw-away cache
    with tempfile.TemporaryDirectory(prefix="gradiend-ds-") as cache:
        ds = _datasets().load_dataset(str(name), config, cache_dir=cache)
        return splits_to_frame(ds, splits)


def load_hub_data(
    name: str | Path,
    classes: Sequence[str] | None = None,
    hf_config: str | None = None,
    hf_split: str | Sequence[str] | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Load a hub id or dataset folder (see the module doc).

    ``classes``: the classes the run needs (``None``: every config). With ``hf_config`` or a
    single config the dataset is one table; otherwise its configs are the classes, and a class
    without a config is an error that names the available configs.
    """
    splits = [hf_split] if isinstance(hf_split, str) else hf_split
    path = Path(str(name))
    if is_saved_dataset(path):
        return splits_to_frame(_datasets().load_from_disk(str(path)), splits)
    names = config_names(str(name))
    if hf_config is not None:
        if hf_config not in names:
            raise ValueError(f"dataset {name!s} has no config {hf_config!r}; configs: {names}")
        return _load(str(name), hf_config, splits)
    if len(names) <= 1:
        return _load(str(name), names[0] if names else None, splits)
    wanted = list(names) if classes is None else [str(c) for c in classes]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(
            f"dataset {name!s} has one config per class, but class(es) {missing} have none; "
            f"available configs: {names}. Pass target_classes from these, or hf_config= for a "
            "dataset whose single config holds all classes."
        )
    logger.info("loading configs %s of %s as classes", wanted, name)
    return {c: _load(str(name), c, splits) for c in wanted}


def load_neutral_hub_data(
    name: str | Path, hf_config: str | None = None, hf_split: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Neutral texts from a hub id or dataset folder: every config (or ``hf_config``) and every
    split (or ``hf_split``), stacked."""
    data = load_hub_data(name, None, hf_config, hf_split)
    if isinstance(data, dict):
        return pd.concat(data.values(), ignore_index=True)
    return data

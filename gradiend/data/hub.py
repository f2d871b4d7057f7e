"""Hugging Face datasets as trainer input: a hub id or a local dataset folder.

Two layouts. *One config per class* (e.g. ``aieng-lab/de-gender-case-articles`` with configs
``masc_nom``, ``fem_nom``, …): the configs the run needs are loaded and returned as a per-class
dict of DataFrames. *One table* (a single config, or the one named by ``hf_config``): returned as
one DataFrame. Either way the dataset's splits become the ``split`` column (unless the data has
its own), and ``hf_split`` restricts which splits are read.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

DATA_EXTRA_HINT = "pip install gradiend[data]"
_OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline() -> str | None:
    """The variable that switches the hub off for this process (``HF_HUB_OFFLINE=1`` or the
    like), or ``None`` when the hub may be asked."""
    for flag in _OFFLINE_FLAGS:
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on"):
            return flag
    return None


def not_found_error(
    what: str, name: str, cause: BaseException | None = None, noun: str = "model"
) -> FileNotFoundError:
    """The error for a name that is neither a local folder nor a hub repo this process can get:
    it says both (the absolute path looked at, the working folder, the hub's answer) and the fix,
    so that a mistyped folder such as ``models/my-bert`` is not reported as a bad hub id only."""
    here = Path(str(name)).expanduser()
    flag = hub_offline()
    if flag:
        hub = f"the hub is offline ({flag} is set) and the repo is not in the hub cache"
        fix = f"download it once with {flag} unset (later runs read the hub cache)"
    else:
        reason = "" if cause is None else f" ({type(cause).__name__}: {_first_line(cause)})"
        hub = f"the hub has no repo {str(name)!r} or cannot be reached{reason}"
        fix = "check the id ('org/name'), the network and, for a private repo, your login"
    return FileNotFoundError(
        f"{what} {str(name)!r} is neither a local folder nor a hub repo: there is no folder at "
        f"{here.absolute()} (relative paths are read from the working folder {Path.cwd()}), "
        f"and {hub}. Fix: pass the path of an existing {noun} folder (an absolute path avoids "
        f"the working-folder question), or, for a hub repo, {fix}."
    )


def in_hub_cache(name: str, repo_type: str = "model") -> bool:
    """Whether the hub cache holds a snapshot of repo ``name`` (any revision), without asking
    the hub: what an offline process can load."""
    # the hub's cache location: huggingface_hub loads only for a name that is no local path
    from huggingface_hub.constants import HF_HUB_CACHE

    folder = Path(HF_HUB_CACHE) / f"{repo_type}s--{str(name).replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _hub_call(what: str, fn, name: str, *args: Any, **kwargs: Any) -> Any:
    """``fn(name, …)`` of ``datasets``; for a name that is no local path, its "not found" and
    "cannot connect" errors become ``not_found_error`` (``what``: the argument's name)."""
    try:
        return fn(str(name), *args, **kwargs)
    except (FileNotFoundError, ConnectionError) as err:  # DatasetNotFoundError is the first
        if Path(str(name)).exists():
            raise
        raise not_found_error(what, str(name), err, noun="dataset") from err


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


def config_names(name: str, what: str = "data") -> list[str]:
    """The configs of a hub id or local dataset folder (``["default"]`` when it has none)."""
    return list(_hub_call(what, _datasets().get_dataset_config_names, str(name)))


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
        ds = _hub_call("data", _datasets().load_dataset, str(name), config)
        return splits_to_frame(ds, splits)
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
    what: str = "data",
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
    names = config_names(str(name), what)
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
    data = load_hub_data(name, None, hf_config, hf_split, what="eval_neutral_data")
    if isinstance(data, dict):
        return pd.concat(data.values(), ignore_index=True)
    return data

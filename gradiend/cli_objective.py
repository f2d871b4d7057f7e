"""``gradiend evaluate --objective/--balance-data``: the decoder evaluation's selection objective
on the command line, written into the config's ``evaluate_decoder`` section and checked before
the base model loads (bad input exits 2)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend.config import RunConfig
from gradiend.config_read import ConfigError

logger = logging.getLogger(__name__)

_BALANCE_FIX = (
    "pass a text file with one masked sentence per line, or a .csv/.parquet file with a "
    "'masked' column"
)


def read_balance_file(path: str) -> list[str]:
    """The masked sentences of ``--balance-data``: a text file's non-empty lines, or the
    ``masked`` column of a ``.csv``/``.parquet`` file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("--balance-data", f"{path} is not a file", _BALANCE_FIX)
    if file.suffix in (".csv", ".parquet"):
        df = pd.read_csv(file, keep_default_na=False) if file.suffix == ".csv" else None
        df = pd.read_parquet(file) if df is None else df
        if "masked" not in df.columns:
            raise ConfigError("--balance-data", f"{path} has no 'masked' column (columns: "
                              f"{list(df.columns)})", _BALANCE_FIX)  # fmt: skip
        return [str(t) for t in df["masked"]]
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError("--balance-data", f"{path} is not UTF-8 text", _BALANCE_FIX) from err
    return [line.strip() for line in text.splitlines() if line.strip()]


def apply_objective_options(ns: argparse.Namespace, cfg: RunConfig, evaluation: Any) -> None:
    """``--objective``/``--balance-data`` into ``cfg.evaluate_decoder``, checked by the run's
    ``RunEvaluation.check_objective`` (the run's classes and mask)."""
    section = cfg.evaluate_decoder
    if getattr(ns, "objective", None) is not None:
        section["objective"] = ns.objective
    if getattr(ns, "balance_data", None) is not None:
        section["balance_data"] = read_balance_file(ns.balance_data)
    if "objective" not in section and "balance_data" not in section:
        return
    try:
        evaluation.check_objective(
            section.get("objective", "strengthen"),
            section.get("balance_data"),
            section.get("target_class"),
            section.get("increase_target_probabilities", True),
        )
    except (TypeError, ValueError) as err:
        key = "--balance-data" if "balance_data" in str(err) else "--objective"
        raise ConfigError(key, str(err), "correct the value named above") from err

"""The result of ``compare_methods``: one row per steering method (GRADIEND, ACTIEND, CAA) on the
same data, classes and budget, as a DataFrame, a markdown table and a JSON file.

A row holds the encoder's test |r| and neutral mean (NaN where the method has no encoder: CAA),
the strongest effect inside the budget (the target class's probability on the other class's
held-out sentences, before and after), what it cost (neutral NLL increase, on the selection and
the held-out texts, and LMS change), wall time and peak memory, and the effect recomputed from
the method's saved and reloaded model with its relative disagreement, and whether the method's
training converged (an unconverged GRADIEND or ACTIEND is kept, marked "(not converged)" in the
markdown table, and ``best()`` prefers the converged methods).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend._io import read_json, write_json
from gradiend._kwargs import strict_kwargs

logger = logging.getLogger(__name__)

METHODS_RESULTS = "method_comparison.json"  # in the comparison's folder

COLUMNS = (
    "method",
    "signal",
    "sites",
    "converged",
    "convergence",
    "encoder_test_abs_r",
    "encoder_neutral_mean",
    "base_probability",
    "probability",
    "effect_ratio",
    "learning_rate",
    "nll_increase",
    "heldout_nll_increase",
    "lms_change",
    "passed",
    "recomputed_probability",
    "recompute_rel_diff",
    "seconds",
    "train_seconds",
    "decoder_seconds",
    "train_cost_vs_gradiend",
    "peak_memory_mb",
    "memory_kind",
    "validation_abs_r_by_layer",
    "run_dir",
)

# the markdown table's columns and headers
SHOWN = (
    ("method", "method"),
    ("sites", "sites"),
    ("encoder_test_abs_r", "test |r|"),
    ("encoder_neutral_mean", "neutral mean"),
    ("base_probability", "P before"),
    ("probability", "P after"),
    ("effect_ratio", "× base"),
    ("nll_increase", "NLL +"),
    ("heldout_nll_increase", "held-out NLL +"),
    ("lms_change", "LMS change"),
    ("recompute_rel_diff", "recompute diff"),
    ("seconds", "seconds"),
    ("peak_memory_mb", "peak MB"),
)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def cell(key: str, value: Any) -> str:
    if isinstance(value, str) or value is None:
        return "—" if value in (None, "") else value
    v = _num(value)
    if math.isnan(v):
        return "—"
    if key in ("nll_increase", "heldout_nll_increase", "lms_change", "recompute_rel_diff"):
        return f"{100 * v:+.2f} %" if key != "recompute_rel_diff" else f"{100 * abs(v):.3f} %"
    if key in ("seconds", "peak_memory_mb"):
        return f"{v:.1f}"
    if key == "effect_ratio":
        return f"{v:.2f}"
    return f"{v:.4f}"


@strict_kwargs
@dataclass
class MethodComparison:
    """Rows of ``compare_methods`` (dicts with the keys of ``COLUMNS``) and its settings."""

    rows: list[dict]
    target_classes: list[str]
    target_class: str
    settings: dict = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        """One row per method, indexed by method name (NaN where a method has no value)."""
        df = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in self.rows], columns=COLUMNS)
        return df.set_index("method")

    def row(self, method: str) -> dict:
        for r in self.rows:
            if r["method"] == method:
                return r
        raise KeyError(f"no row {method!r}; the methods are {[r['method'] for r in self.rows]}")

    def to_markdown(self) -> str:
        """The table as markdown (``—`` where a method has no value)."""
        head = "| " + " | ".join(h for _, h in SHOWN) + " |"
        sep = "| " + " | ".join("---" for _ in SHOWN) + " |"
        lines = [head, sep] + ["| " + " | ".join(cells) + " |" for cells in self.cells()]
        return "\n".join(lines)

    def cells(self) -> list[list[str]]:
        """Each row's shown cells as text; an unconverged method is named "(not converged)"."""
        out = []
        for r in self.rows:
            cells = [cell(k, r.get(k)) for k, _ in SHOWN]
            if not converged(r):
                cells[0] += " (not converged)"
            out.append(cells)
        return out

    def best(self) -> dict | None:
        """The row of the strongest effect among the methods that kept the budget, a converged
        one where any converged method kept it (an unconverged one only when none did)."""
        kept = [r for r in self.rows if r.get("passed") and not math.isnan(_num(r["probability"]))]
        pool = [r for r in kept if converged(r)] or kept
        return max(pool, key=lambda r: _num(r["probability"])) if pool else None

    def summary(self) -> str:
        """A line naming the strongest method inside the budget, preferring converged ones, and
        the methods that did not converge."""
        best = self.best()
        bad = [r["method"] for r in self.rows if not converged(r)]
        note = f"; not converged: {', '.join(bad)}" if bad else ""
        if best is None:
            return "no method kept the budget" + note
        which = "converged" if converged(best) else "NOT converged: no converged method kept it"
        return (
            f"strongest inside the budget (converged methods first): {best['method']} "
            f"(P({self.target_class}) {_num(best['probability']):.4f}; {which}){note}"
        )

    def __str__(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict:
        return {
            "format": "gradiend-method-comparison",
            "target_classes": list(self.target_classes),
            "target_class": self.target_class,
            "settings": self.settings,
            "rows": [{c: _jsonable(r.get(c)) for c in COLUMNS} for r in self.rows],
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/method_comparison.json`` atomically; returns its path."""
        path = Path(folder) / METHODS_RESULTS
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict) -> MethodComparison:
        if not isinstance(d, dict) or d.get("format") != "gradiend-method-comparison":
            raise ValueError("not a method comparison (written by compare_methods)")
        rows = [{c: r.get(c) for c in COLUMNS} for r in d.get("rows", [])]
        return cls(rows, list(d["target_classes"]), str(d["target_class"]), d.get("settings", {}))

    @classmethod
    def load(cls, path: str | Path) -> MethodComparison:
        """A saved comparison: its JSON file or the folder holding it."""
        path = Path(path)
        return cls.from_dict(read_json(path / METHODS_RESULTS if path.is_dir() else path))


def converged(row: dict) -> bool:
    """A row's convergence (a row saved before the column existed counts as converged)."""
    return row.get("converged") is not False


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v

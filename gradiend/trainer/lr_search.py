"""Learning-rate search: short probe runs on the gradient cache, each classified, bracketed and
bisected on a 1/2/5 grid (``trainer.lr_grid``).

``TrainingArguments(learning_rate="auto")`` (or a ``lr_search_config``) runs it inside
``train()``, after the training and validation gradients are cached and before the seeds:
every probe trains a fresh GRADIEND for ``probe_steps`` steps on those cached gradients and
reads the same validation encodings training reads, so the base model is never touched again
and a search costs some seconds of GRADIEND arithmetic. ``tune_learning_rate(trainer)`` runs it
on its own. The trace is written to ``<run>/lr_search.json`` and summarised in
``training.json`` (``lr_search``) and the report.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from gradiend._io import write_json
from gradiend._kwargs import strict_kwargs
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.trainer.argument_checks import check_choice, check_int, check_number
from gradiend.trainer.collapse import CollapseMonitor, CollapseRule
from gradiend.trainer.fingerprint import gradient_fingerprint
from gradiend.trainer.loop import Architecture, LoopConfig, LoopResult, train_loop
from gradiend.trainer.lr_grid import (
    COLLAPSED,
    CONVERGED,
    DEGRADING,
    DIVERGED,
    FROZEN,
    SLOW,
    STATES,
    Grid,
    LRSearch,
    NoConvergentLearningRate,
    Probe,
    SearchResult,
)
from gradiend.trainer.optim import decoder_rate

if TYPE_CHECKING:
    from gradiend.trainer.seeds import SeedJob

logger = logging.getLogger(__name__)

__all__ = [
    "STATES",
    "LRSearchConfig",
    "NoConvergentLearningRate",
    "SearchResult",
    "classify_probe",
    "tune_learning_rate",
]

AUTO = "auto"
DEFAULT_START = 1e-5  # the incumbent's default learning rate


@strict_kwargs
@dataclass
class LRSearchConfig:
    """How the learning-rate search probes (docs/training.md, "Learning-rate search").

    ``initial_lr``: the first probe (default: ``learning_rate`` when it is a number, else
    1e-5); ``probe_steps``: steps per probe (at most the run's own steps); ``probe_eval_steps``:
    validation every this many probe steps (default a tenth of a probe); ``max_probes``: the
    budget; ``resolution``: ``"coarse"`` (1/2/5 per decade) or ``"fine"`` (1/1.5/2/3/5/7);
    ``early_stop``: end collapsed and diverged probes at once; ``confirm``: probe the choice again
    with the next seed; ``center_window``: take the centre of the convergent window (else the
    best-scoring convergent probe); ``degrade_tolerance``: a drop of |r| from its best that marks
    a probe degrading; ``frozen_tolerance``: class means that moved less are frozen;
    ``divergence_factor``: a loss this many times its start is diverged.
    """

    initial_lr: float | None = None
    probe_steps: int = 150
    probe_eval_steps: int | None = None
    max_probes: int = 12
    resolution: str = "coarse"
    early_stop: bool = True
    confirm: bool = True
    center_window: bool = True
    min_lr: float = 1e-8
    max_lr: float = 10.0
    degrade_tolerance: float = 0.2
    frozen_tolerance: float = 0.02
    divergence_factor: float = 10.0

    def __post_init__(self) -> None:
        check_number("initial_lr", self.initial_lr, 0.0, optional=True)
        check_int("probe_steps", self.probe_steps, 1)
        check_int("probe_eval_steps", self.probe_eval_steps, 1, optional=True)
        check_int("max_probes", self.max_probes, 1)
        check_choice("resolution", self.resolution, ("coarse", "fine"))
        for name in ("min_lr", "max_lr", "divergence_factor"):
            check_number(name, getattr(self, name), 0.0)
        for name in ("degrade_tolerance", "frozen_tolerance"):
            check_number(name, getattr(self, name), 0.0, strict=False)
        if self.min_lr >= self.max_lr:
            raise ValueError(
                f"min_lr={self.min_lr} must be below max_lr={self.max_lr}: the search probes "
                "rates between them"
            )

    def eval_steps(self, steps: int) -> int:
        return self.probe_eval_steps or max(1, steps // 10)


def lr_search_config(value: Any) -> LRSearchConfig | None:
    """``TrainingArguments.lr_search_config`` from a config, a dict of its fields or None."""
    if isinstance(value, dict):
        return LRSearchConfig(**value)
    if value is not None and not isinstance(value, LRSearchConfig):
        raise TypeError(
            "lr_search_config must be an LRSearchConfig (e.g. LRSearchConfig(probe_steps=100)), "
            f"a dict of its fields, or None; got {value!r}"
        )
    return value


def wants_search(learning_rate: Any, config: LRSearchConfig | None) -> bool:
    """The search runs for ``learning_rate="auto"`` or when a ``lr_search_config`` is given."""
    return learning_rate == AUTO or config is not None


def search_evals(learning_rate: Any, config: LRSearchConfig | None, max_steps: int) -> int:
    """How many validation evaluations a search may make (0 when none runs): with many, the
    per-row validation gradients are worth computing once (``trainer.validation_encodings``)."""
    if not wants_search(learning_rate, config):
        return 0
    cfg = config or LRSearchConfig()
    steps = min(cfg.probe_steps, max_steps) if max_steps > 0 else cfg.probe_steps
    return (cfg.max_probes + int(cfg.confirm)) * (steps // cfg.eval_steps(steps) + 2)


# --------------------------------------------------------------------------- one probe
class ProbeStop:
    """Ends a probe early (``early_stop``): a collapse (``trainer.collapse``) or a divergence
    (non-finite weights or correlation, or the loss of a fixed batch above ``factor`` times
    its value at the start). Plays the loop's ``monitor``."""

    def __init__(self, model, batch, rule: CollapseRule, classes, factor: float, on: bool = True):
        self.model, self.batch, self.factor, self.on = model, batch, factor, on
        self.collapse = CollapseMonitor(rule, classes) if rule.patience > 0 else None
        self.start = self.loss()
        self.diverged: str | None = None

    @torch.no_grad()
    def loss(self) -> float:
        w = self.model.W_e
        s, t = (x.to(w.device, w.dtype).unsqueeze(0) for x in self.batch)
        return float(torch.nn.functional.mse_loss(self.model(s), t))

    def check_divergence(self, summary: dict) -> str | None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return "non-finite weights"
        if not math.isfinite(summary.get("correlation", math.nan)):
            return "non-finite validation correlation"
        loss = self.loss()
        if not math.isfinite(loss) or loss > self.factor * max(self.start, 1e-30):
            return f"the loss grew from {self.start:.3g} to {loss:.3g}"
        return None

    def update(self, summary: dict, improved: bool) -> dict | None:
        self.diverged = self.diverged or self.check_divergence(summary)
        if self.diverged:
            return {"step": int(summary["step"]), "state": DIVERGED, "reason": self.diverged}
        stop = self.collapse.update(summary, improved) if self.collapse else None
        if stop is not None:
            return {**stop, "state": COLLAPSED}
        return None


class _Monitor:
    """The loop's monitor interface over a :class:`ProbeStop` (remembers what it saw)."""

    def __init__(self, stop: ProbeStop):
        self.probe, self.seen = stop, None

    def update(self, summary: dict, improved: bool) -> dict | None:
        seen = self.probe.update(summary, improved)
        self.seen = self.seen or seen
        return seen if self.probe.on else None


def classify_probe(
    result: LoopResult,
    seen: dict | None,
    rule: ConvergenceRule,
    target_classes,
    cfg: LRSearchConfig,
) -> tuple[str, str]:
    """``(state, reason)`` of a probe run (see ``trainer.lr_grid`` for the states)."""
    if seen is not None and seen["state"] == DIVERGED:
        return DIVERGED, seen["reason"]
    scores = [abs(e["correlation"]) for e in result.evals]
    scores = [s if math.isfinite(s) else 0.0 for s in scores]
    best, final = max(scores), scores[-1]
    converged = rule.is_convergent(result.best, result.best_step, list(target_classes))
    if seen is not None:  # collapsed
        if converged:
            return DEGRADING, f"converged, then collapsed: {seen['reason']}"
        return COLLAPSED, seen["reason"]
    drop = best - final
    if converged:
        if drop > cfg.degrade_tolerance:
            return DEGRADING, f"converged, then |r| fell by {drop:.2f}"
        return CONVERGED, f"|r| {best:.3f} with the class means apart"
    if drop > cfg.degrade_tolerance:
        return DEGRADING, f"|r| fell by {drop:.2f} from its best without converging"
    moved = _moved(result.evals, target_classes)
    if moved < cfg.frozen_tolerance:
        return FROZEN, f"the class means moved by {moved:.3g}"
    return SLOW, f"not converged in {result.evals[-1]['step']} steps (|r| {best:.3f})"


def _moved(evals: list[dict], classes) -> float:
    first, last = evals[0].get("mean_by_class", {}), evals[-1].get("mean_by_class", {})
    diffs = [abs(float(last[c]) - float(first[c])) for c in classes if c in first and c in last]
    diffs = [d for d in diffs if math.isfinite(d)]
    return max(diffs, default=0.0)


@dataclass
class ProbeRunner:
    """Trains one probe GRADIEND on the cached gradients and classifies it."""

    cfg: LRSearchConfig
    loop: LoopConfig
    architecture: Architecture
    convergence: ConvergenceRule
    collapse: CollapseRule
    target_classes: tuple[str, ...]
    device: torch.device
    pmap: Any
    indices: Any
    batches: Any
    evaluate: Any
    steps: int

    def __call__(self, rate: float, seed: int) -> Probe:
        t0 = time.perf_counter()
        model = self.architecture.build(self.pmap, self.indices, {}, seed).to(self.device)
        stop = ProbeStop(
            model, self.batches[0], self.collapse, self.target_classes,
            self.cfg.divergence_factor, self.cfg.early_stop,
        )  # fmt: skip
        monitor = _Monitor(stop)
        loop = self.loop
        with torch.random.fork_rng(devices=[]):
            res = train_loop(
                model, self.batches, self.evaluate, steps=self.steps,
                eval_steps=self.cfg.eval_steps(self.steps), learning_rate=rate,
                weight_decay=loop.weight_decay, adam_epsilon=loop.adam_epsilon, optim=loop.optim,
                gradiend_batch_size=loop.gradiend_batch_size, seed=seed, progress=False,
                monitor=monitor,
                learning_rate_decoder=decoder_rate(
                    loop.learning_rate_decoder, rate, self.batches, self.steps
                ),
            )  # fmt: skip
        state, reason = classify_probe(
            res, monitor.seen, self.convergence, self.target_classes, self.cfg
        )
        scores = [abs(e["correlation"]) for e in res.evals]
        return Probe(
            learning_rate=rate, state=state, reason=reason, seed=seed,
            best_score=_finite(abs(res.best["correlation"])), final_score=_finite(scores[-1]),
            best_step=res.best_step, steps=int(res.evals[-1]["step"]),
            stopped_early=int(res.evals[-1]["step"]) < self.steps,
            seconds=time.perf_counter() - t0,
        )  # fmt: skip


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------- the search
def start_rate(learning_rate: Any, cfg: LRSearchConfig) -> float:
    if cfg.initial_lr is not None:
        return cfg.initial_lr
    return DEFAULT_START if learning_rate == AUTO else float(learning_rate)


def run_search(runner: ProbeRunner, start: float, seed: int) -> SearchResult:
    """Bracket, bisect and centre from ``start`` (``trainer.lr_grid``); times the search."""
    cfg = runner.cfg
    t0 = time.perf_counter()
    search = LRSearch(
        runner, Grid(cfg.resolution), seed, cfg.max_probes, cfg.min_lr, cfg.max_lr,
        cfg.center_window, cfg.confirm,
    )  # fmt: skip
    result = search.search(start)
    result.seconds = time.perf_counter() - t0
    result.config = {**dataclasses.asdict(cfg), "probe_steps_run": runner.steps}
    return result


def search_for_job(job: SeedJob, args, setup) -> tuple[SeedJob, dict | None]:
    """``(job, summary)``: the job with the searched learning rate (``summary`` for
    ``training.json``), or the job unchanged and ``None`` when no search is asked for
    (``setup``: ``trainer.training.GradientSetup``, the cached gradients)."""
    cfg = args.lr_search_config
    if not wants_search(args.learning_rate, cfg):
        return job, None
    result = search_rate(job, cfg or LRSearchConfig(), args.learning_rate, setup)
    loop = dataclasses.replace(job.loop, learning_rate=result.learning_rate)
    return dataclasses.replace(job, loop=loop), summary(result)


def search_rate(job: SeedJob, cfg: LRSearchConfig, learning_rate, setup) -> SearchResult:
    """Run the search for ``job`` on ``setup``'s gradients; write the trace (and the time to
    ``setup.timings``); raise :class:`NoConvergentLearningRate` when no rate works."""
    steps = min(cfg.probe_steps, job.loop.steps(len(setup.batches)))
    runner = ProbeRunner(
        cfg, job.loop, job.architecture, job.convergence, job.remedy.rule, job.target_classes,
        job.device, setup.pmap, setup.indices, setup.batches, setup.evaluate, steps,
    )  # fmt: skip
    start = start_rate(learning_rate, cfg)
    logger.info("searching the learning rate from %.3g (%d-step probes)", start, steps)
    result = run_search(runner, start, job.plan.seed)
    write_json(job.layout.lr_search, result.to_dict())
    setup.timings["lr_search"] = result.seconds
    if result.learning_rate is None:
        raise NoConvergentLearningRate(result, _hint(result))
    logger.info(
        "learning rate %.3g chosen after %d probe(s) in %.1f s (convergent window %s)",
        result.learning_rate, len(result.probes), result.seconds, result.window,
    )  # fmt: skip
    return result


def summary(result: SearchResult) -> dict:
    """What ``training.json`` keeps of a search (the full trace is ``lr_search.json``)."""
    return {
        "learning_rate": result.learning_rate,
        "verdict": result.verdict,
        "start": result.start,
        "window": result.window,
        "n_probes": len(result.probes),
        "seconds": result.seconds,
        "states": [(p.learning_rate, p.state) for p in result.probes],
    }


def _hint(result: SearchResult) -> str:
    states = {p.state for p in result.probes}
    if states <= {FROZEN, SLOW}:
        return (
            "every probe was too slow: raise max_lr or probe_steps (or max_steps), or check "
            "that the two classes' gradients differ"
        )
    if states & {COLLAPSED, DEGRADING} and not states & {FROZEN, SLOW}:
        return (
            "every probe was too fast: lower min_lr, or try source='diff' (a collapse shares "
            "one side between the classes)"
        )
    return (
        "the rates that were too small and too large are neighbours on the grid: try "
        "resolution='fine', more probe_steps, or source='diff'"
    )


def tune_learning_rate(
    trainer, initial_lr: float | None = None, config: LRSearchConfig | None = None, **fields
) -> SearchResult:
    """Search the learning rate of ``trainer``'s run and set ``trainer.args.learning_rate`` to
    it; the gradients it cached are reused by the next ``trainer.train()``. ``fields`` override
    ``config``'s (e.g. ``probe_steps=100``). Raises :class:`NoConvergentLearningRate` (with the
    trace) when no rate converges."""
    cfg = config or trainer.args.lr_search_config or LRSearchConfig()
    if initial_lr is not None:
        fields["initial_lr"] = initial_lr
    cfg = dataclasses.replace(cfg, **fields)  # checked again in __post_init__
    fingerprint = trainer._fingerprint()
    tuned = take_tuned(trainer, fingerprint)
    if tuned is None:  # the validation path is chosen knowing that a search evaluates often
        trainer.args = dataclasses.replace(trainer.args, lr_search_config=cfg)
    setup = tuned.setup if tuned else trainer._gradients(fingerprint, time.perf_counter())
    result = search_rate(trainer._seed_job(None), cfg, trainer.args.learning_rate, setup)
    trainer.args = dataclasses.replace(
        trainer.args, learning_rate=result.learning_rate, lr_search_config=None
    )
    trainer._tuned = Tuned(gradient_fingerprint(fingerprint), setup, summary(result))
    return result


@dataclass
class Tuned:
    """What ``tune_learning_rate`` leaves for the next ``train()``: the gradients and the
    search's summary."""

    key: dict
    setup: Any
    summary: dict


def take_tuned(trainer, fingerprint: dict) -> Tuned | None:
    """What ``tune_learning_rate`` cached for this run (taken once), else ``None``."""
    tuned = trainer.__dict__.pop("_tuned", None)
    if tuned is not None and tuned.key == gradient_fingerprint(fingerprint):
        return tuned
    return None

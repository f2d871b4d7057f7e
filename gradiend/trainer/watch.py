"""What ``TextPredictionTrainer.train(callbacks=…)`` sets up beside the training itself: the
user's callbacks, the trackers of ``report_to``, the runtime monitor's heartbeat and the
periodic checkpoints, bundled as one ``RunWatch`` (the trainer only wires it).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradiend import distributed as dist
from gradiend.model.rewrite import read_results
from gradiend.run_layout import FIG_IMPORTANCE
from gradiend.tracking.run import Tracking, check_installed
from gradiend.trainer.callbacks import CallbackList
from gradiend.trainer.run_hooks import RunHooks
from gradiend.trainer.runtime_monitor import RuntimeMonitor

if TYPE_CHECKING:
    from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)


class RunWatch:
    """Callbacks, trackers, heartbeat and checkpoints of one ``train()`` call."""

    def __init__(self, trainer: TextPredictionTrainer, callbacks: list | None):
        args, layout = trainer.args, trainer.layout
        names = check_installed(args.report_to)  # a missing extra fails before any model loads
        main = dist.is_main()
        if names and main and trainer._tracking is None:
            logdir = Path(args.logging_dir) if args.logging_dir else layout.tracking_logs
            trainer._tracking = Tracking(names, logdir, trainer.run_id or layout.run_dir.name)
        self.tracking = trainer._tracking if main else None
        if self.tracking is not None:
            self.tracking.begin()
        cfg = args.monitor()
        self.monitor = RuntimeMonitor(layout.runtime_monitor, cfg) if cfg.enabled and main else None
        extra = [cb for cb in (self.tracking, self.monitor) if cb is not None]
        self.callbacks = CallbackList([*(callbacks or []), *extra])
        self.hooks = RunHooks(self.callbacks, args.checkpoints(), layout)

    @contextmanager
    def running(self) -> Iterator[RunWatch]:
        """The heartbeat runs (and a CUDA OOM is written) while the training does."""
        with self.monitor.running() if self.monitor is not None else nullcontext():
            yield self

    def after_training(self, trainer: TextPredictionTrainer) -> None:
        """Log the run to the trackers; ``delete_models`` tidies the intermediate weights."""
        if dist.is_main():
            self.hooks.finish()
        if self.tracking is None:
            return
        importance = trainer.layout.figure(FIG_IMPORTANCE, trainer.img_format)
        figures = {"importance_by_layer": importance}  # logged once (a fresh run's already was)
        self.tracking.log_training(trainer.get_training_stats(), trainer.args.to_dict(), figures)
        try:  # the trainer's method logs the figure it draws
            trainer.plot_training_convergence(show=False)
        except (ImportError, KeyError, ValueError) as err:  # no matplotlib, or no history
            logger.info("training-convergence figure not logged: %s", err)


def log_call(
    trainer: TextPredictionTrainer, method: Any, args: tuple, kwargs: dict, result: Any
) -> None:
    """Log what a trainer method returned to the run's trackers (if any are open)."""
    tracking, name = trainer._tracking, method.__name__
    if tracking is None or not tracking.trackers:
        return
    try:
        kwargs = inspect.signature(method).bind(None, *args, **kwargs).arguments
    except TypeError:
        pass  # the call itself succeeded; log what the keywords say
    if name != "rewrite_base_model":
        tracking.log_result(name, result)
        return
    results = kwargs.get("decoder_results") or read_results(trainer.layout)
    target = kwargs.get("target_class")
    classes = target if isinstance(target, list) else [target or trainer.target_classes[0]]
    tracking.log_rewrite(results, classes, kwargs.get("increase_target_probabilities", True))

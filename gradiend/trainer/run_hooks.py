"""What a training run does beside optimising: callbacks, periodic checkpoints and resuming.

``RunHooks`` belongs to one ``train()`` call; ``RunHooks.for_seed`` gives the optimisation loop
(``trainer.loop.train_loop``) the ``SeedHooks`` of one seed attempt, which calls the callbacks
(``trainer.callbacks``) and writes and restores the checkpoints (``trainer.checkpoints``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradiend.run_layout import MODEL_WEIGHTS, RunLayout
from gradiend.trainer.callbacks import CallbackList
from gradiend.trainer.checkpoints import (
    CheckpointConfig,
    LoopProgress,
    latest_checkpoint,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from gradiend.trainer.gradient_data import stable_hash

logger = logging.getLogger(__name__)


@dataclass
class SeedHooks:
    """The hooks of one seed attempt (``key``: its fingerprint; ``folder``: its checkpoints)."""

    seed: int
    key: dict
    folder: Path
    callbacks: CallbackList
    checkpoints: CheckpointConfig
    learning_rate: float
    last: Path | None = None  # the newest checkpoint written or resumed from

    def resume(self, model, opt, gen: torch.Generator, progress: LoopProgress, monitor) -> bool:
        """Restore the newest matching checkpoint; ``False``: start at step 0."""
        if not self.checkpoints.periodic:
            return False
        found = latest_checkpoint(self.folder, self.key)
        if found is None or not restore_checkpoint(*found, model, opt, gen, progress):
            return False
        if monitor is not None:
            monitor.streak = progress.streak
        self.last = found[0]
        logger.info("seed %d: resuming from %s (step %d)", self.seed, found[0], progress.step)
        return True

    def on_step(self, step: int, loss: torch.Tensor) -> None:
        if self.callbacks.wants("on_step"):
            self.callbacks.call("on_step", seed=self.seed, step=step, loss=loss)

    def on_evaluate(self, step: int, summary: dict) -> None:
        self.callbacks.call(
            "on_evaluate",
            seed=self.seed,
            step=step,
            summary=summary,
            learning_rate=self.learning_rate,
        )

    def save_due(self, step: int) -> bool:
        return self.checkpoints.due(step)

    def save(self, step: int, model, opt, gen, progress: LoopProgress, monitor) -> None:
        """Write the checkpoint of ``step`` (the previous one goes with ``save_only_best``)."""
        progress.step = step
        progress.streak = monitor.streak if monitor is not None else 0
        path = save_checkpoint(self.folder, step, model, opt, gen, progress, self.key)
        if self.checkpoints.save_only_best:
            prune_checkpoints(self.folder, keep=path)
        self.last = path
        logger.debug("seed %d: checkpoint of step %d in %s", self.seed, step, path)
        self.callbacks.call("on_save", seed=self.seed, step=step, path=path)

    def seed_end(self, record: dict, stats: dict) -> None:
        """The seed finished: its checkpoints go with ``save_only_best``; callbacks hear it."""
        if self.checkpoints.periodic and self.checkpoints.save_only_best:
            prune_checkpoints(self.folder, keep=None)
        self.callbacks.call("on_seed_end", seed=self.seed, record=record, stats=stats)


class RunHooks:
    """The callbacks and checkpoint settings of one ``train()`` call."""

    def __init__(
        self, callbacks: CallbackList, checkpoints: CheckpointConfig, layout: RunLayout
    ) -> None:
        self.callbacks, self.checkpoints, self.layout = callbacks, checkpoints, layout

    def for_seed(self, seed: int, key: dict | None, learning_rate: Any) -> SeedHooks | None:
        """The hooks of one seed attempt; ``None`` when there is nothing to do."""
        if not self.callbacks and not self.checkpoints.periodic:
            return None
        key = key or {"seed": seed}
        folder = self.layout.checkpoint_dir(seed, stable_hash(key)[:12])
        return SeedHooks(seed, key, folder, self.callbacks, self.checkpoints, learning_rate)

    def finish(self) -> None:
        """After ``train()``: ``delete_models`` removes the checkpoints and the seeds' weights."""
        if not self.checkpoints.delete_models:
            return
        shutil.rmtree(self.layout.checkpoints_dir, ignore_errors=True)
        for seed_dir in self.layout.seed_runs():
            (seed_dir / MODEL_WEIGHTS).unlink(missing_ok=True)
        logger.info("delete_models: removed the checkpoints and the per-seed weights")

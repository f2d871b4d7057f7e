"""Weights & Biases: a run of project ``WANDB_PROJECT`` (default ``gradiend``) with the arguments
as its config, the scalars in its history and the figures as images. Files go to
``<logging_dir>/wandb``; ``WANDB_MODE=offline`` logs without a network (``wandb sync`` later)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gradiend.tracking import require

logger = logging.getLogger(__name__)


class WandbTracker:
    """One W&B run (its own run object: several trainers in a process do not clash)."""

    name = "wandb"

    def __init__(self, logdir: Path, run_name: str):
        self.wandb = require("wandb")
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT", "gradiend"),
            name=run_name,
            dir=str(self.logdir),
            reinit="create_new",
        )

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        # W&B's own step only grows; each seed restarts its steps, so the step is a column
        self.run.log({**metrics, "step": step})

    def log_image(self, tag: str, path: Path, step: int = 0) -> None:
        self.run.log({tag: self.wandb.Image(str(path))})

    def log_text(self, tag: str, text: str) -> None:
        self.run.summary[tag] = text

    def close(self) -> None:
        self.run.finish()

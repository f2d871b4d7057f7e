"""Trackio (Hugging Face's local-first tracker): a run of project ``TRACKIO_PROJECT`` (default
``gradiend``) with the arguments as its config, the scalars and the figures; stored in its
local database (``TRACKIO_DIR``), viewed with ``trackio show``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gradiend.tracking import require

logger = logging.getLogger(__name__)


class TrackioTracker:
    """One Trackio run."""

    name = "trackio"

    def __init__(self, logdir: Path, run_name: str):
        self.trackio = require("trackio")
        self.project = os.environ.get("TRACKIO_PROJECT", "gradiend")
        self.run_name = run_name
        self.run = self.trackio.init(project=self.project, name=run_name, embed=False)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, tag: str, path: Path, step: int = 0) -> None:
        self.run.log({tag: self.trackio.Image(str(path))}, step=step)

    def log_text(self, tag: str, text: str) -> None:
        self.run.config.update({tag: text})

    def close(self) -> None:
        self.run.finish()

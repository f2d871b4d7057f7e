"""TensorBoard: scalars, the run's arguments as hyperparameters (the HParams tab and a text
table) and figures as images, in event files under ``<logging_dir>/tensorboard``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gradiend.tracking import require

logger = logging.getLogger(__name__)


class TensorBoardTracker:
    """One event-file writer for the run (``torch.utils.tensorboard``)."""

    name = "tensorboard"

    def __init__(self, logdir: Path, run_name: str):
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.logdir = Path(logdir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.run_name = run_name

    def log_params(self, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams  # with the writer's package

        values = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()
        }
        for summary in hparams(values, {}):
            self.writer.file_writer.add_summary(summary)
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(values.items()))
        self.writer.add_text("hyperparameters", "| argument | value |\n|---|---|\n" + table)
        self.writer.flush()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_image(self, tag: str, path: Path, step: int = 0) -> None:
        from matplotlib.image import imread  # figures exist only with the plot extra

        image = imread(str(path))
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        self.writer.add_image(tag, image, global_step=step, dataformats="HWC")
        self.writer.flush()

    def log_text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

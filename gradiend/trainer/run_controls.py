"""The ``TrainingArguments`` fields that watch a run and make it resumable: experiment trackers
(``report_to``, ``logging_dir``: Hugging Face ``Trainer``'s names), periodic checkpoints
(``save_strategy``, ``save_steps``, ``save_only_best``, ``delete_models``) and the runtime
monitor's heartbeat (``runtime_monitor*``). None of them changes the trained GRADIEND, so none is
part of the run's fingerprint. docs/training.md "Callbacks, tracking and checkpoints".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gradiend.tracking import resolve_report_to
from gradiend.trainer.checkpoints import CheckpointConfig, check_checkpoint_args
from gradiend.trainer.runtime_monitor import MonitorConfig

logger = logging.getLogger(__name__)

__all__ = ["RUN_CONTROL_FIELDS", "RunControlArguments", "resolve_run_controls"]


@dataclass
class RunControlArguments:
    """Trackers, checkpoints and the heartbeat (a base of ``TrainingArguments``; meanings in
    its docstring)."""

    report_to: str | list[str] = "none"
    logging_dir: str | None = None
    save_strategy: str = "best"
    save_steps: int = 5000
    save_only_best: bool = True
    delete_models: bool = False
    runtime_monitor: bool = False
    runtime_monitor_interval: float = 5.0
    runtime_monitor_system_stats: bool = True

    def trackers(self) -> list[str]:
        """The tracker names of ``report_to`` (``[]`` for ``"none"``)."""
        return resolve_report_to(self.report_to)

    def checkpoints(self) -> CheckpointConfig:
        return CheckpointConfig(
            save_strategy=self.save_strategy,
            save_steps=self.save_steps,
            save_only_best=self.save_only_best,
            delete_models=self.delete_models,
        )

    def monitor(self) -> MonitorConfig:
        return MonitorConfig(
            enabled=self.runtime_monitor,
            interval=self.runtime_monitor_interval,
            system_stats=self.runtime_monitor_system_stats,
        )


RUN_CONTROL_FIELDS = tuple(RunControlArguments.__dataclass_fields__)


def resolve_run_controls(args: Any) -> None:
    """Check the fields (a clear error naming the fix) before anything is loaded."""
    resolve_report_to(args.report_to)  # unknown names raise here
    if args.logging_dir is not None and not isinstance(args.logging_dir, str):
        args.logging_dir = str(args.logging_dir)  # a Path is fine
    check_checkpoint_args(args.save_strategy, args.save_steps)
    for name in ("save_only_best", "delete_models", "runtime_monitor"):
        if not isinstance(getattr(args, name), bool):
            raise TypeError(f"{name} must be True or False, got {getattr(args, name)!r}")
    interval = args.runtime_monitor_interval
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ValueError(
            f"runtime_monitor_interval must be a number of seconds > 0, got {interval!r}"
        )

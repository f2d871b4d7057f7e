"""The runtime monitor: a heartbeat JSONL file that shows a run is alive and how fast it goes.

With ``TrainingArguments(runtime_monitor=True)`` a background thread appends one JSON line
every ``runtime_monitor_interval`` seconds to ``<run>/runtime_monitor.jsonl``: the time, the
stage (gradients, training, …), the seed and step, the optimiser steps per second since the
previous line and, with ``runtime_monitor_system_stats``, the process's resident memory and
the CUDA memory in use. ``start``/``end`` lines frame the run (``error`` when it raised); a CUDA out-of-memory error
(itself or the cause of the error that ended the run) is written as a ``cuda_oom`` line with
its message and the memory at that moment before it is raised. ``tail -f`` the file, or read it with ``read_heartbeats``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from gradiend.trainer.callbacks import TrainingCallback

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    """``TrainingArguments.monitor()``: on/off, seconds between heartbeats, memory figures."""

    enabled: bool = False
    interval: float = 5.0
    system_stats: bool = True


class RuntimeMonitor(TrainingCallback):
    """Writes the heartbeat file while ``with monitor.running():`` lasts (see the module)."""

    def __init__(self, path: str | Path, config: MonitorConfig):
        self.path, self.config = Path(path), config
        self.stage, self.seed, self.step = "start", None, 0
        self.steps_done, self._last = 0, (time.monotonic(), 0)
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ callback hooks
    def on_step(self, *, seed: int, step: int, **_: Any) -> None:
        self.seed, self.step, self.stage = seed, step, "training"
        self.steps_done += 1

    def on_evaluate(self, *, seed: int, step: int, **_: Any) -> None:
        self.seed, self.step = seed, step

    def on_seed_end(self, *, seed: int, record: dict, **_: Any) -> None:
        self.write("seed_end", correlation=record.get("correlation"))

    # ------------------------------------------------------------------ the file
    @contextmanager
    def running(self) -> Iterator[RuntimeMonitor]:
        """Heartbeats while the block runs; a CUDA OOM inside it is written, then re-raised."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write("start", pid=os.getpid(), interval_s=self.config.interval)
        self._thread = threading.Thread(target=self._beat, name="gradiend-heartbeat", daemon=True)
        self._thread.start()
        try:
            yield self
        except BaseException as err:
            oom = find_oom(err)  # the seed loop re-raises a seed's OOM as the cause of its error
            if oom is not None:
                self.write("cuda_oom", message=str(oom))
                logger.error("CUDA out of memory (written to %s): %s", self.path, oom)
            self.write("error", message=f"{type(err).__name__}: {err}")
            raise
        finally:
            self._stop.set()
            self._thread.join(timeout=self.config.interval + 5)
        self.write("end")

    def record_failure(self, err: BaseException) -> None:
        """A seed failed (and the next one runs): an OOM is written with its message."""
        oom = find_oom(err)
        if oom is not None:
            self.write("cuda_oom", message=str(oom), seed=self.seed)

    def _beat(self) -> None:
        while not self._stop.wait(self.config.interval):
            self.write("heartbeat")

    def write(self, event: str, **extra: Any) -> None:
        """Append one line (one ``write`` call, so a reader never sees half a line)."""
        now = time.monotonic()
        with self._lock:
            t0, n0 = self._last
            rate = (self.steps_done - n0) / (now - t0) if now > t0 else 0.0
            self._last = (now, self.steps_done)
            line = {
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "elapsed_s": round(now - self._start, 3),
                "event": event,
                "stage": self.stage,
                "seed": self.seed,
                "step": self.step,
                "steps_per_s": round(rate, 3),
                **(_memory() if self.config.system_stats else {}),
                **extra,
            }
            with open(self.path, "a") as f:
                f.write(json.dumps(line, default=str) + "\n")


def find_oom(err: BaseException | None) -> BaseException | None:
    """The CUDA out-of-memory error ``err`` is or was raised from (its cause chain), if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, torch.cuda.OutOfMemoryError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _memory() -> dict[str, float]:
    """Resident memory of this process (and its peak) and, with CUDA, the GPU memory in MB."""
    out = {
        "rss_mb": _rss_mb(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
        out["cuda_reserved_mb"] = torch.cuda.memory_reserved() / 2**20
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {k: round(v, 1) for k, v in out.items()}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_heartbeats(path: str | Path) -> list[dict]:
    """The lines of a heartbeat file (a half-written last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out

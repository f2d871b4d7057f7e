"""``Tracking``: the run's trackers behind one callback, and what is logged when.

While a seed trains (callback hooks): ``seed_<s>/train/loss`` per step and, at every
validation, ``seed_<s>/eval/correlation``, ``seed_<s>/eval/mean_by_class/<class>`` and
``seed_<s>/train/learning_rate``; when a seed ends ``seed_<s>/best/*`` and ``seeds/*`` (step =
seed). After ``train()``: the arguments as hyperparameters, ``best/*`` (correlation, seed,
step, converged) and the figures as images. Later calls add ``encoder/*``
(``evaluate_encoder``), ``decoder/points/*`` (every scored decoder point, step = its index) and
``decoder/<class>/*`` (the selected points), ``rewrite/<class>/*`` (the point a rewrite
applied) and each figure a ``plot_*`` call draws.

The values logged while a seed trains are the loop's, before the GRADIEND is oriented: for a
seed whose record says ``flipped``, ``training.json`` holds the correlation and class means
negated (``trainer.loop.orient_stats``); ``seed_<s>/best/*`` and ``best/*`` are oriented.
"""

from __future__ import annotations

import atexit
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch

from gradiend.model.rewrite import summary_key
from gradiend.tracking import require, resolve_report_to
from gradiend.trainer.callbacks import TrainingCallback

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"[^\w\-.]")


def _open(name: str, logdir: Path, run_name: str):
    """The tracker object of ``name`` (each module imports its package only here)."""
    if name == "tensorboard":
        from gradiend.tracking.tensorboard_tracker import TensorBoardTracker as cls  # lazy extra
    elif name == "mlflow":
        from gradiend.tracking.mlflow_tracker import MlflowTracker as cls  # lazy extra
    elif name == "wandb":
        from gradiend.tracking.wandb_tracker import WandbTracker as cls  # lazy extra
    else:
        from gradiend.tracking.trackio_tracker import TrackioTracker as cls  # lazy extra
    return cls(logdir, run_name)


def check_installed(report_to: Any) -> list[str]:
    """The tracker names, each package imported (a missing one raises, naming the extra)."""
    names = resolve_report_to(report_to)
    for name in names:
        require(name)
    return names


class Tracking(TrainingCallback):
    """The open trackers of one trainer; a tracker that fails to log is warned about and
    dropped, so tracking never ends a training."""

    def __init__(self, names: list[str], logdir: Path, run_name: str):
        self.logdir, self.run_name = Path(logdir), run_name
        self.trackers = [_open(n, self.logdir, run_name) for n in names]
        self._losses: dict[int, list] = {}
        self._images: set[tuple[str, str]] = set()  # (tag, file) already logged
        atexit.register(self.close)

    def begin(self) -> None:
        """A ``train()`` starts: drop the losses an interrupted one left unlogged (a resumed
        run logs those steps again)."""
        self._losses.clear()

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must not end the training
                logger.warning("%s: %s failed (%s); it logs no more", tracker.name, method, err)
                self.trackers.remove(tracker)

    def metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        clean = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        if clean:
            self._each("log_metrics", clean, step)

    def params(self, params: dict[str, Any]) -> None:
        self._each("log_params", flatten_params(params))

    def image(self, tag: str, path: str | Path | None, step: int = 0) -> None:
        """A PNG figure (other formats are skipped), once per tag and file."""
        if path is None or Path(path).suffix.lower() != ".png" or not Path(path).is_file():
            return
        key = (tag, str(Path(path).resolve()))
        if key not in self._images:
            self._images.add(key)
            self._each("log_image", tag, Path(path), step)

    def text(self, tag: str, text: str) -> None:
        self._each("log_text", tag, text)

    # ------------------------------------------------------------------ callback hooks
    def on_step(self, *, seed: int, step: int, loss: Any, **_: Any) -> None:
        self._losses.setdefault(seed, []).append((step, loss))  # read at the next evaluation

    def on_evaluate(self, *, seed: int, step: int, summary: dict, learning_rate, **_) -> None:
        pre = f"seed_{seed}/"
        pending = self._losses.pop(seed, [])
        if pending:  # one device sync for every step since the last evaluation
            values = torch.stack([loss.reshape(()) for _, loss in pending]).tolist()
            for (k, _), loss in zip(pending, values):
                self.metrics({pre + "train/loss": loss}, k)
        values = {pre + "eval/correlation": summary.get("correlation")}
        for cls, mean in (summary.get("mean_by_class") or {}).items():
            values[f"{pre}eval/mean_by_class/{_safe(cls)}"] = mean
        if _is_number(learning_rate):
            values[pre + "train/learning_rate"] = learning_rate
        self.metrics(values, step)

    def on_save(self, *, seed: int, step: int, **_: Any) -> None:
        self.metrics({f"seed_{seed}/checkpoint/step": step}, step)

    def on_seed_end(self, *, seed: int, record: dict, **_: Any) -> None:
        keys = ("correlation", "best_step", "converged", "seconds", "learning_rate")
        values = {f"seed_{seed}/best/{k}": record.get(k) for k in keys}
        values |= {f"seeds/{k}": record.get(k) for k in ("correlation", "converged")}
        self.metrics(values, seed)

    # ------------------------------------------------------------------ after training
    def log_training(self, stats: dict, args: dict, figures: dict[str, Any]) -> None:
        """The arguments, the selected seed's summary and the figures drawn so far."""
        self.params(args)
        info = stats.get("convergence_info") or {}
        best = stats.get("best_score_checkpoint") or {}
        self.metrics(
            {
                "best/correlation": best.get("correlation"),
                "best/step": best.get("global_step"),
                "best/seed": stats.get("seed"),
                "best/converged": info.get("converged"),
                "best/convergent_seeds": info.get("convergent_count"),
            }
        )
        self.text("convergence_status", str(stats.get("convergence_status")))
        for tag, path in figures.items():
            self.image(f"figures/{tag}", path)

    def log_result(self, method: str, result: Any) -> None:
        """What a trainer method returned: encoder metrics, decoder points, a figure."""
        if method.startswith("plot_") and isinstance(result, dict):
            self.image(f"figures/{method[5:]}", result.get("path"))
        elif method == "evaluate_encoder" and isinstance(result, dict):
            self.metrics({f"encoder/{k}": v for k, v in flatten(result).items()})
        elif method == "evaluate_decoder" and isinstance(result, dict):
            self.log_decoder(result)

    def log_decoder(self, results: dict) -> None:
        """Every scored decoder point (step = its index) and each selected point."""
        for i, point in enumerate(results.get("grid") or []):
            if isinstance(point, dict):
                self.metrics({f"decoder/points/{k}": v for k, v in flatten(point).items()}, i)
        for key, summary in results.items():
            if key not in ("grid", "search") and isinstance(summary, dict):
                flat = {f"decoder/{_safe(key)}/{k}": v for k, v in flatten(summary).items()}
                self.metrics(flat)

    def log_rewrite(self, results: dict, classes: list[str], strengthen: bool) -> None:
        """The selected point each rewritten class applied (``rewrite/<class>/*``)."""
        for cls in classes:
            summary = results.get(summary_key(cls, strengthen))
            if isinstance(summary, dict):
                flat = {f"rewrite/{_safe(str(cls))}/{k}": v for k, v in flatten(summary).items()}
                self.metrics(flat)

    def close(self) -> None:
        """Finish every tracker (also at interpreter exit); later logs are dropped."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            try:
                tracker.close()
            except Exception as err:  # noqa: BLE001 - closing must not raise at exit
                logger.warning("%s: closing failed (%s)", tracker.name, err)
        atexit.unregister(self.close)


def flatten(d: dict, prefix: str = "", depth: int = 3) -> dict[str, float]:
    """The numeric leaves of a nested dict as ``a/b/c`` keys (bools as 0/1)."""
    out: dict[str, float] = {}
    for key, value in d.items():
        name = f"{prefix}{_safe(str(key))}"
        if isinstance(value, dict) and depth > 0:
            out |= flatten(value, name + "/", depth - 1)
        elif _is_number(value):
            out[name] = float(value)
    return out


def flatten_params(d: dict, prefix: str = "") -> dict[str, Any]:
    """Arguments as flat ``a.b`` keys with plain values (lists and objects as text)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten_params(value, name + ".")
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = "None" if value is None else value
        else:
            out[name] = str(value)
    return out


def _is_number(v: Any) -> bool:
    """A finite scalar (a bool counts as 0/1; a 0-dim tensor or NumPy value too)."""
    if isinstance(v, bool):
        return True
    if not (isinstance(v, (int, float)) or getattr(v, "ndim", None) == 0):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _safe(name: str) -> str:
    return _SAFE.sub("_", name)

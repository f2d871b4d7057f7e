"""MLflow: a run of experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``gradiend``) with the
arguments as parameters, every scalar as a metric and the figures as artifacts. The tracking
URI is ``MLFLOW_TRACKING_URI`` or a local file store in ``<logging_dir>/mlruns``.

Recent MLflow (3.x) refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; for a ``file:`` URI
(or a plain path) this module sets that variable when it is unset, so a reader in the same
process (``MlflowClient``) can open the store too; elsewhere set it yourself (``mlflow ui``)."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from gradiend.tracking import require

logger = logging.getLogger(__name__)

_BAD = re.compile(r"[^\w\-. /]")  # MLflow keys: alphanumerics, _ - . space and /
_MAX_PARAM = 6000  # MLflow's limit on a parameter value


class MlflowTracker:
    """One MLflow run, written through ``MlflowClient`` (no global active run is started)."""

    name = "mlflow"

    def __init__(self, logdir: Path, run_name: str):
        require("mlflow")
        from mlflow.tracking import MlflowClient  # the package was just found

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(logdir).resolve() / "mlruns").as_uri()
        if _is_file_store(uri) and "MLFLOW_ALLOW_FILE_STORE" not in os.environ:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # recent MLflow refuses it otherwise
            logger.info("MLflow: local file store %s (MLFLOW_ALLOW_FILE_STORE=true set)", uri)
        self.client = MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "gradiend")
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.tracking_uri, self.experiment_id = uri, exp_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param  # the package was found in __init__

        items = [Param(_key(k), str(v)[:_MAX_PARAM]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # the package was found in __init__

        now = int(time.time() * 1000)
        items = [Metric(_key(k), float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_image(self, tag: str, path: Path, step: int = 0) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def log_text(self, tag: str, text: str) -> None:
        self.client.log_text(self.run_id, text, f"{_key(tag)}.txt")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _is_file_store(uri: str) -> bool:
    """A ``file:`` URI or a plain path (MLflow's file store), not a database or a server."""
    return (
        uri.startswith("file:")
        or "://" not in uri
        and not uri.startswith(
            ("sqlite:", "postgresql:", "mysql:", "mssql:", "databricks", "http:", "https:")
        )
    )


def _key(name: str) -> str:
    return _BAD.sub("_", name)[:250]

"""Experiment trackers: ``TrainingArguments(report_to=[...])`` logs a run to TensorBoard,
Weights & Biases, MLflow or Trackio (Hugging Face ``Trainer``'s names; ``"none"`` by default,
``"all"``: every installed one).

Each tracker is an optional extra, imported only when named (``pip install
"gradiend[tensorboard]"``, ``[mlflow]``, ``[wandb]``, ``[trackio]``; ``[track]`` installs the
first two); a missing one is a clear ``ImportError`` naming the extra, raised
when ``train()`` starts, before the base model loads. The logs go to ``<run>/logs`` unless
``logging_dir`` says otherwise. ``gradiend.tracking.run.Tracking`` is what the trainer uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["EXTRAS", "TRACKERS", "require", "resolve_report_to"]

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
# tracker -> (the module it imports, the gradiend extra that installs it, its PyPI package)
EXTRAS = {
    "tensorboard": ("tensorboard", "tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow", "mlflow-skinny"),  # or the full mlflow: the same module
    "trackio": ("trackio", "trackio", "trackio"),
}


def resolve_report_to(value: Any) -> list[str]:
    """``report_to`` as a list of tracker names: ``"none"``/``None``/``[]`` → ``[]``, a name
    → ``[name]``, ``"all"`` → the installed trackers; unknown names are refused."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"report_to must be 'none', 'all', a tracker name or a list of them "
            f"({', '.join(TRACKERS)}); got {value!r}"
        )
    out: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key == "none":
            continue
        if key == "all":
            out += [t for t in TRACKERS if importlib.util.find_spec(EXTRAS[t][0]) is not None]
            continue
        if key not in TRACKERS:
            raise ValueError(
                f"report_to={name!r} is not a tracker this library logs to: choose from "
                f"{', '.join(TRACKERS)}, 'all' or 'none'"
            )
        out.append(key)
    return list(dict.fromkeys(out))


def require(name: str) -> Any:
    """Import the package of tracker ``name``, or raise an ``ImportError`` naming the extra."""
    module, extra, package = EXTRAS[name]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"report_to={name!r} needs the {module!r} package, which is not installed: "
            f'pip install "gradiend[{extra}]" (or pip install {package}), or drop {name!r} '
            f"from report_to ({type(err).__name__}: {err})"
        ) from err

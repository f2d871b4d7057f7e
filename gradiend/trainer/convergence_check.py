"""Refusing to evaluate, rewrite or compare a GRADIEND that did not converge, unless asked.

An unconverged GRADIEND (a collapsed or too-short run keeps its best step, often the untrained
step 0) still yields numbers — a test correlation, decoder points, a rewritten model — that look
plausible but describe no learned feature. ``check_converged`` reads the run's training record
and raises :class:`UnconvergedError` (naming the status, the training log's advice and the
opt-in) unless the caller passed ``allow_unconverged=True``; a run without a record (a GRADIEND
saved elsewhere) passes.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from pathlib import Path

from gradiend._io import read_json
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)


class UnconvergedError(RuntimeError):
    """The run's GRADIEND did not converge and the call did not allow it."""


def convergence_of(stats: dict | None) -> tuple[bool, str]:
    """``(converged, what the record says)``; a missing record counts as converged."""
    if not stats or "convergence_info" not in stats:
        return True, "no training record"
    info = stats["convergence_info"]
    if info.get("converged", True):
        return True, "converged"
    status = stats.get("convergence_status") or "not_converged"
    best = stats.get("best_score_checkpoint", {})
    parts = [status.replace("_", " ")]
    collapse = stats.get("collapse")
    if collapse:
        parts[0] += f" at step {collapse['step']}: {collapse['reason']}"
    corr = best.get("correlation")
    corr = f"{corr:.3f}" if isinstance(corr, (int, float)) else corr
    parts.append(f"best step {best.get('global_step')}, validation correlation {corr}")
    return False, "; ".join(parts)


def check_converged(layout: RunLayout | Path, action: str, allow_unconverged: bool) -> None:
    """Raise :class:`UnconvergedError` before ``action`` runs on an unconverged GRADIEND (a
    warning instead with ``allow_unconverged=True``)."""
    training = layout.training if isinstance(layout, RunLayout) else Path(layout)
    stats = read_training(training)
    converged, what = convergence_of(stats)
    if converged:
        return
    advice = (stats or {}).get("advice") or "see the training log for what to change"
    if allow_unconverged:
        logger.warning("%s on a GRADIEND that did not converge (%s)", action, what)
        return
    raise UnconvergedError(
        f"{action} refused: the GRADIEND in {training.parent} did not converge ({what}), so its "
        f"numbers would describe no learned feature. Retrain it ({advice}), or pass "
        f"allow_unconverged=True to {action} anyway"
    )


def refuses_unconverged(action: str):
    """Decorator: the method gains the keyword ``allow_unconverged=False`` and runs
    :func:`check_converged` on ``self.layout`` first (for methods that have no line to spare
    for the call; its signature shows the keyword)."""

    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, allow_unconverged: bool = False, **kwargs):
            check_converged(self.layout, action, allow_unconverged)
            return method(self, *args, **kwargs)

        sig = inspect.signature(method)
        extra = inspect.Parameter(
            "allow_unconverged", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"
        )
        guarded.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])
        return guarded

    return wrap


def read_training(path: Path) -> dict | None:
    """The training record, or ``None`` when there is none (an unreadable one is kept)."""
    if not path.exists():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as err:
        logger.warning("training record %s is unreadable (%s): convergence not checked", path, err)
        return None


def unconverged_banner(stats: dict | None) -> str:
    """The report's warning at the top of an unconverged run's page (empty when converged)."""
    converged, what = convergence_of(stats)
    if converged:
        return ""
    advice = (stats or {}).get("advice", "")
    return (
        '<p style="background:#fde2e1;border:2px solid #b00020;padding:.6rem;font-weight:600">'
        f"NOT CONVERGED: {html.escape(what)}. The numbers below describe no learned feature"
        f"{html.escape('; ' + advice) if advice else ''}.</p>"
    )

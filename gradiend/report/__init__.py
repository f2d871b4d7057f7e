"""HTML reports of GRADIEND runs: ``write_report(["runs/x/he_she"])`` or ``gradiend report``.

One self-contained file (figures embedded as PNG, no scripts, no network) per run, or one page
comparing several runs: training arguments, convergence, encoder metrics and distributions, the
decoder search with its selected point, where the rewrite changes the model, seeds and their
overlap, timings. Needs the ``plot`` extra for the figures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from gradiend._io import write_text
from gradiend.report.html import render_comparison, render_run
from gradiend.report.target import mark, report_target

logger = logging.getLogger(__name__)

__all__ = ["render_comparison", "render_run", "write_report"]


def write_report(
    runs: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    topk: int | float = 1000,
    allow_unconverged: bool = False,
) -> Path:
    """Write the report of one run (default ``<run>/report.html``) or a comparison of several
    (default ``./report.html``); ``output`` may be a file or an existing folder (the report goes
    inside it). A folder that is not a run folder, or an existing file gradiend did not write, is
    refused (``ConfigError``, a ``ValueError``) before anything is rendered, and so is a comparison
    with a run that did not converge (``UnconvergedError``) unless ``allow_unconverged``, which
    marks it. Returns the path."""
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    path = report_target(runs, output)
    text = (
        render_run(runs[0], topk)
        if len(runs) == 1
        else render_comparison(runs, topk, allow_unconverged)
    )
    write_text(path, mark(text))
    logger.info("report written to %s (%d kB)", path, len(text) // 1024)
    return path

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

from gradiend.report.collect import find_run_dir
from gradiend.report.html import render_comparison, render_run
from gradiend.run_layout import REPORT, report_file

logger = logging.getLogger(__name__)

__all__ = ["render_comparison", "render_run", "write_report"]


def write_report(
    runs: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    topk: int | float = 1000,
) -> Path:
    """Write the report of one run (default ``<run>/report.html``) or a comparison of several
    (default ``./report.html``); returns the file's path."""
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not runs:
        raise ValueError("write_report needs at least one run folder")
    if len(runs) == 1:
        text = render_run(runs[0], topk)
        default = report_file(find_run_dir(runs[0])[0])
    else:
        text = render_comparison(runs, topk)
        default = Path(REPORT)
    path = Path(output) if output is not None else default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("report written to %s (%d kB)", path, len(text) // 1024)
    return path

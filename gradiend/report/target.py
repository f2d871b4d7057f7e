"""Where a report may be written: only for run folders, and only over a report gradiend wrote.

Every page ``write_report`` writes carries ``GENERATOR_META`` (``<meta name="generator" content="gradiend …">``); an
existing file without that mark (a page of yours that happens to be called ``report.html``) is
never replaced. ``-o`` naming an existing folder writes ``report.html`` inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from gradiend import __version__, run_layout
from gradiend.config_read import ConfigError
from gradiend.report.collect import find_run_dir
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)

GENERATOR = "gradiend"
GENERATOR_META = f'<meta name="generator" content="{GENERATOR} {__version__}">'
# how the head of pages written before the mark began (``page()`` of 0.3.0 and earlier)
_LEGACY_MARK = '<p class="muted">gradiend '
_HEAD_BYTES = 4096


def mark(page: str) -> str:
    """``page`` with ``GENERATOR_META`` as the first element of its head (once)."""
    if GENERATOR_META in page:
        return page
    head = page.find("<head>")
    if head < 0:
        return GENERATOR_META + page
    at = head + len("<head>")
    return page[:at] + GENERATOR_META + page[at:]


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a GRADIEND (a run or model folder) or a run's records (its config,
    decoder results, seeds, timings, encoder results, or the trace of a learning-rate search
    that found no convergent rate): a folder a report is about."""
    try:
        RunLayout.find(path)
        return True
    except FileNotFoundError:
        pass
    layout = RunLayout.locate(path)
    records = (
        layout.run_config, layout.decoder_results, layout.seed_report, layout.timings,
        layout.lr_search,
    )  # fmt: skip
    return any(p.is_file() for p in records) or bool(layout.encoder_results() or layout.seed_runs())


def written_by_gradiend(path: Path) -> bool:
    """Whether the file at ``path`` is a report this library wrote (its head holds the mark)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR} ' in head or (
        _LEGACY_MARK in head and " report, " in head
    )


def report_target(runs: Sequence[str | Path], output: str | Path | None) -> Path:
    """The file a report of ``runs`` goes to, after refusing (``ConfigError``, nothing written) a
    run that is not a run folder and a target file that gradiend did not write."""
    if not runs:
        raise ConfigError("RUN_DIR", "no run folder given", "name one or more run folders")
    for run in runs:
        if not Path(run).is_dir() or not is_run_folder(run):
            raise ConfigError(
                "RUN_DIR",
                f"{run} is not a GRADIEND run folder (no GRADIEND model and none of a run's "
                f"records such as {run_layout.RUN_CONFIG} or {run_layout.DECODER_RESULTS}), so "
                "no report is written there",
                "pass a folder that `gradiend train` wrote (e.g. runs/demo/he_she) or a "
                "GRADIEND model folder",
            )
    if output is None:
        default = find_run_dir(runs[0])[0] if len(runs) == 1 else Path(".")
        path = run_layout.report_file(default)
    else:
        path = Path(output)
        if path.is_dir():  # -o FOLDER: the report goes inside it
            path = run_layout.report_file(path)
    if path.is_dir():
        raise ConfigError(
            "--output", f"{path} is a folder", "pass -o a file name such as report.html"
        )
    if path.exists() and not written_by_gradiend(path):
        raise ConfigError(
            "--output",
            f"{path} exists and was not written by gradiend (it has no "
            f"{GENERATOR_META.split(' content')[0]}> mark), so it is not replaced",
            "pass -o another file, or move that file away",
        )
    return path

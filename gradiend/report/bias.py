"""The report's "Bias before/after" section: the run's saved ``trainer.evaluate_bias`` result
(``bias_results.json``), every score with its 95 % interval, changes whose intervals do not
overlap highlighted."""

from __future__ import annotations

import html
import logging
from typing import Any

from gradiend.report.collect import RunFiles

logger = logging.getLogger(__name__)

TITLE = "<h2>Bias before/after</h2>"


def _esc(x: Any) -> str:
    return html.escape(str(x))


def interval(s: Any) -> str:
    """``56.00 [42.00, 70.00]`` of a score dict, ``—`` when it is not one."""
    if not isinstance(s, dict) or not {"value", "low", "high"} <= set(s):
        return "—"
    try:
        return f"{float(s['value']):.2f} [{float(s['low']):.2f}, {float(s['high']):.2f}]"
    except (TypeError, ValueError):
        return "—"


def _rows(tree: Any, path: tuple = ()) -> list[tuple[tuple, dict]]:
    """``(suite, group, metric)`` paths to their leaves (a score or a comparison row)."""
    out: list[tuple[tuple, dict]] = []
    for key, val in tree.items() if isinstance(tree, dict) else ():
        if isinstance(val, dict) and ({"value", "low"} <= set(val) or "delta" in val):
            out.append((path + (str(key),), val))
        elif isinstance(val, dict):
            out.extend(_rows(val, path + (str(key),)))
    return out


def _seconds(res: Any) -> str:
    secs = res.get("seconds") if isinstance(res, dict) else None
    if not isinstance(secs, dict) or not secs:
        return ""
    return "scoring time: " + ", ".join(f"{_esc(k)} {float(v):.1f} s" for k, v in secs.items())


def comparison_table(bias: dict, table) -> str:
    """One row per score both models have: before and after with intervals, the change."""
    rows, sel = [], set()
    for i, (path, r) in enumerate(_rows(bias.get("comparison"))):
        if r.get("significant"):
            sel.add(i)
        delta = r.get("delta")
        rows.append((
            *(_esc(p) for p in (path + ("", "", ""))[:3]), interval(r.get("before")),
            interval(r.get("after")), "—" if delta is None else f"{float(delta):+.2f}",
            "yes" if r.get("significant") else "",
        ))  # fmt: skip
    header = ["suite", "group", "metric", f"before: {bias.get('against')}",
              f"after: {bias.get('model')}", "change", "intervals apart"]  # fmt: skip
    return table(rows, header, selected=sel)


def scores_table(scores: dict, table) -> str:
    """One row per score of a single model (no comparison saved)."""
    rows = [
        (*(_esc(p) for p in (path + ("", "", ""))[:3]), interval(s), _esc(s.get("n", "")))
        for path, s in _rows(scores.get("suites"))
    ]
    return table(rows, ["suite", "group", "metric", "score [95 % interval]", "n"])


def section_bias(run: RunFiles, table) -> str:
    """The section, or nothing when the run folder holds no bias result."""
    bias = run.bias
    if not bias:
        return ""
    if not isinstance(bias.get("scores"), dict):
        logger.warning("report: %s/bias_results.json has no scores; left out", run.run_dir)
        return TITLE + '<p class="note">the saved bias result holds no scores</p>'
    out = TITLE + (
        "<p>CrowS-Pairs, WinoBias (% preferring the stereotype; 50 = none), StereoSet (SS, LMS, "
        "ICAT) and SEAT (effect size; 0 = none) from <code>trainer.evaluate_bias</code>, with "
        "bootstrap 95 % intervals. Highlighted: changes whose two intervals do not overlap.</p>"
    )
    if isinstance(bias.get("comparison"), dict):
        out += comparison_table(bias, table)
        secs = _seconds(bias.get("against_scores"))
        out += f'<p class="muted">{secs} (before)</p>' if secs else ""
    else:
        out += f"<p>{_esc(bias.get('model'))}, no comparison saved</p>"
        out += scores_table(bias["scores"], table)
    secs = _seconds(bias["scores"])
    return out + (f'<p class="muted">{secs}</p>' if secs else "")

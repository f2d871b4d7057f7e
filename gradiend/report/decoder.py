"""The report's decoder section: the selected points with their NLL change on the selection and
held-out texts and their specificity, the evaluated points (screened or confirmed), and every
earlier evaluation of the run (each kept in its own results file)."""

from __future__ import annotations

import html
import logging
from typing import Any

from gradiend.evaluator.decoder import lms_of, nll_of
from gradiend.evaluator.decoder_describe import describe_search, summaries
from gradiend.report.collect import RunFiles

logger = logging.getLogger(__name__)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):+.2f} %"


def decoder_summaries(run: RunFiles) -> dict[str, dict]:
    """The per-class summaries of the run's ``decoder_results.json``."""
    return summaries(run.decoder)


def primary_entry(run: RunFiles) -> tuple[str | None, dict]:
    """The summary a comparison shows: the first of the latest evaluation (a folder written
    before the index existed: its first summary)."""
    sums = decoder_summaries(run)
    latest = run.decoder.get("latest")
    index = (
        run.decoder.get("evaluations") if isinstance(run.decoder.get("evaluations"), dict) else {}
    )
    for key in (index.get(latest) or {}).get("summaries", []):
        if key in sums and sums[key].get("settings_key") == latest:
            return key, sums[key]
    return next(iter(sums.items()), (None, {}))


def comparison_cell(run: RunFiles) -> str:
    """``she: η=0.27, 0.014 → 0.96, NLL +0.71 % (held-out +0.63 %)`` of the primary entry."""
    key, e = primary_entry(run)
    if key is None:
        return "—"
    return _esc(
        f"{key}: η={e.get('learning_rate'):.4g}, {_f(e.get('base_value'))} → "
        f"{_f(e.get('value'))}, NLL {pct(e.get('nll_increase'))} (held-out "
        f"{pct(e.get('heldout_nll_increase'))})"
    )


def _f(x: Any, digits: int = 4) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def specificity_cell(spec: dict | None) -> str:
    """The specificity record in one cell."""
    if not spec:
        return "—"
    n, flip, own = spec.get("neutral", {}), spec.get("flip", {}), spec.get("own", {})
    parts = [
        f"P({spec.get('target')}) on neutral text {_f(n.get('before'))} → {_f(n.get('after'))}"
        f" (×{_f(n.get('ratio'), 2)})"
    ]
    if flip.get("flipped") is not None:
        parts.append(f"{100 * flip['flipped']:.0f} % of the other class's sentences flipped")
    if own.get("before") is not None:
        parts.append(f"own sentences {_f(own['before'])} → {_f(own['after'])}")
    for c in spec.get("controls", []):
        a, b = c.get("pair", ["?", "?"])
        parts.append(
            f"control {a}/{b}: share {_f(c.get('share_before'))} → {_f(c.get('share_after'))}"
            f", {100 * (c.get('flipped') or 0):.0f} % flipped"
        )
    return "<br>".join(_esc(p) for p in parts)


def selections_table(run: RunFiles, table) -> str:
    rows = []
    latest = run.decoder.get("latest")
    for k, e in decoder_summaries(run).items():
        ev = e.get("settings_key")
        rows.append((
            _esc(k), _f(e.get("feature_factor"), 1), _f(e.get("learning_rate")),
            f"{_f(e.get('base_value'))} → {_f(e.get('value'))}",
            f"{_f(e.get('lms'))} (base {_f(e.get('base_lms'))})",
            pct(e.get("nll_increase")), pct(e.get("heldout_nll_increase")),
            _f(e.get("heldout_lms")), _esc(e.get("passed")), specificity_cell(e.get("specificity")),
            "—" if ev is None else _esc(ev if ev != latest else f"{ev} (latest)"),
        ))  # fmt: skip
    header = ["selection", "ff", "η", "value", "LMS", "NLL change", "held-out NLL change",
              "held-out LMS", "passed", "specificity", "evaluation"]  # fmt: skip
    return table(rows, header)


def budget_cost_table(run: RunFiles, table) -> str:
    """What the budget cost, per direction: the best point inside and outside, with their NLL
    change (selection and held-out) and specificity."""
    rows = []
    for k, e in decoder_summaries(run).items():
        for side in ("best_inside", "best_outside"):
            p = e.get(side)
            if isinstance(p, dict):
                rows.append((
                    _esc(k), side.replace("best_", ""), _f(p.get("learning_rate")),
                    _f(p.get("value")), pct(p.get("nll_increase")),
                    pct(p.get("heldout_nll_increase")),
                    "estimated" if p.get("estimated") else "confirmed",
                    specificity_cell(p.get("specificity")),
                ))  # fmt: skip
    if not rows:
        return ""
    header = ["selection", "budget", "η", "value", "NLL change", "held-out NLL change",
              "scored", "specificity"]  # fmt: skip
    return "<h3>What the budget cost</h3>" + table(rows, header)


def grid_table(run: RunFiles, table) -> str:
    """Every evaluated point: class probabilities, LMS, NLL change and how it was scored."""
    grid = run.decoder.get("grid") if isinstance(run.decoder.get("grid"), list) else []
    chosen = {
        (e.get("feature_factor"), e.get("learning_rate"))
        for e in decoder_summaries(run).values()
        if e.get("settings_key", run.decoder.get("latest")) == run.decoder.get("latest")
    }
    base = next((e for e in grid if (e.get("id") or {}).get("learning_rate") == 0), None)
    base_nll = nll_of(base) if base is not None else float("nan")
    classes = sorted({c for e in grid for c in (e.get("probs") or {})})
    rows, sel = [], set()
    for i, e in enumerate(grid):
        ident = e.get("id") or {}
        ff, lr = ident.get("feature_factor"), ident.get("learning_rate")
        if (ff, lr) in chosen:
            sel.add(i)
        probs = e.get("probs") or {}
        change = nll_of(e) / base_nll - 1 if base_nll == base_nll and base_nll else None
        rows.append(
            [_f(ff, 1), _f(lr)]
            + [_f(probs.get(c)) for c in classes]
            + [_f(lms_of(e)), pct(change), _esc(e.get("scored", "full"))]
        )
    header = ["ff", "η", *[f"P({c})" for c in classes], "LMS", "NLL change", "scored"]
    return table(rows, header, selected=sel)


def history_table(run: RunFiles, table) -> str:
    """Every evaluation of the run (oldest first), each from its own results file."""
    index = run.decoder.get("evaluations")
    if not isinstance(index, dict) or len(index) < 2:
        return ""
    rows = []
    for key, ev in index.items():
        s = ev.get("settings") or {}
        res = run.decoder_evaluations.get(key, {})
        picked = ", ".join(
            f"{k} η={e.get('learning_rate'):.4g} NLL {pct(e.get('nll_increase'))}"
            f" (held-out {pct(e.get('heldout_nll_increase'))})"
            for k, e in summaries(res).items()
        )
        rows.append((
            _esc(key), _esc(s.get("mode")), _esc(s.get("max_nll_increase")),
            _esc((s.get("precondition") or {}).get("method", "—")),
            _esc(s.get("control_pairs") or "—"), _esc(picked or "file missing"),
        ))  # fmt: skip
    header = ["evaluation", "search", "NLL budget", "precondition", "control pairs", "selected"]
    return "<h3>Every evaluation of this run</h3>" + table(rows, header)


def section_decoder(run: RunFiles, table, figure, decoder_figure) -> str:
    """The whole decoder section (``table``/``figure`` are the page's helpers)."""
    sums = decoder_summaries(run)
    grid = run.decoder.get("grid") if isinstance(run.decoder.get("grid"), list) else []
    if not sums and not grid:
        return '<h2>Decoder search</h2><p class="note">not evaluated (run `gradiend evaluate`)</p>'
    out = "<h2>Decoder search</h2>" + selections_table(run, table)
    if isinstance(run.decoder.get("search"), dict):
        out += f"<p>{_esc(describe_search(run.decoder['search']))}</p>"
    out += budget_cost_table(run, table)
    if grid:
        out += figure(decoder_figure(run), "probability of each class's words and LMS against "
                      "η; the selected points are starred", "decoder")  # fmt: skip
        out += "<details open><summary>every evaluated point (selected rows highlighted; "
        out += "screened points have estimated LMS/NLL)</summary>" + grid_table(run, table)
        out += "</details>"
    return out + history_table(run, table)

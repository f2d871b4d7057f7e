"""One self-contained HTML page per run, or one page comparing runs.

No scripts, no external links: the style is inline and every figure is an embedded PNG, so the
file opens offline and can be mailed or archived as it is.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradiend import __version__
from gradiend.evaluator.converged_runs import check_runs, marked
from gradiend.model.runs import load_gradiend
from gradiend.report import decoder as report_decoder
from gradiend.report import figures
from gradiend.report.bias import section_bias
from gradiend.report.collect import RunFiles, collect_run, get
from gradiend.report.methods import section_methods
from gradiend.trainer.convergence_check import unconverged_banner

logger = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.sel td{background:#fff3c4;font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}.note{color:#8a6d3b;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem}.muted{color:#777}
nav a{margin-right:1rem}
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return esc(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return esc(x)
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}" if abs(v) >= 10 ** (-digits) or v == 0 else f"{v:.2e}"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None, selected=()) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for i, row in enumerate(rows):
        cls = ' class="sel"' if i in selected else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def kv(d: dict) -> str:
    return table([(esc(k), _value(v)) for k, v in d.items()], ["key", "value"])


def _value(v: Any) -> str:
    if isinstance(v, float):
        return num(v, 4)
    if isinstance(v, (dict, list)):
        return f"<code>{esc(json.dumps(v, default=str))}</code>"
    return esc(v)


def figure(uri_reason: tuple[str | None, str | None], caption: str, alt: str) -> str:
    uri, reason = uri_reason
    if uri is None:
        return f'<p class="note">{esc(caption)}: figure unavailable ({esc(reason)})</p>'
    return (
        f'<figure><img src="{uri}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


# --------------------------------------------------------------------------- sections
def section_summary(run: RunFiles) -> str:
    meta, tr = run.metadata, run.training
    rows = [
        ("base model", esc(meta.get("base_model") or "not recorded")),
        ("classes", esc(" vs ".join(run.target_classes) or "not recorded")),
        ("source → target", esc(f"{meta.get('source')} → {meta.get('target')}")),
        ("dimensions", esc(get(run.config, "architecture", "input_dim", default="?"))),
        (
            "validation correlation (best step)",
            num(get(tr, "best_score_checkpoint", "correlation")),
        ),
        ("converged", esc(get(tr, "convergence_info", "converged", default="?"))),
        ("test correlation", num(run.encoder_metrics.get("correlation"))),
    ]
    for key, entry in _decoder_summaries(run).items():
        rows.append(
            (
                f"decoder: {esc(key)}",
                f"ff={num(entry.get('feature_factor'), 1)}, η={num(entry.get('learning_rate'), 4)}"
                f", {num(entry.get('base_value'), 4)} → {num(entry.get('value'), 4)}, LMS "
                f"{num(entry.get('lms'), 4)} (base {num(entry.get('base_lms'), 4)}), neutral NLL "
                f"{report_decoder.pct(entry.get('nll_increase'))} (held-out "
                f"{report_decoder.pct(entry.get('heldout_nll_increase'))})",
            )
        )
    return "<h2>Summary</h2>" + table(rows)


KEY_ARGS = (
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "train_batch_size",
    "source",
    "target",
    "seed",
    "max_seeds",
    "min_convergent_seeds",
    "pre_prune_config",
    "post_prune_config",
    "params",
    "prediction_objective",
)


def section_args(run: RunFiles) -> str:
    args = run.training.get("training_args") or {}
    if not args:
        return '<h2>Training arguments</h2><p class="note">no training record</p>'
    shown = {k: v for k, v in args.items() if v not in (None, {}, [])}
    key = {k: shown[k] for k in KEY_ARGS if k in shown}
    out = "<h2>Training arguments</h2>" + kv(key)
    out += f"<details><summary>all {len(shown)} arguments</summary>" + kv(shown) + "</details>"
    if run.run_config:
        out += "<details><summary>the run config</summary>" + kv(run.run_config) + "</details>"
    return out


def section_convergence(run: RunFiles) -> str:
    if not run.training.get("evals"):
        return '<h2>Convergence</h2><p class="note">no training record</p>'
    fig = figures.convergence(run)
    best = get(run.training, "best_step")
    return "<h2>Convergence</h2>" + figure(
        fig, f"loss, class means and correlation over steps; best step {best}", "convergence"
    )


def section_encoder(run: RunFiles) -> str:
    m = run.encoder_metrics
    if not m:
        return '<h2>Encoder</h2><p class="note">not evaluated (run `gradiend evaluate`)</p>'
    rows = [("correlation", num(m.get("correlation")))]
    for group in ("all_data", "training_only", "target_classes_only"):
        if isinstance(m.get(group), dict):
            rows.append(
                (f"{group}", ", ".join(f"{esc(k)} {num(v)}" for k, v in m[group].items()
                                       if isinstance(v, (int, float))))
            )  # fmt: skip
    for key in ("mean_by_feature_class", "neutral_mean_by_type"):
        if isinstance(m.get(key), dict):
            rows.append((key, ", ".join(f"{esc(k)} {num(v)}" for k, v in m[key].items())))
    out = "<h2>Encoder</h2>" + table(rows, ["metric", "value"])
    if run.encoder_csv is not None:
        out += figure(figures.encoder(run), "encoded values per class and neutral type", "encoder")
    return out


def _decoder_summaries(run: RunFiles) -> dict[str, dict]:
    return report_decoder.decoder_summaries(run)


def section_decoder(run: RunFiles) -> str:
    return report_decoder.section_decoder(run, table, figure, figures.decoder)


def section_location(run: RunFiles, model: Any, topk: int | float = 1000) -> str:
    """Where the feature lives, by the importance ranking itself (``importance_by_module``,
    region ``rest``), so this section and ``get_topk_weights`` name the same places."""
    out = "<h2>Where the feature lives</h2>"
    if model is None:
        return out + '<p class="note">no GRADIEND weights</p>'
    rows, words = figures.location_rows(model, topk)
    if not rows:
        return out + '<p class="note">no parameter map</p>'
    out += (
        "<p>Share of the default ranking's importance mass and of its top-"
        f"{esc(topk)} dimensions per parameter tensor, over every dimension but the feature "
        "words' own embedding rows (<code>region='rest'</code>, as "
        "<code>importance_by_module()</code>).</p>"
    )
    if words.get("word_row_dims") is not None:
        out += (
            f"<p>The feature words' rows ({words['word_row_dims']:,} dimensions) hold "
            f"{num(words['mass_share'])} of the mass and {num(words['topk_share'])} of the "
            f"top-{esc(topk)} over all dimensions (<code>region='word_rows'</code>).</p>"
        )
    else:
        out += '<p class="note">this run records no word rows: every dimension is ranked</p>'
    out += figure(figures.location(model, topk), "importance share per layer and module type "
                  "(log scale)", "importance by layer")  # fmt: skip
    out += table(
        [(f"<code>{esc(r['param'])}</code>", f"{r['dims']:,}", num(r["mass_share"]),
          num(r["topk_share"])) for r in rows[:20]],
        ["parameter", "dimensions", "share of mass", f"share of top-{topk}"],
    )  # fmt: skip
    if run.rewritten:
        out += (
            "<p>Rewritten checkpoints: "
            + ", ".join(f"<code>{esc(p)}</code>" for p in run.rewritten)
            + "</p>"
        )
    return out


def section_seeds(run: RunFiles, topk: int | float) -> str:
    seeds = run.seed_report.get("seeds") or run.training.get("seeds") or []
    out = "<h2>Seeds</h2>"
    if not seeds:
        return out + '<p class="note">one seed, no seed record</p>'
    best = run.seed_report.get("best_seed", run.training.get("seed"))
    rows, sel = [], set()
    for i, s in enumerate(seeds):
        if s.get("seed") == best:
            sel.add(i)
        rows.append((esc(s.get("seed")), num(s.get("correlation")), esc(s.get("best_step")),
                     esc(s.get("converged")), num(s.get("seconds"), 1),
                     esc(s.get("error", ""))))  # fmt: skip
    out += table(rows, ["seed", "correlation", "best step", "converged", "seconds", "error"], sel)
    if len(run.seed_dirs) >= 2:
        models = {d.name: str(d) for d in run.seed_dirs}
        figs = figures.overlap(models, topk, allow_unconverged=True)  # seeds marked, as above
        out += figure(
            figs["heatmap"], f"top-{topk} overlap of the seeds' decoder weights", "heatmap"
        )
        out += figure(figs["venn"], f"top-{topk} sets of the seeds", "venn")
    return out


def section_lr_search(run: RunFiles) -> str:
    """The learning-rate search's probes (``lr_search.json``), when this run searched (or
    stopped at the search's verdict before a model was saved)."""
    trace = run.lr_search
    if not trace or (run.training and not run.training.get("lr_search")):
        return ""
    chosen = trace.get("learning_rate")
    rows, sel = [], set()
    for i, p in enumerate(trace.get("probes") or []):
        if p.get("learning_rate") == chosen and p.get("phase") != "confirm" and not sel:
            sel.add(i)
        rows.append((num(p.get("learning_rate"), 6), esc(p.get("phase")), esc(p.get("seed")),
                     esc(p.get("state")), num(p.get("best_score")), num(p.get("final_score")),
                     esc(p.get("steps")), esc(p.get("reason"))))  # fmt: skip
    head = ["rate", "phase", "seed", "state", "best |r|", "final |r|", "steps", "why"]
    verdict = (
        f"chosen learning rate <b>{num(chosen, 6)}</b>, convergent window "
        f"{esc(trace.get('window'))}"
        if chosen is not None
        else '<span class="note">no convergent learning rate</span>'
    )
    return (
        f"<h2>Learning-rate search</h2><p>{verdict}; {len(rows)} probe(s) from "
        f"{num(trace.get('start'), 6)} in {num(trace.get('seconds'), 1)} s</p>"
        + table(rows, head, sel)
    )


def section_timings(run: RunFiles) -> str:
    rows = [(esc(k), num(v, 2)) for k, v in (run.training.get("timings") or {}).items()]
    rows += [(esc(f"stage: {k}"), num(v, 2)) for k, v in run.timings.items()]
    if not rows:
        return '<h2>Timings</h2><p class="note">none recorded</p>'
    return "<h2>Timings</h2>" + table(rows, ["step", "seconds"])


def run_sections(run: RunFiles, topk: int | float) -> str:
    model = _load_model(run)
    parts = [
        unconverged_banner(run.training),
        section_summary(run),
        section_args(run),
        section_convergence(run),
        section_lr_search(run),
        section_encoder(run),
        section_decoder(run),
        section_bias(run, table),
        section_methods(run, table),
        section_location(run, model, topk),
        section_seeds(run, topk),
        section_timings(run),
    ]
    return "\n".join(parts)


def _load_model(run: RunFiles) -> Any:
    """The run's GradiendModel (for where the rewrite changes the model), or None."""
    if run.model_dir is None:
        return None
    try:
        return load_gradiend(run.model_dir)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        logger.warning("report: cannot load the GRADIEND in %s: %s", run.model_dir, err)
        return None


# --------------------------------------------------------------------------- pages
def page(title: str, body: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="muted">gradiend {esc(__version__)} report, {stamp}</p>'
        f"{body}</body></html>\n"
    )


def render_run(path: str | Path, topk: int | float = 1000) -> str:
    run = collect_run(path)
    title = f"GRADIEND run {run.name}: " + (" vs ".join(run.target_classes) or "?")
    return page(title, run_sections(run, topk))


def render_comparison(
    paths: Sequence[str | Path], topk: int | float = 1000, allow_unconverged: bool = False
) -> str:
    """The comparison page; runs that did not converge are refused (``UnconvergedError``)
    before anything is drawn unless ``allow_unconverged``, and marked on the page then."""
    runs = [collect_run(p) for p in paths]
    labels = _unique([r.name for r in runs], runs)
    bad = check_runs(
        {label: [r.model_dir] for label, r in zip(labels, runs, strict=True) if r.model_dir},
        "the comparison report",
        allow_unconverged,
    )
    rows = []
    for label, r in zip(labels, runs, strict=True):
        rows.append((
            f'<a href="#run-{esc(label)}">{esc(marked(label, bad))}</a>',
            esc(" vs ".join(r.target_classes)),
            esc(r.metadata.get("base_model")),
            esc(get(r.config, "architecture", "input_dim", default="?")),
            num(get(r.training, "best_score_checkpoint", "correlation")),
            num(r.encoder_metrics.get("correlation")),
            report_decoder.comparison_cell(r),
            num(get(r.training, "timings", "training_total"), 1),
        ))  # fmt: skip
    body = "<h2>Runs</h2>" + table(
        rows,
        ["run", "classes", "base model", "dims", "val. corr.", "test corr.", "decoder", "train s"],
    )
    models = {label: str(r.model_dir) for label, r in zip(labels, runs, strict=True) if r.model_dir}
    if len(models) >= 2:
        figs = figures.overlap(models, topk, allow_unconverged)
        body += "<h2>Overlap of the runs</h2>"
        body += figure(figs["heatmap"], f"top-{topk} overlap of the decoder weights", "heatmap")
        body += figure(figs["venn"], f"top-{topk} sets of the runs", "venn")
    for label, r in zip(labels, runs, strict=True):
        body += f'<hr><h1 id="run-{esc(label)}">{esc(label)}</h1>' + run_sections(r, topk)
    return page(f"GRADIEND comparison of {len(runs)} runs", body)


def _unique(names: list[str], runs: list[RunFiles]) -> list[str]:
    out = []
    for n, r in zip(names, runs, strict=True):
        label = n if names.count(n) == 1 else f"{r.run_dir.parent.name}/{n}"
        out.append(label if label not in out else f"{label}-{len(out)}")
    return out

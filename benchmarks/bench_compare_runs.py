"""``compare_runs`` (similarity frame + top-k heatmap + Venn) on saved runs: wall time (best of 3)
and how often each run's GRADIEND is read, for this checkout and, side by side, another one.

Runs are synthetic GRADIENDs shaped like a 1%-pruned SmolLM2 run (see bench_compare.py), saved
once to a temporary folder; each implementation times ``compare_runs`` in its own process.

    .venv/bin/python benchmarks/bench_compare_runs.py [--runs 4] [--dim 1350000]
        [--baseline /path/to/an/older/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import cProfile, json, pstats, sys, time
from gradiend.pipeline import compare_runs

runs = json.loads(sys.argv[1])
compare_runs(runs[:2], topk=1000)  # warm-up (imports, allocator)
seconds = []
for _ in range(3):
    t = time.perf_counter()
    out = compare_runs(runs, topk=1000)
    seconds.append(time.perf_counter() - t)
profile = cProfile.Profile()
profile.runcall(compare_runs, runs, topk=1000)
stats = pstats.Stats(profile).stats  # {(file, line, name): (calls, ...)}
loads = sum(v[0] for k, v in stats.items() if k[2] == "from_pretrained" and "gradiend.py" in k[0])
print(json.dumps({"seconds": min(seconds), "loads": loads, "matrix": out["matrix"]}))
"""


def save_runs(folder: Path, n: int, dim: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_compare import synthetic_run

    paths = []
    for i in range(n):
        path = folder / f"run_{i}" / "model"
        synthetic_run(i, dim).save_pretrained(path)
        paths.append(str(path.parent))
    return paths


def measure(checkout: Path, runs: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "MPLBACKEND": "Agg"}
    out = subprocess.run(  # cwd: ``-c`` puts the working folder first on sys.path
        [sys.executable, "-c", _CHILD, json.dumps(runs)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--dim", type=int, default=1_350_000)
    parser.add_argument("--baseline", type=Path, default=None, help="an older checkout")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = save_runs(Path(tmp), ns.runs, ns.dim)
        this = measure(ROOT, runs)
        print(f"this checkout: {this['seconds']:.2f} s, {this['loads']} GRADIEND reads "
              f"for {ns.runs} runs")  # fmt: skip
        if ns.baseline is not None:
            base = measure(ns.baseline, runs)
            print(f"baseline:      {base['seconds']:.2f} s, {base['loads']} GRADIEND reads")
            print(f"speed-up: {base['seconds'] / this['seconds']:.2f}x; same matrix: "
                  f"{base['matrix'] == this['matrix']}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Time the cross-run top-k heatmap on 12 GRADIENDs shaped like a 1%-pruned SmolLM2 run.

SmolLM2-135M has ~134.5M parameters; a run pre-pruned to 1 % keeps ~1.35M of them, stored as a
GradiendModel with 1.35M base-global indices. We save 12 such runs (random indices, random
weights) to a temp folder and time ``plot_topk_overlap_heatmap`` from the folder paths with
topk=1000 — loading included, no base model involved.

    .venv/bin/python benchmarks/bench_compare.py [--runs 12] [--dim 1350000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gradiend.evaluator.compare import compute_similarity_matrix
from gradiend.model.gradiend import GradiendModel
from gradiend.visualizer import plot_topk_overlap_heatmap

BASE_NUMEL = 134_515_008  # SmolLM2-135M parameters (tied embeddings counted once)


def synthetic_run(seed: int, dim: int) -> GradiendModel:
    """A pruned GRADIEND over random base-global indices with random weights."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(BASE_NUMEL, size=dim, replace=False))
    model = GradiendModel(dim, indices=torch.from_numpy(indices))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W_d.copy_(torch.randn(dim, 1, generator=gen))
        model.W_e.copy_(torch.randn(1, dim, generator=gen))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--dim", type=int, default=1_350_000)
    parser.add_argument("--topk", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="save runs and figure here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        paths = {}
        for i in range(args.runs):
            paths[f"run{i:02d}"] = (
                synthetic_run(i, args.dim).save_pretrained(root / f"run{i:02d}" / "model").parent
            )
        print(
            f"built and saved {args.runs} runs of {args.dim:,} dims in {time.perf_counter() - t0:.1f} s"
        )
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = plot_topk_overlap_heatmap(
                paths, topk=args.topk, output_path=root / "topk_heatmap.png", show=False
            )
            times.append(time.perf_counter() - t0)
        matrix = np.array(out["data"]["matrix"])
        off = matrix[~np.eye(len(matrix), dtype=bool)]
        print(
            f"heatmap of {args.runs} runs from paths, topk={args.topk} (loading included): "
            f"{min(times):.2f} s best, {np.median(times):.2f} s median of {args.repeats}"
        )
        t0 = time.perf_counter()
        compute_similarity_matrix(paths, measure="topk_overlap", topk=args.topk)
        print(f"  (separately) loading + top-k sets alone: {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        compute_similarity_matrix(paths, measure="cosine")
        print(f"cosine matrix (aligned by base-global index): {time.perf_counter() - t0:.2f} s")
        print(
            f"off-diagonal overlaps: mean {off.mean():.2f} (random expectation "
            f"{args.topk**2 / BASE_NUMEL:.4f}), max {off.max():.0f}"
        )


if __name__ == "__main__":
    main()

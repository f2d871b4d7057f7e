"""GRADIEND, ACTIEND and CAA side by side on SmolLM2-135M (issue 26's goals).

The he/she task of the README demo (its shipped sentences through the data creator) and of the
Ding dictionary's English sentences (spaCy tags, as ``bench_validity.py`` builds them) are joined
per class; ``compare_methods`` trains a GRADIEND (gradient signal, the last two layers on CPU as in
``bench_validity.py``), an ACTIEND at the prediction position of each of three layers (the best by
validation |r| is kept) and CAA at that ACTIEND's layer, and evaluates each under the same
decoder budget (neutral NLL +1 %, held-out check). Printed: the table, every method's effect as
recomputed from its saved and reloaded model (the rewritten checkpoint or the hook files), and
ACTIEND's training cost relative to GRADIEND's ``train()``.

    .venv/bin/python benchmarks/bench_methods.py                    # small CPU size
    .venv/bin/python benchmarks/bench_methods.py --per-class 200 --neutral 120 --steps 100
    .venv/bin/python benchmarks/bench_methods.py --steps 60 --lr 5e-4 --source diff --pre-prune 0.01

A method that does not converge is still compared (its row is marked "(not converged)").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_validity import LAST_LAYERS, STUDIES  # noqa: E402
from bench_validity import build_data as ding_data  # noqa: E402
from corpora import ding_english_sentences  # noqa: E402

from gradiend import PrePruneConfig, TrainingArguments, compare_methods  # noqa: E402
from gradiend.demo import DemoConfig, smollm2_path  # noqa: E402
from gradiend.demo import build_data as demo_data  # noqa: E402
from gradiend.lm.loading import load_base_model  # noqa: E402


def build_data(per_class: int, n_neutral: int):
    """Demo + Ding rows per class (deduplicated by masked sentence) and neutral texts."""
    demo, demo_neutral = demo_data(DemoConfig(max_size_per_class=per_class))
    ding, ding_neutral = ding_data(STUDIES["he_she"], ding_english_sentences(), per_class,
                                   n_neutral)  # fmt: skip
    data = {c: pd.concat([demo[c], ding[c]], ignore_index=True).drop_duplicates("masked")
            for c in ("he", "she")}  # fmt: skip
    neutral = pd.concat([demo_neutral, ding_neutral], ignore_index=True).drop_duplicates("text")
    return data, neutral.head(n_neutral)


def goals(table: pd.DataFrame) -> None:
    """Issue 26's three goals, measured (✓/✗)."""
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    if "actiend" in table.index:
        act = table.loc["actiend"]
        print("ACTIEND validation |r| by layer:", act["validation_abs_r_by_layer"])
        r = act["encoder_test_abs_r"]
        print(f"goal ACTIEND test |r| >= 0.99 at the best layer: {r:.4f} {mark(r >= 0.99)}")
        c = act["train_cost_vs_gradiend"]
        if c is not None and c == c:
            print(f"goal ACTIEND train cost <= 0.3x GRADIEND train(): {c:.3f}x {mark(c <= 0.3)}")
    if "caa" in table.index:
        caa = table.loc["caa", "effect_ratio"]
        for m in [m for m in ("gradiend", "actiend") if m in table.index]:
            ratio = table.loc[m, "effect_ratio"] / caa if caa else float("nan")
            print(f"goal {m} effect >= 1.5x CAA's (both inside the budget): x{ratio:.2f} of "
                  f"CAA's effect ratio, NLL + {100 * table.loc[m, 'nll_increase']:.2f} % vs "
                  f"{100 * table.loc['caa', 'nll_increase']:.2f} % {mark(ratio >= 1.5)}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=60, help="rows per class from each source")
    ap.add_argument("--neutral", type=int, default=60, help="neutral texts")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--layers", type=int, nargs="+", default=[10, 20, -1])
    ap.add_argument("--actiend-lr", type=float, default=3e-2)
    ap.add_argument("--lr", type=float, default=1e-4, help="the GRADIEND's learning rate")
    ap.add_argument("--source", default="alternative", choices=["alternative", "factual", "diff"])
    ap.add_argument("--pre-prune", type=float, help="pre-prune the GRADIEND to this top-k share")
    ap.add_argument("--decoder-rows", type=int, default=24, help="held-out rows per class")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    print("args:", " ".join(sys.argv[1:]) or "(defaults)", flush=True)
    t0 = time.perf_counter()
    data, neutral = build_data(a.per_class, a.neutral)
    sizes = {c: len(df) for c, df in data.items()}
    print(f"data: {sizes} rows, {len(neutral)} neutral texts ({time.perf_counter() - t0:.0f} s)")
    lm = load_base_model(smollm2_path())
    work = Path(tempfile.mkdtemp(prefix="bench_methods_"))
    args = TrainingArguments(
        experiment_dir=str(work), train_batch_size=8, max_steps=a.steps, eval_steps=10,
        learning_rate=a.lr, max_seeds=1, encoder_eval_max_size=16, params=LAST_LAYERS,
        source=a.source, pre_prune_config=PrePruneConfig(n_samples=16, topk=a.pre_prune)
        if a.pre_prune else None,
    )  # fmt: skip
    try:
        result = compare_methods(
            (lm.model, lm.tokenizer), data, ["he", "she"], args=args, actiend_layers=a.layers,
            actiend_learning_rate=a.actiend_lr, eval_neutral_data=neutral, experiment_dir=work,
            max_size_training_like=a.decoder_rows,
        )  # fmt: skip
    finally:
        print(f"total {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min) at the end", flush=True)
    print(result.to_markdown())
    print(result.summary())
    table = result.table
    for m, row in table.iterrows():
        diff = abs(row["recompute_rel_diff"])
        print(f"{m}: converged {row['converged']} ({row['convergence']}); reported "
              f"P(she | he-sentences) {row['probability']:.5f}, recomputed from the reloaded "
              f"model {row['recomputed_probability']:.5f} ({100 * diff:.3f} % apart: "
              f"{'within' if diff <= 0.01 else 'NOT within'} 1 %)")  # fmt: skip
    goals(table)
    if a.json:
        Path(a.json).write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

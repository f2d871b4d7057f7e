"""What 16-bit precision changes on SmolLM2: the base model in bf16, the gradient cache in bf16.

Three runs of the same he/she workload (the demo's sentences, 120 per class, the last two
layers, 60 steps, one seed): float32 model + float32 cache (the reference), float32 model + bf16
cache (the default), bf16 model + bf16 cache. Per run: test correlation, class means, the cosine of
``W_d`` to the reference, P(she | he-sentences) at fixed decoder steps and the neutral NLL, plus
``train()`` seconds and the cache's bytes.

    .venv/bin/python benchmarks/bench_precision.py [--work /tmp/bench-precision]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.demo import DemoConfig, build_data, smollm2_path

RUNS = {
    "fp32 model, fp32 cache": ("float32", "float32"),
    "fp32 model, bf16 cache": ("float32", "bfloat16"),
    "bf16 model, bf16 cache": ("bfloat16", "bfloat16"),
}
LRS = [0.5, 1.0]


def run(name: str, model_dtype: str, cache_dtype: str, work: Path, data, neutral) -> dict:
    args = TrainingArguments(
        experiment_dir=str(work),
        train_batch_size=8,
        max_steps=60,
        eval_steps=20,
        learning_rate=1e-4,
        max_seeds=1,
        params=["model.layers.28.*", "model.layers.29.*"],
        torch_dtype=model_dtype,
        gradient_cache_dtype=cache_dtype,
        use_cache=True,
        encoder_eval_max_size=30,
        device="cpu",
    )
    trainer = TextPredictionTrainer(
        model=smollm2_path(),
        run_id=name.replace(" ", "_").replace(",", ""),
        data=data,
        eval_neutral_data=neutral,
        target_classes=["he", "she"],
        args=args,
        progress=False,
    )
    t = time.perf_counter()
    mwg = trainer.train()
    t_train = time.perf_counter() - t
    enc = trainer.evaluate_encoder(max_size=30)
    dec = trainer.evaluate_decoder(target_class="she", lrs=LRS, max_size_neutral=60)
    cache = sum(f.stat().st_size for f in (trainer.run_dir / "cache").rglob("*.safetensors"))
    return {
        "wd": mwg.gradiend.W_d[:, 0].detach().float().cpu(),
        "row": {
            "run": name,
            "train_s": round(t_train, 1),
            "correlation": round(float(enc["correlation"]), 4),
            "mean_by_class": {k: round(v, 3) for k, v in enc["mean_by_class"].items()},
            "cache_mb": round(cache / 1e6, 1),
            "decoder": _decoder_summary(dec),
        },
    }


def _decoder_summary(dec: dict) -> dict:
    """The selected point of 'she': P(she | he-rows) before/after, step, LMS."""
    entry = dec.get("she", {})
    keep = ("feature_factor", "learning_rate", "base_value", "value", "base_lms", "lms")
    out = {k: entry[k] for k in keep if k in entry}
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-precision"))
    ns = ap.parse_args()
    data, neutral = build_data(DemoConfig(max_size_per_class=120))
    out, ref = [], None
    for name, (m, c) in RUNS.items():
        res = run(name, m, c, ns.work, data, neutral)
        if ref is None:
            ref = res["wd"]
        cos = torch.nn.functional.cosine_similarity(res["wd"], ref, dim=0)
        res["row"]["wd_cosine_to_fp32"] = round(float(cos), 5)
        out.append(res["row"])
        print(json.dumps(res["row"]), flush=True)
    print(
        "\n| run | test correlation | W_d cosine to fp32 | cache MB | train() s | decoder (she) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in out:
        print(
            f"| {r['run']} | {r['correlation']:.3f} | {r['wd_cosine_to_fp32']:.4f} | "
            f"{r['cache_mb']} | {r['train_s']} | {json.dumps(r['decoder'])} |"
        )


if __name__ == "__main__":
    main()

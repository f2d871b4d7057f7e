"""Peak host memory of training on a ~1B-parameter model on the CPU, against its weight bytes.

A random-initialised Llama of Llama-3.2-1B's layer shape with SmolLM2's vocabulary (1.07B
parameters, float32, 4.3 GB of weights) trains a GRADIEND over *all* parameters
(``params=None``) with pre-pruning to 1 %: the pre-prune sums, one training gradient, the JVP
tangents and the rewrite must each stay within about one extra copy of the weights. Goal: peak RSS
≤ 2.5× the float32 weight bytes. The workload is short (4 steps of batch 2) because only the peak
matters; each run is its own subprocess so ``ru_maxrss`` is its own.

    .venv/bin/python benchmarks/bench_memory.py [--shape 1b|tiny] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_TAG = "BENCH_RESULT "


def tokenizer_dir(work: Path) -> Path:
    """SmolLM2's tokenizer and config as a folder (from the offline GGUF file), once."""
    out = work / "smollm2-tokenizer"
    if (out / "config.json").exists():
        return out
    from transformers import AutoConfig, AutoTokenizer

    from gradiend.demo import smollm2_path

    path = Path(smollm2_path())
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)
    cfg = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.save_pretrained(out)
    return out


def worker(shape: str, tok_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_gpu import config_for

    from gradiend import PostPruneConfig, PrePruneConfig, TextPredictionTrainer, TrainingArguments
    from gradiend.demo import DemoConfig, build_data

    training, _ = build_data(DemoConfig(max_size_per_class=40))
    torch.manual_seed(0)
    cfg = config_for(tok_dir, shape)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            experiment_dir=tmp,
            train_batch_size=2,
            max_steps=4,
            eval_steps=2,
            learning_rate=1e-4,
            max_seeds=1,
            encoder_eval_max_size=2,
            pre_prune_config=PrePruneConfig(n_samples=4, topk=0.01, batch_size=4),
            post_prune_config=PostPruneConfig(topk=0.05),
        )
        trainer = TextPredictionTrainer(
            model=(model, AutoTokenizer.from_pretrained(tok_dir)),
            run_id="mem",
            data=training,
            target_classes=["he", "she"],
            args=args,
            progress=False,
        )
        t = time.perf_counter()
        trainer.train()
        t_train = time.perf_counter() - t
        after_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        t = time.perf_counter()
        trainer.evaluate_encoder(max_size=4, neutral=False)
        t_enc = time.perf_counter() - t
        after_enc = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    weights = n * 4 / 1e9
    out = {
        "shape": shape,
        "n_params": n,
        "fp32_weight_gb": weights,
        "peak_rss_gb_after_build": after_build,
        "peak_rss_gb_after_train": after_train,
        "peak_rss_gb_after_encoder": after_enc,
        "ratio": after_enc / weights,
        "train_s": t_train,
        "evaluate_encoder_s": t_enc,
    }
    print(RESULT_TAG + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="1b")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-memory"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.worker:
        worker(ns.shape, ns.tokenizer)
        return
    ns.work.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_dir(ns.work)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if ns.threads:
        env["OMP_NUM_THREADS"] = str(ns.threads)
    cmd = [sys.executable, __file__, "--worker", "--shape", ns.shape, "--tokenizer", str(tok)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"worker failed (rc {proc.returncode})")
    r = json.loads(lines[-1][len(RESULT_TAG) :])
    print(json.dumps(r, indent=2))
    print(
        f"\n{r['shape']}: {r['n_params'] / 1e9:.2f}B parameters, float32 weights "
        f"{r['fp32_weight_gb']:.2f} GB; peak RSS {r['peak_rss_gb_after_encoder']:.2f} GB = "
        f"{r['ratio']:.2f}x the weights (goal ≤ 2.5x); train() {r['train_s']:.0f} s"
    )


if __name__ == "__main__":
    main()

"""Gradient extraction split over torch.distributed ranks against one process.

Workload: the training gradient batches of one run (``train()``'s ``training_gradients``
stage, as recorded in ``training.json``; the per-example validation gradients are printed too)
on a random-initialised Llama built here (hidden ``--hidden``, ``--layers`` layers, the test
suite's word-level tokenizer), he/she sentences, ``train_batch_size=8``, every parameter
selected and pre-pruned to ``--topk`` (32 samples; ``--topk 0``: no pre-pruning, so that full
gradient vectors travel between the ranks), one epoch, no gradient cache on disk.

* CPU: 2 gloo processes × 1 thread against 1 process × 2 threads, on the same cores
  (goal: the split is no slower).
* GPUs (when more than one is visible): N NCCL processes, one GPU each, against one process on
  one GPU (goal: speed-up ≥ 0.85 × N).

    python benchmarks/bench_distributed.py [--per-class 200] [--hidden 256] [--layers 4]
        [--repeats 1] [--topk 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "BENCH_RESULT "


def _model(folder: Path, hidden: int, layers: int) -> None:
    """A random Llama with the test suite's tokenizer, saved to ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny import make_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = make_tokenizer("clm")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def worker(ns: argparse.Namespace) -> None:
    """One process (or rank): extract the gradients, print rank 0's stage timings."""
    import torch

    torch.set_num_threads(ns.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import he_she_data

    from gradiend import TextPredictionTrainer, TrainingArguments
    from gradiend import distributed as dist
    from gradiend.trainer import PrePruneConfig

    args = TrainingArguments(
        experiment_dir=ns.exp,
        train_batch_size=8,
        max_steps=-1,
        num_train_epochs=1,
        eval_steps=10**6,
        max_seeds=1,
        params=None,
        plot_importance=False,
        gradient_cache_dtype="float32",
        device=ns.device,
        pre_prune_config=PrePruneConfig(n_samples=32, topk=ns.topk) if ns.topk else None,
    )
    trainer = TextPredictionTrainer(
        model=ns.model, run_id="run", data=he_she_data(ns.per_class), args=args, progress=False
    )
    trainer.train()
    if dist.is_main():
        timings = trainer.get_training_stats()["timings"]
        keys = ("training_gradients", "validation_gradients", "pre_prune")
        print(TAG + json.dumps({k: timings[k] for k in keys}), flush=True)
    if dist.is_distributed():
        torch.distributed.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ns, procs: int, threads: int, device: str | None, gpus: bool = False) -> dict:
    """Run the worker as ``procs`` ranks (one process when 1); rank 0's timings."""
    exp = tempfile.mkdtemp(prefix="bench-dist-")
    cmd = [sys.executable, __file__, "--worker", "--model", ns.model, "--exp", exp,
           "--threads", str(threads), "--per-class", str(ns.per_class), "--topk", str(ns.topk)]  # fmt: skip
    if device:
        cmd += ["--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    port = str(_port())
    ps = []
    for r in range(procs):
        extra = {}
        if procs > 1:
            extra = dict(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(procs),
                         MASTER_ADDR="127.0.0.1", MASTER_PORT=port)  # fmt: skip
        ps.append(subprocess.Popen(cmd, env={**env, **extra}, stdout=subprocess.PIPE, text=True))
    out = [p.communicate()[0] for p in ps]
    if any(p.returncode for p in ps):
        raise SystemExit(f"a worker failed ({[p.returncode for p in ps]})")
    line = next(x for x in out[0].splitlines() if x.startswith(TAG))
    return json.loads(line[len(TAG) :])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--topk", type=float, default=0.01, help="pre-prune share (0: none)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--exp", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.worker:
        worker(ns)
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-dist-model-")) / "llama"
    _model(folder, ns.hidden, ns.layers)
    ns.model = str(folder)
    print(f"model: random Llama, hidden {ns.hidden}, {ns.layers} layers; "
          f"{ns.per_class} sentences per class, train_batch_size 8, pre-prune topk {ns.topk}")  # fmt: skip
    print(f"CPU cores visible: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    results = {"one_x2": [], "two_x1": [], "one_x1": []}
    for _ in range(ns.repeats):  # interleaved, so that a change of load hits all
        results["one_x2"].append(launch(ns, 1, 2, "cpu"))
        results["two_x1"].append(launch(ns, 2, 1, "cpu"))
        results["one_x1"].append(launch(ns, 1, 1, "cpu"))
    for stage in ("pre_prune", "training_gradients", "validation_gradients"):
        one, two, ref = (min(r[stage] for r in results[k]) for k in ("one_x2", "two_x1", "one_x1"))
        print(f"{stage}: 1 process x 2 threads {one:.2f} s | 2 gloo processes x 1 thread "
              f"{two:.2f} s | ratio (1x2 / 2x1) {one / two:.2f} (goal >= 1.0) | "
              f"1 process x 1 thread {ref:.2f} s (speed-up of the split {ref / two:.2f})")  # fmt: skip
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > 1:
        single = launch(ns, 1, 4, "cuda:0", gpus=True)
        split = launch(ns, n, 4, None, gpus=True)
        for stage in ("training_gradients", "validation_gradients"):
            speedup = single[stage] / split[stage]
            print(f"{stage}: 1 GPU {single[stage]:.2f} s | {n} GPUs {split[stage]:.2f} s | "
                  f"speed-up {speedup:.2f} = {speedup / n:.2f} x GPU count (goal >= 0.85)")  # fmt: skip
    else:
        print(f"GPUs visible: {n}; the multi-GPU speed-up needs at least 2")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    if "--worker" not in sys.argv:
        print(f"benchmark wall time {time.perf_counter() - start:.0f} s")

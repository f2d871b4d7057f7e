"""The seed workflow on the visible GPU: ours against the incumbent ``gradiend==0.2.3``.

Random-initialised Llama models of real shapes (no weights need downloading; only SmolLM2's
tokenizer and config are read from ``--tokenizer``):

* ``135m``: SmolLM2-135M's shape, float32, saved once as an HF folder that both sides load by
  path (the comparison at equal arguments);
* ``1b``: Llama-3.2-1B's layer shape (hidden 2048, 16 layers, SmolLM2's vocabulary: 1.07B
  parameters), bfloat16, built on the GPU and passed as ``(model, tokenizer)``;
* ``8b``: Llama-3-8B's layer shape (hidden 4096, 32 layers, 14336 MLP; 7.4B parameters with
  SmolLM2's vocabulary), bfloat16, likewise.

Workload (each side in its own subprocess, so peak memory is its own): the demo's he/she
sentences (200 per class, 60 neutral), ``TrainingArguments(train_batch_size=8, max_steps=60,
eval_steps=20, learning_rate=5e-5, max_seeds=1, params=None, pre_prune_config=PrePruneConfig(
n_samples=16, topk=0.01, source="diff"), post_prune_config=PostPruneConfig(topk=0.05))``, then
``train()``, ``evaluate_encoder(max_size=60)``, ``evaluate_decoder()`` and
``rewrite_base_model(decoder_results=…, target_class="she")``. Prints wall seconds per stage, peak
GPU memory (``torch.cuda.max_memory_allocated``) and ours/incumbent ratios; writes
``results.json`` into ``--out``.

    python benchmarks/bench_gpu.py --tokenizer DIR [--incumbent-wheel gradiend-0.2.3-*.whl]
        [--shapes 135m,1b,8b] [--budget-s 480] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULT_TAG = "BENCH_RESULT "
SHAPES = {
    "tiny": {  # a smoke test of this script on a CPU
        "dtype": "bfloat16",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
    },
    "135m": {"dtype": "float32"},
    "1b": {
        "dtype": "bfloat16",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "8b": {
        "dtype": "bfloat16",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
    },
}


def write_data(data_dir: Path) -> None:
    from gradiend.demo import DemoConfig, build_data

    training, neutral = build_data(DemoConfig(max_size_per_class=200))
    data_dir.mkdir(parents=True, exist_ok=True)
    for cls, frame in training.items():
        frame.to_csv(data_dir / f"{cls}.csv", index=False)
    neutral.to_csv(data_dir / "neutral.csv", index=False)


def config_for(tokenizer_dir: str, shape: str):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tokenizer_dir)
    for k, v in SHAPES[shape].items():
        if k != "dtype":
            setattr(cfg, k, v)
    return cfg


def save_135m(tokenizer_dir: str, folder: Path) -> None:
    """The float32 135M model both sides load by path (built once, seeded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (folder / "config.json").exists():
        return
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_for(tokenizer_dir, "135m"))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)


# --------------------------------------------------------------------------- one side, one shape
def worker(side: str, shape: str, ns: argparse.Namespace) -> None:
    import pandas as pd
    import torch

    import gradiend
    from gradiend import PostPruneConfig, PrePruneConfig, TextPredictionTrainer, TrainingArguments

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    peak = (lambda: torch.cuda.max_memory_allocated() / 1e9) if cuda else (lambda: 0.0)
    classes = ["he", "she"]
    read = dict(keep_default_na=False)
    data = {c: pd.read_csv(ns.data_dir / f"{c}.csv", **read) for c in classes}
    neutral = pd.read_csv(ns.data_dir / "neutral.csv", **read)
    t0 = time.perf_counter()
    if shape == "135m":
        model = str(ns.work / "smollm2-shape-135m")
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        with torch.device("cuda" if cuda else "cpu"):
            net = AutoModelForCausalLM.from_config(
                config_for(str(ns.tokenizer), shape), dtype=getattr(torch, SHAPES[shape]["dtype"])
            )
        model = (net, AutoTokenizer.from_pretrained(ns.tokenizer))
    t_build = time.perf_counter() - t0
    args = TrainingArguments(
        experiment_dir=str(ns.work / f"run-{side}-{shape}"),
        train_batch_size=8,
        max_steps=60,
        eval_steps=20,
        learning_rate=5e-5,
        max_seeds=1,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01, source="diff"),
        post_prune_config=PostPruneConfig(topk=0.05),
    )
    kwargs = dict(
        model=model,
        run_id="bench",
        data=data,
        target_classes=classes,
        eval_neutral_data=neutral,
        args=args,
        split_col="split",
    )
    if side == "ours":
        kwargs["progress"] = False
    t = time.perf_counter()
    trainer = TextPredictionTrainer(**kwargs)
    out = {"side": side, "shape": shape, "version": getattr(gradiend, "__version__", "?")}
    out["build_s"], out["init_s"] = t_build, time.perf_counter() - t
    stages = [
        ("train", lambda: trainer.train()),
        ("evaluate_encoder", lambda: trainer.evaluate_encoder(max_size=60)),
        ("evaluate_decoder", lambda: trainer.evaluate_decoder()),
    ]
    results = {}
    for name, fn in stages:
        sync()
        t = time.perf_counter()
        results[name] = fn()
        sync()
        out[f"{name}_s"] = time.perf_counter() - t
        out[f"{name}_peak_gb"] = peak()
        print(RESULT_TAG + json.dumps(out), flush=True)  # partial results survive a timeout
    t = time.perf_counter()
    trainer.rewrite_base_model(decoder_results=results["evaluate_decoder"], target_class="she")
    sync()
    out["rewrite_s"] = time.perf_counter() - t
    enc = results["evaluate_encoder"]
    out["correlation"] = float(enc["correlation"]) if isinstance(enc, dict) else None
    out["peak_gpu_gb"] = peak()
    out["n_params"] = sum(p.numel() for p in trainer.get_model().base_model.parameters())
    out["device"] = torch.cuda.get_device_name() if cuda else "cpu"
    if side == "ours":  # where train() spent its time
        out["train_timings"] = trainer.get_training_stats().get("timings")
    print(RESULT_TAG + json.dumps(out), flush=True)


def spawn(python: str, side: str, shape: str, ns, timeout: float, env: dict) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--shape", shape]
    cmd += [
        "--tokenizer",
        str(ns.tokenizer),
        "--work",
        str(ns.work),
        "--data-dir",
        str(ns.data_dir),
    ]
    log = ns.out / f"{side}-{shape}.log"
    t = time.perf_counter()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(
                cmd, cwd="/tmp", env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith(RESULT_TAG)]
    res = json.loads(lines[-1][len(RESULT_TAG) :]) if lines else {"side": side, "shape": shape}
    res["process_wall_s"] = time.perf_counter() - t
    if rc != 0:
        res["error"] = f"rc={rc}: " + text[-1500:]
    return res


def table(results: list[dict]) -> None:
    cols = ["train_s", "evaluate_encoder_s", "evaluate_decoder_s", "rewrite_s", "peak_gpu_gb"]
    print("| side | shape | " + " | ".join(cols) + " | correlation |")
    print("|" + " --- |" * (len(cols) + 3))
    for r in results:
        vals = [
            "—" if r.get(c) is None else f"{r[c]:.1f}" if c != "peak_gpu_gb" else f"{r[c]:.2f}"
            for c in cols
        ]
        corr = r.get("correlation")
        tail = "—" if corr is None else f"{corr:.3f}"
        print(f"| {r['side']} | {r['shape']} | " + " | ".join(vals) + f" | {tail} |")
    by = {(r["side"], r["shape"]): r for r in results}
    ours, inc = by.get(("ours", "135m"), {}), by.get(("incumbent", "135m"), {})
    ratios = {
        c: ours[c] / inc[c] for c in cols if ours.get(c) is not None and inc.get(c) is not None
    }
    if ratios:
        print("\nours / incumbent (135m): " + ", ".join(f"{c} {v:.3f}x" for c, v in ratios.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--incumbent-wheel", type=Path, default=None)
    ap.add_argument("--shapes", default="135m,1b,8b")
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/bench-gpu")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-gpu-work"))
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--worker", choices=["ours", "incumbent"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    ns.tokenizer, ns.work = ns.tokenizer.resolve(), ns.work.resolve()
    ns.data_dir = (ns.data_dir or ns.work / "data").resolve()
    ns.out = ns.out.resolve()
    if ns.incumbent_wheel is not None:
        ns.incumbent_wheel = ns.incumbent_wheel.resolve()
    if ns.worker:
        worker(ns.worker, ns.shape, ns)
        return
    t_start = time.perf_counter()
    ns.out.mkdir(parents=True, exist_ok=True)
    ns.work.mkdir(parents=True, exist_ok=True)
    write_data(ns.data_dir)
    shapes = ns.shapes.split(",")
    if "135m" in shapes:
        save_135m(str(ns.tokenizer), ns.work / "smollm2-shape-135m")
    repo = str(Path(__file__).resolve().parents[1])
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    base_env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    plan = [("ours", s) for s in shapes]
    inc_env = None
    if ns.incumbent_wheel is not None and "135m" in shapes:
        site = ns.work / "incumbent-site"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
            + [str(ns.incumbent_wheel)],
            check=True,
        )
        inc_env = base_env | {"PYTHONPATH": str(site)}
        plan.insert(1, ("incumbent", "135m"))
    results = []
    for side, shape in plan:
        left = ns.budget_s - (time.perf_counter() - t_start)
        if left < 30:
            print(f"skipping {side} {shape}: budget spent", flush=True)
            continue
        env = inc_env if side == "incumbent" else base_env | {"PYTHONPATH": repo}
        print(f"running {side} {shape} (up to {left:.0f} s) ...", flush=True)
        res = spawn(sys.executable, side, shape, ns, left, env)
        results.append(res)
        (ns.out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(res)[:2000], flush=True)
    print()
    table(results)


if __name__ == "__main__":
    main()

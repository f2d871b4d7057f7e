"""Cross-encoding: a run's encoder on another run's data."""

from __future__ import annotations

import pytest
from conftest import fast_args, he_she_data

from gradiend import TextPredictionTrainer
from gradiend.evaluator.cross import compute_cross_encoding_matrix


def test_cross_encoding_of_mirrored_runs(planted, tmp_path):
    """Two runs on the same pair in opposite order: r ≈ +1 on the diagonal, ≈ −1 off it."""
    trainers = {}
    for name, classes in (("he_she", ["he", "she"]), ("she_he", ["she", "he"])):
        args = fast_args(tmp_path, max_steps=80)
        trainers[name] = TextPredictionTrainer(
            model=planted["clm"],
            run_id=name,
            data=he_she_data(),
            target_classes=classes,
            args=args,
            progress=False,
        )
        trainers[name].train()
    m = compute_cross_encoding_matrix(trainers)
    assert m.loc["he_she", "he_she"] > 0.9 and m.loc["she_he", "she_he"] > 0.9
    assert m.loc["he_she", "she_he"] < -0.9 and m.loc["she_he", "he_she"] < -0.9
    pos = compute_cross_encoding_matrix(trainers, metric="positive_mean")
    assert pos.loc["he_she", "he_she"] == pytest.approx(-pos.loc["he_she", "she_he"], abs=0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_cross_encoding_matrix(trainers, metric="nope")

"""Bad input: a clear error naming the problem, before any gradient, and no run directory."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import he_she_data

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.lm.gradients import GradientComputer


@pytest.fixture(autouse=True)
def no_gradients(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a gradient was computed before the input was validated")

    for name in ("batch", "per_example", "iter_per_example", "directional"):
        monkeypatch.setattr(GradientComputer, name, boom)


def _trainer(planted, tmp_path, data, **kw):
    args = TrainingArguments(
        experiment_dir=str(tmp_path), max_steps=5, max_seeds=1, **kw.pop("args", {})
    )
    return TextPredictionTrainer(
        model=planted["mlm"], run_id="bad", data=data, args=args, progress=False, **kw
    )


def test_missing_masked_column(planted, tmp_path):
    data = {k: v.rename(columns={"masked": "text"}) for k, v in he_she_data().items()}
    with pytest.raises(ValueError, match="no column 'masked'.*masked_col"):
        _trainer(planted, tmp_path, data)


def test_missing_unified_columns(planted, tmp_path):
    df = pd.DataFrame({"masked": ["a [MASK] b"], "label": ["he"]})
    with pytest.raises(ValueError, match="missing column.*label_class"):
        _trainer(planted, tmp_path, df)


def test_no_mask_in_text(planted, tmp_path):
    data = he_she_data()
    data["he"].loc[0, "masked"] = "the king said that he will come ."
    with pytest.raises(ValueError, match=r"have no \[MASK\]"):
        _trainer(planted, tmp_path, data)
    assert not (tmp_path / "bad" / "model").exists()


def test_class_without_rows(planted, tmp_path):
    data = he_she_data()
    data["she"] = data["she"].iloc[:0]
    with pytest.raises(ValueError, match="'she' has no rows"):
        _trainer(planted, tmp_path, data)


def test_word_not_in_vocabulary(planted, tmp_path):
    data = he_she_data()
    data["she"]["she"] = "xyzzy"
    trainer = _trainer(planted, tmp_path, data)
    with pytest.raises(ValueError, match="'xyzzy' is not in the vocabulary"):
        trainer.train()
    assert not (tmp_path / "bad" / "model").exists()


def test_unknown_params_pattern(planted, tmp_path):
    trainer = _trainer(planted, tmp_path, he_she_data(), args={"params": ["nonexistent.*"]})
    with pytest.raises(ValueError, match="'nonexistent.\\*' matches no parameter"):
        trainer.train()


def test_more_than_two_classes_need_target_classes(planted, tmp_path):
    data = he_she_data()
    data["it"] = data["he"].rename(columns={"he": "it"}).assign(it="it")
    with pytest.raises(ValueError, match="3 classes.*target_classes"):
        _trainer(planted, tmp_path, data)


def test_unknown_training_argument_is_named():
    with pytest.raises(TypeError, match="no field 'learning_rat'.*'learning_rate'"):
        TrainingArguments(learning_rat=1e-3)


def test_three_classes_with_identity_rows(planted, tmp_path):
    data = he_she_data()
    data["it"] = data["he"].rename(columns={"he": "it"}).assign(it="it")
    trainer = _trainer(
        planted,
        tmp_path,
        data,
        target_classes=["he", "she"],
        args={"add_identity_for_other_classes": True},
    )
    df = trainer.table.df
    identity = df[df["factual_class"] == "it"]
    assert len(identity) and (identity["alternative"] == identity["factual"]).all()
    assert set(trainer.labels(identity)) == {0.0}

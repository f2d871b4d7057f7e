"""Hub datasets with a config per class (as local dataset folders) and held-out-vocabulary splits."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from conftest import fast_args, he_she_data
from tiny import FEMALE, MALE, make_model, sentence

from gradiend import TextPredictionTrainer
from gradiend.data.examples import build_examples


def write_class_dataset(folder, frames: dict[str, pd.DataFrame]) -> str:
    """A dataset folder whose configs are classes: a README ``configs:`` block and one CSV per
    class and split (the layout of e.g. aieng-lab/de-gender-case-articles)."""
    lines = ["---", "configs:"]
    for cls, df in frames.items():
        lines += [f"- config_name: {cls}", "  data_files:"]
        for split, part in df.groupby("split"):
            path = folder / cls / f"{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.drop(columns="split").to_csv(path, index=False)
            lines += [f"  - split: {split}", f"    path: {cls}/{split}.csv"]
    lines.append("---")
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return str(folder)


def _with_splits(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for cls, df in frames.items():
        df = df.copy()
        n = len(df)
        df["split"] = ["train"] * (n - 20) + ["validation"] * 10 + ["test"] * 10
        out[cls] = df
    return out


@pytest.fixture
def class_dataset(tmp_path):
    frames = _with_splits(he_she_data(60))
    rng = random.Random(3)
    they = [s for s in (sentence(rng, None) for _ in range(300)) if " they " in s]
    frames["they"] = pd.DataFrame(
        {"masked": [s.replace(" they ", " [MASK] ") for s in they][:30], "they": "they"}
    )
    frames["they"]["split"] = "train"
    return write_class_dataset(tmp_path / "ds", frames)


def test_configs_are_classes_and_splits_become_the_split_column(class_dataset, tmp_path):
    trainer = TextPredictionTrainer(
        model=make_model("clm"),
        run_id="hub",
        data=class_dataset,
        target_classes=["he", "she"],
        args=fast_args(tmp_path, max_steps=4),
        progress=False,
    )
    df = trainer.table.df
    assert set(df["factual_class"]) == {"he", "she"}  # 'they' not needed, not loaded
    counts = df.groupby(["factual_class", "split"]).size().to_dict()
    assert counts[("he", "train")] == 40 and counts[("she", "test")] == 10
    assert counts[("he", "validation")] == 10
    trainer.train()
    stats = json.loads((tmp_path / "hub" / "model" / "training.json").read_text())
    assert stats["data_split"] == {"mode": "column", "column": "split"}


def test_identity_rows_load_the_other_configs(class_dataset, tmp_path):
    table = build_examples(class_dataset, ["he", "she"], add_identity_for_other_classes=True)
    identity = table.df[table.df["factual_class"] == "they"]
    assert len(identity) == 30 and (identity["alternative"] == "they").all()


def test_missing_class_names_the_available_configs(class_dataset):
    with pytest.raises(ValueError, match=r"\['he', 'she', 'they'\]") as err:
        build_examples(class_dataset, ["he", "it"])
    assert "'it'" in str(err.value)


def test_hf_split_restricts_the_splits(class_dataset):
    table = build_examples(class_dataset, ["he", "she"], hf_split=["train", "test"])
    assert set(table.df["split"]) == {"train", "test"}


def test_hf_config_and_split_for_a_single_config_dataset(tmp_path):
    unified = pd.concat(
        [df.assign(label=cls, label_class=cls) for cls, df in he_she_data(30).items()]
    )[["masked", "label", "label_class"]]
    folder = tmp_path / "unified"
    lines = ["---", "configs:"]
    for cfg in ("small", "full"):
        lines += [f"- config_name: {cfg}", "  data_files:"]
        for split in ("train", "test"):
            part = unified.iloc[: 20 if cfg == "small" else 60]
            (folder / cfg).mkdir(parents=True, exist_ok=True)
            part.to_csv(folder / cfg / f"{split}.csv", index=False)
            lines += [f"  - split: {split}", f"    path: {cfg}/{split}.csv"]
    (folder / "README.md").write_text("\n".join(lines + ["---"]) + "\n")
    table = build_examples(str(folder), ["he", "she"], hf_config="full", hf_split="train")
    assert len(table.df) == 60 and set(table.df["split"]) == {"train"}
    with pytest.raises(ValueError, match="no config 'nope'"):
        build_examples(str(folder), ["he", "she"], hf_config="nope")


def test_neutral_data_from_a_dataset_folder(class_dataset, tmp_path):
    neutral = pd.DataFrame({"text": [sentence(random.Random(i), None) for i in range(12)]})
    folder = tmp_path / "neutral"
    folder.mkdir()
    neutral.iloc[:8].to_csv(folder / "train.csv", index=False)
    neutral.iloc[8:].to_csv(folder / "test.csv", index=False)
    trainer = TextPredictionTrainer(
        model=make_model("clm"),
        data=class_dataset,
        target_classes=["he", "she"],
        eval_neutral_data=str(folder),
        args=fast_args(tmp_path),
        progress=False,
    )
    assert sorted(trainer.neutral_df["text"]) == sorted(neutral["text"])


# ----------------------------------------------------------------------- held-out vocabulary
def noun_data(n: int = 200, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Classes of nouns (ten words each): masked subject, pronoun left in place."""
    rng = random.Random(seed)
    out = {}
    for cls, words, pron in (("male", MALE, "he"), ("female", FEMALE, "she")):
        rows = []
        for _ in range(n):
            w = rng.choice(words)
            s = sentence(rng, pron).split(" ", 2)
            rows.append({"masked": f"the [MASK] {s[2]}", cls: w, "split": "train"})
        out[cls] = pd.DataFrame(rows)
    return out


def test_split_col_none_holds_out_vocabulary(tmp_path):
    trainer = TextPredictionTrainer(
        model=make_model("mlm"),
        run_id="vocab",
        data=noun_data(),
        split_col=None,
        args=fast_args(tmp_path, max_steps=4),
        progress=False,
    )
    df = trainer.table.df
    assert set(df["split"]) == {"train", "validation", "test"}  # the data's 'train' is ignored
    for col in ("factual", "alternative"):
        per_word = df.groupby(df[col].str.casefold())["split"].nunique()
        assert (per_word == 1).all(), per_word[per_word > 1]
    share = df["split"].value_counts(normalize=True)
    assert 0.6 <= share["train"] <= 0.9
    trainer.train()
    stats = json.loads((tmp_path / "vocab" / "model" / "training.json").read_text())
    record = stats["data_split"]
    assert record["mode"] == "held_out_vocabulary" and record["ratios"] == [0.8, 0.1, 0.1]
    for cls in ("male", "female"):
        sets = [set(record["words"][cls][s]) for s in ("train", "validation", "test")]
        assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert set().union(*sets) == {w.casefold() for w in (MALE if cls == "male" else FEMALE)}


def test_default_split_col_keeps_the_data_splits():
    data = noun_data()
    data["male"].loc[:19, "split"] = "test"
    data["female"].loc[:19, "split"] = "test"
    table = build_examples(data)
    assert table.split_info == {"mode": "column", "column": "split"}
    assert (table.df["split"] == "test").sum() == 40


def test_held_out_split_needs_three_words_per_class():
    with pytest.raises(ValueError, match="split_col='split'"):
        build_examples(he_she_data(), split_col=None)

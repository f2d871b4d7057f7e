"""Classes and transitions: TransitionSpec/pair/identity, transition_selection, merged classes,
counterfactuals per sentence, split ratios, the named held-out-vocabulary split, pre-paired rows."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import fast_args, he_she_data, three_pronouns
from tiny import FEMALE, MALE, NEUTRAL, make_model, sentence

from gradiend import TextPredictionTrainer, TrainingArguments, TransitionSpec, identity, pair
from gradiend.data.examples import build_examples
from gradiend.data.pairing import ClassOptions
from gradiend.data.transitions import resolve_positive_class, transition_label
from gradiend.trainer.eval_data import encoding_labels


def noun_data(n: int = 60, seed: int = 4) -> dict[str, pd.DataFrame]:
    """Three classes whose words are nouns (10, 10 and 8 words): the noun is masked; ``n``
    distinct sentences per class (a repeated sentence would be two rows of one sentence)."""
    rng = random.Random(seed)
    out = {}
    for cls, gender, words in (
        ("male", "he", MALE),
        ("female", "she", FEMALE),
        ("neutral", None, NEUTRAL),
    ):
        rows, seen = [], set()
        while len(rows) < n:
            s = sentence(rng, gender)
            if s in seen:
                continue
            seen.add(s)
            noun = s.split()[1]
            assert noun in words
            rows.append({"masked": s.replace(f"the {noun} ", "the [MASK] ", 1), cls: noun})
        out[cls] = pd.DataFrame(rows)
    return out


# --------------------------------------------------------------------------- the spec itself
def test_pair_identity_and_spec_compose():
    spec = TransitionSpec([pair("a", "b"), identity("c"), "c→a", ("b", "c"), "a->b"])
    assert spec.ids == ["a→b", "b→a", "c→c", "c→a", "b→c"]  # duplicates dropped, order kept
    assert pair("a", "b", directed=True).ids == ["a→b"]
    assert (pair("a", "b") + identity("c")).ids == ["a→b", "b→a", "c→c"]
    assert "c→a" in spec and pair("a", "b") in spec and "a→c" not in spec
    assert spec.classes == ["a", "b", "c"] and spec.identities() == ["c"]
    with pytest.raises(ValueError, match="identity"):
        pair("a", "a")
    with pytest.raises(ValueError, match="a→b"):
        TransitionSpec(["a-b"])
    with pytest.raises(TypeError, match="pair"):
        TransitionSpec([3.5])


def test_labels_follow_the_one_sign_convention():
    t = ["A", "B"]
    # the pair's own rows: the labels every run has always had
    assert [transition_label("A", "B", t, "diff"), transition_label("B", "A", t, "diff")] == [
        -1.0,
        1.0,
    ]
    assert transition_label("A", "B", t, "alternative") == 1.0
    assert transition_label("A", "B", t, "factual") == -1.0
    # other transitions: towards A is +1, away from A is -1, between other classes 0
    assert transition_label("C", "A", t, "diff") == 1.0
    assert transition_label("A", "C", t, "diff") == -1.0
    assert transition_label("C", "D", t, "diff") == 0.0
    assert transition_label("A", "A", t, "diff") == 0.0
    df = pd.DataFrame({"factual_class": ["A", "B", "C", "C"], "alternative_class": list("BAAC")})
    assert encoding_labels(df, t, "diff").tolist() == [-1.0, 1.0, 1.0, 0.0]


# --------------------------------------------------------------------------- selection
def test_transitions_are_selected_as_asked():
    data = three_pronouns()
    default = build_examples(data, ["he", "she"])
    assert set(default.df["transition"]) == {"he→she", "she→he"}
    table = build_examples(
        data,
        ["he", "she"],
        options=ClassOptions(transition_selection=[pair("he", "she"), "it→he", identity("it")]),
    )
    assert table.transitions == ["he→she", "she→he", "it→he", "it→it"]
    assert set(table.df["transition"]) == set(table.transitions)
    it_he = table.df[table.df["transition"] == "it→he"]
    assert len(it_he) == 40 and set(it_he["alternative"]) == {"he"}
    identity_rows = table.df[table.df["transition"] == "it→it"]
    assert (identity_rows["alternative"] == identity_rows["factual"]).all()
    # the pair's rows do not change when other transitions are trained beside them
    pair_rows = table.df[table.df["transition"].isin(["he→she", "she→he"])]
    assert pair_rows.reset_index(drop=True).equals(default.df.reset_index(drop=True))
    everything = build_examples(
        data, ["he", "she"], options=ClassOptions(transition_selection="all")
    )
    assert len(set(everything.df["transition"])) == 6


def test_other_transitions_are_for_evaluation_only():
    table = build_examples(three_pronouns(), ["he", "she"])
    assert set(table.split("test")["transition"]) == {"he→she", "she→he"}
    full = table.split("test", include_other=True)
    assert set(full["transition"]) == {"he→she", "she→he", "he→it", "she→it", "it→he", "it→she"}
    assert full["feature_class_id"].nunique() == 6
    assert set(table.split("train")["transition"]) == {"he→she", "she→he"}  # training unchanged


@pytest.mark.parametrize(
    "selection, message",
    [
        (pair("he", "they"), "does not have"),
        (["it→he"], "lacks"),
        ([], "empty"),
    ],
)
def test_bad_transition_selection_is_refused(selection, message):
    with pytest.raises(ValueError, match=message):
        build_examples(
            three_pronouns(), ["he", "she"], options=ClassOptions(transition_selection=selection)
        )


# --------------------------------------------------------------------------- merged classes
def _split_by_noun(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each pronoun class cut into two raw classes (first and second half of its rows)."""
    out = {}
    for cls, df in frames.items():
        half = len(df) // 2
        out[f"{cls}_1"] = df.iloc[:half].rename(columns={cls: f"{cls}_1"})
        out[f"{cls}_2"] = df.iloc[half:].rename(columns={cls: f"{cls}_2"})
    return out


def test_merged_classes_train_as_one_class(tmp_path):
    model = make_model("mlm")
    merge = {"male": ["he_1", "he_2"], "female": ["she_1", "she_2"]}
    runs = {}
    for run_id, data, targets, extra in (
        ("plain", he_she_data(), ["he", "she"], {}),
        ("merged", _split_by_noun(he_she_data()), ["male", "female"], {"class_merge_map": merge}),
    ):
        trainer = TextPredictionTrainer(
            model=model,
            run_id=run_id,
            data=data,
            target_classes=targets,
            args=fast_args(tmp_path, max_steps=6, eval_steps=3, plot_importance=False),
            progress=False,
            **extra,
        )
        runs[run_id] = (trainer, trainer.train())
    merged, plain = runs["merged"][0].table, runs["plain"][0].table
    assert merged.all_classes == ["male", "female"] and set(merged.df["raw_class"]) == {
        "he_1",
        "he_2",
        "she_1",
        "she_2",
    }
    # DataFrame.replace matches whole cells: the transition ids are renamed by their own names
    names = {"male": "he", "female": "she", "male→female": "he→she", "female→male": "she→he"}
    renamed = merged.df.replace(names).drop(columns="raw_class")
    assert renamed.equals(plain.df.drop(columns="raw_class"))  # same rows, same order
    w_merged = runs["merged"][1].gradiend.W_d.detach()
    w_plain = runs["plain"][1].gradiend.W_d.detach()
    assert np.array_equal(w_merged.numpy(), w_plain.numpy())


def _article_cells() -> dict[str, pd.DataFrame]:
    """Four German-like cells: masc nom 'der', masc acc 'den', fem nom 'die', fem acc 'die2'."""
    words = {"masc_nom": "der", "masc_acc": "den", "fem_nom": "die", "fem_acc": "dies"}
    return {
        c: pd.DataFrame({"masked": [f"s{i} {c} [MASK] x" for i in range(30)], c: w})
        for c, w in words.items()
    }


def test_transition_groups_keep_the_raw_transitions_asked_for():
    merge = {"nom": ["masc_nom", "fem_nom"], "acc": ["masc_acc", "fem_acc"]}
    free = build_examples(
        _article_cells(), ["nom", "acc"], options=ClassOptions(class_merge_map=merge)
    )
    rows = free.df[free.df["raw_class"] == "masc_nom"]
    assert set(rows["alternative"]) == {"den", "dies"}  # any accusative word
    grouped = build_examples(
        _article_cells(),
        ["nom", "acc"],
        options=ClassOptions(
            class_merge_map=merge,
            class_merge_transition_groups=[["masc_nom", "masc_acc"], ["fem_nom", "fem_acc"]],
        ),
    )
    for raw, alt in (("masc_nom", "den"), ("fem_nom", "dies"), ("masc_acc", "der")):
        assert set(grouped.df.loc[grouped.df["raw_class"] == raw, "alternative"]) == {alt}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"class_merge_map": {"m": ["he", "nope"]}}, "nope"),
        ({"class_merge_map": {"m": ["he"], "f": ["he", "she"]}}, "one class only"),
        ({"class_merge_map": {"she": ["he"]}}, "also unmerged"),
        ({"class_merge_map": {"m": "he"}}, "list of raw classes"),
        ({"class_merge_transition_groups": [["he", "she"]]}, "pass class_merge_map"),
        (
            {
                "class_merge_map": {"m": ["he"], "f": ["she"]},
                "class_merge_transition_groups": [["he", "it"]],
            },
            "does not merge",
        ),
        ({"all_classes": ["he", "they"]}, "they"),
        ({"max_counterfactuals_per_sentence": 0}, "≥ 1"),
        ({"split_ratios": (0.5, 0.1, 0.1)}, "sum to 1"),
        ({"split_ratios": (0.8, 0.2)}, "three numbers"),
    ],
)
def test_bad_class_options_are_refused(options, message):
    targets = (
        ["m", "f"]
        if "class_merge_map" in options and "f" in options["class_merge_map"]
        else ["he", "she"]
    )
    with pytest.raises((ValueError, TypeError), match=message):
        build_examples(three_pronouns(), targets, options=ClassOptions(**options))


def test_all_classes_limits_the_classes():
    table = build_examples(
        three_pronouns(),
        ["he", "she"],
        add_identity_for_other_classes=True,
        options=ClassOptions(all_classes=["he", "she"]),
    )
    assert table.all_classes == ["he", "she"] and "it" not in set(table.df["factual_class"])


# --------------------------------------------------------------------------- counterfactuals
def test_counterfactual_cap_is_reproducible_with_random_state():
    def build(k, rs):
        opts = ClassOptions(max_counterfactuals_per_sentence=k, random_state=rs)
        return build_examples(noun_data(), ["male", "female"], options=opts).df

    one = build(1, 5)
    assert len(one) == 120
    three = build(3, 5)
    assert len(three) == 360
    per_sentence = three.groupby(["masked", "factual"])["alternative"].agg(list)
    assert (per_sentence.map(len) == 3).all() and (
        per_sentence.map(lambda w: len(set(w))) == 3
    ).all()
    assert three.equals(build(3, 5))  # same random_state, same rows
    assert not three["alternative"].equals(build(3, 6)["alternative"])
    many = build(50, 5)  # more than the class has: every word once
    assert (many.groupby(["masked", "factual"]).size() == 10).all()


# --------------------------------------------------------------------------- splits
def test_split_ratios_are_honoured():
    opts = ClassOptions(split_ratios={"train": 0.5, "validation": 0.25, "test": 0.25})
    table = build_examples(noun_data(80), ["male", "female"], options=opts)
    counts = table.df.groupby("factual_class")["split"].value_counts().unstack()
    assert (counts["train"] == 40).all() and (counts["test"] == 20).all()
    assert table.split_info == {"mode": "random", "ratios": [0.5, 0.25, 0.25], "seed": 0}
    data = noun_data(80)
    for df in data.values():
        df["split"] = "train"
    forced = build_examples(data, ["male", "female"], split_col="random", options=opts)
    assert forced.split_info["mode"] == "random"  # named: the data's column is ignored
    assert set(forced.df["split"]) == {"train", "validation", "test"}


def test_held_out_vocabulary_split_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the name asks for it: no warning
        table = build_examples(noun_data(), ["male", "female"], split_col="heldout")
    assert table.split_info["mode"] == "held_out_vocabulary"
    df = table.df
    for col in ("factual", "alternative"):
        words = {s: set(df.loc[df["split"] == s, col].str.casefold()) for s in ("train", "test")}
        words["validation"] = set(df.loc[df["split"] == "validation", col].str.casefold())
        assert not (words["train"] & words["test"] or words["train"] & words["validation"])
        assert not words["validation"] & words["test"]
    with pytest.warns(UserWarning, match="split_col='random'"):
        legacy = build_examples(noun_data(), ["male", "female"], split_col=None)
    assert legacy.df.equals(df)  # our split_col=None keeps 0.2.3's meaning


# --------------------------------------------------------------------------- pre-paired rows
def test_pre_paired_source_target_rows():
    frames = {
        "he": pd.DataFrame({"masked": ["a [MASK] b", "c [MASK] d"], "source": ["he", "He"],
                            "target": ["she", "She"]}),
        "she": pd.DataFrame({"masked": ["e [MASK] f", "g [MASK] h"], "source": ["she", "she"],
                             "target": ["he", "him"], "target_id": ["he", "he"]}),
    }  # fmt: skip
    table = build_examples(frames, ["he", "she"], split_col="random")
    got = sorted(zip(table.df["transition"], table.df["factual"], table.df["alternative"]))
    assert got == [("he→she", "He", "She"), ("he→she", "he", "she"), ("she→he", "she", "he"),
                   ("she→he", "she", "him")]  # fmt: skip
    unified = pd.DataFrame({"masked": ["a [MASK] b"] * 2 + ["c [MASK] d"] * 2,
                            "source": ["he", "she"] * 2, "target": ["she", "he"] * 2,
                            "source_id": ["m", "f"] * 2, "target_id": ["f", "m"] * 2})  # fmt: skip
    table = build_examples(unified, ["m", "f"], split_col="random")
    assert sorted(table.df["transition"]) == ["f→m", "f→m", "m→f", "m→f"]
    three = dict(frames, it=pd.DataFrame({"masked": ["x [MASK] y"], "source": ["it"],
                                          "target": ["he"]}))  # fmt: skip
    with pytest.raises(ValueError, match="target_id"):
        build_examples(three, ["he", "she"], split_col="random")


# --------------------------------------------------------------------------- arguments
def test_positive_class_and_include_other_classes_arguments():
    assert resolve_positive_class(None, ["a", "b"]) == "a"
    assert resolve_positive_class(None, ["non_x", "x"]) == "x"
    assert resolve_positive_class("b", ["a", "b"]) == "b"
    with pytest.raises(ValueError, match="not one of the target classes"):
        resolve_positive_class("c", ["a", "b"])
    with pytest.raises(TypeError, match="include_other_classes"):
        TrainingArguments(include_other_classes="yes")
    with pytest.raises(TypeError, match="positive_class"):
        TrainingArguments(positive_class=1)


def test_trainer_takes_the_class_keywords(tmp_path):
    trainer = TextPredictionTrainer(
        model=make_model("mlm"),
        run_id="keywords",
        data=three_pronouns(),
        target_classes=["he", "she"],
        all_classes=["he", "she", "it"],
        transition_selection=[pair("he", "she"), "it→she"],
        max_counterfactuals_per_sentence=1,
        random_state=3,
        split_ratios=(0.6, 0.2, 0.2),
        args=fast_args(
            tmp_path, max_steps=4, eval_steps=2, positive_class="she", include_other_classes=True
        ),  # fmt: skip
        progress=False,
    )
    assert trainer.positive_class == "she"
    assert trainer.table.transitions == ["he→she", "she→he", "it→she"]
    assert trainer.eval_data.encoder_split("test")["transition"].nunique() == 6
    assert set(trainer.eval_data.split("test")["transition"]) <= set(trainer.table.transitions)
    with pytest.raises(ValueError, match="not one of the target classes"):
        TextPredictionTrainer(
            model=make_model("mlm"),
            run_id="bad",
            data=three_pronouns(),
            target_classes=["he", "she"],
            args=fast_args(tmp_path, positive_class="it"),
            progress=False,
        )

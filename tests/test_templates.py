"""The library's neutral balance sentences: one mask each, no gendered word, seeded samples."""

from __future__ import annotations

import re

import pytest

from gradiend.data import neutral_templates
from gradiend.evaluator.decoder_objective import BALANCE, DecoderObjective, check_balance_data

GENDERED = {"he", "she", "him", "her", "his", "hers", "man", "woman", "men", "women", "boy",
            "girl", "mother", "father", "husband", "wife", "mr", "mrs", "ms", "actress",
            "waitress", "king", "queen"}  # fmt: skip
GOAL = DecoderObjective(BALANCE, ("he", "she"))


@pytest.mark.parametrize("form", ["subject", "object", "possessive"])
def test_every_template_has_one_mask_and_no_gendered_word(form):
    texts = neutral_templates(mask="<m>", form=form)
    assert len(texts) == len(set(texts)) > 40
    assert check_balance_data(texts, "<m>", GOAL) == texts  # accepted as balance_data
    for text in texts:
        words = set(re.findall(r"[a-z]+", text.replace("<m>", " ").lower()))
        assert not words & GENDERED, text


def test_a_sample_is_seeded_and_drawn_from_the_full_set():
    full = neutral_templates()
    a, b = neutral_templates(n=10, seed=3), neutral_templates(n=10, seed=3)
    assert a == b and len(a) == 10 and set(a) <= set(full)
    assert neutral_templates(n=10, seed=4) != a
    assert neutral_templates(n=10**6) == full
    assert all(t.count("[MASK]") == 1 for t in full)


@pytest.mark.parametrize("kwargs, match", [({"form": "dative"}, "form must be one of"),
                                           ({"mask": ""}, "mask must be"),
                                           ({"n": 0}, "n must be a positive")])  # fmt: skip
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        neutral_templates(**kwargs)

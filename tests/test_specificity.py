"""Specificity of the selected rewrites, against a hand computation with plain torch."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import he_she_trainer

from gradiend.evaluator.decoder_specificity import parse_control_pairs
from gradiend.trainer.decoder_task import decoder_rows


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    return he_she_trainer(planted["clm"], tmp_path_factory.mktemp("spec"), n_neutral=40)


def _next_probs(model, tok, prefix: str, words: list[str]) -> list[float]:
    """P(word) after ``prefix``: one row, no padding."""
    ids = torch.tensor([tok(prefix)["input_ids"]])
    with torch.no_grad():
        p = model(input_ids=ids).logits[0, -1].softmax(-1)
    return [float(p[tok.convert_tokens_to_ids(w)]) for w in words]


def _neutral_prob(model, tok, texts: list[str], word: str) -> float:
    """Mean P(word) as the next token over every scored token of ``texts``."""
    wid, special = tok.convert_tokens_to_ids(word), set(tok.all_special_ids)
    total, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = tok(t)["input_ids"]
            p = model(input_ids=torch.tensor([ids])).logits[0, :-1].softmax(-1)
            for pos, gold in enumerate(ids[1:]):
                if gold not in special:
                    total, n = total + float(p[pos, wid]), n + 1
    return total / n


def test_specificity_equals_a_hand_computation(trained):
    texts = trained.eval_data.neutral_texts()  # the LMS texts, all of them (heldout=False)
    res = trained.evaluate_decoder(
        target_class="she", lrs=[0.3], max_nll_increase=None, heldout=False,
        control_pairs=[("will", "is")],
    )  # fmt: skip
    s = res["she"]
    spec = s["specificity"]
    mwg = trained.get_model()
    tok, base = mwg.tokenizer, mwg.base_model.eval()
    rows = decoder_rows(trained.eval_data, ["he", "she"], True, None)
    with mwg.applied(s["learning_rate"], s["feature_factor"]) as model:
        model.eval()
        after = {
            "neutral": _neutral_prob(model, tok, texts, "she"),
            "rows": [_next_probs(model, tok, m.split("[MASK]")[0].rstrip(), ["he", "she"])
                     for m in rows["masked"]],
        }  # fmt: skip
        ctl_after = _controls(model, tok, texts)
    before = {
        "neutral": _neutral_prob(base, tok, texts, "she"),
        "rows": [_next_probs(base, tok, m.split("[MASK]")[0].rstrip(), ["he", "she"])
                 for m in rows["masked"]],
    }  # fmt: skip
    ctl_before = _controls(base, tok, texts)
    assert spec["target"] == "she" and spec["neutral"]["texts"] == "selection"
    assert spec["neutral"]["before"] == pytest.approx(before["neutral"], rel=1e-4)
    assert spec["neutral"]["after"] == pytest.approx(after["neutral"], rel=1e-4)
    assert spec["neutral"]["ratio"] == pytest.approx(after["neutral"] / before["neutral"], 1e-4)
    he = [i for i, c in enumerate(rows["factual_class"]) if c == "he"]
    she = [i for i, c in enumerate(rows["factual_class"]) if c == "she"]
    pref_b = [before["rows"][i][1] > before["rows"][i][0] for i in he]
    pref_a = [after["rows"][i][1] > after["rows"][i][0] for i in he]
    assert spec["flip"]["n_rows"] == len(he)
    assert spec["flip"]["prefer_before"] == pytest.approx(sum(pref_b) / len(he))
    assert spec["flip"]["prefer_after"] == pytest.approx(sum(pref_a) / len(he))
    flipped = sum(a and not b for a, b in zip(pref_a, pref_b)) / len(he)
    assert spec["flip"]["flipped"] == pytest.approx(flipped) and flipped > 0
    assert spec["own"]["n_rows"] == len(she)
    own_b = sum(before["rows"][i][1] for i in she) / len(she)
    own_a = sum(after["rows"][i][1] for i in she) / len(she)
    assert spec["own"]["before"] == pytest.approx(own_b, rel=1e-4)
    assert spec["own"]["after"] == pytest.approx(own_a, rel=1e-4)
    (ctl,) = spec["controls"]
    assert ctl["pair"] == ["will", "is"] and ctl["n_rows"] == len(ctl_before)
    assert ctl["share_before"] == pytest.approx(sum(ctl_before) / len(ctl_before), rel=1e-4)
    assert ctl["share_after"] == pytest.approx(sum(ctl_after) / len(ctl_after), rel=1e-4)
    changed = sum((a > 0.5) != (b > 0.5) for a, b in zip(ctl_after, ctl_before))
    assert ctl["flipped"] == pytest.approx(changed / len(ctl_before))


def _controls(model, tok, texts: list[str]) -> list[float]:
    """P(will) / (P(will) + P(is)) at the first of either word in each text."""
    out = []
    for t in texts:
        m = re.search(r"(?<!\w)(will|is)(?!\w)", t)
        if m:
            a, b = _next_probs(model, tok, t[: m.start()].rstrip(), ["will", "is"])
            out.append(a / (a + b))
    return out


def test_control_pairs_are_checked_before_the_model_loads(trained, no_model_loads):
    with pytest.raises(ValueError, match="no sentence"):
        trained.evaluate_decoder(control_pairs=[("was", "were")])
    with pytest.raises(ValueError, match="expected"):
        trained.evaluate_decoder(control_pairs=[("was",)])
    with pytest.raises(ValueError, match="must differ"):
        parse_control_pairs([("was", "was")])
    # the user's own sentences
    pairs = parse_control_pairs([("was", "were", ["it was good .", "they were home ."])])
    assert pairs[0][2] == ("it was good .", "they were home .")

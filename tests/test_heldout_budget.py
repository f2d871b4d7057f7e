"""The decoder budget checked out of sample: the neutral texts' split, the selection margin,
the held-out re-scoring and the step back when the held-out NLL exceeds the budget."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import he_she_trainer

import gradiend.evaluator.decoder_checks as checks_mod
import gradiend.evaluator.decoder_eval as eval_mod
from gradiend.evaluator.decoder import Budget, point_id
from gradiend.evaluator.decoder_heldout import HeldoutConfig, split_texts, step_back


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    return he_she_trainer(planted["clm"], tmp_path_factory.mktemp("held"), n_neutral=40)


def test_split_is_disjoint_seeded_and_keeps_repeats_on_one_side():
    texts = [f"text {i % 30}" for i in range(45)]  # 30 distinct, 15 repeated
    split = split_texts(texts, HeldoutConfig(), min_selection=8)
    assert split.fallback is None
    assert not set(split.selection) & set(split.heldout)
    assert sorted(split.selection + split.heldout) == sorted(texts)
    assert len(set(split.heldout)) == 10  # a third of the 30 distinct texts
    assert split == split_texts(texts, HeldoutConfig(), min_selection=8)  # deterministic
    other = split_texts(texts, HeldoutConfig(seed=1), min_selection=8)
    assert set(other.heldout) != set(split.heldout)
    small = split_texts(texts[:20], HeldoutConfig(fraction=0.1, min_texts=8), 8)
    assert len(set(small.heldout)) == 8  # the minimum count


def test_too_few_texts_fall_back_with_a_warning(caplog):
    texts = [f"text {i}" for i in range(12)]
    with caplog.at_level(logging.WARNING):
        split = split_texts(texts, HeldoutConfig(), min_selection=8)
    assert split.heldout == () and split.selection == tuple(texts)
    assert "12 distinct neutral texts" in split.fallback
    assert "held-out budget check is skipped" in caplog.text and "at least 16" in caplog.text
    off = split_texts(texts, None, 8)
    assert off.heldout == () and "switched off" in off.fallback


def _entry(lr: float, nll: float, scored: str = "full") -> dict:
    return {"id": point_id(1.0, lr), "lms": {"lms": 0.5, "nll": nll}, "scored": scored}


def test_step_back_takes_the_next_smaller_point_then_a_new_one():
    base = _entry(0.0, 1.0)
    points = [_entry(0.1, 1.002), _entry(0.2, 1.004), _entry(0.3, 1.006, "screen")]
    points.append(_entry(0.4, 1.008))
    held = {0.4: 0.02, 0.2: 0.013, 0.1: 0.004}  # above the 1 % budget at 0.4 and 0.2
    made = []

    def new_point(lr: float) -> dict:
        made.append(lr)
        held[lr] = 0.001
        return _entry(lr, 1.0005)

    sel = Budget(None, 0.008)
    entry, trail, ok = step_back(
        points[-1], points, base, sel, 0.01, lambda e: held[e["id"]["learning_rate"]],
        new_point, HeldoutConfig(),
    )  # fmt: skip
    # 0.3 is screened only (not a candidate): 0.4 → 0.2 → 0.1, no new point needed
    assert [t["learning_rate"] for t in trail] == [0.4, 0.2, 0.1] and ok
    assert entry["id"]["learning_rate"] == 0.1 and made == []
    # the smallest point above budget: a new, smaller point is scored
    held[0.1] = 0.03
    entry, trail, ok = step_back(
        points[0], points, base, sel, 0.01, lambda e: held[e["id"]["learning_rate"]],
        new_point, HeldoutConfig(),
    )  # fmt: skip
    assert ok and len(made) == 1 and 0.025 <= made[0] <= 0.08
    assert trail[0]["heldout_nll_increase"] == 0.03 and trail[1]["learning_rate"] == made[0]
    # never within budget: stops after max_step_backs and reports it
    entry, trail, ok = step_back(
        points[0], points, base, sel, 0.01, lambda e: 0.05, new_point,
        HeldoutConfig(max_step_backs=2),
    )  # fmt: skip
    assert not ok and len(trail) == 3


def test_results_carry_the_held_out_fields_and_texts_never_overlap(trained, monkeypatch):
    seen = {}
    orig_scorer, orig_checker = eval_mod._point_scorer, checks_mod.build_checker

    def spy_scorer(mwg, task, cfg):
        seen["selection"] = list(task.lms_texts)
        return orig_scorer(mwg, task, cfg)

    def spy_checker(mwg, task, texts, *a):
        seen["heldout"] = list(texts)
        return orig_checker(mwg, task, texts, *a)

    monkeypatch.setattr(eval_mod, "_point_scorer", spy_scorer)
    monkeypatch.setattr(eval_mod, "build_checker", spy_checker)
    res = trained.evaluate_decoder(target_class="she")
    assert seen["selection"] and seen["heldout"]
    assert not set(seen["selection"]) & set(seen["heldout"])
    s, split = res["she"], res["search"]["split"]
    assert split["fallback"] is None and split["margin"] == 0.2
    assert split["selection_texts"] == len(seen["selection"])
    assert split["heldout_texts"] == len(seen["heldout"]) >= 8
    assert split["selection_distinct_tokens"] > 0 and split["heldout_distinct_tokens"] > 0
    assert s["budget"]["selection_max_nll_increase"] == pytest.approx(0.008)
    assert s["nll_increase"] <= 0.008
    assert s["heldout_nll_increase"] <= 0.01 and s["heldout"]["within_budget"]
    assert s["heldout_lms"] == pytest.approx(1 / (1 + s["heldout_nll"]))
    assert s["heldout_nll"] == pytest.approx(
        s["heldout"]["base_nll"] * (1 + s["heldout_nll_increase"])
    )
    assert s["heldout"]["checked"][-1]["learning_rate"] == s["learning_rate"]
    for side in ("best_inside", "best_outside"):
        assert "heldout_nll_increase" in s[side] and "specificity" in s[side]


def test_a_held_out_figure_above_budget_steps_back(trained, monkeypatch):
    first = trained.evaluate_decoder(target_class="she", use_cache=True)["she"]
    chosen = first["learning_rate"]
    orig = checks_mod.heldout_increase

    def inflated(check, base_check):  # the chosen point is made to cost +5 % held out
        return 0.05 if check is store_checks.get(chosen) else orig(check, base_check)

    store_checks: dict = {}
    orig_call = checks_mod.PointChecks.__call__

    def call(self, ff, lr):
        out = orig_call(self, ff, lr)
        store_checks.setdefault(lr, out)
        return out

    monkeypatch.setattr(checks_mod.PointChecks, "__call__", call)
    monkeypatch.setattr(checks_mod, "heldout_increase", inflated)
    res = trained.evaluate_decoder(target_class="she", use_cache=True)
    s = res["she"]
    held = s["heldout"]
    assert held["checked"][0]["learning_rate"] == chosen
    assert held["checked"][0]["heldout_nll_increase"] == 0.05
    assert held["step_backs"] >= 1 and held["within_budget"]
    assert s["learning_rate"] < chosen and s["passed"]
    assert s["heldout_nll_increase"] <= 0.01
    ids = [(e["id"]["feature_factor"], e["id"]["learning_rate"]) for e in res["grid"]]
    assert (s["feature_factor"], s["learning_rate"]) in ids  # a new point joins the grid


def test_heldout_off_and_bad_config(trained):
    res = trained.evaluate_decoder(target_class="she", heldout=False, lrs=[0.1, 0.2])
    s = res["she"]
    assert s["heldout_nll_increase"] is None and s["heldout"] is None
    assert s["budget"]["margin"] == 0.0
    assert "switched off" in res["search"]["split"]["fallback"]
    with pytest.raises(ValueError, match="fraction"):
        trained.evaluate_decoder(heldout=1.5)


def test_evaluations_with_other_settings_are_all_kept(trained):
    from gradiend.evaluator.decoder_describe import describe
    from gradiend.report.collect import collect_run
    from gradiend.report.decoder import comparison_cell, primary_entry, section_decoder
    from gradiend.report.html import figure, table
    from gradiend.run_layout import RunLayout

    layout = RunLayout.find(trained.run_dir)
    a = trained.evaluate_decoder(target_class="she", lrs=[0.1, 0.2])
    b = trained.evaluate_decoder(target_class="she", lrs=[0.1, 0.3], control_pairs=[("will", "is")])
    ka, kb = a["she"]["settings_key"], b["she"]["settings_key"]
    assert ka != kb
    for key, res in ((ka, a), (kb, b)):
        saved = json.loads(layout.decoder_evaluation(key).read_text())
        assert saved["she"]["learning_rate"] == res["she"]["learning_rate"]
        assert saved["settings"]["lrs"] == ([0.1, 0.2] if key == ka else [0.1, 0.3])
    merged = json.loads(layout.decoder_results.read_text())
    assert merged["latest"] == kb and list(merged["evaluations"])[-2:] == [ka, kb]
    assert merged["she"]["settings_key"] == kb  # the rewrite reads the latest, as before
    assert trained.evaluate_decoder(target_class="she", lrs=[0.1, 0.2])["she"]["settings_key"] == ka
    merged = json.loads(layout.decoder_results.read_text())
    assert list(merged["evaluations"])[-1] == ka  # a repeat moves to the end
    run = collect_run(trained.run_dir)
    assert primary_entry(run)[1]["settings_key"] == ka
    assert "held-out" in comparison_cell(run)
    html = section_decoder(run, table, figure, lambda r: (None, "not drawn"))
    assert "Every evaluation of this run" in html and kb in html and "flipped" in html
    lines = describe(a)
    assert lines[-1].startswith("decoder search: grid") and "n/a" not in lines[-1]
    assert lines[0].startswith("decoder she:") and "held-out" in lines[0]
    # a run folder written before the index: its first summary
    run.decoder = {k: v for k, v in run.decoder.items() if k not in ("latest", "evaluations")}
    assert primary_entry(run)[0] == "she"

"""Balanced selection (issue 27, item 1): evaluate_decoder(objective="balance" | "prefer:<class>")
on the planted tiny models: BPI × LMS by hand, parity within the budget, the rewrite, the h = 0
direction, the interior search, bad input and the command line."""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import he_she_data, he_she_trainer, neutral_texts

from gradiend import cli
from gradiend.evaluator import decoder as dec
from gradiend.evaluator.decoder_interior import search_interior
from gradiend.evaluator.decoder_objective import parse_objective
from gradiend.evaluator.decoder_search import AdaptiveSearchConfig
from gradiend.run_layout import REWRITE_MANIFEST

pytestmark = pytest.mark.usefixtures("one_thread")


def _balance_sentences(n: int = 6, seed: int = 5) -> list[str]:
    """Sentences of both classes whose subject implies the pronoun (the context decides)."""
    data = he_she_data(n, seed)
    return [*data["he"]["masked"], *data["she"]["masked"]]


BALANCE = _balance_sentences()


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    root = tmp_path_factory.mktemp("balance")
    return {kind: he_she_trainer(planted[kind], root, run_id=kind) for kind in ("mlm", "clm")}


def _mlm_probs(model, tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """P(he), P(she) at the mask of each text, one forward pass per text (the oracle)."""
    he, she = tok.convert_tokens_to_ids(["he", "she"])
    pa, pb = [], []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0])
            p = torch.softmax(model(**enc).logits[0, pos].double(), dim=-1)
            pa.append(float(p[he]))
            pb.append(float(p[she]))
    return np.asarray(pa), np.asarray(pb)


def _at(mwg, ff: float, lr: float):
    return contextlib.nullcontext(mwg.base_model) if lr == 0 else mwg.applied(lr, ff)


def _entry(grid: list, ff: float, lr: float) -> dict:
    return next(e for e in grid if e["id"] == {"feature_factor": ff, "learning_rate": lr})


# --------------------------------------------------------------------------- the formulas
def test_balanced_value_is_bpi_times_lms_by_hand_on_a_grid(trained):
    tr = trained["mlm"]
    res = tr.evaluate_decoder(
        objective="balance", balance_data=BALANCE, lrs=[0.05, 0.1, 0.2], max_nll_increase=None
    )
    mwg = tr.get_model()
    assert {dec.ff_of(e) for e in res["grid"]} == {-1.0, 0.0, 1.0}  # h = 0 is a direction
    hand = {}
    for e in res["grid"]:
        ff, lr = dec.ff_of(e), dec.lr_of(e)
        with _at(mwg, ff, lr) as model:
            pa, pb = _mlm_probs(model, mwg.tokenizer, BALANCE)
        bpi = float(np.mean((1 - np.abs(pa - pb)) * (pa + pb)))  # per sentence, then the mean
        # the library scores padded float32 batches, the oracle one text at a time: rel 1e-4
        assert e["balance"]["bpi"] == pytest.approx(bpi, rel=1e-4, abs=1e-9)
        assert e["balance"]["p"] == pytest.approx({"he": pa.mean(), "she": pb.mean()}, rel=1e-4)
        assert e["balance"]["prefer"]["she"] == pytest.approx(np.mean((1 - pa) * pb), rel=1e-4)
        assert e["balance"]["prefer"]["he"] == pytest.approx(np.mean((1 - pb) * pa), rel=1e-4)
        hand[(ff, lr)] = bpi * e["lms"]["lms"]
    s = res["balanced"]
    assert s["value"] == pytest.approx(hand[(s["feature_factor"], s["learning_rate"])], rel=1e-4)
    base_lms = s["base_lms"]
    allowed = [k for k in hand if _entry(res["grid"], *k)["lms"]["lms"] >= 0.99 * base_lms]
    assert s["value"] == pytest.approx(max(hand[k] for k in allowed), rel=1e-4)  # best in budget
    assert s["base_value"] == pytest.approx(hand[(0.0, 0.0)], rel=1e-4)
    assert s["objective"]["objective"] == "balance" and s["passed"]


def test_prefer_objective_is_one_sided_times_lms(trained):
    tr = trained["mlm"]
    res = tr.evaluate_decoder(objective="prefer:she", balance_data=BALANCE)
    s = res["prefer_she"]
    assert "balanced" not in res and s["learning_rate"] > 0
    mwg = tr.get_model()
    with _at(mwg, s["feature_factor"], s["learning_rate"]) as model:
        pa, pb = _mlm_probs(model, mwg.tokenizer, BALANCE)
    point = _entry(res["grid"], s["feature_factor"], s["learning_rate"])
    assert s["value"] == pytest.approx(np.mean((1 - pa) * pb) * point["lms"]["lms"], rel=1e-4)
    ob = s["objective"]
    assert ob["balance"]["p"]["she"] > ob["base_balance"]["p"]["she"] + 0.1
    assert s["nll_increase"] <= 0.01 and s["lms"] >= 0.99 * s["base_lms"]


def test_parity_objective_is_the_share_balance_times_lms(trained):
    tr = trained["mlm"]
    res = tr.evaluate_decoder(objective="parity", balance_data=BALANCE, lrs=[0.05, 0.2])
    s = res["balanced"]  # parity's rewrite is the balanced one too
    assert s["objective"]["objective"] == "parity"
    mwg = tr.get_model()
    for e in res["grid"]:
        with _at(mwg, dec.ff_of(e), dec.lr_of(e)) as model:
            pa, pb = _mlm_probs(model, mwg.tokenizer, BALANCE)
        parity = float(np.mean(1 - np.abs(pa - pb) / (pa + pb)))  # the shares' balance
        assert e["balance"]["parity"] == pytest.approx(parity, rel=1e-4, abs=1e-9)
    point = _entry(res["grid"], s["feature_factor"], s["learning_rate"])
    assert s["value"] == pytest.approx(point["balance"]["parity"] * point["lms"]["lms"], rel=1e-6)
    assert s["objective"]["value"] >= s["objective"]["base_value"]  # no worse than no rewrite


# --------------------------------------------------------------------------- the selection
@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_balanced_entry_moves_toward_parity_within_budget(trained, kind):
    res = trained[kind].evaluate_decoder(objective="balance")  # default: both classes' rows
    s = res["balanced"]
    ob = s["objective"]
    assert ob["balance"]["n_sentences"] == res["search"]["n_rows"]
    assert ob["base_balance"]["abs_diff"] > 0.9  # the planted model follows the context
    assert ob["balance"]["abs_diff"] < ob["base_balance"]["abs_diff"] - 0.2
    assert s["value"] > s["base_value"]
    assert s["passed"] and s["lms"] >= 0.99 * s["base_lms"]
    assert s["nll_increase"] <= 0.01 * (1 - s["budget"]["margin"]) + 1e-12
    assert s["heldout_nll_increase"] <= 0.01 and s["heldout"]["within_budget"]
    zero = [e for e in res["grid"] if dec.ff_of(e) == 0 and dec.lr_of(e) > 0]
    assert len(zero) >= 3  # the decoder-bias-only update h = 0 was searched
    assert {dec.ff_of(e) for e in res["grid"] if dec.lr_of(e) > 0} == {-1.0, 0.0, 1.0}
    for side in ("best_inside", "best_outside"):
        assert s[side] is None or s[side]["feature_factor"] in (-1.0, 0.0, 1.0)
    assert s["specificity"]["target"] in ("he", "she")


def test_rewrite_balanced_writes_the_entry(trained, tmp_path):
    from transformers import AutoModelForMaskedLM

    tr = trained["mlm"]
    res = tr.evaluate_decoder(objective="balance", balance_data=BALANCE)
    s = res["balanced"]
    assert s["learning_rate"] > 0
    tr.rewrite_base_model(decoder_results=res, target_class="balanced", output_dir=tmp_path / "b")
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "b").eval()
    pa, pb = _mlm_probs(reloaded, tr.get_model().tokenizer, BALANCE)
    p = s["objective"]["balance"]["p"]
    assert pa.mean() == pytest.approx(p["he"], rel=1e-4, abs=1e-6)
    assert pb.mean() == pytest.approx(p["she"], rel=1e-4, abs=1e-6)
    assert np.abs(pa - pb).mean() < s["objective"]["base_balance"]["abs_diff"] - 0.1
    manifest = json.loads((tmp_path / "b" / REWRITE_MANIFEST).read_text())
    assert manifest["target_class"] == "balanced"
    assert manifest["learning_rate"] == s["learning_rate"]
    again = tr.rewrite_base_model(target_class="balanced")  # from the run's saved results
    for a, b in zip(again.parameters(), reloaded.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_the_interior_search_finds_a_maximum_inside_the_budget():
    """The objective peaks at η = 0.3 while the budget's edge is at η = 1: the search must not
    stop at the edge (as the monotone search would)."""
    goal = parse_objective("balance", ["a", "b"])
    calls = []

    def evaluate(lr: float, full: bool) -> dict:
        calls.append(lr)
        bpi = math.exp(-(math.log(lr / 0.3) ** 2))
        return {"id": dec.point_id(1.0, lr), "lms": {"lms": 1.0, "nll": 1 + 0.01 * lr**2},
                "balance": {"bpi": bpi}, "scored": "full"}  # fmt: skip

    base = {"id": dec.point_id(0, 0), "lms": {"lms": 1.0, "nll": 1.0}, "balance": {"bpi": 0.0}}
    budget = dec.Budget(None, 0.01)
    trace = search_interior(evaluate, base, budget, goal.metric(), 0.01, AdaptiveSearchConfig())
    best = max(trace.confirmed, key=lambda lr: math.exp(-(math.log(lr / 0.3) ** 2)))
    assert abs(math.log(best / 0.3)) < math.log(1.1)
    assert max(calls) > 1.0  # the edge was searched too (and probed beyond)
    assert len(calls) <= 30


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"objective": "balanced"}, ValueError, "did you mean 'balance'"),
        ({"objective": "prefer:shee"}, ValueError, "did you mean 'prefer:she'"),
        ({"objective": "prefer:it"}, ValueError, "choose one of"),
        ({"objective": 1}, TypeError, "objective must be one of"),
        ({"objective": "balance", "target_class": "he"}, ValueError, "leave target_class out"),
        ({"objective": "balance", "increase_target_probabilities": False}, ValueError,
         "increase_target_probabilities"),
        ({"objective": "balance", "balance_data": "the [MASK] ."}, TypeError, "list of masked"),
        ({"objective": "balance", "balance_data": []}, ValueError, "empty"),
        ({"objective": "balance", "balance_data": ["no mask"]}, ValueError, "exactly one"),
        ({"objective": "balance", "balance_data": ["[MASK] and [MASK]"]}, ValueError,
         "exactly one"),
        ({"objective": "balance", "balance_data": pd.DataFrame({"text": ["a [MASK]"]})},
         ValueError, "'masked' column"),
        ({"balance_data": ["the [MASK] ."]}, ValueError, "only read by objective"),
    ],
)  # fmt: skip
def test_bad_objective_or_balance_data_is_refused_before_work(trained, monkeypatch, kwargs,
                                                              error, match):  # fmt: skip
    import gradiend.trainer.evaluation as evaluation

    tr = trained["mlm"]

    def refuse(*args, **kw):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(evaluation, "build_decoder_task", refuse)
    monkeypatch.setattr(evaluation, "find_controls", refuse)
    monkeypatch.setattr(tr, "get_model", refuse)
    with pytest.raises(error, match=match):
        tr.evaluate_decoder(**kwargs)


def test_rewrite_without_a_balanced_entry_names_the_call(trained):
    with pytest.raises(KeyError, match="objective='balance'"):
        trained["mlm"].rewrite_base_model(decoder_results={}, target_class="balanced")
    with pytest.raises(KeyError, match="objective='prefer:he'"):
        trained["mlm"].rewrite_base_model(decoder_results={}, target_class="prefer_he")


# --------------------------------------------------------------------------- command line
def _cli_run(planted, tmp_path: Path) -> Path:
    model, tok = planted["mlm"]
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    rows = [{"masked": m, "label": g, "label_class": g}
            for g, df in he_she_data(80).items() for m in df["masked"]]  # fmt: skip
    random.Random(0).shuffle(rows)
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    cfg = {
        "trainer": {"model": str(tmp_path / "tiny"), "run_id": "he_she", "data":
                    str(tmp_path / "data.csv"), "target_classes": ["he", "she"],
                    "eval_neutral_data": neutral_texts()},
        "training_args": {"experiment_dir": str(tmp_path / "runs"), "train_batch_size": 4,
                          "max_steps": 120, "eval_steps": 20, "learning_rate": 1e-3,
                          "max_seeds": 1},
    }  # fmt: skip
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def test_cli_objective_and_balance_data(planted, tmp_path, capsys, monkeypatch):
    cfg = str(_cli_run(planted, tmp_path))
    assert cli.main(["train", "-c", cfg]) == 0
    capsys.readouterr()
    good = tmp_path / "balance.txt"
    good.write_text("\n".join(BALANCE) + "\n\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("the king said that he will come .\n")
    with monkeypatch.context() as mp:  # refused before the evaluation starts (exit 2)
        mp.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
        for args, key, hint in [
            (["--objective", "balanced"], "--objective", "did you mean 'balance'"),
            (["--objective", "balance", "--balance-data", str(tmp_path / "no.txt")],
             "--balance-data", "is not a file"),
            (["--objective", "balance", "--balance-data", str(bad)], "--balance-data",
             "exactly one"),
            (["--balance-data", str(good)], "--balance-data", "only read by objective"),
        ]:  # fmt: skip
            assert cli.main(["evaluate", "-c", cfg, "--decoder-only", *args]) == 2
            err = capsys.readouterr().err
            assert f"'{key}'" in err and hint in err, err
    code = cli.main(["evaluate", "-c", cfg, "--decoder-only", "--no-plot", "--objective",
                     "balance", "--balance-data", str(good)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "decoder balanced: feature_factor=" in out
    assert (
        cli.main(["rewrite", "-c", cfg, "--set", "rewrite_base_model.target_class=balanced"]) == 0
    )
    assert "rewritten model (balanced)" in capsys.readouterr().out

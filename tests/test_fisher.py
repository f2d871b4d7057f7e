"""Neutral-Fisher preconditioning of the decoder's rewrite (``evaluate_decoder(precondition=)``)."""

from __future__ import annotations

import pytest
import torch
from conftest import he_she_trainer, neutral_texts

from gradiend.evaluator import FisherConfig
from gradiend.lm import fisher as fisher_mod

N_NEUTRAL, N_BUDGET = 40, 20


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    root = tmp_path_factory.mktemp("fisher")
    return {
        kind: he_she_trainer(planted[kind], root, run_id=kind, n_neutral=N_NEUTRAL)
        for kind in ("mlm", "clm")
    }


def _oracle_fisher(mwg, texts: list[str]) -> torch.Tensor:
    """Per text: HF's own causal LM loss (special tokens ignored), its gradient on the GRADIEND's
    dimensions, squared; mean over texts, normalised to mean 1."""
    tok, model = mwg.lm.tokenizer, mwg.lm.model
    special = torch.tensor(tok.all_special_ids)
    total = None
    for p in mwg.grads.params:
        p.requires_grad_(True)
    try:
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            labels = torch.where(torch.isin(ids, special), -100, ids)
            loss = model(input_ids=ids, labels=labels).loss
            grads = torch.autograd.grad(loss, mwg.grads.params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for g, p in zip(grads, mwg.grads.params)
            ]
            g = mwg.grads._flatten(grads).double()
            total = g * g if total is None else total + g * g
    finally:
        for p in mwg.grads.params:
            p.requires_grad_(False)
    f = total / len(texts)
    return (f / f.mean()).float()


def test_causal_fisher_equals_per_text_oracle(trained):
    mwg = trained["clm"].get_model()
    texts = neutral_texts(6, seed=9)
    got = fisher_mod.neutral_fisher(mwg, texts, progress=False)
    want = _oracle_fisher(mwg, texts)
    assert got.shape == (mwg.gradiend.input_dim,)
    assert float(got.mean()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_mlm_fisher_is_nonnegative_and_uneven(trained):
    f = fisher_mod.neutral_fisher(trained["mlm"].get_model(), neutral_texts(8), progress=False)
    assert bool((f >= 0).all()) and float(f.mean()) == pytest.approx(1.0, rel=1e-5)
    assert float(f.max()) > 5 * float(f.median())  # some dimensions cost far more than others


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_preconditioned_selection_rewrites_along_scaled_vector(trained, kind, monkeypatch):
    tr = trained[kind]
    calls = []
    orig = fisher_mod.neutral_fisher
    monkeypatch.setattr(fisher_mod, "neutral_fisher", lambda *a: calls.append(1) or orig(*a))
    cfg = FisherConfig(damping=0.1)
    res = tr.evaluate_decoder(
        target_class="she", precondition=cfg, max_size_neutral=N_BUDGET, use_cache=True
    )
    s = res["she"]
    pre = s["precondition"]
    assert pre["method"] == "fisher" and pre["damping"] == 0.1
    assert pre["n_texts"] == N_NEUTRAL - N_BUDGET  # the texts the budget does not score
    assert s["value"] > s["base_value"]
    assert calls == [1]
    # the rewrite is θ + η · decoder(ff) ⊘ (F + λ), F the stored Fisher
    mwg = tr.get_model()
    fisher = fisher_mod.load_fisher(tr.run_dir, pre["key"])
    u = mwg.gradiend.get_update_vector(s["feature_factor"]) / (fisher + 0.1)
    before = [p.detach().clone() for p in mwg.grads.params]
    model = tr.rewrite_base_model(res, target_class="she")
    delta = [
        model.get_parameter(spec.name).detach() - b
        for spec, b in zip(mwg.gradiend.param_map.specs, before, strict=True)
    ]
    got = mwg.grads._flatten(delta)
    torch.testing.assert_close(got, s["learning_rate"] * u, rtol=1e-3, atol=1e-6)
    for p, b in zip(mwg.grads.params, before, strict=True):
        assert torch.equal(p, b)  # the base model is untouched
    # a second call reuses the stored Fisher and points; without precondition: the plain vector
    again = tr.evaluate_decoder(
        target_class="she", precondition=cfg, max_size_neutral=N_BUDGET, use_cache=True
    )
    assert calls == [1] and again["she"]["learning_rate"] == s["learning_rate"]
    plain = tr.evaluate_decoder(target_class="she", max_size_neutral=N_BUDGET)
    assert plain["she"]["precondition"] is None and mwg.update_scale is None


def test_fisher_needs_texts_outside_the_budget(trained):
    tr = trained["clm"]
    with pytest.raises(ValueError, match="eval_neutral_data"):
        tr.evaluate_decoder(target_class="she", precondition="fisher")  # the budget uses all 40
    with pytest.raises(ValueError, match="precondition"):
        tr.evaluate_decoder(target_class="she", precondition="newton")
    with pytest.raises(ValueError, match="damping"):
        FisherConfig(damping=0)


def test_explicit_fisher_texts_and_missing_file(trained):
    tr = trained["clm"]
    cfg = FisherConfig(texts=neutral_texts(10, seed=5))
    res = tr.evaluate_decoder(target_class="she", precondition=cfg, use_cache=False)
    assert res["she"]["precondition"]["n_texts"] == 10
    (tr.run_dir / fisher_mod.FISHER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="evaluate_decoder"):
        tr.rewrite_base_model(res, target_class="she")

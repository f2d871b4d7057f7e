"""Steering by hooks: an ACTIEND's update added by forward hooks, searched by
``evaluate_decoder`` under the budget, returned by ``modify_model``, saved, reloaded to the
same logits, and applied temporarily by ``intervene`` (removed exactly, also after an error)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts

from gradiend import HookedModel, Signal, SignalScope, TextPredictionTrainer, load_modified_model
from gradiend.model.modified import HOOK_SPEC, HOOK_UPDATES
from gradiend.trainer.caa import evaluate_caa

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def actiend(planted, tmp_path_factory):
    """A trained ACTIEND (last block's output at the prediction position) on the planted
    causal model, with its decoder results."""
    model, tok = planted["clm"]
    trainer = TextPredictionTrainer(
        model=(model, tok), run_id="hooks", data=he_she_data(), progress=False,
        eval_neutral_data=neutral_texts(40),
        args=fast_args(tmp_path_factory.mktemp("hooks"), learning_rate=3e-2,
                       signal=Signal.activation(scale="running_rms"),
                       signal_scope=SignalScope.layer(-1)),
    )  # fmt: skip
    trainer.train()
    return trainer, trainer.evaluate_decoder()


def _hooks(model) -> dict[str, list[int]]:
    """Every module's registered forward (pre-)hook ids."""
    return {name: [*m._forward_hooks, *m._forward_pre_hooks] for name, m in model.named_modules()}


def _logits(model, tok, text: str = "the king said that") -> torch.Tensor:
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def _p(logits, tok, word: str) -> float:
    return float(logits[0, -1].softmax(-1)[tok.convert_tokens_to_ids(word)])


def test_decoder_search_finds_a_stronger_point_inside_the_budget(actiend):
    trainer, results = actiend
    for cls in trainer.target_classes:
        entry = results[cls]  # value: P(cls) on the other class's sentences
        assert entry["passed"] and entry["learning_rate"] > 0
        assert entry["value"] > 10 * entry["base_value"]
        assert entry["nll_increase"] <= 0.01 and entry["lms"] >= 0.99 * entry["base_lms"]
        assert entry["best_outside"]["learning_rate"] > entry["learning_rate"]  # the edge
    assert results["search"]["mode"] == "adaptive" and len(results["grid"]) > 3


def test_intervene_steers_and_removes_its_hooks_exactly(actiend):
    trainer, _ = actiend
    mwg = trainer.get_model()
    model, tok = mwg.base_model, mwg.tokenizer
    before_hooks, before = _hooks(model), _logits(model, tok)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with mwg.intervene(value=-1.0, strength=2.0) as steered:  # towards she
        assert steered is model
        inside = _logits(model, tok)
        assert _p(inside, tok, "she") > _p(before, tok, "she")
        assert _hooks(model) != before_hooks
    assert _hooks(model) == before_hooks
    assert torch.equal(_logits(model, tok), before)
    with pytest.raises(RuntimeError, match="boom"):
        with mwg.intervene(value=1.0, strength=2.0):
            raise RuntimeError("boom")
    assert _hooks(model) == before_hooks
    assert torch.equal(_logits(model, tok), before)
    for k, v in model.state_dict().items():  # the weights were never touched
        assert torch.equal(v, state[k]), k


def test_modify_model_saves_and_reloads_to_identical_logits(actiend, tmp_path):
    trainer, results = actiend
    mwg = trainer.get_model()
    base_model, tok = mwg.base_model, mwg.tokenizer
    base_hooks, base = _hooks(base_model), _logits(base_model, tok)
    hooked = trainer.modify_model(results, "she")
    assert isinstance(hooked, HookedModel) and hooked.sites == ["model.layers.1"]
    assert torch.equal(hooked.updates[0], mwg.modify_model(results, "she").updates[0])
    assert _hooks(base_model) == base_hooks  # the trainer's base model stays unhooked
    steered = _logits(hooked, tok)
    assert _p(steered, tok, "she") > _p(base, tok, "she")
    assert torch.equal(_logits(base_model, tok), base)
    out = hooked.save_pretrained_modified(tmp_path / "she")
    assert sorted(p.name for p in out.iterdir()) == sorted([HOOK_SPEC, HOOK_UPDATES])
    again = load_modified_model(out, model_loader=lambda ref: copy.deepcopy(base_model))
    assert torch.equal(_logits(again, tok), steered)
    assert again.info["target_class"] == "she"
    assert again.info["learning_rate"] == pytest.approx(results["she"]["learning_rate"])
    plain = again.remove_hooks()  # the reloaded base model without its hooks
    assert torch.equal(_logits(plain, tok), base)


def test_saved_hooked_model_reloads_from_its_base_model_reference(planted, tmp_path):
    model, tok = planted["clm"]
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    trainer = TextPredictionTrainer(
        model=str(folder), run_id="ref", data=he_she_data(), progress=False,
        args=fast_args(tmp_path, learning_rate=3e-2, signal=Signal.activation(scale="running_rms"),
                       signal_scope=SignalScope.layer(-1)),
    )  # fmt: skip
    mwg = trainer.train()
    hooked = mwg.rewrite_base_model(learning_rate=1.5, feature_factor=1.0)
    assert isinstance(hooked, HookedModel) and hooked.base_model_reference == str(folder)
    out = hooked.save_pretrained_modified(tmp_path / "hooked")
    again = load_modified_model(out)  # the base model is loaded from the recorded folder
    assert torch.equal(_logits(again, tok), _logits(hooked, tok))
    assert not torch.equal(_logits(again, tok), _logits(mwg.base_model, tok))


def test_load_refuses_folders_it_did_not_write(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained_modified"):
        load_modified_model(tmp_path)
    (tmp_path / HOOK_SPEC).write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="is not a gradiend-hooked-model"):
        load_modified_model(tmp_path)


def test_gradient_signal_modify_model_rewrites_weights(planted, tmp_path):
    model, tok = planted["clm"]
    trainer = TextPredictionTrainer(
        model=(model, tok), run_id="grad", data=he_she_data(), progress=False,
        eval_neutral_data=neutral_texts(40), args=fast_args(tmp_path),
    )  # fmt: skip
    mwg = trainer.train()
    results = trainer.evaluate_decoder()
    rewritten = mwg.modify_model(results, "he")
    assert not isinstance(rewritten, HookedModel)
    changed = [
        n for n, p in rewritten.named_parameters()
        if not torch.equal(p, mwg.base_model.get_parameter(n))
    ]  # fmt: skip
    assert changed and set(changed) <= set(mwg.param_map.names)


def test_caa_baseline_is_evaluated_under_the_same_budget(actiend):
    trainer, results = actiend
    caa, caa_results = evaluate_caa(trainer)
    mwg = trainer.get_model()
    # the class-mean difference and the ACTIEND's decoder point the same way on planted data
    cos = torch.nn.functional.cosine_similarity(caa.gradiend.W_d[:, 0], mwg.gradiend.W_d[:, 0], 0)
    assert cos > 0.9
    for cls in trainer.target_classes:
        entry = caa_results[cls]
        assert entry["passed"] and entry["value"] > 10 * entry["base_value"]
        assert entry["budget"] == results[cls]["budget"]  # the same budget as the ACTIEND
        assert entry["base_value"] == pytest.approx(results[cls]["base_value"])
    assert (trainer.run_dir / "caa").is_dir()
    assert isinstance(caa.modify_model(caa_results, "he"), HookedModel)

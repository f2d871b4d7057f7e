"""Inference-time steering: the update is live inside ``steer`` and gone, bit for bit, after."""

from __future__ import annotations

import pytest
import torch
from conftest import he_she_trainer

from gradiend.trainer import PostPruneConfig


def _train(planted, tmp_path, kind="clm", **overrides):
    return he_she_trainer(planted[kind], tmp_path, run_id=kind, **overrides).get_model()


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_equal(model, saved):
    for k, v in model.state_dict().items():
        assert v.dtype == saved[k].dtype
        assert torch.equal(v.view(torch.uint8), saved[k].view(torch.uint8)), k


def _next_prob(mwg, prompt: str, word: str) -> float:
    tok = mwg.tokenizer
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = mwg.base_model(**enc).logits[0, -1]
    return float(logits.float().softmax(-1)[tok.convert_tokens_to_ids(word)])


@pytest.mark.parametrize("post_prune", [False, True])
def test_steer_moves_the_model_towards_the_class_and_restores_it(planted, tmp_path, post_prune):
    extra = {"post_prune_config": PostPruneConfig(topk=0.2)} if post_prune else {}
    mwg = _train(planted, tmp_path, **extra)
    before = _state(mwg.base_model)
    prompt = "the king said that"
    p_she = _next_prob(mwg, prompt, "she")
    with mwg.steer(target_class="she", strength=1.0) as model:
        assert model is mwg.base_model
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
        p_steered = _next_prob(mwg, prompt, "she")
    _assert_bit_equal(mwg.base_model, before)
    assert p_steered > p_she  # towards 'she' (the sign convention: decoder(-1) strengthens it)
    p_he = _next_prob(mwg, "the queen thinks that", "he")
    with mwg.steer(feature_factor=1.0, strength=1.0):  # towards 'he'
        assert _next_prob(mwg, "the queen thinks that", "he") > p_he
    _assert_bit_equal(mwg.base_model, before)


def test_steered_generation_differs_and_model_is_restored_after_an_error(planted, tmp_path):
    mwg = _train(planted, tmp_path)
    before = _state(mwg.base_model)
    prompts = ["the king said that", "the queen thinks that"]
    rows = mwg.steer_generations(prompts, strength=5.0, target_class="she", max_new_tokens=6)
    assert [r["prompt"] for r in rows] == prompts
    assert any(r["base"] != r["steered"] for r in rows)
    assert mwg.generate(prompts, max_new_tokens=6) == [r["base"] for r in rows]
    with pytest.raises(RuntimeError, match="boom"), mwg.steer(target_class="he", strength=3.0):
        raise RuntimeError("boom")
    _assert_bit_equal(mwg.base_model, before)


def test_steer_in_bfloat16_restores_bit_for_bit(planted, tmp_path):
    mwg = _train(planted, tmp_path)
    model = mwg.base_model
    original = _state(model)
    model.to(torch.bfloat16)
    try:
        before = _state(model)
        with mwg.steer(target_class="she", strength=0.37):
            changed = any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert changed
        _assert_bit_equal(model, before)
    finally:
        model.to(torch.float32)
        model.load_state_dict(original)


def test_steer_arguments_are_checked(planted, tmp_path):
    mwg = _train(planted, tmp_path)
    with pytest.raises(ValueError, match="exactly one"), mwg.steer(strength=1.0):
        pass
    with pytest.raises(ValueError, match="classes are"), mwg.steer("it", strength=1.0):
        pass
    with pytest.raises(ValueError, match="finite"), mwg.steer("he", strength=float("nan")):
        pass


def test_masked_lm_steering_fills_the_mask(planted, tmp_path):
    mwg = _train(planted, tmp_path, kind="mlm")
    before = _state(mwg.base_model)
    rows = mwg.steer_generations(
        ["the king said that [MASK] will come today ."], strength=50.0, target_class="she"
    )
    assert "[MASK]" not in rows[0]["base"] and "king" in rows[0]["base"]
    assert rows[0]["base"] != rows[0]["steered"]
    _assert_bit_equal(mwg.base_model, before)

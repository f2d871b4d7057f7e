"""clm_mlm_head: a decoder-only model with a masked-word head that reads the right context."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from conftest import fast_args
from tiny import ACTIONS, FEMALE, MALE, VERBS, make_model

from gradiend import ModelWithGradiend, TextPredictionTrainer
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.lm.mlm_head import HEAD_DIR, HeadTraining, MLMHead, head_rows, train_head
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap

HEAD_ARGS = dict(
    decoder_mlm_head_epochs=100, decoder_mlm_head_lr=0.2, decoder_mlm_head_batch_size=16
)


def right_context_data(n: int = 80, seed: int = 4) -> dict[str, pd.DataFrame]:
    """The pronoun opens the sentence: only the noun after it tells the class."""
    rng = random.Random(seed)
    out = {}
    for pron, nouns in (("he", MALE), ("she", FEMALE)):
        masked = [
            f"[MASK] {rng.choice(nouns)} {rng.choice(VERBS)} that it will {rng.choice(ACTIONS)} ."
            for _ in range(n)
        ]
        out[pron] = pd.DataFrame(
            {
                "masked": masked,
                pron: pron,
                "split": ["train"] * (n - 30) + ["validation"] * 10 + ["test"] * 20,
            }
        )
    return out


@pytest.fixture(scope="module")
def clm():
    return make_model("clm", seed=3)


def _args(tmp_path, **kw):
    return fast_args(tmp_path, **{**HEAD_ARGS, **kw})


def test_head_reads_the_right_context(clm, tmp_path):
    trainer = TextPredictionTrainer(
        model=clm, run_id="h", data=right_context_data(), args=_args(tmp_path), progress=False
    )
    head = trainer.train_decoder_only_mlm_head()
    assert head.labels == ["he", "she"]
    assert head.record["validation_accuracy"] >= 0.9
    # the oracle: pooling only the mask position sees no right context, so it stays at chance
    lm = trainer._base()
    rows = head_rows(trainer.table.split("train"))
    val = head_rows(trainer.table.split("validation"))
    blind = train_head(
        lm,
        rows,
        head.labels,
        HeadTraining(100, 16, 0.2, pooling_length=1),
        None,
        validation=val,
        progress=False,
    )
    assert blind.record["validation_accuracy"] <= 0.7
    # the vocabulary and the causal LM are unchanged: no token was added
    assert lm.model.get_input_embeddings().weight.shape[0] == len(lm.tokenizer)


def test_clm_mlm_head_trains_evaluates_and_rewrites_the_causal_lm(clm, tmp_path):
    model, tok = clm
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = TextPredictionTrainer(
        model=clm,
        run_id="head",
        data=right_context_data(),
        args=_args(tmp_path, prediction_objective="clm_mlm_head"),
        progress=False,
    )
    mwg = trainer.train()
    assert mwg.objective.name == "clm_mlm_head"
    assert (tmp_path / "head" / HEAD_DIR / "head.json").exists()
    assert (tmp_path / "head" / "model" / HEAD_DIR / "head.json").exists()
    assert mwg.param_map == ParamMap.from_model(model)  # the causal LM's own parameters
    result = trainer.evaluate_encoder()
    assert result["correlation"] >= 0.9

    dec = trainer.evaluate_decoder(target_class="she", lrs=[1.0, 0.1])
    base = next(e for e in dec["grid"] if e["id"]["feature_factor"] == 0)
    assert base["lms"]["n_tokens"] > 0  # causal LMS on the original LM
    rewritten = trainer.rewrite_base_model(dec, target_class="she")
    assert type(rewritten).__name__ == "LlamaForCausalLM"
    shapes = {n: tuple(p.shape) for n, p in rewritten.named_parameters()}
    assert shapes == {n: tuple(p.shape) for n, p in original.items()}
    for n, p in model.named_parameters():  # the base model is left as it was
        assert torch.equal(p, original[n])

    # reload by path: the head travels with the GRADIEND
    again = ModelWithGradiend.from_pretrained(tmp_path / "head", base_model=clm)
    assert again.objective.name == "clm_mlm_head"
    items = [mwg.objective.item("[MASK] king said that it will come .", ["he"], ["she"])]
    torch.testing.assert_close(again.encode_items(items), mwg.encode_items(items))


def test_auto_picks_a_trained_head_and_reuses_it_by_fingerprint(clm, tmp_path):
    data = right_context_data()
    first = TextPredictionTrainer(
        model=clm, run_id="auto", data=data, args=_args(tmp_path), progress=False
    )
    assert first._objective().name == "clm_next_token"  # no head yet
    head = first.train_decoder_only_mlm_head()
    assert first._objective().name == "clm_mlm_head"
    stamp = (tmp_path / "auto" / HEAD_DIR / "head.safetensors").stat().st_mtime_ns
    second = TextPredictionTrainer(
        model=clm, run_id="auto", data=data, args=_args(tmp_path), progress=False
    )
    assert second._objective().name == "clm_mlm_head"
    assert second.train_decoder_only_mlm_head().fingerprint == head.fingerprint
    assert (tmp_path / "auto" / HEAD_DIR / "head.safetensors").stat().st_mtime_ns == stamp
    other = TextPredictionTrainer(
        model=clm,
        run_id="auto",
        data=data,
        args=_args(tmp_path, decoder_mlm_head_lr=5e-3),
        progress=False,
    )
    assert other.train_decoder_only_mlm_head().fingerprint != head.fingerprint
    assert MLMHead.from_pretrained(tmp_path / "auto" / HEAD_DIR).fingerprint != head.fingerprint


def test_head_jvp_equals_explicit_gradients(clm, tmp_path):
    model, tok = clm
    lm = load_base_model(clm)
    head = MLMHead(32, ["he", "she"], mask_embedding=torch.randn(32))
    obj = make_objective("clm_mlm_head", "clm", tok, head=head)
    comp = GradientComputer(lm, obj, ParamMap.from_model(model))
    items = [
        obj.item("[MASK] king said that it will come .", ["he"], ["she"]),
        obj.item("the queen thinks that [MASK] will [MASK] .", ["she", "sing"], ["he", "sing"]),
    ]
    items.append(
        type(items[0])(obj.neutral_encoding([5, 6, 7, 8], 2), obj.neutral_encoding([5, 6, 7, 8], 2))
    )
    direction = torch.randn(comp.dim)
    for kind in ("factual", "alternative", "diff"):
        explicit = comp.per_example(items, kind) @ direction
        torch.testing.assert_close(
            comp.directional(items, kind, direction), explicit, rtol=1e-4, atol=1e-5
        )


def test_missing_head_is_a_clear_error(clm):
    with pytest.raises(ValueError, match="train_decoder_only_mlm_head"):
        make_objective("clm_mlm_head", "clm", clm[1])

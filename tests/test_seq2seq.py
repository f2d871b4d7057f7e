"""seq2seq_encoder_mlm on small T5- and BART-shaped models that the tests build."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts
from tiny import make_model, pretrain_seq2seq

from gradiend import ModelWithGradiend, TextPredictionTrainer
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap

SENTENCE = "the king said that [MASK] will come today ."


@pytest.fixture(scope="module")
def seq2seq_models():
    out = {}
    for kind in ("t5", "bart"):
        model, tok = make_model(kind)
        out[kind] = (pretrain_seq2seq(model, tok, steps=80), tok)
    return out


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_seq2seq_planted_feature_decoder_and_rewrite(seq2seq_models, tmp_path, kind):
    model, tok = seq2seq_models[kind]
    trainer = TextPredictionTrainer(
        model=(model, tok),
        run_id=kind,
        data=he_she_data(),
        eval_neutral_data=neutral_texts(),
        args=fast_args(tmp_path),
        progress=False,
    )
    mwg = trainer.train()
    assert mwg.objective.name == "seq2seq_encoder_mlm"
    # the gradients cover the shared embeddings and the encoder only
    names = mwg.param_map.names
    assert names[0].endswith("shared.weight") and all("decoder" not in n for n in names)
    result = trainer.evaluate_encoder()
    assert result["correlation"] >= 0.9
    assert result["mean_by_feature_class"]["he"] * result["mean_by_feature_class"]["she"] < 0

    dec = trainer.evaluate_decoder(target_class="she", lrs=[1.0, 0.1, 0.01])
    base = next(e for e in dec["grid"] if e["id"]["feature_factor"] == 0)
    assert 0 < base["lms"]["lms"] <= 1
    assert dec["she"]["feature_factor"] == -1.0  # decoder(−1) strengthens target_classes[1]
    assert dec["she"]["value"] > base["probs"]["she"]

    rewritten = trainer.rewrite_base_model(dec, target_class="she", output_dir=tmp_path / "rw")
    assert type(rewritten).__name__ == type(model).__name__
    before, after = dict(model.named_parameters()), dict(rewritten.named_parameters())
    enc_key = next(n for n in before if ".encoder." in f".{n}" and n.endswith("weight"))
    dec_key = next(n for n in before if ".decoder." in f".{n}" and n.endswith("weight"))
    assert not torch.equal(before[enc_key], after[enc_key])
    assert torch.equal(before[dec_key], after[dec_key])
    obj = mwg.objective
    items = [obj.item(SENTENCE, ["he"], ["she"])]
    with torch.no_grad():
        p_base = obj.losses(model, items)["alternative"]
        p_new = obj.losses(rewritten, items)["alternative"]
    assert p_new < p_base  # NLL of "she" fell


def test_seq2seq_folder_loads_with_auto_model_for_seq2seq(seq2seq_models, tmp_path):
    model, tok = seq2seq_models["t5"]
    folder = tmp_path / "t5"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    lm = load_base_model(str(folder))
    assert lm.kind == "seq2seq" and type(lm.model).__name__ == "T5ForConditionalGeneration"
    trainer = TextPredictionTrainer(
        model=str(folder),
        run_id="byfolder",
        data=he_she_data(40),
        args=fast_args(tmp_path, max_steps=10),
        progress=False,
    )
    mwg = trainer.train()
    again = ModelWithGradiend.from_pretrained(tmp_path / "byfolder")
    assert again.objective.name == "seq2seq_encoder_mlm"
    x = torch.randn(3, mwg.gradiend.input_dim)
    torch.testing.assert_close(again.encode(x), mwg.encode(x))


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_seq2seq_jvp_equals_explicit_gradients(seq2seq_models, kind):
    model, tok = seq2seq_models[kind]
    lm = load_base_model((model, tok))
    obj = make_objective("auto", lm.kind, tok)
    comp = GradientComputer(lm, obj, ParamMap.from_model(model, obj.default_params(model)))
    items = [
        obj.item(SENTENCE, ["he"], ["she"]),
        obj.item("the [MASK] said that [MASK] will sing .", ["queen", "she"], ["king", "he"]),
    ]
    direction = torch.randn(comp.dim)
    explicit = comp.per_example(items, "diff") @ direction
    torch.testing.assert_close(
        comp.directional(items, "diff", direction), explicit, rtol=1e-4, atol=1e-5
    )

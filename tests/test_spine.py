"""The spine: gradients → GRADIEND → encoder evaluation on planted-feature models."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts

from gradiend import GradiendModel, ModelWithGradiend, TextPredictionTrainer
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_planted_feature_is_found(planted, tmp_path, kind):
    trainer = TextPredictionTrainer(
        model=planted[kind],
        run_id=kind,
        data=he_she_data(),
        eval_neutral_data=neutral_texts(),
        args=fast_args(tmp_path),
        progress=False,
    )
    trainer.train()
    result = trainer.evaluate_encoder(return_df=True)
    assert abs(result["correlation"]) >= 0.9
    # orientation: +1 means "pushes towards target_classes[0]"
    assert result["correlation"] > 0
    assert result["target_classes_only"]["accuracy"] >= 0.9
    means = result["mean_by_feature_class"]
    assert means["he"] * means["she"] < 0
    assert abs(result["neutral_mean_by_type"]["neutral_dataset"]) < 0.5
    for key in (
        "all_data",
        "training_only",
        "mean_by_class",
        "mean_by_type",
        "n_samples",
        "sample_counts",
        "label_value_to_class_name",
        "encoder_df",
    ):
        assert key in result
    stats = trainer.get_training_stats()
    assert stats["convergence_info"]["converged"]
    assert (tmp_path / kind / "model" / "training.json").exists()


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_jvp_encodings_equal_explicit_gradients(planted, kind):
    model, tok = planted[kind]
    lm = load_base_model((model, tok))
    obj = make_objective("auto", lm.kind, tok)
    pmap = ParamMap.from_model(model)
    comp = GradientComputer(lm, obj, pmap)
    items = [
        obj.item("the king said that [MASK] will come today .", ["he"], ["she"]),
        obj.item("the queen thinks that [MASK] will sing .", ["she"], ["he"]),
        obj.item("the [MASK] said that [MASK] will sing .", ["queen", "she"], ["king", "he"]),
    ]
    direction = torch.randn(comp.dim)
    for kind_ in ("factual", "alternative", "diff"):
        explicit = comp.per_example(items, kind_) @ direction
        jvp = comp.directional(items, kind_, direction)
        torch.testing.assert_close(jvp, explicit, rtol=1e-4, atol=1e-5)
    # batch gradient == mean of per-example gradients
    torch.testing.assert_close(
        comp.batch(items, ["diff"])["diff"],
        comp.per_example(items, "diff").mean(0),
        rtol=1e-4,
        atol=1e-6,
    )


def test_multi_mask_each_mask_gets_its_own_word(planted):
    _, tok = planted["mlm"]
    obj = make_objective("mlm_mask_token", "mlm", tok)
    enc = obj.encode("the [MASK] said that [MASK] will sing .", ["queen", "she"])
    assert tok.convert_ids_to_tokens(enc.targets) == ["queen", "she"]


def test_causal_target_is_scored_from_the_prefix(planted):
    _, tok = planted["clm"]
    obj = make_objective("auto", "clm", tok)
    enc = obj.encode("the king said that [MASK] will come", ["he"])
    assert tok.convert_ids_to_tokens(enc.input_ids)[-1] == "that"
    assert enc.positions == [len(enc.input_ids) - 1]
    assert tok.convert_ids_to_tokens(enc.targets) == ["he"]


def test_save_load_round_trip_gives_identical_encodings(planted, tmp_path):
    trainer = TextPredictionTrainer(
        model=planted["clm"],
        run_id="rt",
        data=he_she_data(),
        args=fast_args(tmp_path, max_steps=20),
        progress=False,
    )
    mwg = trainer.train()
    loaded = GradiendModel.from_pretrained(tmp_path / "rt")
    again = ModelWithGradiend(mwg.lm, loaded)
    x = torch.randn(5, mwg.gradiend.input_dim)
    torch.testing.assert_close(mwg.encode(x), again.encode(x))
    assert loaded.metadata["target_classes"] == ["he", "she"]


def test_decoder_plus_one_strengthens_first_class_after_orientation(planted, tmp_path):
    """The sign convention: adding decoder(+1) raises P(target_classes[0])."""
    trainer = TextPredictionTrainer(
        model=planted["clm"],
        run_id="sign",
        data=he_she_data(),
        target_classes=["she", "he"],
        args=fast_args(tmp_path),
        progress=False,
    )
    mwg = trainer.train()
    obj = mwg.objective
    items = [obj.item("the king said that [MASK] will come today .", ["he"], ["she"])]
    with torch.no_grad():
        before = obj.losses(mwg.base_model, items)["alternative"]  # NLL of "she"
        with mwg.applied(0.5, +1.0):
            after = obj.losses(mwg.base_model, items)["alternative"]
    assert after < before


def test_model_with_gradiend_reloads_base_model_by_recorded_path(planted, tmp_path):
    model, tok = planted["mlm"]
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    trainer = TextPredictionTrainer(
        model=str(folder),
        run_id="bypath",
        data=he_she_data(),
        args=fast_args(tmp_path, max_steps=20),
        progress=False,
    )
    mwg = trainer.train()
    again = ModelWithGradiend.from_pretrained(tmp_path / "bypath")
    assert again.gradiend.metadata["base_model"] == str(folder)
    x = torch.randn(3, mwg.gradiend.input_dim)
    torch.testing.assert_close(again.encode(x), mwg.encode(x))
    for (n1, p1), (n2, p2) in zip(again.base_model.named_parameters(), model.named_parameters()):
        assert n1 == n2 and torch.equal(p1.cpu(), p2.cpu())  # reloaded on CUDA where there is one


def test_encoder_progress_bars_say_what_they_encode(planted, tmp_path, monkeypatch):
    """Each of evaluate_encoder's three bars names its rows (not a bare "encoding")."""
    import gradiend.model.with_gradiend as wg

    descs = []
    real = wg.tqdm

    def recording(*args, **kwargs):
        descs.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    trainer = TextPredictionTrainer(
        model=planted["mlm"],
        run_id="bars",
        data=he_she_data(40),
        eval_neutral_data=neutral_texts(10),
        args=fast_args(tmp_path, max_steps=4),
        progress=False,
    )
    trainer.train()
    monkeypatch.setattr(wg, "tqdm", recording)
    trainer.evaluate_encoder(max_size=5, allow_unconverged=True)  # 4 steps may not converge
    assert len(descs) == 3, descs
    assert descs[0].startswith("encoding") and ("(he, she)" in descs[0] or "(she, he)" in descs[0])
    assert "word filled in" in descs[1] and "eval_neutral_data" in descs[2]

"""The decoder-fit ranking, post-pruning's encoder re-fit and localisation by layer/module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradiend import GradiendModel
from gradiend.lm.params import ParamMap, ParamSpec
from gradiend.model.localise import split_name
from gradiend.trainer.arguments import PostPruneConfig
from gradiend.trainer.post_prune import lifted, post_prune, refit_scale


def _batches(n: int = 12, dim: int = 40, seed: int = 0):
    """Pure-class batches: source and target carry ±(feature direction) plus noise."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.zeros(dim)
    direction[:5] = torch.tensor([3.0, -2.0, 1.5, 1.0, -0.5])
    out = []
    for i in range(n):
        y = 1.0 if i % 2 == 0 else -1.0
        noise = 0.1 * torch.randn(dim, generator=gen)
        out.append(
            (y * direction + noise, -2 * y * direction + 0.1 * torch.randn(dim, generator=gen))
        )
    return out


def _encoder_model(dim: int = 40, latent: int = 1) -> GradiendModel:
    torch.manual_seed(0)
    model = GradiendModel(dim, latent_dim=latent)
    with torch.no_grad():
        model.W_e.normal_()
        model.W_e[0, :5] = torch.tensor([3.0, -2.0, 1.5, 1.0, -0.5]) / 4
    return model


def test_decoder_fit_is_the_least_squares_decoder():
    """Against numpy's lstsq of t on [h, 1] for each dimension (one and two latent units)."""
    batches = _batches()
    for latent in (1, 2):
        model = _encoder_model(latent=latent)
        assert model.fit_importance(batches)
        with torch.no_grad():
            h = torch.stack([model.encode(s) for s, _ in batches]).double().numpy()
        t = torch.stack([t for _, t in batches]).double().numpy()
        design = np.hstack([h, np.ones((len(h), 1))])
        coef = np.linalg.lstsq(design, t, rcond=None)[0][:latent].T  # [dim, latent]
        np.testing.assert_allclose(model.decoder_fit.numpy(), coef, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            model.get_weight_importance().numpy(), np.abs(coef).sum(1), rtol=1e-4, atol=1e-5
        )


def test_decoder_fit_ranks_the_feature_dimensions_first_whatever_w_d():
    """The fitted decoder ignores how the optimiser left W_d: with a random W_d the default
    ranking still puts the five feature dimensions first, |W_d| does not."""
    model = _encoder_model()
    with torch.no_grad():
        model.W_d.uniform_(-1, 1)
        model.W_d[:5] = 1e-3
    model.fit_importance(_batches())
    assert set(model.get_topk_weights(topk=5).tolist()) == {0, 1, 2, 3, 4}
    assert set(model.get_topk_weights("decoder-weight", 5).tolist()).isdisjoint(range(5))


def test_decoder_fit_needs_varying_encodings(caplog):
    model = GradiendModel(10)
    with torch.no_grad():
        model.W_e.zero_()
    assert not model.fit_importance([(torch.randn(10), torch.randn(10)) for _ in range(4)])
    assert model.decoder_fit is None
    assert model.resolve_part(None) == "decoder-weight"  # falls back, with a warning
    assert "no fitted decoder" in caplog.text


def test_decoder_fit_follows_flip_prune_and_save(tmp_path):
    model = _encoder_model()
    model.fit_importance(_batches())
    fit = model.decoder_fit.clone()
    model.flip_sign()
    assert torch.equal(model.decoder_fit, -fit)
    pruned, keep = model.prune(topk=7, inplace=False, return_mask=True)
    assert torch.equal(pruned.decoder_fit, -fit[keep])
    assert set(pruned.get_topk_weights(topk=5).tolist()) == set(range(5))
    pruned.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "importance.safetensors").exists()
    loaded = GradiendModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.decoder_fit, pruned.decoder_fit)
    assert torch.equal(loaded.get_topk_weights(topk=7), pruned.get_topk_weights(topk=7))
    # a model without a fitted decoder saves and loads without the file
    GradiendModel(5).save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / "importance.safetensors").exists()
    assert GradiendModel.from_pretrained(tmp_path / "plain").decoder_fit is None


def test_unknown_part_is_rejected():
    with pytest.raises(ValueError, match="unknown part"):
        GradiendModel(4).get_weight_importance("decoder-weights")
    with pytest.raises(ValueError, match="PostPruneConfig.part"):
        PostPruneConfig(part="decoder-weights")
    assert PostPruneConfig().part is None  # the model's default: snr, else decoder-fit


# --------------------------------------------------------------------------- snr
def test_snr_divides_the_fitted_decoder_by_the_neutral_rms(tmp_path):
    """|D| / √(F + ε) by hand; with equal |D| the dimension neutral texts move less ranks
    first; default part is snr once F is known; F follows prune, save and load."""
    model = _encoder_model()
    model.fit_importance(_batches())
    assert model.resolve_part(None) == "decoder-fit"
    with pytest.raises(ValueError, match="eval_neutral_data"):
        model.get_weight_importance("snr")
    fisher = torch.ones(model.input_dim)
    fisher[0] = 100.0  # dimension 0 has the largest |D| but every text moves it
    fisher[4] = 0.0  # no neutral text moves dimension 4
    model.set_neutral_scale(fisher)
    assert model.resolve_part(None) == "snr"
    f = fisher / fisher.mean()
    expected = model.decoder_fit.abs().sum(1) / torch.sqrt(f + 1e-6)
    torch.testing.assert_close(model.get_weight_importance(), expected)
    top = model.get_topk_weights(topk=5).tolist()
    assert top[0] == 4 and 0 not in top[:4]
    assert model.get_topk_weights("decoder-fit", 1).tolist() == [0]
    pruned = model.prune(topk=10, inplace=False)
    kept = pruned.indices
    torch.testing.assert_close(pruned.neutral_fisher, f[kept])
    pruned.save_pretrained(tmp_path / "m")
    loaded = GradiendModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.neutral_fisher, pruned.neutral_fisher)
    assert torch.equal(loaded.get_topk_weights(topk=5), pruned.get_topk_weights(topk=5))
    with pytest.raises(ValueError, match="entries"):
        model.set_neutral_scale(torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        model.set_neutral_scale(-torch.ones(model.input_dim))


# --------------------------------------------------------------------------- post-pruning re-fit
def test_refit_scale_by_hand():
    pruned = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64)
    assert refit_scale(3 * pruned, pruned) == pytest.approx(3.0)
    # through the origin: an offset between the classes is not turned into a bias
    assert refit_scale(3 * pruned + 0.5, pruned) == pytest.approx(3.0)
    assert (
        refit_scale(torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)) == 1.0
    )


def test_refit_keeps_the_bias_so_neutral_inputs_encode_as_before():
    """Asymmetric classes (pre-activations +6 and −2 on the kept dimensions, +1.75 from the
    dropped ones): a fitted bias (b_e ← 1.85) would move an input with nothing on the kept
    dimensions (a neutral text) away from tanh(b_e)."""
    model = _encoder_model()
    batches = _batches()
    sources = torch.stack([s for s, _ in batches])
    with torch.no_grad():
        model.b_e.fill_(0.1)
        model.W_e.zero_()
        model.W_e[0, :5] = 1.0
        model.W_e[0, 5:] = 0.05
        sources[::2, :5], sources[1::2, :5] = 1.2, -0.4
        sources[:, 5:] = 1.0  # the dropped dimensions add the same +1.75 to both classes
    model.fit_importance(list(zip(sources, [t for _, t in batches], strict=True)))
    neutral = torch.zeros(1, model.input_dim)
    before = float(model.encode(neutral)[0, 0])
    record = post_prune(
        model, PostPruneConfig(topk=5, part="encoder-weight"), list(zip(sources, sources))
    )
    assert record["refit"]["bias"] == pytest.approx(0.1)
    assert float(model.b_e[0]) == pytest.approx(0.1)
    assert float(model.encode(neutral[:, model.indices])[0, 0]) == pytest.approx(before)


def test_lifted_model_encodes_like_the_pruned_one():
    model = _encoder_model()
    pruned, keep = model.prune(topk=6, part="encoder-weight", inplace=False, return_mask=True)
    big = lifted(pruned, keep.nonzero().squeeze(1), model.input_dim)
    x = torch.randn(3, model.input_dim)
    torch.testing.assert_close(big.encode(x), pruned.encode(x[:, keep]))


def test_post_prune_rescales_the_encoder_towards_the_unpruned_encodings():
    batches = _batches()
    model = _encoder_model()
    with torch.no_grad():
        model.W_e[:, 5:] = 0.02  # dropped dimensions carry part of the pre-activation
    model.fit_importance(batches)
    sources = torch.stack([s for s, _ in batches])
    with torch.no_grad():
        h_full = model.encode(sources)[:, 0]

    def evaluate(m: GradiendModel) -> dict:
        with torch.no_grad():
            h = m.encode(sources)[:, 0]
        return {"correlation": 1.0, "mean_by_class": {"a": float(h[::2].mean())}}

    record = post_prune(model, PostPruneConfig(topk=5), batches, evaluate)
    assert record["dims_before"] == 40 and record["dims_after"] == 5
    assert record["part"] == "decoder-fit"
    assert record["refit"]["scale"] != pytest.approx(1.0)
    with torch.no_grad():
        h_after = model.encode(sources[:, model.indices])[:, 0]
    before, sliced, after = (record[k]["mean_by_class"]["a"] for k in ("before", "sliced", "after"))
    assert before == pytest.approx(float(h_full[::2].mean()))
    assert after == pytest.approx(float(h_after[::2].mean()), abs=1e-6)
    assert abs(after - before) < abs(sliced - before)


# --------------------------------------------------------------------------- localisation
def _localised_model() -> GradiendModel:
    """Two layers × (attn.q, mlp.down) of 4 scalars each plus a final norm of 2."""
    names = [
        "model.layers.0.attn.q.weight",
        "model.layers.0.mlp.down.weight",
        "model.layers.1.attn.q.weight",
        "model.layers.1.mlp.down.weight",
        "model.norm.weight",
    ]
    specs, offset = [], 100  # the embedding (100 scalars) is not selected
    for name in names:
        n = 2 if "norm" in name else 4
        specs.append(ParamSpec(name, (n,), offset))
        offset += n
    pmap = ParamMap(specs, offset)
    model = GradiendModel(pmap.numel, param_map=pmap)
    fit = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 4, 4, 0, 0, 1, 1], dtype=torch.float)
    model.decoder_fit = fit[:, None]
    return model


def test_split_name():
    assert split_name("model.layers.29.mlp.down_proj.weight") == (29, "mlp.down_proj")
    assert split_name("bert.encoder.layer.3.attention.self.query.bias") == (
        3,
        "attention.self.query",
    )
    assert split_name("transformer.h.11.attn.c_attn.weight") == (11, "attn.c_attn")
    assert split_name("model.norm.weight") == (None, "norm")


def test_importance_by_module_and_layer_by_hand():
    model = _localised_model()  # total mass 15; top-4 = the two 4s and two of the 1s
    table = model.importance_by_module(topk=2)
    assert list(table["param"][:2]) == [
        "model.layers.1.mlp.down.weight",
        "model.layers.0.mlp.down.weight",
    ]
    row = table.set_index("param").loc["model.layers.1.mlp.down.weight"]
    assert (row["layer"], row["module"], row["dims"]) == (1, "mlp.down", 4)
    assert row["mass_share"] == pytest.approx(8 / 15)
    assert row["topk_share"] == pytest.approx(1.0)  # both top-2 dims (the 4s) are there
    assert table["mass_share"].sum() == pytest.approx(1.0)
    modules = model.importance_by_module(topk=2, level="module").set_index("module")
    assert modules.loc["mlp.down", "mass_share"] == pytest.approx(12 / 15)
    assert modules.loc["norm", "mass_share"] == pytest.approx(2 / 15)
    layers = model.importance_by_layer(topk=2)
    in_stack = layers.dropna(subset=["layer"]).set_index("layer")["mass_share"]
    assert in_stack[0] == pytest.approx(4 / 15) and in_stack[1] == pytest.approx(9 / 15)
    assert layers[layers["layer"].isna()]["mass_share"].item() == pytest.approx(2 / 15)
    cells = model.importance_by_layer(topk=2, by_module_type=True)
    assert len(cells) == 5  # (0, attn.q), (0, mlp.down), (1, attn.q), (1, mlp.down), (NA, norm)


def test_importance_by_layer_of_a_pruned_model_counts_kept_dims_only():
    model = _localised_model()
    pruned = model.prune(topk=6, inplace=False)
    table = pruned.importance_by_module(topk=6).set_index("param")
    assert table["dims"].sum() == 6
    assert "model.layers.0.attn.q.weight" not in table.index  # all its dims were dropped


def test_importance_needs_a_param_map():
    with pytest.raises(ValueError, match="parameter map"):
        GradiendModel(4).importance_by_layer()


def test_importance_figure_of_several_runs(tmp_path):
    pytest.importorskip("matplotlib")
    from gradiend.visualizer.importance import plot_importance_by_layer

    a = _localised_model()
    b = a.prune(topk=6, inplace=False)
    out = plot_importance_by_layer({"a": a, "b": b}, topk=2, output_path=tmp_path, show=False)
    data = out["data"]
    assert data["layers"] == ["0", "1", "other"]
    assert data["modules"] == ["attn.q", "mlp.down", "norm"]
    assert data["matrices"]["a"][1][1] == pytest.approx(8 / 15)
    assert sum(map(sum, data["matrices"]["b"])) == pytest.approx(1.0)
    assert out["path"].endswith("importance_by_layer.png")
    single = plot_importance_by_layer(a, value="topk_share", topk=2, show=False)
    assert single["data"]["matrices"]["model 0"][1][1] == pytest.approx(1.0)

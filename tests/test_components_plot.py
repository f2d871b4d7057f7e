"""Component plots and per-component seed stitching of a split GRADIEND
(gradiend.visualizer.components, gradiend.model.stitch, gradiend.trainer.seed_stitch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gradiend import GradiendModel, GradiendSplit
from gradiend._io import read_json
from gradiend.lm.params import ParamMap, ParamSpec
from gradiend.model import stitch_components
from gradiend.run_layout import CONTEXT
from gradiend.trainer import stitch_seed_components
from gradiend.trainer.loop import Architecture

pytestmark = pytest.mark.usefixtures("one_thread")

BY_TENSOR = GradiendSplit.by_tensor()
PARAMS = ["*layer.1.output.dense.weight", "*layer.1.output.dense.bias"]


@pytest.fixture(scope="module")
def split_run(planted, tmp_path_factory, one_thread):
    """A he/she GRADIEND split by tensor, three seeds trained and kept."""
    from conftest import he_she_trainer

    return he_she_trainer(
        planted["mlm"], tmp_path_factory.mktemp("split"), params=PARAMS,
        gradiend_split=GradiendSplit.by_tensor(), gradiend_split_loss="size_weighted",
        learning_rate=1e-2, max_seeds=3, analyze_seed_stability=True, n_neutral=20,
    )  # fmt: skip


def _pmap() -> ParamMap:
    return ParamMap([ParamSpec("a", (6,), 0), ParamSpec("b", (4,), 6)], 10)


def _build(seed: int, pmap: ParamMap | None = None, split: GradiendSplit | None = BY_TENSOR):
    arch = Architecture(split=None if split is None else split.to_json(), split_loss="mean")
    model = arch.build(pmap or _pmap(), None, {}, seed)
    with torch.no_grad():  # distinct decoder biases, so a wrong slice shows
        model.b_d.copy_(torch.randn(model.input_dim, generator=torch.Generator().manual_seed(seed)))
    return model


# --------------------------------------------------------------------------- the plot
def test_the_plot_holds_evaluate_encoders_component_correlations(split_run):
    result = split_run.evaluate_encoder(return_df=True)
    plot = split_run.plot_components(result)
    data = plot["data"]
    assert Path(plot["path"]).is_file() and Path(plot["path"]).stem == "encoder_components"
    assert data["components"] == split_run.get_model().gradiend.component_names
    for name, comp in result["components"].items():
        assert data["correlation"][name] == comp["correlation"]
        assert data["abs_correlation"][name] == abs(comp["correlation"])
        assert data["converged"][name] is comp["converged"]
    df = result["encoder_df"]
    he = df[(df["type"] == "training") & (df["factual_class"] == "he")]
    for name in data["components"]:  # the distributions are the evaluated rows' encodings
        assert math.isclose(
            data["mean"][name]["he"], float(he[f"encoded:{name}"].astype(float).mean())
        )
    assert data["groups"][:2] == ["he", "she"] and any(
        g.startswith("neutral") for g in data["groups"]
    )


def test_evaluate_encoder_with_plot_writes_the_component_figure(split_run):
    result = split_run.evaluate_encoder(plot=True)
    assert Path(result["components_plot"]["path"]).is_file()
    assert result["components_plot"]["data"]["correlation"] == {
        n: c["correlation"] for n, c in result["components"].items()
    }


def test_an_unsplit_model_is_refused_with_the_argument_to_use(planted, tmp_path):
    from conftest import he_she_trainer

    trainer = he_she_trainer(planted["mlm"], tmp_path, params=PARAMS, n_neutral=None)
    with pytest.raises(ValueError, match=r"gradiend_split=GradiendSplit\.by_tensor\(\)"):
        trainer.plot_components()
    assert "components_plot" not in trainer.evaluate_encoder(plot=True, allow_unconverged=True)
    with pytest.raises(ValueError, match="not split"):
        trainer.stitch_seed_components()


# --------------------------------------------------------------------------- stitching
def test_stitched_components_encode_like_their_source_models(tmp_path):
    models = [_build(seed) for seed in (0, 1, 2)]
    x = torch.randn(5, 10)
    stitched = stitch_components(models, {"a": 2, "b": 0})
    enc = stitched.encode_components(x)
    assert torch.equal(enc["a"], models[2].encode_components(x)["a"])
    assert torch.equal(enc["b"], models[0].encode_components(x)["b"])
    out = stitched.decode(1.0)  # each component's decoder slice and bias from its source
    assert torch.allclose(out[:6], models[2].decode(1.0)[:6])
    assert torch.allclose(out[6:], models[0].decode(1.0)[6:])
    assert torch.equal(stitched.b_d[:6], models[2].b_d[:6])
    assert stitched.metadata["stitched_components"] == {"a": 2, "b": 0}
    flipped = stitch_components(models, [1, 1], flip=["b"])
    assert torch.equal(flipped.encode_components(x)["b"], -models[1].encode_components(x)["b"])
    assert torch.allclose(flipped(x)[:, 6:], models[1](x)[:, 6:], atol=1e-6)  # same reconstruction
    again = GradiendModel.from_pretrained(stitched.save_pretrained(tmp_path / "m"))
    assert torch.equal(again.encode(x), stitched.encode(x))


def test_mismatched_models_are_refused():
    base = _build(0)
    other_map = ParamMap([ParamSpec("a", (5,), 0), ParamSpec("b", (5,), 5)], 10)
    with pytest.raises(ValueError, match="parameter map"):
        stitch_components([base, _build(1, other_map)], [0, 1])
    with pytest.raises(ValueError, match="split"):
        stitch_components([base, _build(1, split=GradiendSplit.single())], [0, 1])
    with pytest.raises(ValueError, match="not split"):
        stitch_components([_build(0, split=None), _build(1, split=None)], [0])
    pruned = ParamMap([ParamSpec("a", (6,), 0), ParamSpec("b", (5,), 6)], 11)
    with pytest.raises(ValueError, match="shape"):
        stitch_components([base, _build(1, pruned)], [0, 1])
    with pytest.raises(ValueError, match="missing"):
        stitch_components([base, _build(1)], {"a": 1})
    with pytest.raises(ValueError, match="outside 0..1"):
        stitch_components([base, _build(1)], [0, 2])


def test_seed_stitching_picks_the_best_validation_r_per_component(split_run, tmp_path):
    seed_dirs = split_run.layout.seed_runs()
    assert len(seed_dirs) == 3
    records = [read_json(d / "training.json")["record"] for d in seed_dirs]
    result = split_run.stitch_seed_components(output_dir=tmp_path / "stitched")
    names = split_run.get_model().gradiend.component_names
    assert list(result.components) == names
    x = torch.randn(4, result.gradiend.input_dim)
    for name in names:
        rs = [rec["components"][name]["correlation"] for rec in records]
        best = int(np.argmax(np.abs(rs)))
        pick = result.components[name]
        assert pick["seed"] == records[best]["seed"] and pick["correlation"] == rs[best]
        source = GradiendModel.from_pretrained(seed_dirs[best])
        sign = -1.0 if rs[best] < 0 else 1.0
        assert pick["flipped"] is (rs[best] < 0)
        want = sign * source.encode_components(x)[name]
        assert torch.equal(result.gradiend.encode_components(x)[name], want)
    saved = read_json(result.path / "stitched_components.json")
    assert saved["components"] == result.components
    again = GradiendModel.from_pretrained(result.path)
    assert torch.equal(again.encode(x), result.gradiend.encode(x))
    assert (result.path / CONTEXT).is_file()  # the run context beside it
    assert stitch_seed_components(split_run.layout).picked_seeds == result.picked_seeds


def test_seed_stitching_needs_two_seed_runs(planted, tmp_path):
    from conftest import he_she_trainer

    trainer = he_she_trainer(
        planted["mlm"], tmp_path, params=PARAMS, gradiend_split=GradiendSplit.by_tensor(),
        learning_rate=1e-2, n_neutral=None,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"at least two saved seed runs.*max_seeds"):
        trainer.stitch_seed_components()

"""One comparison value: ``compare`` loads each run once, its numbers are those of the public
functions, and the figures drawn from it are the figures drawn from the runs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from layout import modules

from gradiend.evaluator.compare import (
    RunComparison,
    compare,
    compute_similarity_matrix,
    topk_sets,
    venn_region_counts,
)
from gradiend.model.gradiend import GradiendModel
from gradiend.model.runs import label_runs, load_gradiend
from gradiend.pipeline import compare_runs


def _model(w_d: list[float], w_e: list[float], indices: list[int] | None = None) -> GradiendModel:
    index = None if indices is None else torch.tensor(indices)
    model = GradiendModel(len(w_d), indices=index)
    with torch.no_grad():
        model.W_d[:, 0] = torch.tensor(w_d)
        model.W_e[0] = torch.tensor(w_e)
    return model


def make_models() -> dict[str, GradiendModel]:
    """Three runs on one base-global space of 8, one pruned with unsorted indices."""
    return {
        "A": _model([8, -7, 6, 5, -4, 3, 2, 1], [1, 0, 2, 0, 0, 0, 0, 1]),
        "B": _model([0.1, 0.2, 9, -8, 7, 0.3, 0.4, 6], [5, 5, 1, 1, 0, 5, 5, 0]),
        "C": _model([5, 4, 1, 3], [-1, -2, 3, 0], indices=[7, 0, 5, 2]),
    }


@pytest.fixture
def run_dirs(tmp_path) -> list[Path]:
    paths = []
    for label, model in make_models().items():
        model.save_pretrained(tmp_path / label / "model")
        paths.append(tmp_path / label)
    return paths


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """Every folder ``GradiendModel.from_pretrained`` reads, in order."""
    original = GradiendModel.from_pretrained
    seen: list[Path] = []

    def counting(path, *args, **kwargs):
        seen.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(GradiendModel, "from_pretrained", staticmethod(counting))
    return seen


# --------------------------------------------------------------------------- (a) loaded once
def test_compare_loads_each_run_once_for_frame_heatmap_and_venn(run_dirs, loads):
    pytest.importorskip("matplotlib")
    from gradiend.visualizer import plot_topk_overlap_heatmap, plot_topk_overlap_venn

    found = compare(run_dirs, "topk_overlap", topk=3)
    heat = plot_topk_overlap_heatmap(found, show=False)
    venn = plot_topk_overlap_venn(found, show=False)
    assert sorted(p.parent.name for p in loads) == ["A", "B", "C"]
    assert heat["data"]["labels"] == venn["data"]["labels"] == ["A", "B", "C"]


@pytest.mark.parametrize("measure", ["topk_overlap", "cosine"])
def test_compare_runs_loads_each_run_once(run_dirs, loads, tmp_path, measure):
    pytest.importorskip("matplotlib")
    out = compare_runs(run_dirs, topk=3, measure=measure, output_dir=tmp_path / "cmp")
    assert len(loads) == 3 and len(set(loads)) == 3
    assert all(Path(out[k]).is_file() for k in ("csv", "heatmap", "venn"))
    assert out["labels"] == ["A", "B", "C"]


# --------------------------------------------------------------------------- (b) same numbers
@pytest.mark.parametrize("value", ["intersection", "intersection_frac"])
def test_topk_comparison_is_the_public_numbers(value):
    models = make_models()
    found = compare(models, "topk_overlap", topk=3, value=value)
    expected = compute_similarity_matrix(models, "topk_overlap", topk=3, value=value)
    assert found.frame.equals(expected) and found.frame.attrs == expected.attrs
    assert found.topk_sets == topk_sets(models, topk=3)
    assert found.regions == venn_region_counts(found.topk_sets)
    assert found.labels == ("A", "B", "C") and found.part == expected.attrs["part"]
    other = "intersection_frac" if value == "intersection" else "intersection"
    again = compute_similarity_matrix(models, "topk_overlap", topk=3, value=other)
    assert found.overlap(other).equals(again)


@pytest.mark.parametrize("measure", ["cosine", "cosine_signed", "spearman", "mass_overlap"])
def test_vector_comparison_is_the_public_numbers(measure):
    models = make_models()
    full = compare(models, measure, topk=3)
    assert full.frame.equals(compute_similarity_matrix(models, measure))
    restricted = compare(models, measure, topk=3, vector_topk=2)
    assert restricted.frame.equals(compute_similarity_matrix(models, measure, topk=2))
    # the top-k sets rank by each run's default, not the measure's encoder-weight
    assert full.topk_sets == topk_sets(models, topk=3)
    assert full.regions == venn_region_counts(full.topk_sets)
    assert full.overlap().equals(
        compute_similarity_matrix(models, "topk_overlap", topk=3, value="intersection")
    )


def test_seed_groups_have_a_frame_but_no_sets():
    m = make_models()
    found = compare({"AB": [m["A"], m["B"]], "C": m["C"]}, "cosine_signed", topk=3)
    expected = compute_similarity_matrix({"AB": [m["A"], m["B"]], "C": m["C"]}, "cosine_signed")
    assert found.frame.equals(expected)
    assert found.topk_sets is None and found.regions is None
    with pytest.raises(ValueError, match="no top-k sets"):
        found.overlap()


def test_comparison_is_a_frozen_value():
    found = compare(make_models(), topk=3)
    assert isinstance(found, RunComparison)
    with pytest.raises(AttributeError):
        found.topk = 5


# --------------------------------------------------------------------------- (c) same figures
def _pixels(figure) -> np.ndarray:
    buf = io.BytesIO()
    figure.savefig(buf, format="raw")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def test_figures_from_a_comparison_equal_figures_from_models(run_dirs):
    pytest.importorskip("matplotlib")
    from gradiend.visualizer import (
        plot_similarity_heatmap,
        plot_topk_overlap_heatmap,
        plot_topk_overlap_venn,
    )

    models = make_models()
    found = compare(run_dirs, "topk_overlap", topk=3, value="intersection")
    pairs = [
        (plot_topk_overlap_heatmap(found, show=False), plot_topk_overlap_heatmap(models, 3)),
        (plot_topk_overlap_venn(found, show=False), plot_topk_overlap_venn(models, 3)),
        (plot_similarity_heatmap(found, show=False), plot_similarity_heatmap(models, "topk_overlap",
                                                                             topk=3, value="intersection")),
    ]  # fmt: skip
    for drawn, expected in pairs:
        assert drawn["data"] == expected["data"]
        np.testing.assert_array_equal(_pixels(drawn["figure"]), _pixels(expected["figure"]))


def test_similarity_figure_of_a_vector_comparison(run_dirs):
    pytest.importorskip("matplotlib")
    from gradiend.visualizer import plot_similarity_heatmap

    found = compare(run_dirs, "cosine_signed", topk=3)
    drawn = plot_similarity_heatmap(found, show=False)
    expected = plot_similarity_heatmap(make_models(), "cosine_signed", show=False)
    assert drawn["data"] == expected["data"]
    np.testing.assert_array_equal(_pixels(drawn["figure"]), _pixels(expected["figure"]))


def test_importance_figure_from_folders_equals_from_models(tmp_path):
    pytest.importorskip("matplotlib")
    from test_importance import _localised_model

    from gradiend.visualizer import plot_importance_by_layer
    from gradiend.visualizer.importance import plot_importance_by_layer as draw

    model = _localised_model()
    model.save_pretrained(tmp_path / "run" / "model")
    from_folder = plot_importance_by_layer([tmp_path / "run"], topk=2, show=False)
    from_model = draw({"run": model}, topk=2, show=False)
    assert from_folder["data"] == from_model["data"]
    with pytest.raises(TypeError, match="plot_importance_by_layer"):
        draw([tmp_path / "run"], show=False)  # the drawing module does not load folders


# --------------------------------------------------------------------------- runs and labels
def test_labels_of_runs(tmp_path):
    assert label_runs({1: "x"}) == {"1": "x"}
    assert list(label_runs([tmp_path / "a", tmp_path / "b" / "model"])) == ["a", "b"]
    repeated = [tmp_path / "x" / "seed_0", tmp_path / "y" / "seed_0"]
    assert list(label_runs(repeated)) == ["x/seed_0", "y/seed_0"]
    m = make_models()
    assert list(label_runs([m["A"], m["B"]])) == ["model 0", "model 1"]
    with pytest.raises(ValueError, match="no models"):
        label_runs([])


def test_load_gradiend_finds_the_model_folder(run_dirs):
    assert load_gradiend(run_dirs[2]).global_indices().tolist() == [7, 0, 5, 2]
    with pytest.raises(FileNotFoundError, match="no GRADIEND model"):
        load_gradiend(run_dirs[0].parent)


# --------------------------------------------------------------------------- layout
def test_visualizer_modules_draw_values_only():
    allowed = {"gradiend.visualizer._common", "gradiend.run_layout"}
    mods = modules()
    for name, mod in mods.items():
        if name.startswith("gradiend.visualizer.") and name != "gradiend.visualizer":
            assert mod.imports <= allowed, (name, mod.imports - allowed)
    for name in ("gradiend.evaluator.compare", "gradiend.evaluator.comparable"):
        assert not mods[name].local_imports, name
    assert "gradiend.evaluator.compare" not in mods["gradiend.evaluator.comparable"].imports

"""Figures: the numbers each plot returns, the PNG it writes, and the missing-extra error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402

from gradiend.model.gradiend import GradiendModel  # noqa: E402
from gradiend.visualizer import (  # noqa: E402
    plot_encoder_distributions,
    plot_probability_shifts,
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
    plot_training_convergence,
)
from gradiend.visualizer._common import resolve_output  # noqa: E402


def _png_shape(path: str) -> tuple[int, int]:
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.size > 0
    assert image[..., :3].std() > 0  # something was drawn
    return image.shape[0], image.shape[1]


# --------------------------------------------------------------------------- fixtures
def training_stats() -> dict:
    evals = []
    for step, (m_a, m_b, r) in enumerate([(0.1, -0.05, 0.2), (0.6, -0.5, 0.8), (0.9, -0.85, 0.95)]):
        evals.append(
            {
                "step": step * 10,
                "correlation": r,
                "mean_by_class": {"he": m_a, "she": m_b},
                "min_by_class": {"he": m_a - 0.3, "she": m_b - 0.2},
                "max_by_class": {"he": m_a + 0.1, "she": m_b + 0.4},
                "q1_by_class": {"he": m_a - 0.1, "she": m_b - 0.1},
                "q3_by_class": {"he": m_a + 0.05, "she": m_b + 0.1},
                "std_by_class": {"he": 0.2, "she": 0.4},
                "n_by_class": {"he": 16, "she": 4},
            }
        )
    losses = [{"step": s, "loss": 1.0 / (s + 1)} for s in range(21)]
    return {"evals": evals, "losses": losses, "best_step": 20}


def encoder_df() -> pd.DataFrame:
    rows = [
        (0.9, 1, "training", "he"),
        (0.7, 1, "training", "he"),
        (0.8, 1, "training", "he"),
        (-0.6, -1, "training", "she"),
        (-1.0, -1, "training", "she"),
        (0.2, 0, "training", "it"),
        (0.0, 0, "training", "it"),
        (0.05, 0, "neutral_training_masked", None),
        (-0.05, 0, "neutral_training_masked", None),
        (0.1, 0, "neutral_dataset", np.nan),
    ]
    return pd.DataFrame(rows, columns=["encoded", "label", "type", "factual_class"])


def decoder_results() -> dict:
    grid = [
        {
            "id": {"feature_factor": 0, "learning_rate": 0},
            "probs": {"he": 0.3, "she": 0.2},
            "lms": {"lms": 0.5},
        }
    ]
    for ff in (1.0, -1.0):
        for lr in (0.01, 0.1, 1.0):
            shift = ff * lr * 0.2
            grid.append(
                {
                    "id": {"feature_factor": ff, "learning_rate": lr},
                    "probs": {"he": 0.3 + shift, "she": 0.2 - shift},
                    "lms": {"lms": 0.5 - 0.02 * lr},
                }
            )
    summary = {
        "value": 0.32,
        "feature_factor": 1.0,
        "learning_rate": 0.1,
        "lms": 0.498,
        "base_lms": 0.5,
        "base_value": 0.3,
        "passed": True,
    }
    return {"he": summary, "grid": grid}


def gradiend(indices: list[int], w_d: list[float]) -> GradiendModel:
    model = GradiendModel(len(indices), indices=torch.tensor(indices))
    with torch.no_grad():
        model.W_d[:, 0] = torch.tensor(w_d)
    return model


def runs(n: int) -> dict[str, GradiendModel]:
    rng = np.random.default_rng(n)
    return {
        f"run{i}": gradiend(
            sorted(rng.choice(40, 20, replace=False).tolist()), rng.random(20).tolist()
        )
        for i in range(n)
    }


# --------------------------------------------------------------------------- convergence
def test_convergence_numbers_and_png(tmp_path):
    out = plot_training_convergence(
        training_stats(), output=tmp_path / "conv", show=False, class_spread="ci", dpi=50
    )
    data = out["data"]
    assert out["path"] == str(tmp_path / "conv.png")
    assert data["steps"] == [0, 10, 20]
    assert data["best_step"] == 20
    assert data["mean_by_class"]["he"] == [0.1, 0.6, 0.9]
    assert data["correlation"] == [0.2, 0.8, 0.95]
    half_he, half_she = 1.959963984540054 * 0.2 / 4, 1.959963984540054 * 0.4 / 2
    assert data["band_by_class"]["he"][2] == pytest.approx((0.9 - half_he, 0.9 + half_he))
    assert data["band_by_class"]["she"][0] == pytest.approx((-0.05 - half_she, -0.05 + half_she))
    assert len(data["losses"]["loss"]) == 21
    assert _png_shape(out["path"]) == (450, 400)  # 8 x 9 in at 50 dpi


@pytest.mark.parametrize(
    "spread, expected", [("minmax", (0.3, 0.7)), ("iqr", (0.5, 0.65)), (None, None)]
)
def test_convergence_bands(spread, expected):
    data = plot_training_convergence(training_stats(), show=False, class_spread=spread)["data"]
    if expected is None:
        assert data["band_by_class"] == {}
    else:
        assert data["band_by_class"]["he"][1] == pytest.approx(expected)


def test_convergence_reads_training_json(tmp_path):
    import json

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "training.json").write_text(
        json.dumps({"training_stats": training_stats()})
    )
    out = plot_training_convergence(tmp_path, show=False, label_name_mapping={"he": "masc."})
    assert out["path"] is None
    assert out["data"]["steps"] == [0, 10, 20]
    legend = [t.get_text() for t in out["figure"].axes[1].get_legend().get_texts()]
    assert legend == ["masc.", "she"]


def test_convergence_shows_the_post_pruned_models_figures(tmp_path):
    stats = training_stats()
    stats["post_prune"] = {
        "dims_after": 500,
        "before": {"correlation": 0.95, "mean_by_class": {"he": 0.9, "she": -0.85}},
        "sliced": {"correlation": 0.93, "mean_by_class": {"he": 0.6, "she": -0.55}},
        "after": {"correlation": 0.94, "mean_by_class": {"he": 0.88, "she": -0.86}},
    }
    out = plot_training_convergence(stats, output=tmp_path, show=False, dpi=50)
    post = out["data"]["post_prune"]
    assert post["x"] > 20 and post["dims"] == 500
    assert post["sliced"]["mean_by_class"] == {"he": 0.6, "she": -0.55}
    assert post["after"] == {"correlation": 0.94, "mean_by_class": {"he": 0.88, "she": -0.86}}
    ax_mean, ax_corr = out["figure"].axes[1], out["figure"].axes[2]
    drawn = {tuple(o[0]) for c in ax_mean.collections for o in [c.get_offsets()] if len(o)}
    assert (post["x"], 0.88) in drawn and (post["x"], -0.55) in drawn
    legend = [t.get_text() for t in ax_corr.get_legend().get_texts()]
    assert "post-pruned, sliced" in legend and "post-pruned, re-fitted, 500 dims" in legend
    assert _png_shape(out["path"]) == (450, 400)
    assert plot_training_convergence(training_stats(), show=False)["data"]["post_prune"] is None


# --------------------------------------------------------------------------- encoder
def test_encoder_groups_and_stats(tmp_path):
    out = plot_encoder_distributions(
        encoder_df(), output=tmp_path, show=False, label_name_mapping={"he": "He (masc.)"}
    )
    data = out["data"]
    assert out["path"] == str(tmp_path / "encoder_distributions.png")
    assert data["target_classes"] == ["he", "she"]
    assert data["groups"] == ["he", "she", "it", "neutral_training_masked", "neutral_dataset"]
    assert data["display_names"][0] == "He (masc.)"
    assert data["n"] == {
        "he": 3,
        "she": 2,
        "it": 2,
        "neutral_training_masked": 2,
        "neutral_dataset": 1,
    }
    assert data["mean"]["he"] == pytest.approx(0.8)
    assert data["median"]["she"] == pytest.approx(-0.8)
    assert data["q1"]["he"] == pytest.approx(0.75)
    assert data["max"]["neutral_dataset"] == pytest.approx(0.1)
    width = max(6.0, 1.3 * 5 + 2.0)
    assert _png_shape(out["path"]) == (500, round(width * 100))


def test_encoder_only_target_and_neutral():
    out = plot_encoder_distributions(
        encoder_df(), show=False, target_classes=["she", "he"], only_target_and_neutral=True
    )
    assert out["data"]["groups"] == ["she", "he", "neutral_training_masked", "neutral_dataset"]


def test_encoder_rejects_missing_columns():
    with pytest.raises(ValueError, match="encoded"):
        plot_encoder_distributions(pd.DataFrame({"label": [1]}), show=False)


# --------------------------------------------------------------------------- decoder
def test_probability_shift_numbers_and_png(tmp_path):
    out = plot_probability_shifts(decoder_results(), output=tmp_path / "shift.png", show=False)
    data = out["data"]
    assert data["classes"] == ["he", "she"]
    assert data["feature_factors"] == [1.0, -1.0]
    assert data["learning_rates"] == [0.01, 0.1, 1.0]
    assert data["probs"]["he"][1.0] == pytest.approx([0.302, 0.32, 0.5])
    assert data["probs"]["she"][-1.0] == pytest.approx([0.202, 0.22, 0.4])
    assert data["lms"][-1.0] == pytest.approx([0.4998, 0.498, 0.48])
    assert data["base_probs"] == {"he": 0.3, "she": 0.2}
    assert data["base_lms"] == 0.5
    assert data["lms_threshold"] == pytest.approx(0.495)
    sel = data["selected"]["he"]
    assert (sel["feature_factor"], sel["learning_rate"]) == (1.0, 0.1)
    assert sel["prob"] == pytest.approx(0.32) and sel["lms"] == pytest.approx(0.498)
    assert _png_shape(out["path"]) == (400, 1350)  # 3 panels of 4.5 x 4 in at 100 dpi


def test_probability_shift_target_filter_and_ratio():
    data = plot_probability_shifts(
        decoder_results(), show=False, target_class="she", lms_ratio=0.9
    )["data"]
    assert data["selected"] == {}
    assert data["lms_threshold"] == pytest.approx(0.45)


# --------------------------------------------------------------------------- top-k
def test_heatmap_numbers_and_png(tmp_path):
    models = {
        "A": gradiend([0, 1, 2, 3], [4, 3, 2, 1]),
        "B": gradiend([2, 5, 0, 9], [4, 3, 2, 1]),
        "C": gradiend([9, 8, 7, 6], [4, 3, 2, 1]),
    }
    out = plot_topk_overlap_heatmap(models, topk=3, output_path=tmp_path / "heat", show=False)
    # top-3: A {0,1,2}, B {2,5,0}, C {9,8,7}
    assert out["data"]["labels"] == ["A", "B", "C"]
    assert out["data"]["matrix"] == [[3, 2, 0], [2, 3, 0], [0, 0, 3]]
    assert _png_shape(out["path"]) == (460, 560)  # (4.6 + 1) x 4.6 in
    frac = plot_topk_overlap_heatmap(models, topk=3, value="intersection_frac", show=False)
    assert frac["data"]["matrix"][0][1] == pytest.approx(2 / 3)


@pytest.mark.parametrize("n", [2, 3])
def test_venn_two_and_three(tmp_path, n):
    models = runs(n)
    out = plot_topk_overlap_venn(models, topk=10, output_path=tmp_path / "venn.png", show=False)
    regions = out["data"]["regions"]
    assert len(regions) == 2**n - 1
    assert all(out["data"]["set_sizes"][label] == 10 for label in models)
    for label in models:
        assert sum(c for key, c in regions.items() if label in key) == 10
    assert _png_shape(out["path"]) == (500, 600)


def test_venn_two_by_hand():
    models = {"A": gradiend([0, 1, 2, 3], [4, 3, 2, 1]), "B": gradiend([2, 5, 0, 9], [4, 3, 2, 1])}
    out = plot_topk_overlap_venn(models, topk=3, show=False)
    regions = out["data"]["regions"]
    assert regions == {("A",): 1, ("B",): 1, ("A", "B"): 2}
    drawn = sorted(t.get_text() for t in out["figure"].axes[0].texts)
    assert drawn == ["1", "1", "2", "A", "B"]  # the region numbers drawn match the data


@pytest.mark.parametrize("n", [4, 6])
def test_upset_for_four_to_six(tmp_path, n):
    out = plot_topk_overlap_venn(runs(n), topk=10, output_path=tmp_path / "up", show=False)
    assert len(out["data"]["regions"]) == 2**n - 1
    assert _png_shape(out["path"]) == (600, 1000)


def test_venn_rejects_seven_runs():
    with pytest.raises(ValueError, match="2 to 6"):
        plot_topk_overlap_venn(runs(7), topk=5, show=False)


def test_heatmap_from_run_folders(tmp_path):
    models = runs(3)
    paths = {}
    for label, model in models.items():
        model.save_pretrained(tmp_path / label / "model")
        paths[label] = tmp_path / label
    from_paths = plot_topk_overlap_heatmap(paths, topk=5, show=False)["data"]["matrix"]
    in_memory = plot_topk_overlap_heatmap(models, topk=5, show=False)["data"]["matrix"]
    assert from_paths == in_memory


# --------------------------------------------------------------------------- conventions
def test_pdf_output(tmp_path):
    out = plot_training_convergence(
        training_stats(), output=tmp_path / "c", img_format="pdf", show=False
    )
    assert out["path"].endswith("c.pdf")
    assert open(out["path"], "rb").read(5) == b"%PDF-"


def test_resolve_output_rules(tmp_path):
    assert resolve_output(None, "x", "png") is None
    assert resolve_output(tmp_path, "x", "pdf") == tmp_path / "x.pdf"
    assert resolve_output(tmp_path / "a.pdf", "x", "png") == tmp_path / "a.pdf"
    assert resolve_output(tmp_path / "run.v2", "x", "png") == tmp_path / "run.v2.png"
    with pytest.raises(ValueError, match="img_format"):
        resolve_output(tmp_path / "a", "x", "jpg")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install gradiend\[plot\]"):
        plot_training_convergence(training_stats(), show=False)
    with pytest.raises(ImportError, match=r"pip install gradiend\[plot\]"):
        plot_topk_overlap_heatmap(runs(2), topk=3, show=False)


def test_missing_matplotlib_venn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib_venn", None)
    with pytest.raises(ImportError, match=r"gradiend\[plot\]"):
        plot_topk_overlap_venn(runs(2), topk=3, show=False)


def test_import_has_no_matplotlib_side_effect():
    code = "import sys, gradiend.visualizer, gradiend.evaluator.compare; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_headless_run_uses_agg():
    code = (
        "import os; os.environ.pop('DISPLAY', None); os.environ.pop('MPLBACKEND', None);"
        "from gradiend.visualizer._common import import_pyplot;"
        "print(import_pyplot(None).get_backend().lower())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "agg"


def test_heatmap_colour_scale_uses_off_diagonal_counts():
    models = {"A": gradiend([0, 1, 2, 3], [4, 3, 2, 1]), "B": gradiend([2, 5, 0, 9], [4, 3, 2, 1])}
    fig = plot_topk_overlap_heatmap(models, topk=3, show=False)["figure"]
    assert fig.axes[0].images[0].get_clim() == (0.0, 2.0)


def test_probability_shift_without_base_entry_uses_summary_base_lms():
    results = decoder_results()
    results["grid"] = results["grid"][1:]
    data = plot_probability_shifts(results, show=False)["data"]
    assert data["base_probs"] == {}
    assert data["base_lms"] == 0.5 and data["lms_threshold"] == pytest.approx(0.495)


def test_convergence_with_no_evals_still_draws():
    out = plot_training_convergence({"evals": [], "losses": [{"step": 1, "loss": 2.0}]}, show=False)
    assert out["data"]["steps"] == [] and out["data"]["best_step"] is None


def test_similarity_heatmap_signed_and_from_frame(tmp_path):
    from gradiend.evaluator.compare import compute_similarity_matrix

    models = runs(3)
    out = plot_similarity_heatmap(models, measure="cosine_signed", output_path=tmp_path, show=False)
    expected = compute_similarity_matrix(models, measure="cosine_signed")
    np.testing.assert_allclose(out["data"]["matrix"], expected.to_numpy())
    assert out["data"]["part"] == "encoder-weight"
    assert out["figure"].axes[0].images[0].get_clim() == (-1.0, 1.0)
    assert out["path"] == str(tmp_path / "similarity_cosine_signed.png")
    assert _png_shape(out["path"]) == (460, 560)
    frame = compute_similarity_matrix(models, measure="mass_overlap")
    again = plot_similarity_heatmap(frame, show=False)
    assert again["data"]["measure"] == "mass_overlap"
    assert again["figure"].axes[0].images[0].get_clim() == (0.0, 1.0)


# --------------------------------------------------------------------------- one colour per class
def test_one_colour_per_class_in_every_figure():
    """The classes are given in the order opposite to the stats' and the grid's, so a colour
    by position would differ between the figures; the colours drawn are compared too."""
    from matplotlib.colors import to_hex

    targets = ["she", "he"]
    conv = plot_training_convergence(training_stats(), show=False, target_classes=targets)
    enc = plot_encoder_distributions(encoder_df(), show=False, target_classes=targets)
    dec = plot_probability_shifts(decoder_results(), show=False, target_classes=targets)
    for cls in ("he", "she"):
        colours = {conv["data"]["colours"][cls], enc["data"]["colours"][cls]}
        assert colours == {dec["data"]["colours"][cls]}, cls
    assert conv["data"]["colours"]["she"] != conv["data"]["colours"]["he"]
    assert enc["data"]["colours"]["it"] not in (enc["data"]["colours"]["he"], "#cfcfcf")
    # what was drawn: the mean line, the violin body and the class panel's title
    mean_ax = conv["figure"].axes[1]
    drawn_line = {ln.get_label(): to_hex(ln.get_color()) for ln in mean_ax.get_lines()}
    assert drawn_line["she"] == conv["data"]["colours"]["she"]
    violins = [c for c in enc["figure"].axes[0].collections if c.get_facecolor().size]
    assert to_hex(violins[0].get_facecolor()[0], keep_alpha=False) == enc["data"]["colours"]["she"]
    titles = {ax.get_title(): to_hex(ax.title.get_color()) for ax in dec["figure"].axes}
    assert titles["Class she"] == dec["data"]["colours"]["she"]
    # the feature-factor lines do not reuse a class colour
    ff_lines = [ln for ln in dec["figure"].axes[0].get_lines() if ln.get_label().startswith("ff")]
    assert ff_lines and not {to_hex(ln.get_color()) for ln in ff_lines} & {"#1f77b4", "#d62728"}


def test_convergence_colours_from_the_recorded_target_classes():
    stats = {**training_stats(), "target_classes": ["she", "he"]}
    colours = plot_training_convergence(stats, show=False)["data"]["colours"]
    assert colours == {"he": "#d62728", "she": "#1f77b4"}


def test_convergence_loss_panel_log_scale_and_moving_average():
    out = plot_training_convergence(training_stats(), show=False)
    losses = out["data"]["losses"]
    assert out["figure"].axes[0].get_yscale() == "log"
    # window = 21 // 10 = 2 trailing values
    assert losses["smoothed"][0] == pytest.approx(1.0)
    assert losses["smoothed"][5] == pytest.approx((1 / 5 + 1 / 6) / 2)

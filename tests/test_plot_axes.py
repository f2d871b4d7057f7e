"""``ax=`` on every figure: each plot function draws into the caller's Axes, returns the caller's
figure, leaves it open, saves only where ``output`` says, and refuses a wrong ``ax``."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from test_comparison_value import make_models  # noqa: E402
from test_visualizer import decoder_results, encoder_df, training_stats  # noqa: E402

from gradiend.evaluator import cross_figures, figures  # noqa: E402
from gradiend.trainer import trainer_figures  # noqa: E402
from gradiend.visualizer.convergence import plot_training_convergence  # noqa: E402
from gradiend.visualizer.cross_heatmaps import plot_comparison_heatmap  # noqa: E402
from gradiend.visualizer.decoder import plot_probability_shifts  # noqa: E402
from gradiend.visualizer.encoder import plot_encoder_distributions  # noqa: E402
from gradiend.visualizer.importance import plot_importance_by_layer  # noqa: E402
from gradiend.visualizer.seeds import (  # noqa: E402
    plot_dispersion_heatmap,
    plot_encoder_by_target,
    plot_seed_convergence,
)
from gradiend.visualizer.style import PlotStyleConfig, new_axes  # noqa: E402
from gradiend.visualizer.topk import (  # noqa: E402
    draw_similarity_heatmap,
    draw_topk_heatmap,
    draw_topk_venn,
)


def drawn(ax) -> int:
    return len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.images)


def importance_table() -> pd.DataFrame:
    return pd.DataFrame({
        "layer": ["0", "0", "1", "other"], "module": ["attn", "mlp", "mlp", "embed"],
        "mass_share": [0.5, 0.2, 0.25, 0.05], "topk_share": [0.4, 0.3, 0.2, 0.1],
    })  # fmt: skip


def by_seed() -> pd.DataFrame:
    rows = [(s, v * sign, cls, cls, "training") for s in (0, 1) for v in (0.6, 0.9)
            for sign, cls in ((1, "he"), (-1, "she"))]  # fmt: skip
    return pd.DataFrame(rows, columns=["seed", "encoded", "transition", "factual_class", "type"])


def frame(n: int = 3) -> pd.DataFrame:
    labels = [f"run{i}" for i in range(n)]
    values = [[1.0 if i == j else 0.3 + 0.1 * (i + j) for j in range(n)] for i in range(n)]
    return pd.DataFrame(values, index=labels, columns=labels)


def sets(n: int) -> tuple[dict, dict]:
    found = {f"r{i}": set(range(i, i + 5)) for i in range(n)}
    regions = {}
    for k in range(20):
        key = tuple(label for label, members in found.items() if k in members)
        if key:
            regions[key] = regions.get(key, 0) + 1
    return found, regions


# (name, panels, draw(ax)): every public plot function of the visualizer modules
CASES = [
    ("convergence", 3, lambda ax: plot_training_convergence(training_stats(), show=False, ax=ax)),
    ("encoder", 1, lambda ax: plot_encoder_distributions(encoder_df(), show=False, ax=ax)),
    ("decoder", 3, lambda ax: plot_probability_shifts(decoder_results(), show=False, ax=ax)),
    ("importance", 1, lambda ax: plot_importance_by_layer(importance_table(), show=False, ax=ax)),
    ("importance_two_runs", 2, lambda ax: plot_importance_by_layer(
        {"a": importance_table(), "b": importance_table()}, show=False, ax=ax)),
    ("seed_rows", 2, lambda ax: plot_encoder_by_target(by_seed(), show=False, ax=ax)),
    ("seed_errorbar", 1, lambda ax: plot_encoder_by_target(
        by_seed(), plot_style="errorbar", show=False, ax=ax)),
    ("seed_convergence", 2, lambda ax: plot_seed_convergence(
        {0: training_stats(), 1: training_stats()}, show=False, ax=ax)),
    ("dispersion", 1, lambda ax: plot_dispersion_heatmap(frame() / 10, show=False, ax=ax)),
    ("topk_heatmap", 1, lambda ax: draw_topk_heatmap(frame(), 10, show=False, ax=ax)),
    ("similarity", 1, lambda ax: draw_similarity_heatmap(frame(), show=False, ax=ax)),
    ("venn", 1, lambda ax: draw_topk_venn(*sets(2), topk=5, show=False, ax=ax)),
    ("upset", 2, lambda ax: draw_topk_venn(*sets(4), topk=5, show=False, ax=ax)),
    ("comparison", 1, lambda ax: plot_comparison_heatmap(frame(), show=False, ax=ax)),
    # the figures that take runs (gradiend.evaluator) hand ax= on to the drawing
    ("runs_topk_heatmap", 1, lambda ax: figures.plot_topk_overlap_heatmap(
        make_models(), topk=3, part="decoder-weight", region="all", show=False, ax=ax)),
    ("runs_venn", 1, lambda ax: figures.plot_topk_overlap_venn(
        dict(list(make_models().items())[:2]), topk=3, part="decoder-weight", region="all",
        show=False, ax=ax)),
    ("runs_similarity", 1, lambda ax: figures.plot_similarity_heatmap(
        frame(), show=False, ax=ax)),
    ("runs_importance", 1, lambda ax: figures.plot_importance_by_layer(
        {"a": importance_table()}, show=False, ax=ax)),
    ("runs_cross_encoding", 1, lambda ax: cross_figures.plot_cross_encoding_heatmap(
        frame(), show=False, ax=ax)),
]  # fmt: skip


@pytest.mark.parametrize("name,panels,draw", CASES, ids=[c[0] for c in CASES])
def test_draws_into_the_callers_axes(name, panels, draw):
    fig = plt.figure()
    axes = list(fig.subplots(panels, 1).flat) if panels > 1 else [fig.add_subplot()]
    out = draw(axes if panels > 1 else axes[0])
    assert out["figure"] is fig
    assert all(drawn(a) > 0 for a in axes), [drawn(a) for a in axes]
    assert plt.fignum_exists(fig.number)  # the caller's figure is left open
    assert out["path"] is None  # no output given: nothing saved
    plt.close(fig)


@pytest.mark.parametrize("name,panels,draw", CASES, ids=[c[0] for c in CASES])
def test_a_wrong_ax_is_refused(name, panels, draw):
    with pytest.raises(TypeError, match="ax must be"):
        draw("not an axes" if panels == 1 else ["no", "axes", "here"][:panels])
    fig = plt.figure()
    wrong = [fig.add_subplot(1, panels + 1, i + 1) for i in range(panels + 1)]
    with pytest.raises(ValueError, match=f"{panels} panel"):
        draw(wrong)
    plt.close(fig)


def test_without_ax_a_new_figure_is_made_and_closed():
    out = plot_encoder_distributions(encoder_df(), show=False)
    assert drawn(out["figure"].axes[0]) > 0
    assert not plt.fignum_exists(out["figure"].number)


def test_ax_saves_only_where_output_says(tmp_path):
    fig, ax = plt.subplots()
    out = plot_comparison_heatmap(frame(), show=False, ax=ax, output_path=tmp_path / "h.png")
    assert out["path"] == str(tmp_path / "h.png") and (tmp_path / "h.png").stat().st_size > 0
    assert plt.fignum_exists(fig.number)
    plt.close(fig)


def test_style_new_axes_applies_the_style_and_hands_back_the_callers_axes():
    fig, ax = plt.subplots()
    got_fig, got_ax, owned = new_axes(plt, ax, style=PlotStyleConfig(use_latex=False))
    assert (got_fig, got_ax, owned) == (fig, ax, False)
    with pytest.raises(TypeError, match="ax must be one Matplotlib Axes"):
        new_axes(plt, fig)  # a Figure is not an Axes
    plt.close(fig)


def _trainer(tmp_path):
    """What the trainer's figure functions read of a trainer (no training needed)."""
    gradiend = SimpleNamespace(importance_by_layer=lambda *a, **k: importance_table())
    layout = SimpleNamespace(figure=lambda name, fmt: tmp_path / f"{name}.{fmt}")
    return SimpleNamespace(
        _tracking=None, img_format="png", layout=layout, target_classes=["he", "she"],
        run_id="run", get_training_stats=training_stats,
        get_model=lambda: SimpleNamespace(gradiend=gradiend),
    )  # fmt: skip


def test_the_trainers_plot_methods_take_ax(tmp_path):
    trainer = _trainer(tmp_path)
    fig = plt.figure()
    panels = list(fig.subplots(4, 1).flat)
    conv = trainer_figures.plot_training_convergence(trainer, ax=panels[:3])
    imp = trainer_figures.plot_importance_by_layer(trainer, ax=panels[3])
    assert conv["figure"] is fig and imp["figure"] is fig
    assert all(drawn(a) > 0 for a in panels)
    assert conv["path"] is None and imp["path"] is None  # ax given: not saved in the run
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="ax must be"):
        trainer_figures.plot_importance_by_layer(trainer, ax=fig)
    plt.close(fig)
    saved = trainer_figures.plot_importance_by_layer(trainer)  # without ax: the run's file
    assert saved["path"] == str(tmp_path / "importance_by_layer.png")

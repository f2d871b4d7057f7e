"""Multi-seed analysis (issue 24, item 3) on a tiny model: the seed view's aggregated figures,
the seed stability summary, seed groups in the similarity matrix, the figures.

The base model is not pretrained (no ``planted`` fixture): he/she gradients at the mask differ
in any model, every seed converges on them, and the tests check bookkeeping, not the feature."""

from __future__ import annotations

import itertools
import math

import matplotlib
import numpy as np
import pytest
from conftest import fast_args, he_she_data
from tiny import make_model

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend._io import read_json
from gradiend.evaluator.compare import compute_similarity_matrix, topk_sets
from gradiend.evaluator.seed_dispersion import plot_suite_dispersion_heatmap, suite_dispersion
from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.multi_seed import aggregate_results, seed_stats
from gradiend.trainer.seed_stability import stability_summary

matplotlib.use("Agg")

TOPK = 40


@pytest.fixture(scope="module")
def base():
    """An untrained tiny MLM (seeded): the seeds' GRADIENDs converge on it in 60 steps."""
    return make_model("mlm")


def seed_trainer(model, tmp_path, **overrides) -> TextPredictionTrainer:
    """A trained he/she run on 48 sentences per class (the gradients are most of the time)."""
    trainer = TextPredictionTrainer(
        model=model,
        run_id="he_she",
        data=he_she_data(48),
        args=fast_args(tmp_path, max_steps=60, plot_importance=False, **overrides),
        progress=False,
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def run(base, tmp_path_factory):
    """Three seeds, every one trained (analyze_seed_stability), on one gradient cache."""
    tmp = tmp_path_factory.mktemp("multi_seed")
    return seed_trainer(
        base, tmp, max_seeds=3, analyze_seed_stability=True, seed_stability_topk=TOPK
    )


def _pearson(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


# ---------------------------------------------------------------------------- statistics
def test_seed_stats_and_aggregation_by_hand():
    per_seed = {
        0: {"correlation": 0.9, "by": {"a": 1.0, "b": 2.0}, "name": "x", "grid": [1]},
        1: {"correlation": 0.7, "by": {"a": 3.0, "b": 2.0}, "name": "x", "grid": [2]},
        2: {"correlation": 0.8, "by": {"a": 5.0}, "name": "x", "grid": [3]},
    }
    out = aggregate_results(per_seed, "mean", "std", return_per_seed=True)
    assert out["correlation"] == pytest.approx(0.8)
    assert out["by"] == {"a": pytest.approx(3.0)}  # "b" is missing in seed 2: left out
    assert out["name"] == "x" and "grid" not in out  # equal kept, differing lists dropped
    st = out["seeds"]["stats"]["by.a"]
    assert st == {"mean": 3.0, "std": pytest.approx(2.0), "min": 1.0, "max": 5.0, "n": 3}
    assert out["seeds"]["dispersion_values"]["correlation"] == pytest.approx(0.1)
    assert out["seeds"]["per_seed"][2]["grid"] == [3]
    rng = aggregate_results(per_seed, "median", "range")
    assert rng["by"]["a"] == 3.0 and rng["seeds"]["dispersion_values"]["by.a"] == 4.0
    minmax = aggregate_results(per_seed, "max", "minmax")
    assert minmax["correlation"] == 0.9
    assert minmax["seeds"]["dispersion_values"]["correlation"] == [0.7, 0.9]
    assert seed_stats([2.0, float("nan")]) == {
        "mean": 2.0, "std": 0.0, "min": 2.0, "max": 2.0, "n": 1,
    }  # fmt: skip


def test_stability_summary_by_hand():
    sets = {"a": {1, 2, 3, 4}, "b": {3, 4, 5, 6}, "c": {4, 5, 6, 7, 8, 9}}
    out = stability_summary(sets)
    ab = next(p for p in out["pairs"] if (p["a"], p["b"]) == ("a", "b"))
    assert (ab["intersection"], ab["union"]) == (2, 6)
    assert ab["intersection_frac"] == 0.5 and ab["jaccard"] == pytest.approx(2 / 6)
    bc = next(p for p in out["pairs"] if (p["a"], p["b"]) == ("b", "c"))
    assert bc["intersection_frac"] == pytest.approx(3 / 4)  # / min(4, 6)
    assert out["union_size"] == 9 and out["in_all_seeds"] == 1  # only 4 is in all three
    assert out["presence_counts"] == {"1": 5, "2": 3, "3": 1}


# ---------------------------------------------------------------------------- the view
def test_bad_view_arguments_are_refused(run):
    for kw, word in (
        ({"selection": "first"}, "selection"),
        ({"aggregate": "sum"}, "aggregate"),
        ({"dispersion": "variance"}, "dispersion"),
    ):
        with pytest.raises(ValueError, match=word):
            run.multi_seed(**kw)


def test_all_seeds_trained_and_viewed(run):
    report = read_json(run.layout.seed_report)
    assert sorted(set(report["tried"])) == [0, 1, 2]  # no early stop after a convergent seed
    view = run.multi_seed(selection="all_tried")
    assert view.seeds == [0, 1, 2]
    assert [p.name for p in view.seed_dirs] == ["seed_0", "seed_1", "seed_2"]
    assert len(run.multi_seed(selection="best").seeds) == 1


def _assert_stats(st: dict, values: list[float]) -> None:
    """An aggregated figure's stats equal mean/std/min/max/n computed here."""
    tol = dict(rel=1e-6, abs=1e-12)
    assert st["mean"] == pytest.approx(np.mean(values), **tol)
    assert st["std"] == pytest.approx(np.std(values, ddof=1), **tol)
    assert (st["min"], st["max"]) == (pytest.approx(min(values), **tol),
                                      pytest.approx(max(values), **tol))  # fmt: skip
    assert st["n"] == len(values)


def test_encoder_aggregate_equals_hand_computation(run):
    view = run.multi_seed(selection="all_tried", return_per_seed=True)
    out = view.evaluate_encoder(return_df=True, max_size=10)
    rows = out["encoder_df_by_seed"]
    rows = rows[rows["type"] == "training"]
    by_seed = dict(list(rows.groupby("seed", sort=True)))
    assert sorted(by_seed) == view.seeds == [0, 1, 2]
    # every seed separates the classes (|r| ≈ 1), but the encodings themselves differ by seed
    encodings = np.stack([g["encoded"].to_numpy(float) for g in by_seed.values()])
    assert np.ptp(encodings, axis=0).max() > 1e-6
    for cls in ("he", "she"):
        means = [
            g.loc[g["factual_class"] == cls, "encoded"].astype(float).mean()
            for g in by_seed.values()
        ]
        assert max(means) - min(means) > 1e-6  # the seeds differ
        _assert_stats(out["seeds"]["stats"][f"mean_by_feature_class.{cls}"], means)
        assert out["mean_by_feature_class"][cls] == pytest.approx(np.mean(means), rel=1e-6)
        for seed, m in zip(view.seeds, means, strict=True):
            per = out["seeds"]["per_seed"][seed]["mean_by_feature_class"][cls]
            assert per == pytest.approx(m, rel=1e-6)
    corr = [_pearson(g["encoded"], g["label"]) for g in by_seed.values()]
    _assert_stats(out["seeds"]["stats"]["correlation"], corr)
    assert out["correlation"] == pytest.approx(np.mean(corr), abs=1e-6)
    for seed, c in zip(view.seeds, corr, strict=True):
        assert out["seeds"]["per_seed"][seed]["correlation"] == pytest.approx(c, abs=1e-6)
    mean_df = out["encoder_df"]
    first = out["encoder_df_by_seed"].query("seed == 0")
    assert len(mean_df) == len(first)
    every = out["encoder_df_by_seed"].groupby("seed")
    all_rows = np.stack([g["encoded"].to_numpy() for _, g in every])
    assert np.allclose(mean_df["encoded"].to_numpy(), all_rows.mean(axis=0))


def test_best_selection_ranks_by_fresh_validation(run):
    view = run.multi_seed(selection="all_tried", return_per_seed=True)
    val = view.evaluate_encoder(split="validation", max_size=6, neutral=False)
    scores = {s: abs(r["correlation"]) for s, r in val["seeds"]["per_seed"].items()}
    run.args.seed_selection_eval_max_size = 6  # read when the view selects
    try:
        best = run.multi_seed(selection="best")
    finally:
        run.args.seed_selection_eval_max_size = None
    assert best.seeds == [max(scores, key=scores.get)]


def test_decoder_aggregate_equals_per_seed_mean(run):
    view = run.multi_seed(selection="all_tried", return_per_seed=True)
    out = view.evaluate_decoder(target_class="he", max_size_training_like=8, max_size_neutral=8)
    per = out["seeds"]["per_seed"]
    values = [per[s]["he"]["value"] for s in view.seeds]
    assert out["he"]["value"] == pytest.approx(np.mean(values))
    st = out["seeds"]["stats"]["he.value"]
    assert st["n"] == 3 and st["std"] == pytest.approx(np.std(values, ddof=1))
    assert "grid" not in out and all("grid" in per[s] for s in view.seeds)


# ---------------------------------------------------------------------------- stability
def test_seed_stability_written_and_correct(run):
    summary = read_json(run.layout.seed_stability)
    assert summary == run.get_training_stats()["seed_stability"]
    assert summary["topk"] == TOPK and summary["part"] == "decoder-weight"
    dirs = {f"seed_{s}": run.layout.seed_dir(s) for s in (0, 1, 2)}
    sets = {
        k: set(GradiendModel.from_pretrained(d).get_topk_weights("decoder-weight", TOPK).tolist())
        for k, d in dirs.items()
    }
    assert summary["seeds"] == list(sets)
    for pair in summary["pairs"]:
        a, b = sets[pair["a"]], sets[pair["b"]]
        assert pair["intersection"] == len(a & b)
        assert pair["jaccard"] == pytest.approx(len(a & b) / len(a | b))
        assert pair["intersection_frac"] == pytest.approx(len(a & b) / min(len(a), len(b)))
    assert summary["in_all_seeds"] == len(set.intersection(*sets.values()))


# ---------------------------------------------------------------------------- seed groups
def test_seed_groups_dispersion_and_matched_pairing(run):
    d = [run.layout.seed_dir(s) for s in (0, 1, 2)]
    groups = {"A": [d[0], d[1]], "B": [d[1], d[2]]}
    sets = topk_sets({str(i): p for i, p in enumerate(d)}, TOPK, "decoder-weight")

    def frac(i, j):
        a, b = sets[str(i)], sets[str(j)]
        return len(a & b) / min(len(a), len(b))

    kw = dict(measure="topk_overlap", part="decoder-weight", topk=TOPK, dispersion="std")
    matched = compute_similarity_matrix(groups, seed_pairing_mode="matched", **kw)
    pairs = [frac(0, 1), frac(1, 2)]  # seed k of A with seed k of B
    assert matched.loc["A", "B"] == pytest.approx(np.mean(pairs))
    assert np.asarray(matched.attrs["dispersion"])[0, 1] == pytest.approx(np.std(pairs, ddof=1))
    assert np.asarray(matched.attrs["n_matrix"])[0, 1] == 2
    full = compute_similarity_matrix(groups, **kw)
    every = [frac(i, j) for i, j in itertools.product((0, 1), (1, 2))]
    assert full.loc["A", "B"] == pytest.approx(np.mean(every))
    assert np.asarray(full.attrs["n_matrix"])[0, 1] == 4
    assert full.loc["A", "A"] == pytest.approx(frac(0, 1))  # distinct members within a group
    with pytest.raises(ValueError, match="seed_pairing_mode"):
        compute_similarity_matrix(groups, seed_pairing_mode="zip", **kw)


def test_suite_dispersion_heatmap(run, tmp_path):
    d = [run.layout.seed_dir(s) for s in (0, 1, 2)]
    runs = {"run": run, "shifted": [d[1], d[2], d[0]]}  # a trainer and a list of seed folders
    frames = suite_dispersion(runs, topk=TOPK, part="decoder-weight")
    sets = topk_sets({str(i): p for i, p in enumerate(d)}, TOPK, "decoder-weight")
    fr = [len(sets[a] & sets[b]) / TOPK for a, b in (("0", "1"), ("1", "2"), ("2", "0"))]
    assert frames["dispersion"].loc["run", "shifted"] == pytest.approx(np.std(fr, ddof=1))
    out = plot_suite_dispersion_heatmap(runs, topk=TOPK, part="decoder-weight", output=tmp_path)
    assert out["path"].endswith(".png")
    cell = out["data"]["values"][0][1]
    assert cell == pytest.approx(100 * np.std(fr, ddof=1))
    assert out["data"]["annotations"][1] == f"{cell:.1f}"
    assert out["data"]["vmax"] == pytest.approx(
        max(v for row in out["data"]["values"] for v in row)
    )


# ---------------------------------------------------------------------------- figures
def test_plots_have_one_row_per_seed(run, tmp_path):
    view = run.multi_seed(selection="all_tried")
    rows = view.plot_encoder_by_target(output=tmp_path / "rows.png")
    assert rows["data"]["rows"] == 3 and len(rows["figure"].axes) == 3
    assert (tmp_path / "rows.png").stat().st_size > 0
    by_seed = view.evaluate_encoder(return_df=True)["encoder_df_by_seed"]
    bars = view.plot_encoder_by_target(
        encoder_df_by_seed=by_seed, plot_style="errorbar", error_stat="sem", output=None
    )
    means = bars["data"]["means"]
    group = bars["data"]["groups"][0]
    vals = [means[s][group] for s in view.seeds]
    assert bars["data"]["centre"][group] == pytest.approx(np.mean(vals))
    assert bars["data"]["error"][group] == pytest.approx(np.std(vals, ddof=1) / math.sqrt(3))
    conv = view.plot_training_convergence(output=tmp_path / "conv.png")
    assert conv["data"]["rows"] == 3 and len(conv["figure"].axes) == 3
    with pytest.raises(ValueError, match="plot_style"):
        view.plot_encoder_by_target(encoder_df_by_seed=by_seed, plot_style="violin")


# ---------------------------------------------------------------------------- arguments
def test_saved_seed_runs_best_only_and_seed_runs_dir(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    trainer = seed_trainer(
        base, tmp_path, max_seeds=2, analyze_seed_stability=True, saved_seed_runs="best_only",
        seed_runs_dir=str(elsewhere), seed_stability_topk=TOPK,
    )  # fmt: skip
    report = read_json(elsewhere / "seed_report.json")
    assert sorted(set(report["tried"])) == [0, 1]
    kept = [s for s in (0, 1) if (elsewhere / f"seed_{s}" / "model.safetensors").exists()]
    assert kept == [report["best_seed"]]
    assert all((elsewhere / f"seed_{s}" / "training.json").exists() for s in (0, 1))
    assert not (trainer.run_dir / "seeds").exists()
    assert trainer.multi_seed(selection="all_tried").seeds == kept


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"saved_seed_runs": "some"}, "saved_seed_runs"),
        ({"split_resplit_strategy": "cycle"}, "split_resplit_strategy"),
        ({"split_resplit_per_seed": True}, "one split"),
        ({"seed_stability_topk": 0}, "seed_stability_topk"),
        ({"seed_stability_part": "weights"}, "seed_stability_part"),
        ({"seed_selection_eval_max_size": 0}, "seed_selection_eval_max_size"),
        ({"analyze_seed_stability": "yes"}, "analyze_seed_stability"),
    ],
)
def test_bad_seed_arguments(kw, word):
    with pytest.raises((ValueError, TypeError), match=word):
        TrainingArguments(**kw)

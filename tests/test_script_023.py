"""A script in gradiend 0.2.3's documented style runs unchanged: a symmetric suite over a
3-class planted feature → a multi-seed view of each child → the cross-encoding matrices → their
heatmaps. Only names 0.2.3 exports from ``gradiend`` are imported by the script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import three_pronouns
from tiny import make_model, pretrain

CLASSES = ["he", "she", "it"]
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def script_023(model, data, experiment_dir: str) -> dict:
    """The 0.2.3-style script (its imports, names and keywords as 0.2.3 documents them)."""
    from gradiend import (
        SymmetricTrainerSuite,
        TrainingArguments,
        build_cross_task_encoder_summary,
        compute_anchor_aligned_encoding_matrix,
        compute_gradiend_feature_cross_encoding_matrix,
        compute_gradiend_transition_cross_encoding_matrix,
        compute_trainer_pair_encoding_matrix,
        plot_cross_encoding_heatmap,
        plot_gradiend_feature_cross_encoding_heatmap,
        plot_gradiend_transition_cross_encoding_heatmap,
    )

    args = TrainingArguments(
        experiment_dir=experiment_dir,
        train_batch_size=4,
        max_steps=40,
        eval_steps=20,
        learning_rate=1e-3,
        max_seeds=2,
        analyze_seed_stability=True,
    )
    suite = SymmetricTrainerSuite(
        model=model, data=data, target_classes=CLASSES, run_id="pronouns", args=args
    )
    suite.train()
    encoder = suite.evaluate_encoder()
    seeds = {
        cid: suite.get_trainer(cid)
        .multi_seed(selection="all_tried", return_per_seed=True)
        .evaluate_encoder()
        for cid in suite.child_ids
    }
    summary = build_cross_task_encoder_summary(suite)
    matrices = {
        "pair": compute_trainer_pair_encoding_matrix(encoder_summary=summary),
        "pair_normalized": compute_trainer_pair_encoding_matrix(
            encoder_summary=summary, normalize=True
        ),
        "transition": compute_gradiend_transition_cross_encoding_matrix(encoder_summary=summary),
        "feature": compute_gradiend_feature_cross_encoding_matrix(encoder_summary=summary),
        "anchor": compute_anchor_aligned_encoding_matrix(
            encoder_summary=summary, alignment="counterfactual"
        ),
    }
    out = Path(experiment_dir) / "figures"
    figures = {
        "pair": plot_cross_encoding_heatmap(
            encoder_summary=summary, output_path=out / "pair.png", show=False
        ),
        "anchor": plot_cross_encoding_heatmap(
            encoder_summary=summary,
            alignment="counterfactual",
            output_path=out / "anchor.png",
            show=False,
        ),
        "feature": plot_gradiend_feature_cross_encoding_heatmap(
            encoder_summary=summary, output_path=out / "feature.png", show=False
        ),
        "transition": plot_gradiend_transition_cross_encoding_heatmap(
            encoder_summary=summary, output_path=out / "transition.png", show=False
        ),
    }
    return dict(
        suite=suite, encoder=encoder, seeds=seeds, matrices=matrices, figures=figures, out=out
    )


@pytest.fixture(scope="module")
def ran(one_thread, tmp_path_factory):
    """The script's results on a tiny masked LM with the planted feature."""
    model, tok = make_model("mlm")
    lm = (pretrain(model, tok, "mlm", steps=600), tok)
    return script_023(lm, three_pronouns(), str(tmp_path_factory.mktemp("s023")))


def test_every_pair_recovers_its_feature(ran):
    suite = ran["suite"]
    assert suite.child_ids == ["he__she", "he__it", "she__it"]
    for cid, res in ran["encoder"].items():
        assert abs(res["correlation"]) >= 0.9, (cid, res["correlation"])


def test_multi_seed_view_aggregates_both_seeds(ran):
    for cid, out in ran["seeds"].items():
        stats = out["seeds"]["stats"]["correlation"]
        assert stats["n"] == 2, cid
        per_seed = [r["correlation"] for r in out["seeds"]["per_seed"].values()]
        assert len(per_seed) == 2
        assert out["correlation"] == pytest.approx(np.mean(per_seed), abs=1e-6)
        assert stats["min"] <= stats["mean"] <= stats["max"]


def test_matrices_have_the_suite_shape_and_signs(ran):
    m = ran["matrices"]
    pair = m["pair"]
    labels = list(pair.index)
    assert len(labels) == 3 and list(pair.columns) == labels
    assert np.allclose(np.diag(m["pair_normalized"].to_numpy()), 1.0)
    transitions = {f"{a}→{b}" for a in CLASSES for b in CLASSES if a != b}
    assert list(m["transition"].index) == labels
    assert transitions <= set(m["transition"].columns)
    feat = m["feature"]
    assert list(feat.index) == labels and list(feat.columns) == CLASSES
    # each GRADIEND encodes its own two transitions apart, with opposite signs
    trans = m["transition"]
    for label, cid in zip(labels, ran["suite"].child_ids, strict=True):
        a, b = cid.split("__")
        there, back = trans.loc[label, f"{a}→{b}"], trans.loc[label, f"{b}→{a}"]
        assert there * back < 0 and abs(there - back) > 1.0, (label, there, back)
        # its own classes are further apart than in the pool's mean
        assert abs(feat.loc[label, a] - feat.loc[label, b]) > 0.3, (label, feat)
    anchor = m["anchor"]
    assert list(anchor.index) == CLASSES and list(anchor.columns) == CLASSES
    assert (np.diag(anchor.to_numpy()) > 0.5).all()  # the anchor class's sign rule
    assert anchor.attrs["count"] == [[2.0] * 3] * 3  # every class is in two pairs


def test_heatmaps_are_written(ran):
    for name, fig in ran["figures"].items():
        path = Path(fig["path"])
        assert path.parent == ran["out"] and path.name == f"{name}.png"
        assert path.read_bytes()[:8] == PNG
    assert ran["figures"]["pair"]["data"]["rows"] == list(ran["matrices"]["pair"].index)

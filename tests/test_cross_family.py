"""The cross-encoding family: the shared pool, trainer-pair / transition / feature-class /
anchor-aligned matrices, grouped similarity, their heatmaps and the transition labels."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import fast_args
from tiny import sentence

from gradiend import TextPredictionTrainer
from gradiend.evaluator import cross_family as fam
from gradiend.evaluator.cross_figures import (
    plot_cross_encoding_heatmap,
    plot_gradiend_feature_cross_encoding_heatmap,
    plot_gradiend_transition_cross_encoding_heatmap,
)
from gradiend.evaluator.cross_pool import (
    CrossEncoderSummary,
    CrossRun,
    build_cross_task_encoder_summary,
)
from gradiend.evaluator.encoder import pearson
from gradiend.evaluator.grouped import compute_grouped_similarity_matrices
from gradiend.visualizer.cross_heatmaps import plot_comparison_heatmap
from gradiend.visualizer.transition_labels import (
    format_transition_label,
    transition_bidi_arrow,
    transition_directed_arrow,
)

PAIRS = (("he", "she"), ("she", "it"))  # he↔it: pooled from the runs' other rows
LABELS = [f"{a}_{b}" for a, b in PAIRS]
TRANSITIONS = {f"{x}→{y}" for x in ("he", "she", "it") for y in ("he", "she", "it") if x != y}


def pronoun_data(n: int = 40) -> dict[str, pd.DataFrame]:
    """Three pronoun classes (he, she, it); the pronoun is masked."""
    rng = random.Random(7)
    out = {}
    for cls, gender in (("he", "he"), ("she", "she"), ("it", None)):
        rows = []
        while len(rows) < n:
            s = sentence(rng, gender)
            if f" {cls} " in s:
                rows.append(s.replace(f" {cls} ", " [MASK] "))
        out[cls] = pd.DataFrame({"masked": rows, cls: cls})
    return out


@pytest.fixture(scope="module")
def family(planted, tmp_path_factory):
    """Two trained pair runs over three classes and their summary (each model loaded once)."""
    root = tmp_path_factory.mktemp("cross_family")
    trainers, loads = {}, dict.fromkeys(LABELS, 0)
    for (a, b), label in zip(PAIRS, LABELS, strict=True):
        trainer = TextPredictionTrainer(
            model=planted["clm"],
            run_id=label,
            data=pronoun_data(),
            target_classes=[a, b],
            args=fast_args(root, max_steps=80),
            progress=False,
        )
        trainer.train()
        trainers[label] = trainer
    counted = {label: _Counting(t, loads, label) for label, t in trainers.items()}
    summary = build_cross_task_encoder_summary(counted)
    return SimpleNamespace(trainers=trainers, summary=summary, loads=loads, root=root)


class _Counting:
    """A trainer whose ``get_model`` calls are counted."""

    def __init__(self, trainer, loads: dict, label: str):
        self._trainer, self._loads, self._label = trainer, loads, label

    def __getattr__(self, name):
        return getattr(self._trainer, name)

    def get_model(self):
        self._loads[self._label] += 1
        return self._trainer.get_model()


# --------------------------------------------------------------------------- the shared pool
def test_pool_holds_every_transition_and_each_run_encodes_it_once(family):
    s = family.summary
    assert set(s.pool["transition"]) == TRANSITIONS
    assert s.labels == LABELS and list(s.encodings.columns) == LABELS
    assert (
        s.encodings.shape == (len(s.pool), len(LABELS))
        and np.isfinite(s.encodings.to_numpy()).all()
    )
    assert family.loads == dict.fromkeys(LABELS, 1)
    keys = s.pool[["masked", "factual", "alternative"]].astype(str).agg("|".join, axis=1)
    assert not keys.duplicated().any()
    trained = pd.concat([t.eval_data.split("train") for t in family.trainers.values()])
    assert not set(s.pool["masked"]) & set(trained["masked"])  # no training sentence pooled
    long = s.long()
    assert set(long["transition"]) == TRANSITIONS and set(long["run"]) == set(LABELS)


# --------------------------------------------------------------------------- trainer pairs
def test_trainer_pair_diagonal_matches_each_runs_own_encoder_evaluation(family):
    s = family.summary
    frames = {m: fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, metric=m)
              for m in fam.PAIR_METRICS}  # fmt: skip
    for frame in frames.values():
        assert list(frame.index) == LABELS and list(frame.columns) == LABELS
    assert frames["positive_mean"].attrs["positive_class"] == dict(zip(LABELS, ["he", "she"]))
    diff = frames["positive_minus_negative"]
    for label, trainer in family.trainers.items():
        assert frames["correlation"].loc[label, label] > 0.9
        assert diff.loc[label, label] > 1.0  # mean separation of the run's own two classes
        df = trainer.evaluate_encoder(return_df=True, neutral=False)["encoder_df"]
        df = df[df["type"] == "training"]
        enc, lab = df["encoded"].to_numpy(), df["label"].to_numpy()
        pos, neg = frames["positive_mean"], frames["negative_mean"]
        assert pos.loc[label, label] == pytest.approx(enc[lab > 0].mean(), abs=1e-3)
        assert neg.loc[label, label] == pytest.approx(enc[lab < 0].mean(), abs=1e-3)
        r = frames["correlation"].loc[label, label]
        assert r == pytest.approx(pearson(enc, lab), abs=1e-3)


def test_trainer_pair_normalize_and_positive_class_override(family):
    s = family.summary
    pos = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s)
    norm = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, normalize=True)
    assert np.allclose(np.diag(norm.to_numpy()), 1.0)
    expected = pos.to_numpy() / np.diag(pos.to_numpy())[:, None]
    assert np.allclose(norm.to_numpy(), expected)
    neg = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, metric="negative_mean")
    flipped = fam.compute_trainer_pair_encoding_matrix(
        encoder_summary=s, positive_class_by_trainer={"he_she": "she"}
    )
    assert np.allclose(flipped["he_she"], neg["he_she"])  # she's rows are now the positive ones
    assert np.allclose(flipped["she_it"], pos["she_it"])
    with pytest.raises(ValueError, match="unknown metric"):
        fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, metric="nope")
    with pytest.raises(ValueError, match="not one of"):
        fam.compute_trainer_pair_encoding_matrix(
            encoder_summary=s, positive_class_by_trainer={"he_she": "it"}
        )


# --------------------------------------------------------------------------- GRADIEND × columns
def test_transition_and_feature_matrices_have_a_column_each(family):
    s = family.summary
    trans = fam.compute_gradiend_transition_cross_encoding_matrix(encoder_summary=s)
    assert list(trans.index) == LABELS and set(trans.columns) == TRANSITIONS
    pos = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s)
    assert trans.loc["he_she", "she→he"] == pytest.approx(pos.loc["he_she", "he_she"])
    assert trans.loc["she_it", "she→it"] < -0.5 < 0.5 < trans.loc["she_it", "it→she"]
    feat = fam.compute_gradiend_feature_cross_encoding_matrix(encoder_summary=s)
    assert list(feat.index) == LABELS and list(feat.columns) == ["he", "she", "it"]
    mine = s.encodings["she_it"][s.pool["factual_class"] == "it"].mean()
    assert feat.loc["she_it", "it"] == pytest.approx(mine)
    cf = fam.compute_gradiend_feature_cross_encoding_matrix(
        encoder_summary=s, alignment="counterfactual", feature_classes=["it"]
    )
    assert list(cf.columns) == ["it"] and cf.attrs["alignment"] == "counterfactual"
    with pytest.raises(ValueError, match="unknown feature class"):
        fam.compute_gradiend_feature_cross_encoding_matrix(encoder_summary=s, feature_classes=["x"])


# --------------------------------------------------------------------------- anchor-aligned
def test_anchor_aligned_signs_follow_the_class_order(family):
    s = family.summary
    for (a, b), label in zip(PAIRS, LABELS, strict=True):
        one = _only(s, label)
        m = fam.compute_anchor_aligned_encoding_matrix(encoder_summary=one, alignment="transition")
        assert list(m.index) == [a, b]
        assert m.loc[a, f"{b}→{a}"] > 0.5 and m.loc[a, f"{a}→{b}"] < -0.5  # a is +1
        assert m.loc[b, f"{a}→{b}"] > 0.5 and m.loc[b, f"{b}→{a}"] < -0.5  # b is −1, flipped
    full = fam.compute_anchor_aligned_encoding_matrix(encoder_summary=s, alignment="counterfactual")
    assert list(full.index) == ["he", "she", "it"] and list(full.columns) == ["he", "she", "it"]
    assert (np.diag(full.to_numpy()) > 0.5).all()
    assert full.attrs["count"] == [[1.0] * 3, [2.0] * 3, [1.0] * 3]  # she is in both runs


def _only(summary: CrossEncoderSummary, label: str) -> CrossEncoderSummary:
    return dataclasses.replace(
        summary,
        encodings=summary.encodings[list(summary.members[label])],
        members={label: summary.members[label]},
        runs={label: summary.runs[label]},
    )


def _fake_summary() -> CrossEncoderSummary:
    """Two runs on (a, b): ``ab`` (labels follow the counterfactual class; two seeds) and ``ba``
    listing the classes the other way round with labels on the factual class (``target=
    "alternative"``); both encode b→a as +1 and a→b as −1."""
    pool = pd.DataFrame({"factual_class": list("aabb"), "alternative_class": list("bbaa")})
    pool["transition"] = pool["factual_class"] + "→" + pool["alternative_class"]
    enc = pd.DataFrame({
        "ab/seed_0": [-1.0, -1.0, 1.0, 1.0],
        "ab/seed_1": [-0.6, -0.6, 0.6, 0.6],
        "ba": [-1.0, -1.0, 1.0, 1.0],
    })  # fmt: skip
    runs = {
        "ab": CrossRun("ab", SimpleNamespace(target_classes=["a", "b"], target="diff"), None),
        "ba": CrossRun(
            "ba", SimpleNamespace(target_classes=["b", "a"], target="alternative"), None
        ),
    }
    members = {"ab": ("ab/seed_0", "ab/seed_1"), "ba": ("ba",)}
    return CrossEncoderSummary(pool, enc, members, runs, "test", "all_tried")


def test_anchor_sign_rule_holds_whatever_the_class_order_and_label_side():
    s = _fake_summary()
    for alignment in ("factual", "counterfactual"):
        m = fam.compute_anchor_aligned_encoding_matrix(encoder_summary=s, alignment=alignment)
        assert list(m.index) == ["a", "b"] and list(m.columns) == ["a", "b"]
        # ab's seeds average to 0.8; ba encodes with magnitude 1: mean 0.9 on every anchor
        assert np.allclose(m.to_numpy(), [[0.9, -0.9], [-0.9, 0.9]]), alignment
    n = fam.compute_anchor_aligned_encoding_matrix(encoder_summary=s, aggregate="count")
    assert np.allclose(n.to_numpy(), 2.0)


def test_seed_aggregate_and_dispersion_on_a_planted_summary():
    s = _fake_summary()
    m = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, dispersion="range")
    # ab's positive rows (towards a) are b→a; ba's (factual b, target="alternative") too
    assert m.loc["ab", "ab"] == pytest.approx(0.8) and m.loc["ab", "ba"] == pytest.approx(0.8)
    assert m.loc["ba", "ba"] == pytest.approx(1.0) and m.loc["ba", "ab"] == pytest.approx(1.0)
    assert fam.compute_trainer_pair_encoding_matrix(
        encoder_summary=s, metric="positive_minus_negative"
    ).loc["ab", "ab"] == pytest.approx(1.6)
    spread = np.array(m.attrs["dispersion"]["values"])
    assert spread[0] == pytest.approx([0.4, 0.4]) and spread[1] == pytest.approx([0.0, 0.0])
    assert m.attrs["n_seeds"] == {"ab": 2, "ba": 1}
    top = fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, aggregate="max")
    assert top.loc["ab", "ab"] == pytest.approx(1.0)
    std = fam.compute_gradiend_transition_cross_encoding_matrix(encoder_summary=s, dispersion="std")
    assert np.array(std.attrs["dispersion"]["values"])[0] == pytest.approx([0.2, 0.2])
    out = plot_comparison_heatmap(std, output_path=None, show=False)
    assert out["data"]["dispersion"] is not None and out["path"] is None
    with pytest.raises(ValueError, match="unknown dispersion"):
        fam.compute_trainer_pair_encoding_matrix(encoder_summary=s, dispersion="iqr")
    with pytest.raises(TypeError, match="build_cross_task_encoder_summary"):
        fam.compute_trainer_pair_encoding_matrix(encoder_summary=m)


# --------------------------------------------------------------------------- grouped similarity
def test_grouped_similarity_by_layer_and_by_a_function(family):
    trainers = family.trainers
    by_layer = compute_grouped_similarity_matrices(trainers, "layer")
    assert set(by_layer) == {0, 1, "other"}
    for group, frame in by_layer.items():
        assert list(frame.index) == LABELS and list(frame.columns) == LABELS
        assert np.allclose(np.diag(frame.to_numpy()), 1.0) and frame.attrs["group"] == group

    def block(name: str) -> str | None:
        return "attn" if ".self_attn." in name else "mlp" if ".mlp." in name else None

    by_block = compute_grouped_similarity_matrices(trainers, block)
    assert set(by_block) == {"attn", "mlp"} and by_block["mlp"].attrs["group_by"] == "function"
    dims = {g: sum(f.attrs["dims"]) for g, f in by_block.items()}
    assert dims["mlp"] > dims["attn"] > 0  # a layer's mlp tensors outnumber its attention ones
    with pytest.raises(ValueError, match="unknown group_by"):
        compute_grouped_similarity_matrices(trainers, "nope")


# --------------------------------------------------------------------------- heatmaps, labels
def test_every_heatmap_writes_a_png(family, tmp_path):
    s = family.summary
    outs = [
        plot_cross_encoding_heatmap(encoder_summary=s, output_path=tmp_path / "pair.png"),
        plot_cross_encoding_heatmap(
            encoder_summary=s, alignment="transition", output_path=tmp_path / "anchor.png"
        ),
        plot_gradiend_feature_cross_encoding_heatmap(
            encoder_summary=s, output_path=tmp_path / "feature.png"
        ),
        plot_gradiend_transition_cross_encoding_heatmap(
            encoder_summary=s, output_path=tmp_path / "transition.png"
        ),
        plot_comparison_heatmap(
            compute_grouped_similarity_matrices(family.trainers, "layer")[0],
            output_path=tmp_path / "grouped.png",
        ),
    ]
    for out in outs:
        with open(out["path"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert outs[0]["data"]["rows"] == LABELS
    ticks = [t.get_text() for t in outs[3]["figure"].axes[0].get_xticklabels()]
    assert "he → she" in ticks and len(ticks) == len(TRANSITIONS)


def test_transition_labels():
    assert transition_directed_arrow() == "→" and transition_bidi_arrow() == "↔"
    assert transition_directed_arrow(latex=True) == r"$\rightarrow$"
    assert transition_bidi_arrow(latex=True) == r"$\leftrightarrow$"
    assert format_transition_label("he→she") == "he → she"
    assert format_transition_label("he -> she") == "he → she"
    assert format_transition_label(("he", "she"), bidirectional=True) == "he ↔ she"
    assert format_transition_label("he", "it", names={"it": "neuter"}) == "he → neuter"
    spec = SimpleNamespace(source="a", target="b")
    assert format_transition_label(spec, latex=True) == r"a $\rightarrow$ b"
    with pytest.raises(ValueError, match="not a transition"):
        format_transition_label("he-she")
    with pytest.raises(TypeError, match="cannot read a transition"):
        format_transition_label(3)

"""Trainer suites (gradiend.suite): one child per pair or positive feature over one base model,
each distinct (sentence, word) gradient computed once per suite, children that are normal runs."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, three_pronouns

from gradiend import TextPredictionTrainer
from gradiend.suite import (
    PositiveFeatureDefinition,
    PositiveTrainerSuite,
    SymmetricTrainerSuite,
    TrainerCollection,
)
from gradiend.trainer import training

CLASSES = ["he", "she", "it"]
PAIRS = [("he", "she"), ("he", "it"), ("she", "it")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm(planted):
    """The session's tiny masked LM with the planted feature (pronoun agrees with the subject)."""
    return planted["mlm"]


def suite_args(tmp_path, **overrides):
    base = dict(max_steps=40, eval_steps=20, gradient_cache_dtype="float32", plot_importance=False)
    return fast_args(tmp_path, **{**base, **overrides})


@pytest.fixture(scope="module")
def sym(lm, tmp_path_factory):
    """A trained symmetric suite over he, she and it."""
    suite = SymmetricTrainerSuite(
        model=lm,
        data=three_pronouns(),
        target_classes=CLASSES,
        run_id="sym",
        args=suite_args(tmp_path_factory.mktemp("sym")),
        progress=False,
    )
    suite.train()
    return suite


def _train_items(trainer) -> set[tuple[str, str]]:
    """The (sentence, word) inputs of a child's training rows: factual and alternative."""
    df = trainer.table.split("train")
    return {(m, w) for m, f, a in zip(df["masked"], df["factual"], df["alternative"])
            for w in (f, a)}  # fmt: skip


def test_symmetric_suite_trains_each_pair_and_shares_gradients(sym):
    assert sym.child_ids == ["he__she", "he__it", "she__it"]
    assert sorted(map(frozenset, sym.target_pairs)) == sorted(map(frozenset, PAIRS))
    for cid, child in sym.items():
        assert set(child.target_classes) == set(cid.split("__"))
    assert len({id(child._lm) for child in sym}) == 1  # one base model for the suite
    results = sym.evaluate_encoder()
    assert set(results) == set(sym.child_ids)
    for cid, res in results.items():
        assert abs(res["correlation"]) >= 0.9, (cid, res["correlation"])
        assert set(res["mean_by_feature_class"]) == set(cid.split("__"))
    # each distinct (sentence, word) gradient once (the validation rows' too, which encode
    # from the store), many per batched backward pass: fewer passes than distinct items
    per_child = [_train_items(c) for c in sym]
    distinct = set().union(*per_child)
    one_by_one = sum(len(items) for items in per_child)
    stats = sym.stats
    assert stats["items_computed"] == stats["distinct_items"] >= len(distinct)
    assert stats["backward_passes"] == stats["batched_passes"] < len(distinct) / 4
    assert stats["items_per_pass"] > 4
    assert len(distinct) < one_by_one
    assert sym.stats["items_served"] > sym.stats["items_computed"]


def test_suite_child_equals_the_pair_trained_alone(sym, lm):
    alone = TextPredictionTrainer(
        model=lm,
        run_id="alone",
        data=three_pronouns(),
        target_classes=["he", "she"],
        args=suite_args(sym.args.experiment_dir),
        progress=False,
    )
    alone.train()
    mine = sym.get_trainer(("she", "he")).get_model().gradiend.state_dict()
    theirs = alone.get_model().gradiend.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        if torch.is_tensor(mine[key]) and mine[key].is_floating_point():
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)
        else:
            assert torch.equal(mine[key], theirs[key]), key


def test_positive_suites_and_collection(sym, lm, tmp_path):
    args = suite_args(tmp_path, max_steps=120)  # a merged negative class needs more steps
    single = PositiveTrainerSuite(
        model=lm,
        data=three_pronouns(),
        mode="single",
        definitions=[
            PositiveFeatureDefinition(positive_feature_class="he", negative_feature_class="she")
        ],
        run_id="single",
        args=args,
        progress=False,
    )
    assert single.child_ids == ["he__she"]
    assert single.get_trainer("he__she").target_classes == ["he", "she"]
    rest = PositiveTrainerSuite(
        model=lm,
        data=three_pronouns(),
        mode="all_but_one",
        feature_class_group=CLASSES,
        run_id="rest",
        args=args,
        progress=False,
    )
    assert rest.child_ids == ["he__non_he", "she__non_she", "it__non_it"]
    for c in CLASSES:
        child = rest.get_trainer(f"{c} vs non_{c}")  # by label
        assert child.target_classes == [c, f"non_{c}"]
        assert child.positive_class == c
        df = child.table.df
        assert set(df["factual_class"]) == {c, f"non_{c}"}
        merged = df[df["factual_class"] == f"non_{c}"]["factual"]
        assert set(merged) == set(CLASSES) - {c}  # both other classes' words, merged
    both = TrainerCollection.merge(suites=[single, rest])
    assert len(both) == 4
    assert both.get_trainer("rest/she__non_she") is rest.get_trainer("she__non_she")
    both.train()
    assert set(both.get_models()) == {"single/he__she"} | {f"rest/{c}__non_{c}" for c in CLASSES}
    models = rest.get_models(gradiend_only=True)
    assert list(models) == rest.child_ids
    assert all(type(m).__name__ == "GradiendModel" for m in models.values())
    encoded = rest.call("evaluate_encoder")
    assert list(encoded) == rest.child_ids
    assert all(-1.0 <= r["correlation"] <= 1.0 for r in encoded.values())
    with pytest.raises(KeyError, match="no child"):
        rest.get_trainer("he__she")


def test_rerun_with_use_cache_reuses_the_children(sym, lm, monkeypatch):
    before = {cid: m.gradiend.state_dict() for cid, m in sym.get_models().items()}

    def refuse(*args, **kwargs):
        raise AssertionError("a cached child computed gradients again")

    monkeypatch.setattr(training, "prepare", refuse)
    again = SymmetricTrainerSuite(
        model=lm,
        data=three_pronouns(),
        target_classes=CLASSES,
        run_id="sym",
        args=sym.args,
        progress=False,
    )
    models = again.train(use_cache=True)
    assert again.stats["backward_passes"] == 0 and again.stats["items_computed"] == 0
    for cid, model in models.items():
        for key, value in model.gradiend.state_dict().items():
            assert torch.equal(value, before[cid][key]), (cid, key)
    # a child's folder is a normal run: a trainer of its own reuses it
    one = TextPredictionTrainer(
        model=lm,
        run_id="sym/he__it",
        data=three_pronouns(),
        target_classes=["he", "it"],
        args=suite_args(sym.args.experiment_dir, use_cache=True),
        progress=False,
    )
    weights = one.train().gradiend.state_dict()
    assert all(torch.equal(v, before["he__it"][k]) for k, v in weights.items())

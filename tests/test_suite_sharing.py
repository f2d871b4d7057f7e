"""What a suite's children share beyond the gradient store: the base model's finite-weight
check is made once per suite (not twice per child), and sharing it changes no child's weights."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from conftest import fast_args, three_pronouns

from gradiend import TextPredictionTrainer
from gradiend.lm import gradients
from gradiend.suite import SymmetricTrainerSuite, TrainerSuite

CLASSES = ["he", "she", "it"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm(planted):
    """The session's tiny masked LM with the planted feature (pronoun agrees with the subject)."""
    return planted["mlm"]


def _args(tmp_path, **overrides):
    base = dict(max_steps=20, eval_steps=10, gradient_cache_dtype="float32", plot_importance=False)
    return fast_args(tmp_path, **{**base, **overrides})


def _suite(lm, tmp_path, run_id="sym", **kwargs):
    return SymmetricTrainerSuite(
        model=lm,
        data=three_pronouns(),
        target_classes=CLASSES,
        run_id=run_id,
        args=_args(tmp_path),
        progress=False,
        **kwargs,
    )


@pytest.fixture
def checks(monkeypatch) -> list[int]:
    """One entry (the number of tensors checked) per finite-weight check of a base model; the
    real check still runs."""
    seen: list[int] = []
    real = gradients.check_finite_params

    def counted(named, source):
        named = list(named)
        seen.append(len(named))
        return real(named, source)

    monkeypatch.setattr(gradients, "check_finite_params", counted)
    return seen


def _weights(suite) -> dict[str, dict[str, torch.Tensor]]:
    return {cid: m.gradiend.state_dict() for cid, m in suite.get_models().items()}


def test_one_finite_check_per_suite_and_children_unchanged(lm, tmp_path, checks, monkeypatch):
    shared = _suite(lm, tmp_path / "shared")
    shared.train()
    assert len(checks) == 1  # three children, one check
    shared.evaluate_encoder()  # the children's models are built and used: no check again
    mine = _weights(shared)
    assert len(checks) == 1
    # the same suite with no shared scope: every child checks in its store computer and its
    # model (the scope is the only once-per-suite mechanism)
    monkeypatch.setattr(TrainerSuite, "_shared", lambda self: contextlib.nullcontext())
    checks.clear()
    unshared = _suite(lm, tmp_path / "unshared")
    unshared.train()
    assert len(checks) == 2 * len(CLASSES)
    theirs = _weights(unshared)
    assert mine.keys() == theirs.keys()
    for cid in mine:  # bit for bit: sharing the fixed costs changes no arithmetic
        assert mine[cid].keys() == theirs[cid].keys()
        for key, value in mine[cid].items():
            assert torch.equal(value, theirs[cid][key]), (cid, key)


def test_suite_still_refuses_a_base_model_with_nan_weights(lm, tmp_path, checks):
    model, tok = lm
    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.parameters()).view(-1)[0] = float("nan")
    suite = _suite((broken, tok), tmp_path)
    with pytest.raises(ValueError, match="NaN or inf"):
        suite.train()
    assert len(checks) == 1
    # a lone run on the good model outside any suite checks as before (the scope has ended)
    checks.clear()
    alone = TextPredictionTrainer(
        model=lm,
        run_id="alone",
        data=three_pronouns(),
        target_classes=["he", "she"],
        args=_args(tmp_path),
        progress=False,
    )
    alone.train()
    assert len(checks) == 2  # its gradient computer and its model's signal computer


def test_each_suite_checks_its_model_and_forgets_it_with_the_cache(lm, tmp_path, checks):
    first = _suite(lm, tmp_path / "a", run_id="a")
    first.train()
    second = _suite(lm, tmp_path / "b", run_id="b")
    second.train()
    assert len(checks) == 2  # one per suite: a suite does not trust another's check
    first.clear_model_cache()
    assert first.store.checked == set()
    first.get_models()  # reloaded from the children's folders: the model is checked again
    assert len(checks) == 3

"""Supervised baselines, a custom loss and a custom evaluation (issue 25, item 4) on a tiny
model's cached gradients.

``LoopVariant.fit`` is wrapped to keep what the loop received: the freshly initialised GRADIEND
(a copy), the cached ``(source, target)`` batches and the per-batch labels. The tests recompute
from those by hand: the first step's loss, the least-squares decoder, the labels themselves."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import fast_args, he_she_data
from tiny import make_model

from gradiend import TextPredictionTrainer
from gradiend._io import read_json
from gradiend._warn import MeaninglessResultWarning
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.trainer.supervised import LoopVariant, fit_decoder

STEPS, EVAL_STEPS, SEED = 60, 20, 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    """An untrained tiny MLM: he/she gradients at the mask differ in any model."""
    return make_model("mlm")


@pytest.fixture
def seen(monkeypatch):
    """What ``LoopVariant.fit`` received, per call: the initial model, batches, labels."""
    calls = []
    fit = LoopVariant.fit

    def recording(self, model, batches, evaluate, **kwargs):
        calls.append({"init": copy.deepcopy(model), "batches": batches, "labels": self.labels})
        return fit(self, model, batches, evaluate, **kwargs)

    monkeypatch.setattr(LoopVariant, "fit", recording)
    return calls


def train(base, tmp_path, **kw) -> tuple[TextPredictionTrainer, dict]:
    trainer = TextPredictionTrainer(
        model=base,
        run_id="he_she",
        data=he_she_data(48),
        args=fast_args(
            tmp_path, max_steps=STEPS, eval_steps=EVAL_STEPS, plot_importance=False, **kw
        ),
        progress=False,
    )
    trainer.train()
    return trainer, read_json(trainer.layout.training)


def batch_labels(trainer: TextPredictionTrainer, batches) -> list[float]:
    """Each cached batch's label from the trainer's labelling of its training rows."""
    rows = trainer.table.split("train").reset_index(drop=True)
    labels = trainer.labels(rows)
    return [float(np.mean(labels[idx])) for idx in batches.batches]


def first_batch(n: int) -> int:
    """The loop's first batch: the last index of the seed's first permutation."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED)).tolist()[-1]


def lstsq_decoder(batches, labels) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[y, 1.0] for y in labels], dtype=torch.float64)
    t = torch.stack([batches[i][1].to(torch.float64) for i in range(len(batches))])
    sol = torch.linalg.lstsq(x, t).solution
    return sol[0], sol[1]


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(
        actual.detach().double().flatten(), expected.flatten(), rtol=1e-4, atol=1e-5 * scale
    )


def test_supervised_encoder_fits_the_labels_and_leaves_the_decoder(base, tmp_path, seen):
    trainer, stats = train(base, tmp_path, supervised_encoder=True)
    (call,) = seen
    init, batches = call["init"], call["batches"]
    assert list(call["labels"]) == batch_labels(trainer, batches)
    assert set(call["labels"]) == {1.0, -1.0}  # one transition per batch
    gradiend = trainer.get_model().gradiend
    assert torch.equal(gradiend.W_d, init.W_d) and torch.equal(gradiend.b_d, init.b_d)
    assert not torch.equal(gradiend.W_e, init.W_e)
    first = stats["evals"][0]["mean_by_class"]
    best = stats["best"]
    assert abs(best["correlation"]) > 0.95 and stats["convergence_info"]["converged"]
    assert max(abs(v) for v in first.values()) < 0.2  # the initial encoder: near 0
    assert best["mean_by_class"]["he"] < -0.7 and best["mean_by_class"]["she"] > 0.7
    i = first_batch(len(batches))
    s, label = batches[i][0].float(), call["labels"][i]
    with torch.no_grad():
        want = torch.nn.functional.mse_loss(init.encode(s[None]), torch.full((1, 1), label))
    assert stats["losses"][0]["step"] == 1
    assert stats["losses"][0]["loss"] == pytest.approx(float(want), rel=1e-4)


def test_supervised_decoder_is_the_least_squares_fit(base, tmp_path, seen):
    trainer, stats = train(base, tmp_path, supervised_decoder=True)
    (call,) = seen
    batches, labels = call["batches"], batch_labels(trainer, call["batches"])
    assert list(call["labels"]) == labels
    w, b = lstsq_decoder(batches, labels)
    gradiend = trainer.get_model().gradiend
    assert_close_to(gradiend.W_d, w)
    assert_close_to(gradiend.b_d, b)
    sign = 1 if torch.equal(gradiend.W_e, call["init"].W_e) else -1  # oriented, not trained
    assert torch.equal(gradiend.W_e, sign * call["init"].W_e)
    assert stats["best_step"] == 0 and not stats["convergence_info"]["converged"]
    assert stats["losses"][-1]["supervised_decoder"]
    # loading the (unconverged) run names its status and the fix
    with pytest.warns(MeaninglessResultWarning, match="did not converge") as caught:
        ModelWithGradiend.from_pretrained(trainer.model_dir, base_model=trainer.get_model().lm)
    text = str(caught[-1].message)
    assert "not_converged" in text and "retrain" in text


def test_both_parts_supervised(base, tmp_path, seen):
    trainer, stats = train(base, tmp_path, supervised_encoder=True, supervised_decoder=True)
    (call,) = seen
    w, b = lstsq_decoder(call["batches"], batch_labels(trainer, call["batches"]))
    gradiend = trainer.get_model().gradiend
    assert_close_to(gradiend.W_d, w)
    assert_close_to(gradiend.b_d, b)
    assert not torch.equal(gradiend.W_e, call["init"].W_e)
    best = stats["best"]["mean_by_class"]
    assert best["he"] < -0.7 and best["she"] > 0.7 and stats["convergence_info"]["converged"]


class CountingL1(torch.nn.Module):
    """``nn.L1Loss`` that keeps every value it returned."""

    def __init__(self):
        super().__init__()
        self.l1, self.values = torch.nn.L1Loss(), []

    def forward(self, prediction, target):
        loss = self.l1(prediction, target)
        self.values.append(float(loss.detach()))
        return loss


def test_criterion_replaces_the_mse(base, tmp_path, seen):
    criterion = CountingL1()
    _, l1 = train(base, tmp_path / "l1", criterion=criterion)
    _, mse = train(base, tmp_path / "mse", evaluate_fn=lambda g: {})  # the loop's own MSE
    assert len(criterion.values) == STEPS
    assert [r["loss"] for r in l1["losses"]] == pytest.approx(criterion.values, rel=1e-6)
    init, batches = seen[0]["init"], seen[0]["batches"]
    s, t = (x.float()[None] for x in batches[first_batch(len(batches))])
    with torch.no_grad():
        pred = init(s)
        want_l1 = float(torch.nn.functional.l1_loss(pred, t))
        want_mse = float(torch.nn.functional.mse_loss(pred, t))
    assert l1["losses"][0]["loss"] == pytest.approx(want_l1, rel=1e-4)
    assert mse["losses"][0]["loss"] == pytest.approx(want_mse, rel=1e-4)
    assert want_l1 != pytest.approx(want_mse, rel=0.1)  # the two losses do differ here


def test_evaluate_fn_runs_at_each_validation_and_is_recorded(base, tmp_path):
    calls = []

    def evaluate_fn(gradiend) -> dict:
        calls.append(float(gradiend.W_e.norm()))
        return {"call": len(calls), "w_e_norm": calls[-1]}

    trainer, stats = train(base, tmp_path, evaluate_fn=evaluate_fn)
    evals = stats["evals"]
    assert [e["step"] for e in evals] == list(range(0, STEPS + 1, EVAL_STEPS))
    assert len(calls) == len(evals)
    assert [e["evaluate_fn"]["call"] for e in evals] == list(range(1, len(evals) + 1))
    assert len(set(calls)) == len(calls)  # the weights it saw changed between validations
    best = next(e for e in evals if e["step"] == stats["best_step"])
    norm = float(trainer.get_model().gradiend.W_e.detach().norm())
    assert best["evaluate_fn"]["w_e_norm"] == pytest.approx(norm, rel=1e-6)


def _synthetic(n: int = 8, dim: int = 5):
    """Pure batches with labels ±1 whose targets are an exact line in the label."""
    gen = torch.Generator().manual_seed(1)
    slope, offset = torch.randn(dim, generator=gen), torch.randn(dim, generator=gen)
    labels = [1.0 if i % 2 else -1.0 for i in range(n)]
    batches = [(torch.randn(dim, generator=gen), slope * y + offset) for y in labels]
    return batches, labels, slope, offset


def test_an_encoder_of_negative_correlation_keeps_decoder_plus_one_at_the_fit():
    """The seeds flip a run whose validation correlation is negative (W_d changes sign): the
    baseline pre-negates its fitted W_d, so after the flip decoder(+1) is the label +1 fit."""
    batches, labels, slope, offset = _synthetic()
    model = GradiendModel(5)
    variant = LoopVariant(supervised_encoder=True, supervised_decoder=True, labels=tuple(labels))
    res = variant.fit(
        model, batches, lambda m: {"correlation": -0.9}, steps=4, eval_steps=2,
        learning_rate=1e-2, progress=False,
    )  # fmt: skip
    assert res.best["correlation"] < 0
    model.flip_sign()  # what train_one_seed does with a negative correlation
    with torch.no_grad():
        torch.testing.assert_close(model.decode(1.0), slope + offset)
        torch.testing.assert_close(model.decode(-1.0), offset - slope)


def test_decoder_baseline_refuses_what_it_cannot_fit():
    batches, labels, _, _ = _synthetic()
    with pytest.raises(ValueError, match="two label values"):
        fit_decoder(GradiendModel(5), batches, [1.0] * len(batches))
    with pytest.raises(ValueError, match="latent_dim=1"):
        fit_decoder(GradiendModel(5, latent_dim=2), batches, labels)
    with pytest.raises(ValueError, match="labels for"):
        LoopVariant(supervised_encoder=True, labels=(1.0,)).fit(
            GradiendModel(5), batches, lambda m: {"correlation": 0.0}, steps=1, eval_steps=1,
            learning_rate=1e-3, progress=False,
        )  # fmt: skip

"""GradiendSplit: none() is today's GRADIEND, by_tensor() masks hold, components find a planted
feature, the four losses, save/reload and bad input (gradiend.model.split)."""

from __future__ import annotations

import pytest
import torch

from gradiend import GradiendModel, GradiendSplit, TrainingArguments
from gradiend._io import read_json
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.lm.params import ParamMap, ParamSpec
from gradiend.model.split import split_loss, summary_encoding
from gradiend.trainer.loop import Architecture, train_loop

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {"a": 6, "b": 4, "c": 5}


def _pmap() -> ParamMap:
    specs, off = [], 0
    for name, n in SIZES.items():
        specs.append(ParamSpec(name, (n,), off))
        off += n
    return ParamMap(specs, off + 3)  # 3 unselected scalars at the end


def _build(split=None, loss="mean", seed=0) -> GradiendModel:
    arch = Architecture(split=None if split is None else split.to_json(), split_loss=loss)
    return arch.build(_pmap(), None, {}, seed)


def _planted(n: int = 64, seed: int = 0):
    """Rows whose label lives in tensor ``a`` only; ``b`` and ``c`` are label-free noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([1.0, -1.0]).repeat(n // 2)
    x = 0.3 * torch.randn(n, 15, generator=gen)
    x[:, :6] += labels[:, None] * torch.linspace(0.5, 1.0, 6)
    return x, labels


def _train(model: GradiendModel, x: torch.Tensor, steps: int = 150):
    """train_loop (the split's loss) on rows whose decoder target is -input; the best step is
    kept by the summary encoding's |r| with the planted labels."""
    batches = [(r, -r) for r in x]
    labels = _planted(len(x))[1]

    def evaluate(m):
        return {"correlation": _corr(summary_encoding(m.encode(x)), labels)}

    return train_loop(
        model, batches, evaluate, steps=steps, eval_steps=10, learning_rate=3e-2,
        gradiend_batch_size=8, progress=False,
    )  # fmt: skip


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_none_is_todays_gradiend_exactly():
    torch.manual_seed(0)
    today = GradiendModel(15, param_map=_pmap())
    for split in (None, GradiendSplit.none()):
        model = _build(split)
        assert model.component_names == [] and model.latent_dim == 1
        for k, v in today.state_dict().items():
            assert torch.equal(v, model.state_dict()[k])
        x = torch.randn(4, 15)
        assert torch.equal(
            split_loss(model, model(x), x), torch.nn.functional.mse_loss(model(x), x)
        )


def test_single_is_one_component_over_everything():
    model = _build(GradiendSplit.single("pronoun"))
    assert model.component_names == ["pronoun"] and model.latent_dim == 1
    assert model.encoders["pronoun"].positions.tolist() == list(range(15))
    x = torch.randn(3, 15)
    assert torch.equal(model.encode_components(x)["pronoun"], model.encode(x)[:, 0])


def test_by_tensor_masks_hold_before_and_after_training():
    model = _build(GradiendSplit.by_tensor())
    assert model.component_names == list(SIZES) and model.latent_dim == 3
    x = torch.randn(2, 15)
    bumped = x.clone()
    bumped[:, :6] += 5.0  # a change inside tensor a only
    enc, enc2 = model.encode(x), model.encode(bumped)
    assert not torch.equal(enc[:, 0], enc2[:, 0])
    assert torch.equal(enc[:, 1:], enc2[:, 1:])  # latents b and c never see tensor a
    data, _ = _planted()
    _train(model, data, steps=60)
    pos = model.component_positions
    for k, name in enumerate(SIZES):
        outside = torch.ones(15, dtype=torch.bool)
        outside[pos[name]] = False
        assert torch.count_nonzero(model.W_d[outside, k]) == 0
        assert torch.count_nonzero(model.W_e[k, outside]) == 0
        assert torch.count_nonzero(model.decoders[name].weight) > 0


def test_a_feature_planted_in_one_tensor_is_found_by_its_component():
    model = _build(GradiendSplit.by_tensor(), seed=1)
    x, labels = _planted()
    _train(model, x)
    test_x, test_labels = _planted(seed=5)
    with torch.no_grad():
        enc = model.encode_components(test_x)
    r = {name: abs(_corr(v, test_labels)) for name, v in enc.items()}
    assert r["a"] > 0.9, r
    assert r["b"] < 0.4 and r["c"] < 0.4, r


@pytest.mark.parametrize("loss", ["mean", "sum", "size_weighted", "full"])
def test_the_four_losses_equal_hand_computations(loss):
    model = _build(GradiendSplit.by_tensor(), loss=loss)
    pred, target = torch.randn(2, 15), torch.randn(2, 15)
    sq = (pred - target) ** 2
    per = [sq[:, :6].mean(), sq[:, 6:10].mean(), sq[:, 10:].mean()]
    want = {
        "mean": sum(per) / 3,
        "sum": sum(per),
        "size_weighted": (6 * per[0] + 4 * per[1] + 5 * per[2]) / 15,
        "full": sq.mean(),
    }[loss]
    assert torch.allclose(split_loss(model, pred, target), want, rtol=1e-6)


def test_save_reload_keeps_the_split_and_the_encodings(tmp_path):
    model = _build(GradiendSplit.by_tensor(), loss="sum")
    x, _ = _planted()
    _train(model, x, steps=20)
    again = GradiendModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert again.split == GradiendSplit.by_tensor() and again.component_names == list(SIZES)
    assert again.metadata["gradiend_split_loss"] == "sum"
    assert torch.equal(again.encode(x), model.encode(x))
    assert torch.equal(again(x), model(x))
    assert "pickle" not in (tmp_path / "m" / "config.json").read_text()


def test_with_components_and_without_split():
    model = _build(GradiendSplit.by_tensor())
    x, _ = _planted()
    _train(model, x, steps=20)
    only_a = model.with_components(["a"])
    assert only_a.component_names == ["a"] and only_a.latent_dim == 1
    assert torch.allclose(only_a.encode(x)[:, 0], model.encode(x)[:, 0], atol=1e-6)
    update = only_a.decode(1.0)
    assert torch.count_nonzero(update[6:]) == 0  # writes nothing outside tensor a
    assert torch.allclose(update[:6], model.decode(1.0)[:6])
    plain = model.without_split()
    assert plain.component_names == [] and torch.allclose(plain(x), model(x))


def test_steering_applies_the_same_value_to_every_component():
    model = _build(GradiendSplit.by_tensor())
    want = model.decoder(torch.ones(3))
    assert torch.equal(model.decode(1.0), want)


def _summary(corr: float, means: tuple[float, float], comps: dict | None = None) -> dict:
    out = {"correlation": corr, "mean_by_class": {"he": means[0], "she": means[1]}}
    if comps is not None:
        out["components"] = {n: _summary(*v) for n, v in comps.items()}
    return out


def test_a_split_converges_when_one_component_carries_the_feature():
    rule, classes = ConvergenceRule(), ["he", "she"]
    weak = _summary(0.99, (0.45, -0.45))  # the mean of the latents: under mean_threshold
    assert not rule.is_convergent(weak, 5, classes)
    split = _summary(0.99, (0.45, -0.45), {"w": (0.99, (0.8, -0.8)), "b": (0.9, (0.1, -0.1))})
    assert rule.component_verdicts(split, 5, classes) == {"w": True, "b": False}
    assert rule.is_convergent(split, 5, classes)
    assert not rule.is_convergent(split, 0, classes)  # the untrained step never converges
    opposed = _summary(0.2, (0.1, -0.1), {"w": (-0.99, (-0.8, 0.8)), "b": (0.3, (0.1, -0.1))})
    assert rule.component_verdicts(opposed, 5, classes) == {"w": False, "b": False}
    noise = _summary(0.1, (0.05, 0.0), {"w": (0.2, (0.1, 0.0)), "b": (0.1, (0.0, 0.02))})
    assert not rule.is_convergent(noise, 5, classes)
    strict = ConvergenceRule(mean_threshold=0.9)
    assert not strict.is_convergent(split, 5, classes)  # the run's thresholds apply per component


def test_a_split_trainer_without_the_feature_in_any_component_is_unconverged(planted, tmp_path):
    from conftest import he_she_trainer

    from gradiend.trainer.convergence_check import UnconvergedError

    params = ["*layer.1.output.dense.weight", "*layer.1.output.dense.bias"]
    trainer = he_she_trainer(
        planted["mlm"], tmp_path, params=params, gradiend_split=GradiendSplit.by_tensor(),
        n_neutral=None, learning_rate=1e-7, max_steps=20, eval_steps=10,
    )  # fmt: skip
    info = read_json(trainer.layout.training)["convergence_info"]
    assert not info["converged"] and not any(c["converged"] for c in info["components"].values())
    with pytest.raises(UnconvergedError):
        trainer.evaluate_encoder()


def test_bad_input_errors_clearly():
    with pytest.raises(ValueError, match="gradiend_split_loss 'avg'"):
        TrainingArguments(gradiend_split=GradiendSplit.by_tensor(), gradiend_split_loss="avg")
    with pytest.raises(ValueError, match="unknown GradiendSplit kind 'by_layer'"):
        GradiendSplit("by_layer")
    with pytest.raises(TypeError, match="did you mean"):
        GradiendSplit(knd="by_tensor")
    with pytest.raises(ValueError, match="no component named 'd'"):
        _build(GradiendSplit("by_tensor", only=("a", "d")))
    with pytest.raises(ValueError, match="no component named 'z'"):
        _build(GradiendSplit.by_tensor()).with_components(["z"])
    with pytest.raises(ValueError, match="has no components"):
        _build().encoders  # noqa: B018
    with pytest.raises(ValueError, match="post_prune_config"):
        TrainingArguments(gradiend_split="by_tensor", post_prune_config={"topk": 0.5})


def test_a_split_trainer_reports_components_and_reloads_with_them(planted, tmp_path):
    from conftest import he_she_trainer

    from gradiend import ModelWithGradiend

    params = ["*layer.1.output.dense.weight", "*layer.1.output.dense.bias"]
    trainer = he_she_trainer(
        planted["mlm"], tmp_path, params=params, gradiend_split=GradiendSplit.by_tensor(),
        gradiend_split_loss="size_weighted", n_neutral=None, learning_rate=1e-2,
    )  # fmt: skip
    gradiend = trainer.get_model().gradiend
    assert gradiend.latent_dim == 2 and len(gradiend.component_names) == 2
    info = read_json(trainer.layout.training)["convergence_info"]
    rule = TrainingArguments().convergence()
    verdicts = {n: c["converged"] for n, c in info["components"].items()}
    assert info["converged"] and set(verdicts) == set(gradiend.component_names)
    weight = next(n for n in verdicts if n.endswith("weight"))
    assert verdicts[weight], info["components"]  # the weight tensor carries the planted feature
    best = read_json(trainer.layout.training)["best"]
    summary_only = {k: v for k, v in best.items() if k != "components"}
    assert not rule.is_convergent(summary_only, 1, ["he", "she"])  # the mean alone misses it
    metrics = trainer.evaluate_encoder()  # no allow_unconverged: the split converged
    assert set(metrics["components"]) == set(gradiend.component_names)
    for name, comp in metrics["components"].items():
        assert -1 <= comp["correlation"] <= 1 and set(comp["mean_by_class"]) >= {1, -1}
        assert comp["converged"] is verdicts[name]  # the training verdict, on the test entry
    assert abs(metrics["correlation"]) > 0.5
    again = ModelWithGradiend.from_pretrained(trainer.model_dir, base_model=planted["mlm"])
    assert again.gradiend.component_names == gradiend.component_names
    x = torch.randn(3, gradiend.input_dim)
    assert torch.equal(again.gradiend.encode(x), gradiend.encode(x))

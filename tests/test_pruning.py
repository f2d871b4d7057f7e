"""Pre- and post-pruning on the planted-feature tiny models."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data

from gradiend import GradiendModel, ModelWithGradiend, TextPredictionTrainer, TrainingArguments
from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig
from gradiend.trainer.pruning import RULES, importance, select, stratified_sample

KINDS = ["mlm", "clm"]


def _train(planted, tmp_path, kind: str, run_id: str, **kw) -> TextPredictionTrainer:
    trainer = TextPredictionTrainer(
        model=planted[kind],
        run_id=run_id,
        data=he_she_data(),
        args=fast_args(tmp_path, **kw),
        progress=False,
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def runs(planted, tmp_path_factory):
    """Per kind: an unpruned run, a pre-pruned run (both the default multi-seed path: a single
    seed on these tiny models sometimes fails, pruned or not) and a post-pruned run (2 seeds, so
    the unpruned seed models stay under ``seeds/``)."""
    out = {}
    for kind in KINDS:
        tmp = tmp_path_factory.mktemp(f"prune_{kind}")
        out[kind] = {
            "full": _train(planted, tmp, kind, "full", max_seeds=3),
            "pre": _train(
                planted,
                tmp,
                kind,
                "pre",
                max_seeds=3,
                pre_prune_config=PrePruneConfig(n_samples=16, topk=0.05),
            ),
            "post": _train(
                planted,
                tmp,
                kind,
                "post",
                max_seeds=2,
                post_prune_config=PostPruneConfig(topk=0.05),
            ),
        }
    return out


def _unpruned_seed_model(trainer: TextPredictionTrainer) -> GradiendModel:
    seed = trainer.get_training_stats()["seed"]
    return GradiendModel.from_pretrained(trainer.run_dir / "seeds" / f"seed_{seed}")


@pytest.mark.parametrize("kind", KINDS)
def test_pre_pruned_training_reaches_the_unpruned_correlation(runs, kind):
    full = runs[kind]["full"].evaluate_encoder(neutral=False)["correlation"]
    pre_trainer = runs[kind]["pre"]
    pre = pre_trainer.evaluate_encoder(neutral=False)["correlation"]
    assert full >= 0.9
    assert pre >= full - 0.05
    model = pre_trainer.get_model().gradiend
    assert model.input_dim == pytest.approx(0.05 * model.param_map.numel, abs=1)
    assert torch.all(model.indices[1:] > model.indices[:-1])  # sorted, base-global, unique


@pytest.mark.parametrize("kind", KINDS)
def test_post_pruned_model_stores_only_kept_global_indices(runs, kind):
    trainer = runs[kind]["post"]
    pruned = trainer.get_model().gradiend
    full = _unpruned_seed_model(trainer)
    k = pruned.input_dim
    assert k == pytest.approx(0.05 * full.input_dim, abs=1)
    # post-pruning ranks every dimension, the feature words' own rows included (region="all")
    expected = torch.sort(full.get_topk_weights("decoder-fit", k, region="all")).values
    assert torch.equal(pruned.indices, expected)
    reloaded = GradiendModel.from_pretrained(trainer.model_dir)
    assert torch.equal(reloaded.indices, pruned.indices)
    assert (trainer.model_dir / "mapping_indices.safetensors").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_topk_global_indices_agree_between_pruned_and_unpruned(runs, kind):
    trainer = runs[kind]["post"]
    pruned, full = trainer.get_model().gradiend, _unpruned_seed_model(trainer)
    for topk in (1, 10, 100, pruned.input_dim):
        for part in ("decoder-fit",):  # the ranking post-pruning kept the dimensions by
            a = pruned.get_topk_weights(part, topk, region="all")  # post-pruning's region
            b = full.get_topk_weights(part, topk, region="all")
            # the same dimensions (the order of near-ties may differ by float rounding)
            assert torch.equal(torch.sort(a).values, torch.sort(b).values), (topk, part)
    # the pre-pruned run's post-pruned selection stays inside its pre-pruned dimensions
    pre = runs[kind]["pre"].get_model()
    sub = pre.prune_gradiend(topk=50, inplace=False)
    top = sub.gradiend.get_topk_weights(topk=50, region="all")
    assert set(top.tolist()) <= set(pre.gradiend.indices.tolist())
    assert set(top.tolist()) == set(pre.gradiend.get_topk_weights(topk=50, region="all").tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_post_pruned_encodings_equal_on_kept_dimensions(runs, kind):
    """``prune`` copies the kept weights bit for bit, so the decoder output is exactly the kept
    slice; the encoding of a gradient restricted to the kept dims equals the full model's
    encoding of that gradient with the dropped dims zeroed (up to summation order)."""
    trainer = runs[kind]["post"]
    saved, full = trainer.get_model().gradiend, _unpruned_seed_model(trainer)
    keep = torch.isin(full.global_indices(), saved.indices)
    assert int(keep.sum()) == saved.input_dim
    pruned = full.prune(mask=keep, inplace=False)
    assert torch.equal(pruned.W_e, full.W_e[:, keep])
    assert torch.equal(pruned.W_d, full.W_d[keep])
    assert torch.equal(pruned.b_e, full.b_e)
    assert torch.equal(pruned.decoder_fit, full.decoder_fit[keep])
    for h in (-1.0, 0.0, 0.7, 1.0):
        assert torch.equal(pruned.decode(h), full.decode(h)[keep])
    x = torch.randn(6, full.input_dim)
    zeroed = x * keep
    torch.testing.assert_close(pruned.encode(x[:, keep]), full.encode(zeroed), rtol=1e-5, atol=1e-6)
    # the same through the base model: JVP encodings of real examples
    mwg = ModelWithGradiend(trainer.get_model().lm, pruned)
    masked_full = GradiendModel.from_pretrained(
        trainer.run_dir / "seeds" / f"seed_{trainer.get_training_stats()['seed']}"
    )
    with torch.no_grad():
        masked_full.W_e[:, ~keep] = 0
    other = ModelWithGradiend(mwg.lm, masked_full)
    obj = mwg.objective
    items = [
        obj.item("the king said that [MASK] will come today .", ["he"], ["she"]),
        obj.item("the queen thinks that [MASK] will sing .", ["she"], ["he"]),
    ]
    torch.testing.assert_close(
        mwg.encode_items(items, progress=False),
        other.encode_items(items, progress=False),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_post_pruning_refits_the_encoder_and_records_it(runs, kind):
    """The saved post-pruned model is the slice with a rescaled encoder (w_e × a, b_e kept) and
    an untouched decoder; training.json records the sliced and re-fitted validation figures,
    and the re-fit brings the class means back within 10 % of the unpruned model's."""
    trainer = runs[kind]["post"]
    saved, full = trainer.get_model().gradiend, _unpruned_seed_model(trainer)
    keep = torch.isin(full.global_indices(), saved.indices)
    record = trainer.get_training_stats()["post_prune"]
    assert record["part"] == "decoder-fit"
    assert (record["dims_before"], record["dims_after"]) == (full.input_dim, saved.input_dim)
    scale, bias = record["refit"]["scale"], record["refit"]["bias"]
    torch.testing.assert_close(saved.W_e, scale * full.W_e[:, keep])
    torch.testing.assert_close(saved.b_e, full.b_e)
    assert bias == pytest.approx(float(full.b_e[0]))
    assert torch.equal(saved.W_d, full.W_d[keep])
    before, sliced, after = record["before"], record["sliced"], record["after"]
    for cls, mean in before["mean_by_class"].items():
        assert abs(after["mean_by_class"][cls] - mean) <= 0.1 * abs(mean), (cls, record)
    gap = lambda s: max(abs(s["mean_by_class"][c] - m) for c, m in before["mean_by_class"].items())  # noqa: E731
    assert gap(after) <= gap(sliced) + 1e-6


def test_post_pruning_without_refit_is_the_plain_slice(planted, tmp_path):
    trainer = _train(
        planted,
        tmp_path,
        "mlm",
        "noref",
        max_seeds=2,
        post_prune_config=PostPruneConfig(topk=0.05, refit_encoder=False),
    )
    saved, full = trainer.get_model().gradiend, _unpruned_seed_model(trainer)
    keep = torch.isin(full.global_indices(), saved.indices)
    assert torch.equal(saved.W_e, full.W_e[:, keep])
    record = trainer.get_training_stats()["post_prune"]
    assert "refit" not in record and record["after"] == record["sliced"]


def test_prune_gradiend_and_prune_mask(runs):
    mwg = runs["clm"]["full"].get_model()
    dim = mwg.gradiend.input_dim
    mask = mwg.get_prune_mask(topk=0.1)
    assert mask.dtype == torch.bool and len(mask) == dim
    assert int(mask.sum()) == -(-dim // 10)
    assert mwg.gradiend.input_dim == dim  # get_prune_mask does not prune
    by_mask = mwg.prune_gradiend(mask=mask, inplace=False)
    by_topk, keep = mwg.prune_gradiend(topk=0.1, inplace=False, return_mask=True)
    assert torch.equal(keep, mask)
    assert torch.equal(by_mask.gradiend.indices, by_topk.gradiend.indices)
    thr = float(mwg.gradiend.get_weight_importance().median())
    by_thr = mwg.prune_gradiend(threshold=thr, inplace=False)
    assert by_thr.gradiend.input_dim == int((mwg.gradiend.get_weight_importance() >= thr).sum())
    x = torch.randn(2, by_mask.gradiend.input_dim)
    assert by_mask.encode(x).shape == (2, 1)


class _FakeComputer:
    """Fixed per-example gradients of one parameter (enough for ``importance``)."""

    def __init__(self, grads: torch.Tensor):
        self.grads, self.dim = grads, grads.shape[1]
        self.params = [torch.nn.Parameter(torch.zeros(grads.shape[1]))]

    def iter_per_example_params(self, items, kind):
        for i in items:
            yield [self.grads[i].clone()]

    def accumulate_weighted(self, items, kind, weights, first=False):
        p = self.params[0]
        g = sum(w * self.grads[i] for i, w in zip(items, weights))
        p.grad = g if first or p.grad is None else p.grad + g


def test_pre_prune_rules_on_cancelling_directions():
    # dim 0: +1 for class A, -1 for class B (the feature; cancels in the signed mean)
    # dim 1: constant 0.5 (no feature), dim 2: small noise
    g = torch.tensor([[1.0, 0.5, 0.01], [1.0, 0.5, -0.02], [-1.0, 0.5, 0.03], [-1.0, 0.5, 0.0]])
    labels = [1.0, 1.0, -1.0, -1.0]
    comp = _FakeComputer(g)
    scores = {
        r: torch.cat(
            importance(
                comp, [0, 1, 2, 3], labels, PrePruneConfig(rule=r, batch_size=3), progress=False
            )
        )
        for r in RULES
    }
    assert scores["signed_mean"][0] == 0  # the incumbent's rule loses the feature
    assert torch.argmax(scores["label_signed_mean"]) == 0
    assert torch.argmax(scores["abs_mean"]) == 0
    assert select(scores["label_signed_mean"], 1, None).tolist() == [0]
    assert select(scores["abs_mean"], None, 0.4).tolist() == [0, 1]
    assert select(scores["abs_mean"], 0.5, None).tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown pre-prune rule"):
        PrePruneConfig(rule="nope")


def test_stratified_sample_is_balanced():
    import pandas as pd

    df = pd.DataFrame({"feature_class_id": [0] * 10 + [1] * 3})
    pos = stratified_sample(df, 9, seed=0)
    assert len(pos) == 9
    ids = df["feature_class_id"].to_numpy()[pos]
    assert (ids == 0).sum() == 5 and (ids == 1).sum() == 4  # remainder to the first class
    assert stratified_sample(df, 9, seed=0) == pos


def test_prune_configs_validate():
    with pytest.raises(ValueError):
        PrePruneConfig(topk=None, threshold=None)
    with pytest.raises(ValueError):
        PostPruneConfig(topk=None)
    with pytest.raises(TypeError, match="did you mean 'n_samples'"):
        PrePruneConfig(n_sample=3)
    args = TrainingArguments(pre_prune_config={"topk": 0.02}, post_prune_config={"topk": 10})
    assert args.pre_prune_config.topk == 0.02 and args.post_prune_config.topk == 10


def test_snr_importance_from_neutral_texts_ranks_and_post_prunes(planted, tmp_path):
    """With eval_neutral_data the run records the neutral F of its last 32 texts, ranks by
    snr by default and post-prunes by it; F is the oracle's on the kept dimensions (up to
    the normalisation); other neutral texts are another run; without texts: decoder-fit."""
    from conftest import he_she_trainer, neutral_texts

    from gradiend.lm import fisher as fisher_mod

    post = PostPruneConfig(topk=0.3)
    tr = he_she_trainer(planted["clm"], tmp_path, "snr", n_neutral=40, post_prune_config=post)
    stats = tr.get_training_stats()
    assert stats["importance"] == {"default_part": "snr", "neutral_texts": 32}
    assert stats["post_prune"]["part"] == "snr"
    model = tr.get_model().gradiend
    assert model.resolve_part(None) == "snr" and model.neutral_fisher is not None
    oracle = fisher_mod.neutral_fisher(tr.get_model(), neutral_texts(40)[-32:], progress=False)
    stored, oracle = model.neutral_fisher.cpu(), oracle.cpu()
    scale = float(stored.sum() / oracle.sum())  # F was normalised over all pre-pruned dims
    assert scale > 0
    torch.testing.assert_close(stored, scale * oracle, rtol=1e-3, atol=1e-6)
    again = GradiendModel.from_pretrained(tr.model_dir)
    assert torch.equal(again.get_topk_weights(topk=10), model.get_topk_weights(topk=10))
    # other importance texts change the run's fingerprint
    other = TextPredictionTrainer(
        model=planted["clm"],
        run_id="snr",
        data=he_she_data(),
        eval_neutral_data=neutral_texts(40, seed=9),
        args=fast_args(tmp_path, post_prune_config=post),
        progress=False,
    )
    assert other._fingerprint()["importance_texts"] != tr._fingerprint()["importance_texts"]
    plain = he_she_trainer(planted["clm"], tmp_path, "fit", n_neutral=None, post_prune_config=post)
    assert plain.get_training_stats()["importance"]["default_part"] == "decoder-fit"
    with pytest.raises(ValueError, match="eval_neutral_data"):
        TextPredictionTrainer(
            model=planted["clm"],
            run_id="x",
            data=he_she_data(),
            args=fast_args(tmp_path, post_prune_config=PostPruneConfig(part="snr")),
            progress=False,
        )
    assert not (tmp_path / "x").exists()


def test_snr_falls_back_to_decoder_fit_when_no_fisher_can_be_estimated(
    planted, tmp_path, monkeypatch, caplog
):
    from conftest import he_she_trainer

    from gradiend.lm import fisher as fisher_mod

    def broken(*args, **kwargs):
        raise ValueError("the neutral texts' gradients are zero on the selected parameters")

    monkeypatch.setattr(fisher_mod, "fisher_of", broken)
    tr = he_she_trainer(planted["clm"], tmp_path, "nofisher", n_neutral=40)
    assert tr.get_training_stats()["importance"] == {
        "default_part": "decoder-fit",
        "neutral_texts": 0,
    }
    assert "snr importance unavailable" in caplog.text
    post = PostPruneConfig(topk=0.3, part="snr")  # asked for explicitly: the error stands
    with pytest.raises(ValueError, match="zero"):
        he_she_trainer(planted["clm"], tmp_path, "nofisher2", n_neutral=40, post_prune_config=post)

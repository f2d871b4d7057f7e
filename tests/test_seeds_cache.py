"""Multi-seed training, run caches and resuming interrupted runs (planted tiny models)."""

from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch
from conftest import he_she_data

from gradiend import TextPredictionTrainer, TrainingArguments
from gradiend._io import read_json, write_json
from gradiend.lm.gradients import GradientComputer
from gradiend.trainer import seeds as seeds_mod
from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig
from gradiend.trainer.fingerprint import diff_fingerprint

KIND = "mlm"
N_ROWS = 60
_TRAIN_ONE_SEED = seeds_mod.train_one_seed  # the real one, whatever spies are installed


def _args(tmp_path, **kw) -> TrainingArguments:
    base = dict(
        experiment_dir=str(tmp_path),
        train_batch_size=4,
        max_steps=40,
        eval_steps=10,
        learning_rate=1e-3,
        max_seeds=1,
        use_cache=True,
        auto_remedy=False,  # seed 0 collapses here (both classes ≈ +1 by step 40): seeds only
    )
    base.update(kw)
    return TrainingArguments(**base)


def _trainer(planted, tmp_path, model=None, data=None, target_classes=None, **kw):
    return TextPredictionTrainer(
        model=model or planted[KIND],
        run_id="run",
        data=data or he_she_data(N_ROWS),
        target_classes=target_classes,
        args=_args(tmp_path, **kw),
        progress=False,
    )


def _seed_spy(monkeypatch, hook=None) -> list[int]:
    """Record the seeds actually trained; ``hook(seed, result)`` may raise or edit the result."""
    trained: list[int] = []
    original = _TRAIN_ONE_SEED

    def spy(trainer, pmap, indices, batches, evaluate, meta, seed, key=None):
        trained.append(seed)
        if hook is not None:
            hook(seed, None)
        result = original(trainer, pmap, indices, batches, evaluate, meta, seed, key)
        if hook is not None:
            hook(seed, result)
        return result

    monkeypatch.setattr(seeds_mod, "train_one_seed", spy)
    return trained


# ---------------------------------------------------------------------------- seeds
def test_failing_seed_does_not_stop_the_run(planted, tmp_path, monkeypatch):
    def hook(seed, result):
        if seed == 0 and result is None:
            raise FloatingPointError("loss diverged")

    trained = _seed_spy(monkeypatch, hook)
    trainer = _trainer(planted, tmp_path, max_seeds=3)
    trainer.train()
    assert trained == [0, 1]
    report = read_json(tmp_path / "run" / "seeds" / "seed_report.json")
    assert report["failed_seeds"] == [0] and report["best_seed"] == 1
    assert "loss diverged" in report["seeds"][0]["error"]
    assert trainer.get_training_stats()["seed"] == 1


def test_non_convergent_seed_is_followed_by_the_next(planted, tmp_path, monkeypatch):
    def hook(seed, result):
        if seed == 0 and result is not None:
            result[1]["converged"] = False

    trained = _seed_spy(monkeypatch, hook)
    trainer = _trainer(planted, tmp_path, max_seeds=3)
    trainer.train()
    assert trained == [0, 1]
    report = read_json(tmp_path / "run" / "seeds" / "seed_report.json")
    assert report["convergent_seeds"] == [1] and report["best_seed"] == 1
    stats = trainer.get_training_stats()
    assert stats["convergence_info"]["converged"] and stats["seed"] == 1


def test_fail_on_non_convergence(planted, tmp_path, caplog):
    # a perfect correlation required (via the alias name; a threshold over 1 is refused
    # as unreachable) and a learning rate too small to move the encodings: no seed converges
    with pytest.raises(RuntimeError, match="0 of 2 seed"):
        _trainer(
            planted,
            tmp_path / "a",
            max_seeds=2,
            max_steps=20,
            convergence_threshold=1.0,
            learning_rate=1e-12,
            fail_on_non_convergence=True,
        ).train()
    assert not (tmp_path / "a" / "run" / "model").exists()
    with caplog.at_level(logging.WARNING, logger="gradiend.trainer.seeds"):
        trainer = _trainer(
            planted,
            tmp_path / "b",
            max_seeds=2,
            max_steps=20,
            convergent_score_threshold=1.0,
            learning_rate=1e-12,
        )
        trainer.train()
    assert "0 of 2 seed(s) converged" in caplog.text
    assert not trainer.get_training_stats()["convergence_info"]["converged"]


def test_convergence_aliases():
    a = TrainingArguments(convergence_metric="loss", convergence_threshold=0.1)
    assert a.convergent_metric == "loss" and a.convergent_score_threshold == 0.1
    b = TrainingArguments(convergent_score_threshold=0.7)
    assert b.convergence_threshold == 0.7 and b.score_threshold == 0.7
    assert TrainingArguments().convergence_metric == "correlation"
    with pytest.raises(ValueError, match="disagree"):
        TrainingArguments(convergent_score_threshold=0.7, convergence_threshold=0.6)


def test_seed_report(planted, tmp_path):
    trainer = _trainer(planted, tmp_path, max_seeds=3, min_convergent_seeds=3)
    mwg = trainer.train()
    report = read_json(tmp_path / "run" / "seeds" / "seed_report.json")
    assert report["tried"] == [0, 1, 2]
    assert [r["seed"] for r in report["seeds"]] == [0, 1, 2]
    for r in report["seeds"]:
        assert {
            "seed",
            "best_step",
            "correlation",
            "mean_by_class",
            "converged",
            "flipped",
            "steps",
            "seconds",
        } <= set(r)
        assert (tmp_path / "run" / "seeds" / f"seed_{r['seed']}" / "model.safetensors").exists()
    best = max(report["seeds"], key=lambda r: (r["converged"], abs(r["correlation"])))
    assert report["best_seed"] == best["seed"]
    assert report["convergent_count"] == sum(r["converged"] for r in report["seeds"])
    assert report["min_convergent_seeds"] == 3 and report["max_seeds"] == 3
    assert report["convergence_metric"] == "correlation" and report["threshold"] == 0.5
    stats = trainer.get_training_stats()
    assert stats["seed"] == report["best_seed"]
    # the run's model is the best seed's model
    from gradiend import GradiendModel

    best_model = GradiendModel.from_pretrained(tmp_path / "run" / "seeds" / f"seed_{best['seed']}")
    assert torch.equal(best_model.W_e, mwg.gradiend.W_e)
    # gradients were computed once for all three seeds
    assert stats["base_passes"]["training_batches_computed"] == stats["n_training_batches"]


# ---------------------------------------------------------------------------- cache
@pytest.fixture(scope="module")
def cached_run(planted, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cached")
    trainer = _trainer(planted, tmp)
    trainer.train()
    return tmp


def _copy_run(src, dst):
    shutil.copytree(src / "run" / "model", dst / "run" / "model")
    return dst


def _perturbed(planted):
    model, tok = planted[KIND]
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    return other, tok


def _changed_data():
    data = he_she_data(N_ROWS)
    data["he"].loc[0, "masked"] = "the king hopes that [MASK] will win ."
    return data


# (field changed alone, trainer kwargs, name the log must give)
CHANGES = [
    ("learning_rate", {"learning_rate": 2e-3}, "learning_rate"),
    ("max_steps", {"max_steps": 41}, "max_steps"),
    ("source", {"source": "diff"}, "source"),
    ("target", {"target": "factual"}, "target"),
    ("params", {"params": "PARAMS"}, "params"),
    ("pre_prune_config", {"pre_prune_config": PrePruneConfig(topk=0.5)}, "pre_prune_config"),
    ("post_prune_config", {"post_prune_config": PostPruneConfig(topk=0.5)}, "post_prune_config"),
    ("post_prune_topk", {"post_prune_config": "POST"}, "post_prune_config.topk"),
    ("seed", {"seed": 1}, "seed"),
    ("data", {"data": "DATA"}, "data_sha"),
    ("target_classes", {"target_classes": ["she", "he"]}, "target_classes"),
    ("model_weights", {"model": "MODEL"}, "base_model.weights_sha"),
]


@pytest.mark.parametrize("name,change,field", CHANGES, ids=[c[0] for c in CHANGES])
def test_every_cache_field_invalidates(planted, cached_run, tmp_path, caplog, name, change, field):
    kw = dict(change)
    if kw.get("params") == "PARAMS":
        kw["params"] = [n for n, _ in planted[KIND][0].named_parameters()][:2]
    if kw.get("data") == "DATA":
        kw["data"] = _changed_data()
    if kw.get("model") == "MODEL":
        kw["model"] = _perturbed(planted)
    if kw.get("post_prune_config") == "POST":
        # the stored run has topk=0.05: store one with a post-prune config first
        stored = read_json(cached_run / "run" / "model" / "training.json")
        _copy_run(cached_run, tmp_path)
        path = tmp_path / "run" / "model" / "training.json"
        stored["cache_fingerprint"]["post_prune_config"] = {
            "topk": 0.05,
            "threshold": None,
            "part": "decoder-weight",
        }
        write_json(path, stored)
        kw["post_prune_config"] = PostPruneConfig(topk=0.1)
    else:
        _copy_run(cached_run, tmp_path)
    trainer = _trainer(planted, tmp_path, **kw)
    with caplog.at_level(logging.INFO, logger="gradiend.trainer.run_cache"):
        assert trainer._try_cache(trainer._fingerprint()) is None
    assert "not used" in caplog.text and repr(field) in caplog.text
    # the unchanged run would have been reused
    same = _trainer(planted, tmp_path) if name != "post_prune_topk" else None
    if same is not None:
        assert same._try_cache(same._fingerprint()) is not None


def test_fingerprint_diff_names_nested_fields():
    old = {"a": 1, "pre_prune_config": {"topk": 0.01, "n_samples": 16}, "base_model": {"sha": "x"}}
    new = {"a": 1, "pre_prune_config": {"topk": 0.02, "n_samples": 16}, "base_model": {"sha": "y"}}
    assert diff_fingerprint(old, new) == ["base_model.sha", "pre_prune_config.topk"]
    assert diff_fingerprint(old, old) == []
    assert diff_fingerprint(None, new) == ["<no fingerprint stored>"]


def test_use_cache_modes(planted, cached_run, tmp_path):
    _copy_run(cached_run, tmp_path)
    assert _trainer(planted, tmp_path)._try_cache(_trainer(planted, tmp_path)._fingerprint())
    for mode, expect in (
        (False, False),
        (True, False),
        ("always", True),
        ("only_convergent", False),
    ):
        t = _trainer(planted, tmp_path, use_cache=mode, learning_rate=5e-3)
        assert (t._try_cache(t._fingerprint()) is not None) == expect, mode
    path = tmp_path / "run" / "model" / "training.json"
    stats = read_json(path)
    stats["convergence_info"]["converged"] = True
    write_json(path, stats)
    t = _trainer(planted, tmp_path, use_cache="only_convergent")
    assert t._try_cache(t._fingerprint()) is not None
    stats["convergence_info"]["converged"] = False
    write_json(path, stats)
    for mode, expect in ((True, True), ("always", True), ("only_convergent", False)):
        t = _trainer(planted, tmp_path, use_cache=mode)
        assert (t._try_cache(t._fingerprint()) is not None) == expect, mode


def test_second_train_reuses_everything(planted, tmp_path, monkeypatch):
    first = _trainer(
        planted, tmp_path, max_seeds=2, pre_prune_config=PrePruneConfig(n_samples=8, topk=0.1)
    ).train()

    def boom(*a, **k):
        raise AssertionError("no gradient may be computed on a cache hit")

    for name in ("batch", "iter_per_example", "per_example"):
        monkeypatch.setattr(GradientComputer, name, boom)
    second = _trainer(
        planted, tmp_path, max_seeds=2, pre_prune_config=PrePruneConfig(n_samples=8, topk=0.1)
    ).train()
    assert torch.equal(first.gradiend.W_e, second.gradiend.W_e)
    assert torch.equal(first.gradiend.indices, second.gradiend.indices)


def test_new_learning_rate_reuses_the_gradient_cache(planted, cached_run, tmp_path):
    shutil.copytree(cached_run / "run", tmp_path / "run")
    trainer = _trainer(planted, tmp_path, learning_rate=2e-3)
    trainer.train()
    stats = trainer.get_training_stats()
    assert stats["base_passes"]["training_batches_computed"] == 0
    assert stats["training_args"]["learning_rate"] == 2e-3


# ---------------------------------------------------------------------------- resume
def _gradient_files(tmp_path):
    return sorted((tmp_path / "run" / "cache" / "gradients").glob("*/batch_*.safetensors"))


def test_resume_after_kill_during_gradient_extraction(planted, tmp_path, monkeypatch):
    original = GradientComputer.batch
    calls = {"n": 0}

    def dying(self, items, kinds):
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return original(self, items, kinds)

    monkeypatch.setattr(GradientComputer, "batch", dying)
    with pytest.raises(KeyboardInterrupt):
        _trainer(planted, tmp_path).train()
    assert len(_gradient_files(tmp_path)) == 3
    assert not (tmp_path / "run" / "model").exists()
    assert not list((tmp_path / "run" / "cache" / "gradients").glob("*/*.tmp"))

    monkeypatch.setattr(GradientComputer, "batch", original)
    trainer = _trainer(planted, tmp_path)
    trainer.train()
    stats = trainer.get_training_stats()
    n = stats["n_training_batches"]
    assert n > 3
    assert stats["base_passes"]["training_batches_computed"] == n - 3
    assert len(_gradient_files(tmp_path)) == n


def test_resume_after_kill_between_seeds(planted, tmp_path, monkeypatch):
    def killer(seed, result):
        if seed == 1 and result is None:
            raise KeyboardInterrupt("killed")

    _seed_spy(monkeypatch, killer)
    with pytest.raises(KeyboardInterrupt):
        _trainer(planted, tmp_path, max_seeds=3, min_convergent_seeds=3).train()
    assert (tmp_path / "run" / "seeds" / "seed_0" / "training.json").exists()
    assert not (tmp_path / "run" / "seeds" / "seed_1").exists()
    assert not (tmp_path / "run" / "model").exists()

    trained = _seed_spy(monkeypatch)
    trainer = _trainer(planted, tmp_path, max_seeds=3, min_convergent_seeds=3)
    trainer.train()
    assert trained == [1, 2]  # seed 0 reused
    stats = trainer.get_training_stats()
    assert stats["base_passes"]["training_batches_computed"] == 0
    assert [r["seed"] for r in stats["seeds"]] == [0, 1, 2]


def test_never_a_half_written_model_directory(planted, tmp_path, monkeypatch):
    import gradiend.model.gradiend as gm

    original = gm.write_json

    def failing(path, data):
        if path.name == "config.json":
            raise OSError("disk full")
        return original(path, data)

    monkeypatch.setattr(gm, "write_json", failing)
    with pytest.raises(OSError, match="disk full"):
        _trainer(planted, tmp_path).train()
    run = tmp_path / "run"
    assert not (run / "model").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".model")]
    monkeypatch.setattr(gm, "write_json", original)
    good = _trainer(planted, tmp_path).train()
    # a failed overwrite keeps the previous model intact
    monkeypatch.setattr(gm, "write_json", failing)
    with pytest.raises(OSError):
        _trainer(planted, tmp_path, learning_rate=2e-3).train()
    monkeypatch.setattr(gm, "write_json", original)
    again = _trainer(planted, tmp_path)
    reused = again._try_cache(again._fingerprint())
    assert reused is not None and torch.equal(reused.gradiend.W_e, good.gradiend.W_e)

"""Periodic checkpoints, resuming, callbacks and the runtime monitor (issue 25 item 3) on a
tiny model: a run killed after a checkpoint and trained again ends with the weights of a run
never interrupted; the folders ``save_only_best``/``delete_models`` leave; the heartbeat file;
the callbacks' events in order. The base model is not pretrained (bookkeeping checks)."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import fast_args, he_she_data
from tiny import make_model

from gradiend import TextPredictionTrainer
from gradiend._io import read_json
from gradiend.run_layout import CHECKPOINT_TENSORS, MODEL_WEIGHTS
from gradiend.trainer import loop
from gradiend.trainer.callbacks import CallbackError, TrainingCallback
from gradiend.trainer.runtime_monitor import read_heartbeats

STEPS, EVAL, SAVE = 24, 8, 6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return make_model("mlm")


class Recorder(TrainingCallback):
    """Records every event; ``stop_at``: raise at that step (a killed run)."""

    def __init__(self, stop_at: int | None = None, pause: float = 0.0):
        self.events, self.stop_at, self.pause = [], stop_at, pause

    def on_step(self, *, seed, step, loss, **_):
        self.events.append(("on_step", seed, step, float(loss)))
        time.sleep(self.pause)
        if step == self.stop_at:
            raise KeyboardInterrupt("killed")

    def on_evaluate(self, *, seed, step, summary, learning_rate, **_):
        self.events.append(("on_evaluate", seed, step, summary["correlation"]))

    def on_save(self, *, seed, step, path, **_):
        self.events.append(("on_save", seed, step, sorted(p.name for p in path.parent.iterdir())))
        assert (path / CHECKPOINT_TENSORS).is_file()

    def on_seed_end(self, *, seed, record, stats, **_):
        self.events.append(("on_seed_end", seed, record["best_step"], record["correlation"]))


def train(base, tmp, callbacks=(), **overrides) -> TextPredictionTrainer:
    args = dict(max_steps=STEPS, eval_steps=EVAL, save_strategy="steps", save_steps=SAVE)
    trainer = TextPredictionTrainer(
        model=base, run_id="run", data=he_she_data(24),
        args=fast_args(tmp, plot_importance=False, **(args | overrides)), progress=False,
    )  # fmt: skip
    trainer.train(callbacks=list(callbacks))
    return trainer


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory):
    """An uninterrupted run with the runtime monitor and a recording callback."""
    rec = Recorder(pause=0.01)
    tmp = tmp_path_factory.mktemp("straight")
    trainer = train(base, tmp, [rec], runtime_monitor=True, runtime_monitor_interval=0.02)
    return trainer, rec


def _weights(trainer) -> dict:
    return trainer.get_model().gradiend.state_dict()


def test_callback_events_in_order(straight):
    trainer, rec = straight
    stats = read_json(trainer.layout.training)
    want = [("on_evaluate", 0, 0)]
    for step in range(1, STEPS + 1):
        want.append(("on_step", 0, step))
        if step % EVAL == 0:
            want.append(("on_evaluate", 0, step))
        if step % SAVE == 0:
            want.append(("on_save", 0, step))
    want.append(("on_seed_end", 0, stats["best_step"]))
    assert [e[:3] for e in rec.events] == want
    losses = [e[3] for e in rec.events if e[0] == "on_step"]
    assert losses == pytest.approx([r["loss"] for r in stats["losses"]], rel=1e-9)
    sign = -1 if stats["seeds"][0]["flipped"] else 1
    corr = [e[3] for e in rec.events if e[0] == "on_evaluate"]
    assert corr == pytest.approx([sign * e["correlation"] for e in stats["evals"]], rel=1e-9)
    assert rec.events[-1][3] == pytest.approx(stats["seeds"][0]["correlation"])
    saves = [e[3] for e in rec.events if e[0] == "on_save"]
    assert saves == [[f"step_{s}"] for s in range(SAVE, STEPS + 1, SAVE)]  # save_only_best
    assert not any(trainer.layout.checkpoints_dir.glob("*/step_*"))  # gone when the seed ended


def test_killed_run_resumes_to_the_same_weights(base, straight, tmp_path):
    killed = Recorder(stop_at=SAVE + 3)
    with pytest.raises(KeyboardInterrupt):
        train(base, tmp_path, [killed])
    assert any(tmp_path.glob(f"run/checkpoints/seed_0-*/step_{SAVE}"))
    resumed = Recorder()
    trainer = train(base, tmp_path, [resumed])
    steps = [e[2] for e in resumed.events if e[0] == "on_step"]
    assert steps == list(range(SAVE + 1, STEPS + 1))  # continued after the checkpoint
    want, got = _weights(straight[0]), _weights(trainer)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.allclose(want[key], got[key], rtol=0, atol=1e-6), key
    a, b = read_json(straight[0].layout.training), read_json(trainer.layout.training)
    assert a["evals"] == b["evals"] and a["losses"] == b["losses"]


def test_callback_error_stops_training(base, tmp_path):
    class Broken(TrainingCallback):
        def on_evaluate(self, **_):
            raise ValueError("broken callback")

    with pytest.raises(CallbackError, match="broken callback"):
        train(base, tmp_path, [Broken()], max_seeds=2)
    assert not list(tmp_path.glob("run/seeds/seed_1*"))  # the next seed never ran


def test_keep_every_checkpoint_then_delete_models(base, tmp_path):
    rec = Recorder()
    trainer = train(base, tmp_path / "keep", [rec], save_only_best=False)
    (folder,) = trainer.layout.checkpoints_dir.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"step_{s}" for s in range(SAVE, STEPS + 1, SAVE)
    )
    trainer = train(base, tmp_path / "delete", max_seeds=2, save_only_best=False,
                    delete_models=True, min_convergent_seeds=2)  # fmt: skip
    layout = trainer.layout
    assert not layout.checkpoints_dir.exists()
    seed_dirs = sorted(d for d in layout.seeds_dir.glob("seed_*") if d.is_dir())
    assert len(seed_dirs) == 2 and not any((d / MODEL_WEIGHTS).exists() for d in seed_dirs)
    assert (layout.run_dir / "model" / MODEL_WEIGHTS).is_file()  # the selected GRADIEND stays


def test_heartbeat_lines(straight):
    trainer, _ = straight
    lines = read_heartbeats(trainer.layout.runtime_monitor)
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "end"
    beats = [x for x in lines if x["event"] == "heartbeat"]
    training = [x for x in beats if x["stage"] == "training"]
    assert training, "no heartbeat while the seed trained"
    assert [x["step"] for x in beats] == sorted(x["step"] for x in beats)
    assert all(1 <= x["step"] <= STEPS and x["seed"] == 0 for x in training)
    assert any(x["steps_per_s"] > 0 for x in training)
    assert all(x["rss_mb"] > 0 and x["max_rss_mb"] >= x["rss_mb"] * 0.5 for x in beats)
    assert [x["event"] for x in lines].count("seed_end") == 1


def test_cuda_oom_is_written(base, tmp_path, monkeypatch):
    def oom(*_, **__):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "_step", oom)
    with pytest.raises(RuntimeError, match="all 1 seed"):
        train(base, tmp_path, max_seeds=1, runtime_monitor=True)
    lines = read_heartbeats(tmp_path / "run" / "runtime_monitor.jsonl")
    (line,) = [x for x in lines if x["event"] == "cuda_oom"]
    assert "Tried to allocate 2.00 GiB" in line["message"] and "rss_mb" in line
    assert lines[-1]["event"] == "error"

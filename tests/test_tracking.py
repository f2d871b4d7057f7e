"""Experiment tracking (issue 25 item 2): a tiny run logged with ``report_to`` is read back with
each tracker's own reader (TensorBoard's ``EventAccumulator``, MLflow's ``MlflowClient``, the
W&B offline run file) and every value is compared with the run's ``training.json`` and the
decoder results; a missing tracker package fails with the extra's name before a model loads.

The base model is not pretrained (he/she gradients at the mask differ in any model): the
checks are bookkeeping, not the feature."""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import sys
from pathlib import Path

import pytest
from conftest import fast_args, he_she_data, neutral_texts
from tiny import make_model

from gradiend import TextPredictionTrainer
from gradiend._io import read_json
from gradiend.model.rewrite import read_results
from gradiend.tracking import resolve_report_to
from gradiend.tracking.mlflow_tracker import _key
from gradiend.tracking.run import flatten, flatten_params
from gradiend.trainer.loop import orient_stats

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
HAVE_WANDB = importlib.util.find_spec("wandb") is not None
EXPERIMENT = "gradiend-tests"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A run logged to TensorBoard, MLflow (a file store named by ``MLFLOW_TRACKING_URI``) and,
    when installed, W&B offline; then a decoder evaluation and a rewrite, logged too."""
    tmp = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        uri = (tmp / "mlruns").as_uri()
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        for name, value in {"MODE": "offline", "SILENT": "true", "CONSOLE": "off"}.items():
            mp.setenv(f"WANDB_{name}", value)
        for name in ("CONFIG_DIR", "CACHE_DIR", "DATA_DIR"):
            mp.setenv(f"WANDB_{name}", str(tmp / f"wandb_{name.lower()}"))
        report_to = ["tensorboard", "mlflow"] + (["wandb"] if HAVE_WANDB else [])
        trainer = TextPredictionTrainer(
            model=make_model("mlm"),
            run_id="he_she",
            data=he_she_data(32),
            eval_neutral_data=neutral_texts(12),
            args=fast_args(tmp, max_steps=30, eval_steps=10, report_to=report_to),
            progress=False,
        )
        trainer.train()
        decoder = trainer.evaluate_decoder(
            target_class="he", lrs=[0.1, 1.0], max_size_training_like=8, max_size_neutral=8,
            max_nll_increase=None,
        )  # fmt: skip
        trainer.rewrite_base_model(target_class="he")
        trainer.finish_tracking()
    stats = read_json(trainer.layout.training)
    return {"trainer": trainer, "stats": stats, "decoder": decoder, "mlflow_uri": uri}


def expected(run: dict) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series the trackers should hold, ``tag -> [(step, value)]``, built from
    ``training.json`` (live values are the loop's: un-oriented when the seed flipped) and the
    decoder results."""
    stats, out = run["stats"], {}
    record = stats["seeds"][0]
    pre = f"seed_{record['seed']}/"
    out[pre + "train/loss"] = [(r["step"], r["loss"]) for r in stats["losses"]]
    evals = [orient_stats(e) if record["flipped"] else e for e in stats["evals"]]
    out[pre + "eval/correlation"] = [(e["step"], e["correlation"]) for e in evals]
    for cls in stats["target_classes"]:
        out[f"{pre}eval/mean_by_class/{cls}"] = [
            (e["step"], e["mean_by_class"][cls]) for e in evals
        ]
    lr = stats["training_args"]["learning_rate"]
    out[pre + "train/learning_rate"] = [(e["step"], lr) for e in evals]
    for key in ("correlation", "best_step", "converged", "seconds", "learning_rate"):
        out[f"{pre}best/{key}"] = [(record["seed"], float(record[key]))]
    best, info = stats["best_score_checkpoint"], stats["convergence_info"]
    out["best/correlation"] = [(0, best["correlation"])]
    out["best/step"] = [(0, best["global_step"])]
    out["best/seed"] = [(0, stats["seed"])]
    out["best/converged"] = [(0, float(info["converged"]))]
    points: dict[str, list] = {}
    for i, point in enumerate(run["decoder"]["grid"]):
        for key, value in flatten(point).items():
            points.setdefault(f"decoder/points/{key}", []).append((i, value))
    out |= points
    out |= {f"decoder/he/{k}": [(0, v)] for k, v in flatten(run["decoder"]["he"]).items()}
    saved = read_results(run["trainer"].layout)["he"]  # what the rewrite applied
    out |= {f"rewrite/he/{k}": [(0, v)] for k, v in flatten(saved).items()}
    return out


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]], tag: str, rel: float):
    assert [s for s, _ in got] == [s for s, _ in want], f"{tag}: steps differ"
    for (step, g), (_, w) in zip(got, want):
        assert math.isclose(g, w, rel_tol=rel, abs_tol=rel * 1e-3), f"{tag} at {step}: {g} != {w}"


def test_expected_series_are_not_trivial(tracked):
    series = expected(tracked)
    assert len(series["seed_0/train/loss"]) == 30
    assert [s for s, _ in series["seed_0/eval/correlation"]] == [0, 10, 20, 30]
    assert len(series["decoder/points/id/learning_rate"]) == len(tracked["decoder"]["grid"]) >= 2
    assert any(k.startswith("rewrite/he/") for k in series)


def _event_accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import (  # the tensorboard extra
        EventAccumulator,
    )

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_holds_every_value(tracked):
    layout = tracked["trainer"].layout
    acc = _event_accumulator(layout.run_dir / "logs" / "tensorboard")  # logging_dir's default
    tags = set(acc.Tags()["scalars"])
    for tag, want in expected(tracked).items():
        assert tag in tags, f"{tag} not logged to TensorBoard"
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        _same(got, want, tag, rel=1e-6)  # TensorBoard stores float32
    images = {tag: acc.Images(tag)[-1] for tag in acc.Tags()["images"]}
    from matplotlib.image import imread  # the plot extra draws the figures

    for name in ("importance_by_layer", "training_convergence"):
        height, width = imread(str(layout.run_dir / f"{name}.png")).shape[:2]
        img = images[f"figures/{name}"]
        assert (img.height, img.width) == (height, width)
    assert "convergence_status/text_summary" in acc.Tags()["tensors"]


def test_tensorboard_hyperparameters_are_the_run_arguments(tracked):
    from tensorboard.plugins.hparams import plugin_data_pb2  # the tensorboard extra

    acc = _event_accumulator(tracked["trainer"].layout.run_dir / "logs" / "tensorboard")
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    want = flatten_params(tracked["stats"]["training_args"])
    assert set(hparams) == set(want)
    for key, value in want.items():
        got = hparams[key]
        if isinstance(value, str):
            assert got.string_value == value, key
        else:
            assert got.number_value == pytest.approx(float(value)), key
    assert want["learning_rate"] == 1e-3 and want["max_steps"] == 30


def test_mlflow_holds_every_value(tracked):
    from mlflow.tracking import MlflowClient  # the mlflow extra

    client = MlflowClient(tracking_uri=tracked["mlflow_uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "he_she" and run.info.status == "FINISHED"
    for tag, want in expected(tracked).items():
        history = client.get_metric_history(run.info.run_id, _key(tag))
        got = sorted((m.step, m.value) for m in history)
        _same(got, want, tag, rel=1e-12)
    want = {_key(k): str(v) for k, v in flatten_params(tracked["stats"]["training_args"]).items()}
    assert run.data.params == want
    layout = tracked["trainer"].layout
    for name in ("importance_by_layer", "training_convergence"):
        local = client.download_artifacts(run.info.run_id, f"figures/{name}.png")
        assert Path(local).read_bytes() == (layout.run_dir / f"{name}.png").read_bytes()
    status = client.download_artifacts(run.info.run_id, "convergence_status.txt")
    assert Path(status).read_text() == tracked["stats"]["convergence_status"]


def _wandb_records(path: Path) -> list:
    """The records of a W&B offline run file (LevelDB log blocks of protobuf ``Record``s)."""
    from wandb.proto import wandb_internal_pb2  # the wandb extra

    raw, block, pos, buf, out = path.read_bytes(), 32768, 7, b"", []
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, size, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        buf, pos = buf + raw[pos + 7 : pos + 7 + size], pos + 7 + size
        if kind in (1, 4):  # a full record, or the last piece of one
            out.append(wandb_internal_pb2.Record.FromString(buf))
            buf = b""
    return out


def _wandb_key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores a/b/c keys nested


@pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed (pip install 'gradiend[wandb]')")
def test_wandb_offline_run_holds_every_value(tracked):
    folder = tracked["trainer"].layout.run_dir / "logs" / "wandb"
    (run_file,) = folder.glob("offline-run-*/run-*.wandb")
    rows, config = [], {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({_wandb_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "config":
            config |= {_wandb_key(i): json.loads(i.value_json) for i in record.config.update}
        elif kind == "run":
            assert record.run.display_name == "he_she" and record.run.project == "gradiend"
    for tag, want in expected(tracked).items():
        got = [(r["step"], r[tag]) for r in rows if tag in r]
        _same(got, want, tag, rel=1e-12)
    for key, value in flatten_params(tracked["stats"]["training_args"]).items():
        assert config[key] == value, key
    images = list((run_file.parent / "files" / "media" / "images" / "figures").glob("*.png"))
    assert {p.name.split("_")[0] for p in images} == {"importance", "training"}


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb", "trackio"])
def test_missing_tracker_names_the_extra_before_loading(
    name, tmp_path, monkeypatch, no_model_loads
):
    monkeypatch.setitem(sys.modules, name, None)  # its import fails, as when not installed
    folder = tmp_path / "base"  # passes the path checks; loading it would fail the test
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    trainer = TextPredictionTrainer(
        model=str(folder),
        data=he_she_data(8),
        args=fast_args(tmp_path, report_to=["tensorboard", name]),
        progress=False,
    )
    with pytest.raises(ImportError, match=rf'pip install "gradiend\[{name}\]"'):
        trainer.train()
    assert name not in resolve_report_to("all")


def test_report_to_values(tmp_path):
    assert resolve_report_to("none") == resolve_report_to(None) == []
    assert resolve_report_to(["TensorBoard", "tensorboard", "none"]) == ["tensorboard"]
    with pytest.raises(ValueError, match="choose from tensorboard"):
        fast_args(tmp_path, report_to=["comet"])

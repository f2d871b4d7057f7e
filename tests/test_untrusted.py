"""Untrusted run folders and names: no code from data, names that stay in their folder, the
source == target gradient cache, and LMS texts that cannot measure the decoder budget."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import fast_args, he_she_data, he_she_trainer, neutral_texts
from safetensors.torch import load_file, save_file

from gradiend import TextPredictionTrainer, TrainingArguments, cli, pipeline
from gradiend.config import ConfigError, RunConfig
from gradiend.evaluator import decoder_eval
from gradiend.lm.gradients import GradientComputer
from gradiend.run_layout import RUN_CONFIG, RunLayout, safe_name
from gradiend.trainer.data_checks import check_trainer_inputs
from gradiend.trainer.gradient_data import GradientBatches
from gradiend.trainer.saved_run import saved_run


def _run_folder(tmp_path: Path, trust: bool = True) -> Path:
    """A run folder from elsewhere: its saved config asks for the model folder's own code."""
    model = tmp_path / "remote_model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "evil.Model"}}))
    (model / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    run = tmp_path / "runs" / "he_she"
    run.mkdir(parents=True)
    cfg = {
        "trainer": {"model": str(model), "run_id": "he_she", "target_classes": ["he", "she"]},
        "training_args": {"experiment_dir": str(tmp_path / "runs"), "trust_remote_code": trust},
    }
    (run / RUN_CONFIG).write_text(json.dumps(cfg))
    return run


# --------------------------------------------------------------------------- no code from data
@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--encoder-only"],
        ["rewrite"],
        ["train"],
        ["data"],
        ["train", "--pairs", "he,she"],
    ],
)
def test_a_config_asking_for_remote_code_is_refused(tmp_path, capsys, no_model_loads, argv):
    run = _run_folder(tmp_path)
    assert cli.main([*argv, "-c", str(run)]) == 2
    err = capsys.readouterr().err
    assert "'training_args.trust_remote_code'" in err and "--trust-remote-code" in err, err


def test_steer_refuses_a_run_folder_asking_for_remote_code(tmp_path, capsys, no_model_loads):
    run = _run_folder(tmp_path)
    assert cli.main(["steer", str(run), "--prompt", "x", "--strength", "0.5"]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err


def test_an_override_cannot_turn_remote_code_on_either(tmp_path, capsys, no_model_loads):
    run = _run_folder(tmp_path, trust=False)
    argv = ["evaluate", "-c", str(run), "--set", "training_args.trust_remote_code=true"]
    assert cli.main(argv) == 2
    assert "--trust-remote-code" in capsys.readouterr().err


def test_the_flag_accepts_it(tmp_path, monkeypatch, no_model_loads):
    run = _run_folder(tmp_path)
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        RunConfig.load(run)
    assert RunConfig.load(run, trust_remote_code=True).training_arguments().trust_remote_code
    seen = {}

    def fake_evaluate(cfg, trainer, **kw):
        seen["trust"] = cfg.training_arguments().trust_remote_code
        return {"run_dir": str(run)}

    layout = RunLayout(run, run / "model")  # evaluate needs a trained run (checked first)
    layout.model_dir.mkdir()
    layout.model_config.write_text("{}")
    (layout.model_dir / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(cli, "build_evaluation", lambda cfg, **kw: None)
    monkeypatch.setattr(cli, "evaluate", fake_evaluate)
    assert cli.main(["evaluate", "-c", str(run), "--encoder-only", "--trust-remote-code"]) == 0
    assert seen == {"trust": True}


def test_the_python_api_may_still_ask_for_remote_code(tmp_path):
    assert TrainingArguments(experiment_dir=str(tmp_path), trust_remote_code=True)
    cfg = RunConfig.from_dict({"training_args": {"trust_remote_code": True}})
    assert cfg.training_arguments().trust_remote_code


# --------------------------------------------------------------------------- names in their folder
@pytest.mark.parametrize("run_id", ["../../x", "a/../../x", "/tmp/elsewhere", "..\\x"])
def test_a_run_id_outside_experiment_dir_is_refused(planted, run_id):
    with pytest.raises(ValueError, match="points outside experiment_dir.*relative folder name"):
        check_trainer_inputs(planted["mlm"], he_she_data(), ["he", "she"], run_id, None)


def test_sub_folder_run_ids_stay_allowed(planted, tmp_path):
    trainer = TextPredictionTrainer(
        model=planted["mlm"], run_id="suite/he_she", data=he_she_data(), args=fast_args(tmp_path)
    )
    assert trainer.run_dir == tmp_path / "suite" / "he_she"


def test_a_config_run_id_outside_is_refused_before_loading(tmp_path, capsys, no_model_loads):
    run = _run_folder(tmp_path, trust=False)
    assert cli.main(["evaluate", "-c", str(run), "--set", "trainer.run_id=../../x"]) == 2
    assert "'trainer.run_id'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="points outside"):
        saved_run({"run_id": "../x"}, TrainingArguments(experiment_dir=str(tmp_path)))


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "a\\b", "/abs"])
def test_class_ids_in_file_names_stay_one_path_component(tmp_path, caplog, name):
    layout = RunLayout(tmp_path / "run", tmp_path / "run" / "model")
    with caplog.at_level(logging.WARNING, logger="gradiend.run_layout"):
        paths = [layout.rewritten_dir(name), layout.figure("shifts", "png", f"_{name}")]
    for path in paths:
        assert path.parent == layout.run_dir and ".." not in path.name, path
        assert "/" not in path.name and "\\" not in path.name
    assert safe_name(name) in caplog.text
    assert safe_name("she") == "she" and layout.rewritten_dir("she").name == "she_rewritten"


def test_the_default_rewrite_folder_is_inside_the_run(tmp_path):
    layout = RunLayout(tmp_path / "run", tmp_path / "run" / "model")
    layout.run_dir.mkdir()
    calls = {}
    trainer = SimpleNamespace(
        layout=layout,
        run_dir=layout.run_dir,
        target_classes=["../../evil", "b"],
        rewrite_base_model=lambda **kw: calls.update(kw),
    )
    out = pipeline.rewrite(RunConfig(), trainer)
    assert Path(out["rewritten_model"]).parent == layout.run_dir
    assert calls["output_dir"] == out["rewritten_model"]


# --------------------------------------------------------------------------- source == target
def _batches(tmp_path: Path) -> GradientBatches:
    """A ``GradientBatches`` with only what writing and reading its files needs."""
    out = object.__new__(GradientBatches)
    out.computer = SimpleNamespace(dim=4, device=torch.device("cpu"))
    out.dtype, out.on_host, out.cache_dir = torch.float32, False, tmp_path
    return out


def test_one_tensor_for_both_roles_is_stored_once_and_read_back(tmp_path):
    batches, g = _batches(tmp_path), torch.arange(8.0).reshape(2, 4)
    batches._write(tmp_path / "same.safetensors", g, g)
    assert set(load_file(str(tmp_path / "same.safetensors"))) == {"source"}
    s, t = batches._load(tmp_path / "same.safetensors")
    assert s is t and torch.equal(s, g)
    save_file({"source": g, "target": g.clone()}, str(tmp_path / "old.safetensors"))
    s, t = batches._load(tmp_path / "old.safetensors")  # the older two-tensor format
    assert torch.equal(s, g) and torch.equal(t, g)
    batches._write(tmp_path / "views.safetensors", g[0], g[1])  # two views of one storage
    s, t = batches._load(tmp_path / "views.safetensors")
    assert torch.equal(s, g[0]) and torch.equal(t, g[1])


def test_source_equal_target_trains_with_use_cache_and_reuses_it(planted, tmp_path, monkeypatch):
    kw = dict(source="diff", target="diff", use_cache=True, max_steps=40)
    he_she_trainer(planted["mlm"], tmp_path, n_neutral=None, **kw)
    files = sorted((tmp_path / "he_she" / "cache" / "gradients").glob("*/batch_*.safetensors"))
    assert files and set(load_file(str(files[0]))) == {"source"}

    def boom(*a, **k):
        raise AssertionError("no gradient may be computed when the cache is reused")

    monkeypatch.setattr(GradientComputer, "batch", boom)
    second = he_she_trainer(planted["mlm"], tmp_path, n_neutral=None, learning_rate=2e-3, **kw)
    assert second.get_training_stats()["base_passes"]["training_batches_computed"] == 0


# --------------------------------------------------------------------------- the LMS texts
def _lms_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot measure" in r.getMessage()]


def test_degenerate_lms_texts_warn_before_the_search(planted, tmp_path, caplog):
    trainer = TextPredictionTrainer(
        model=planted["mlm"],
        run_id="dots",
        data=he_she_data(),
        eval_neutral_data=["."] * 40,
        args=fast_args(tmp_path),
        progress=False,
    )
    trainer.train()
    with caplog.at_level(logging.WARNING, logger="gradiend.evaluator.decoder_eval"):
        trainer.evaluate_decoder(lrs=[100.0, 10.0, 1.0], max_size_training_like=8)
    (msg,) = _lms_warnings(caplog)
    assert "40 texts, 1 distinct, 1 distinct scored tokens" in msg, msg
    assert "varied neutral sentences" in msg


def test_normal_neutral_texts_do_not_warn(planted, tmp_path, caplog):
    trainer = he_she_trainer(planted["mlm"], tmp_path, max_steps=40)
    task = SimpleNamespace(lms_texts=tuple(neutral_texts()), ignore_words=())
    with caplog.at_level(logging.WARNING, logger="gradiend.evaluator.decoder_eval"):
        n_texts, n_tokens = decoder_eval.check_lms_texts(task, trainer.get_model())
    assert n_texts == 40 and n_tokens >= decoder_eval.MIN_DISTINCT_LMS_TOKENS
    assert not _lms_warnings(caplog)

"""Bad input on the command line and in config files: one clear line naming the problem and the
fix, exit code 2, before any model loads and before anything is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradiend import cli, run_layout
from gradiend.config import ConfigError, RunConfig
from gradiend.report import write_report


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def _error_line(err: str) -> str:
    """The one error line ``main`` prints (log lines may come before it)."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def _fake_run(folder: Path, config: dict | None = None) -> Path:
    """A run folder holding a (dummy) GRADIEND and, optionally, a saved run config."""
    model = folder / run_layout.MODEL_DIR
    model.mkdir(parents=True)
    (model / run_layout.MODEL_CONFIG).write_text("{}")
    (model / run_layout.MODEL_WEIGHTS).write_bytes(b"")
    if config is not None:
        (folder / run_layout.RUN_CONFIG).write_text(json.dumps(config))
    return folder


def _records_run(folder: Path) -> Path:
    """A partial run folder: only its records (no GRADIEND), which a report can still show."""
    folder.mkdir(parents=True)
    (folder / run_layout.TIMINGS).write_text("{}")
    (folder / run_layout.RUN_CONFIG).write_text(json.dumps({"trainer": {"run_id": "x"}}))
    return folder


# --------------------------------------------------------------------------- 1. binary config
@pytest.mark.parametrize("name", ["run.yaml", "run.json"])
def test_binary_config_is_not_a_text_yaml_file(tmp_path, capsys, no_model_loads, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)))
    code, err = _run(capsys, "train", "-c", path)
    assert code == 2
    line = _error_line(err)
    assert f"{path} is not a text YAML file" in line and "Fix: pass a YAML or JSON" in line


def test_nul_bytes_are_not_a_text_yaml_file(tmp_path, capsys, no_model_loads):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"trainer:\x00\x01\n")
    code, err = _run(capsys, "evaluate", "-c", path)
    assert code == 2 and "is not a text YAML file" in _error_line(err)


# --------------------------------------------------------------------------- 2. numbers as text
def test_yaml_1_1_numeric_text_becomes_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "creator:\n  feature_targets: [{targets: [he], id: he, weight: 5e-1}]\n"
        "training_args:\n  learning_rate: 1e-3\n  max_steps: 1e3\n  adam_epsilon: 1E-8\n"
        "  decoder_eval_lrs: [1e-2, 5e-3]\n  pre_prune_config: {topk: 1e-2}\n"
        "compare:\n  topk: 1e3\n"
    )
    cfg = RunConfig.load(path, ["training_args.weight_decay=1e-4"])
    args = cfg.training_args
    assert args["learning_rate"] == pytest.approx(1e-3) and isinstance(args["learning_rate"], float)
    assert args["max_steps"] == 1000 and isinstance(args["max_steps"], int)
    assert args["adam_epsilon"] == pytest.approx(1e-8)
    assert args["weight_decay"] == pytest.approx(1e-4)  # a --set value is YAML too
    assert args["decoder_eval_lrs"] == [pytest.approx(1e-2), pytest.approx(5e-3)]
    assert args["pre_prune_config"]["topk"] == pytest.approx(1e-2)
    assert cfg.compare["topk"] == 1000 and isinstance(cfg.compare["topk"], int)
    assert cfg.training_arguments().learning_rate == pytest.approx(1e-3)
    assert cfg.creator_kwargs()["feature_targets"][0].weight == pytest.approx(0.5)


@pytest.mark.parametrize(
    "override, key, fix",
    [
        ("training_args.learning_rate=fast", "training_args.learning_rate", "1.0e-3"),
        ("training_args.max_steps=1.5e0", "training_args.max_steps", "whole number"),
        ("training_args.max_steps=many", "training_args.max_steps", "such as 100"),
        ("training_args.do_eval=yes please", "training_args.do_eval", "true or false"),
        ("training_args.pre_prune_config={topk: lots}", "training_args.pre_prune_config.topk",
         "1.0e-3"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type_says_how_to_write_it(
    tmp_path, capsys, no_model_loads, override, key, fix
):
    path = tmp_path / "run.yaml"
    path.write_text("trainer: {run_id: x}\n")
    code, err = _run(capsys, "train", "-c", path, "--set", override)
    line = _error_line(err)
    assert code == 2 and f"'{key}'" in line and fix in line.split("Fix:")[1], line


# --------------------------------------------------------------------------- 3. duplicate keys
def test_a_yaml_key_given_twice_is_refused_with_its_line(tmp_path, capsys, no_model_loads):
    path = tmp_path / "run.yaml"
    path.write_text(
        "training_args:\n  learning_rate: 1.0e-3\n  max_steps: 3\n  learning_rate: 1.0e-4\n"
    )
    code, err = _run(capsys, "train", "-c", path)
    line = _error_line(err)
    assert code == 2 and "'learning_rate'" in line
    assert "line 4" in line and "first on line 2" in line and "Fix: keep one" in line
    with pytest.raises(ConfigError, match="given twice|gives it twice"):
        json_path = tmp_path / "run.json"
        json_path.write_text('{"training_args": {"max_steps": 3, "max_steps": 4}}')
        RunConfig.load(json_path)


def test_same_key_in_two_mappings_and_merge_keys_are_fine(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "evaluate_encoder: &enc {max_size: 20}\n"
        "training_args: {max_steps: 3}\n"
        "trainer: {run_id: x}\n"
        "evaluate_decoder: {max_size_neutral: 3}\n"
        "steer: {max_new_tokens: 3}\n"
        "compare: {topk: 3}\n"
    )
    cfg = RunConfig.load(path)
    assert cfg.training_args["max_steps"] == 3 and cfg.compare["topk"] == 3
    merged = tmp_path / "merged.yaml"
    merged.write_text("evaluate_encoder:\n  <<: {max_size: 5, split: test}\n  max_size: 9\n")
    assert RunConfig.load(merged).evaluate_encoder == {"max_size": 9, "split": "test"}


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path, capsys, no_model_loads):
    path = tmp_path / "run.yaml"
    marker = tmp_path / "ran"
    path.write_text(f"trainer: !!python/object/apply:os.system ['touch {marker}']\n")
    code, err = _run(capsys, "train", "-c", path)
    assert code == 2 and "not valid YAML" in _error_line(err)
    assert not marker.exists()


# --------------------------------------------------------------------------- 4. lists
@pytest.mark.parametrize(
    "override, key, fix",
    [
        ("trainer.target_classes=he", "trainer.target_classes", "target_classes: [he, she]"),
        ("trainer.target_classes=he, she", "trainer.target_classes", "target_classes: [he, she]"),
        ("generate_neutral_data.additional_excluded_words=him",
         "generate_neutral_data.additional_excluded_words", "additional_excluded_words: [him]"),
        ("training_args.params=model.*", "training_args.params", "params: [model.*]"),
        ("evaluate_decoder.lrs=1e-3", "evaluate_decoder.lrs", "lrs: [1e-3]"),
        ("compare.runs=runs/a", "compare.runs", "runs: [runs/a]"),
    ],
)  # fmt: skip
def test_a_string_where_a_list_is_expected_is_refused_at_validation(
    tmp_path, capsys, no_model_loads, override, key, fix
):
    path = tmp_path / "run.yaml"
    path.write_text("trainer: {run_id: x}\n")
    code, err = _run(capsys, "train", "-c", path, "--set", override)
    line = _error_line(err)
    assert code == 2 and f"'{key}'" in line and "list" in line, line
    assert f"Fix: write a YAML list: {fix}" in line, line


# --------------------------------------------------------------------------- 5. report targets
def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    plain = tmp_path / "photos"
    plain.mkdir()
    (plain / "holiday.jpg").write_bytes(b"\xff\xd8")
    code, err = _run(capsys, "report", plain)
    assert code == 2 and "is not a GRADIEND run folder" in _error_line(err)
    assert sorted(p.name for p in plain.iterdir()) == ["holiday.jpg"]
    with pytest.raises(ValueError, match="not a GRADIEND run folder"):
        write_report(plain)
    assert not (plain / run_layout.REPORT).exists()


def test_report_never_replaces_a_file_gradiend_did_not_write(tmp_path, capsys):
    run = _records_run(tmp_path / "run")
    mine = run_layout.report_file(run)
    mine.write_text("<html><body>my own notes</body></html>")
    code, err = _run(capsys, "report", run)
    assert code == 2 and "was not written by gradiend" in _error_line(err)
    assert mine.read_text() == "<html><body>my own notes</body></html>"
    other = tmp_path / "notes.html"
    other.write_text("mine too")
    assert _run(capsys, "report", run, "-o", other)[0] == 2
    assert other.read_text() == "mine too"


def test_report_replaces_its_own_report_and_marks_it(tmp_path, capsys):
    run = _records_run(tmp_path / "run")
    assert _run(capsys, "report", run)[0] == 0
    first = run_layout.report_file(run).read_text()
    assert '<meta name="generator" content="gradiend ' in first
    assert _run(capsys, "report", run)[0] == 0  # the second report replaces the first
    assert not [p.name for p in run.iterdir() if p.name.startswith(".gradiend-tmp")]


def test_report_into_an_existing_folder_writes_report_html_inside(tmp_path, capsys):
    run = _records_run(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    assert _run(capsys, "report", run, "-o", out)[0] == 0
    assert run_layout.report_file(out).is_file()


# --------------------------------------------------------------------------- 6. steer numbers
@pytest.mark.parametrize(
    "args, message",
    [
        (["--strength", "1e308"], "out of range: steering adds strength × the decoder's update"),
        (["--strength=-2e6"], "|strength| above 1e+06"),
        (["--strength", "nan"], "is not a finite number"),
        (["--strength", "inf"], "is not a finite number"),
        (["--strength", "lots"], "is not a number"),
        (["--feature-factor", "1e300"], "the decoder is trained on inputs in [-1, 1]"),
        (["--max-new-tokens", "0"], "must be at least 1, got 0"),
        (["--max-new-tokens", "-3"], "must be at least 1, got -3"),
        (["--max-new-tokens", "2.5"], "is not a whole number"),
    ],
)
def test_steer_refuses_absurd_numbers_before_loading(
    tmp_path, capsys, no_model_loads, args, message
):
    run = _fake_run(tmp_path / "run")
    code, err = _run(capsys, "steer", run, "--prompt", "x", *args)
    assert code == 2 and message in err, err


def test_steer_refuses_absurd_numbers_from_the_run_config(tmp_path, capsys, no_model_loads):
    run = _fake_run(tmp_path / "run", {"steer": {"strength": 1e308}})
    code, err = _run(capsys, "steer", run, "--prompt", "x", "--target-class", "he")
    assert code == 2 and "'steer.strength'" in _error_line(err) and "out of range" in err
    run2 = _fake_run(tmp_path / "run2", {"steer": {"max_new_tokens": 0}})
    code, err = _run(capsys, "steer", run2, "--prompt", "x", "--target-class", "he")
    assert code == 2 and "'steer.max_new_tokens'" in _error_line(err)


def test_steer_and_compare_refuse_folders_without_a_gradiend(tmp_path, capsys, no_model_loads):
    code, err = _run(capsys, "steer", tmp_path, "--prompt", "x", "--strength", "1")
    assert code == 2 and "holds no GRADIEND" in _error_line(err)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, err = _run(capsys, "compare", tmp_path / "a", tmp_path / "b")
    assert code == 2 and "holds no GRADIEND" in _error_line(err)
    code, err = _run(capsys, "compare", tmp_path / "a", tmp_path / "b", "--topk", "inf")
    assert code == 2 and "is not a finite number" in err


# --------------------------------------------------------------------------- 7. demo
def test_demo_takes_trust_remote_code(tmp_path, capsys, monkeypatch, no_model_loads):
    seen = []

    def stop(cfg):
        seen.append(cfg)
        raise KeyboardInterrupt  # stop before anything runs

    monkeypatch.setattr(cli, "run_all", stop)
    model = ["--model", str(tmp_path / "model"), "--output-dir", str(tmp_path / "runs")]
    assert cli.main(["demo", *model, "--trust-remote-code"]) == 130
    assert seen[-1].training_args["trust_remote_code"] is True
    assert cli.main(["demo", *model]) == 130
    assert not seen[-1].training_args.get("trust_remote_code")
    capsys.readouterr()
    code, err = _run(capsys, "demo", *model, "--set", "training_args.trust_remote_code=true")
    assert code == 2 and "--trust-remote-code" in _error_line(err)
    assert len(seen) == 2


# --------------------------------------------------------------------------- 8. received configs
def _escaping(tmp_path: Path, output_dir: str) -> Path:
    return _fake_run(
        tmp_path / "run",
        {
            "creator": {"base_data": "texts.txt", "output_dir": output_dir},
            "trainer": {"model": "m", "run_id": "x"},
            "rewrite_base_model": {"target_class": "he"},
        },
    )


@pytest.mark.parametrize("command", ["data", "evaluate", "rewrite"])
def test_a_received_config_cannot_leave_its_run_folder(tmp_path, capsys, no_model_loads, command):
    run = _escaping(tmp_path, "${config_dir}/../escaped")
    code, err = _run(capsys, command, "-c", run)
    line = _error_line(err)
    assert code == 2 and "'creator.output_dir'" in line and "received config" in line
    assert "outside" in line and "--set creator.output_dir=PATH" in line
    assert not (tmp_path / "escaped").exists()
    # the saved file named directly is received too
    assert _run(capsys, command, "-c", run / run_layout.RUN_CONFIG)[0] == 2


def test_a_received_config_cannot_leave_by_a_symlink(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = _escaping(tmp_path, "${config_dir}/data/x")
    os.symlink(outside, run / "data")
    with pytest.raises(ConfigError, match="outside"):
        RunConfig.load(run)
    with pytest.raises(ConfigError, match="outside"):  # ${package} stays in the package too
        _escaping(tmp_path / "p", "${package}/../../x")
        RunConfig.load(tmp_path / "p" / "run")


def test_received_paths_inside_the_run_and_your_own_paths_are_accepted(tmp_path):
    run = _escaping(tmp_path, "${config_dir}/data")
    assert RunConfig.load(run).section("creator")["output_dir"] == str(run.resolve() / "data")
    # a path you pass yourself is yours
    cfg = RunConfig.load(run, ["creator.output_dir=${config_dir}/../mine"])
    assert cfg.creator["output_dir"] == "${config_dir}/../mine"
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"creator": {"output_dir": "${config_dir}/../x"}}))
    assert RunConfig.load(own).creator["output_dir"] == "${config_dir}/../x"


def test_steer_refuses_an_escaping_received_config(tmp_path, capsys, no_model_loads):
    run = _fake_run(tmp_path / "run", {"compare": {"output_dir": "${config_dir}/../../x"}})
    code, err = _run(capsys, "steer", run, "--prompt", "x", "--strength", "1")
    assert code == 2 and "'compare.output_dir'" in _error_line(err)


# --------------------------------------------------------------------------- bad input vs failure
def test_untrained_run_and_missing_model_are_bad_input(tmp_path, capsys, no_model_loads):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"trainer: {{model: {tmp_path / 'no-model'}, run_id: x, target_classes: [he, she]}}\n"
        f"training_args: {{experiment_dir: {tmp_path / 'runs'}}}\n"
    )
    for command in ("evaluate", "rewrite"):
        code, err = _run(capsys, command, "-c", cfg)
        assert code == 2 and "no trained GRADIEND in" in _error_line(err), err
        assert "Fix: train the run first" in err
    code, err = _run(capsys, "demo", "--output-dir", cfg)
    assert code == 2 and "is a file" in _error_line(err)


def test_a_failure_in_the_run_is_still_exit_1(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(cli, "run_all", boom)
    code, err = _run(capsys, "demo", "--model", tmp_path / "m", "--output-dir", tmp_path / "r")
    assert code == 1 and "failed: RuntimeError: the GPU caught fire" in err

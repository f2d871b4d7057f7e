"""The command line: every stage on a config file, exit codes, help, and the shipped demo config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import corpus

from gradiend import cli, pipeline
from gradiend.config import DEMO_CONFIG, ConfigError, RunConfig

COMMANDS = ["demo", "data", "train", "evaluate", "rewrite", "compare", "report", "steer"]


def _no_trainer(*args, **kwargs):
    raise AssertionError("a TextPredictionTrainer was built")


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _config(tmp_path: Path, model_dir: str | None = "MODEL") -> dict:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(corpus(900, seed=3)))
    return {
        "creator": {
            "base_data": str(texts),
            "feature_targets": [{"targets": ["he"], "id": "he"}, {"targets": ["she"], "id": "she"}],
            "min_left_context_words": 3,
            "output_dir": "${config_dir}/data",
            "use_cache": True,
        },
        "generate_training_data": {"max_size_per_class": 100},
        "generate_neutral_data": {"additional_excluded_words": ["he", "she"], "max_size": 30},
        "trainer": {"model": model_dir, "run_id": "he_she", "target_classes": ["he", "she"]},
        "training_args": {
            "experiment_dir": "${config_dir}/runs",
            "train_batch_size": 4,
            "max_steps": 100,
            "eval_steps": 20,
            "learning_rate": 1e-3,
            "max_seeds": 2,
            "min_convergent_seeds": 2,
            "use_cache": True,
        },
        "evaluate_encoder": {"max_size": 20},
        "evaluate_decoder": {"target_class": "she", "lrs": [5.0, 1.0, 0.1]},
        "rewrite_base_model": {"target_class": "she"},
        "steer": {"prompts": ["the king said that"], "max_new_tokens": 4},
    }


# --------------------------------------------------------------------------- bad input → 2
@pytest.mark.parametrize(
    "override, key, fix",
    [
        ("training_args.max_step=3", "training_args.max_step", "did you mean 'max_steps'"),
        ("training_args.learning_rate=fast", "training_args.learning_rate", "give a float"),
        ("training_args.source=nonsense", "training_args", "source must be one of"),
        ("trainers.model=x", "trainers", "did you mean 'trainer'"),
        ("evaluate_decoder.lrs=5", "evaluate_decoder.lrs", "list[float]"),
        ("creator.feature_targets=[{targets: [he], idd: he}]", "creator.feature_targets[0].idd",
         "did you mean 'id'"),
        ("trainer.args={}", "trainer.args", "training_args section"),
        ("trainer.model=null", "trainer.model", "--set trainer.model="),
        ("nodot=1", "nodot=1", "section.key=value"),
    ],
)  # fmt: skip
def test_bad_config_exits_2_naming_key_and_fix(
    tmp_path, capsys, no_model_loads, override, key, fix
):
    cfg = _write(tmp_path / "run.json", _config(tmp_path))
    assert cli.main(["train", "-c", str(cfg), "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "Fix:" in err and fix in err, err


def test_bad_arguments_exit_2(tmp_path, capsys, no_model_loads):
    assert cli.main(["train"]) == 2  # argparse: --config is required
    assert cli.main(["nonsense"]) == 2
    assert cli.main(["steer", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path)]) == 2
    assert cli.main(["report", str(tmp_path), "--topk", "-1"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [unclosed")
    assert cli.main(["train", "-c", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_help_of_every_subcommand_shows_an_example(capsys):
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in top
        assert cli.main([cmd, "--help"]) == 0
        assert f"gradiend {cmd}" in capsys.readouterr().out.split("example")[-1]


def test_the_demo_is_a_shipped_config():
    cfg = RunConfig.load(DEMO_CONFIG, ["training_args.max_steps=5"])
    assert cfg.training_args["max_steps"] == 5
    assert Path(cfg.creator_kwargs()["base_data"]).is_file()
    assert cfg.training_arguments().pre_prune_config.topk == 0.01
    assert cfg.section("rewrite_base_model")["output_dir"] == str(
        Path("runs/demo/he_she/she_rewritten")
    )
    with pytest.raises(ConfigError, match="max_seeds"):
        RunConfig.load(DEMO_CONFIG, ["training_args.max_seeds=0"])


# --------------------------------------------------------------------------- the workflow
def test_every_stage_from_the_command_line(planted, tmp_path, capsys):
    model, tok = planted["clm"]
    model_dir = tmp_path / "tiny"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = _write(tmp_path / "run.json", _config(tmp_path, str(model_dir)))
    run_dir = tmp_path / "runs" / "he_she"

    assert cli.main(["data", "-c", str(cfg)]) == 0
    assert (tmp_path / "data" / "training_he.csv").is_file()
    assert "neutral: " in capsys.readouterr().out

    assert cli.main(["train", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "converged: True" in out
    assert (run_dir / "model" / "README.md").is_file()
    assert (run_dir / "gradiend_config.json").is_file()

    with pytest.MonkeyPatch.context() as mp:  # evaluate and rewrite build no trainer
        mp.setattr(pipeline, "TextPredictionTrainer", _no_trainer)
        assert cli.main(["evaluate", "-c", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "test correlation: " in out and "decoder she: feature_factor=-1.0" in out

        assert cli.main(["rewrite", "-c", str(cfg)]) == 0
        assert (run_dir / "she_rewritten" / "config.json").is_file()
        capsys.readouterr()

    seeds = sorted(str(p) for p in (run_dir / "seeds").glob("seed_*") if p.is_dir())
    out_dir = tmp_path / "cmp"
    assert cli.main(["compare", *seeds, "--topk", "100", "-o", str(out_dir)]) == 0
    assert {p.name for p in out_dir.iterdir()} >= {"similarity.csv", "topk_heatmap.png"}
    capsys.readouterr()

    assert cli.main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").stat().st_size > 10_000
    capsys.readouterr()

    # the run's config gives prompts; the decoder selection gives the strength
    assert cli.main(["steer", str(run_dir), "--target-class", "she"]) == 0
    out = capsys.readouterr().out
    assert "prompt: the king said that" in out and "steered (she, strength" in out
    assert cli.main(["steer", str(run_dir), "--prompt", "the queen thinks that",
                     "--feature-factor", "1", "--strength", "2"]) == 0  # fmt: skip
    assert "steered (ff=1.0, strength 2.0)" in capsys.readouterr().out
    assert cli.main(["steer", str(run_dir), "--target-class", "it"]) == 2
    assert "use one of ['he', 'she']" in capsys.readouterr().err

    # the run folder is a config too; a missing model folder is bad input (exit 2)
    broken = tmp_path / "broken.json"
    _write(broken, {**_config(tmp_path, str(tmp_path / "no-such-model"))})
    assert cli.main(["train", "-c", str(broken), "--set", "trainer.run_id=other"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert RunConfig.load(run_dir).trainer["run_id"] == "he_she"


def test_demo_help_describes_every_option_with_its_default(capsys):
    """Every option of `gradiend demo` has help text; defaults come from DemoConfig."""
    from gradiend.demo import DemoConfig

    assert cli.main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    parser = cli.build_parser()
    demo = parser._subparsers._group_actions[0].choices["demo"]
    for action in demo._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    d = DemoConfig()
    for option, default in [
        ("--output-dir", d.output_dir),
        ("--max-steps", d.max_steps),
        ("--seeds", d.seeds),
        ("--max-size-per-class", d.max_size_per_class),
        ("--learning-rate", d.learning_rate),
    ]:
        assert option in text
        assert f"(default: {default})" in text, option

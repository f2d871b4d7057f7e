"""``gradiend train --suite KIND --classes ...``: a trainer suite from a run config (one base
model, each distinct gradient once), its bad arguments refused before any model loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tiny import corpus, make_model, pretrain

from gradiend import cli

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["he", "she", "it"]


@pytest.fixture(scope="module")
def model_dir(one_thread, tmp_path_factory) -> Path:
    """A tiny masked LM with the planted feature, saved as a folder the config names."""
    model, tok = make_model("mlm")
    pretrain(model, tok, "mlm", steps=600)
    out = tmp_path_factory.mktemp("tiny_mlm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _config(tmp_path: Path, model: str = "MODEL") -> Path:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(corpus(900, seed=3)))
    cfg = {
        "creator": {
            "base_data": str(texts),
            "feature_targets": [{"targets": [c], "id": c} for c in CLASSES],
            "min_left_context_words": 3,
            "output_dir": "${config_dir}/data",
        },
        "generate_training_data": {"max_size_per_class": 40},
        "trainer": {"model": model, "run_id": "pronouns", "target_classes": ["he", "she"]},
        "training_args": {
            "experiment_dir": "${config_dir}/runs",
            "train_batch_size": 4,
            "max_steps": 40,
            "eval_steps": 20,
            "learning_rate": 1e-3,
            "max_seeds": 1,
            "plot_importance": False,
        },
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize(
    "extra, key",
    [
        (["--suite", "symmetric"], "--classes"),
        (["--classes", "he", "she"], "--suite"),
        (["--suite", "symmetric", "--classes", "he"], "--classes"),
        (["--suite", "symmetric", "--classes", "he", "he"], "--classes"),
        (["--suite", "symmetric", "--classes", "he", "she", "--pairs", "he,she"], "--pairs"),
    ],
)
def test_bad_suite_arguments_exit_2_before_a_model_loads(
    extra, key, tmp_path, capsys, no_model_loads
):
    assert cli.main(["train", "-c", str(_config(tmp_path)), *extra]) == 2
    err = capsys.readouterr().err
    assert f"argument '{key}'" in err and "Fix:" in err


def test_unknown_suite_kind_is_a_usage_error(tmp_path, capsys, no_model_loads):
    argv = ["train", "-c", str(_config(tmp_path)), "--suite", "pairs", "--classes", "a", "b"]
    assert cli.main(argv) == 2
    assert "invalid choice: 'pairs'" in capsys.readouterr().err


def _printed(out: str) -> dict[str, float]:
    """``label: correlation R -> DIR`` lines as {label: R}."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^(.+?): correlation (\S+) ->", out, re.M)}


def test_symmetric_suite_from_the_command_line(model_dir, tmp_path, capsys):
    cfg = _config(tmp_path, str(model_dir))
    argv = ["train", "-c", str(cfg), "--suite", "symmetric", "--classes", *CLASSES]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    found = _printed(out)
    assert set(found) == {"he/she", "he/it", "she/it"}
    for label, r in found.items():
        assert abs(r) >= 0.9, (label, r)
    for child in ("he__she", "he__it", "she__it"):
        assert (tmp_path / "runs" / "pronouns" / child / "model").is_dir()
    m = re.search(r"(\d+) base-model backward passes for (\d+) distinct", out)
    # each distinct (sentence, word) gradient once, many per batched backward pass
    assert m and 0 < int(m[1]) < int(m[2])


def test_all_but_one_suite_from_the_command_line(model_dir, tmp_path, capsys):
    cfg = _config(tmp_path, str(model_dir))
    argv = ["train", "-c", str(cfg), "--suite", "all_but_one", "--classes", *CLASSES,
            "--set", "training_args.max_steps=20", "--allow-unconverged"]  # fmt: skip
    assert cli.main(argv) == 0
    found = _printed(capsys.readouterr().out)
    assert set(found) == {f"{c} vs non_{c}" for c in CLASSES}
    for child in (f"{c}__non_{c}" for c in CLASSES):
        assert (tmp_path / "runs" / "pronouns" / child / "model").is_dir()

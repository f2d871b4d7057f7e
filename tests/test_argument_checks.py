"""Each argument check lives once, in ``gradiend.trainer.argument_checks``: one clear error per
bad value, raised when the dataclass is built (before any model is loaded), and no import circle
with ``gradiend.trainer.arguments``.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradiend import TrainingArguments
from gradiend.config import DEMO_CONFIG, ConfigError, RunConfig
from gradiend.model.gradiend import PARTS
from gradiend.trainer import PostPruneConfig, PrePruneConfig, argument_checks
from gradiend.trainer.arguments import PRE_PRUNE_RULES

MODULE = Path(argument_checks.__file__)


def test_bad_post_prune_part_is_one_error_naming_the_choices():
    expected = f"unknown PostPruneConfig.part 'decoder'; choose one of {PARTS}"
    for make in (
        lambda: PostPruneConfig(part="decoder"),
        lambda: TrainingArguments(post_prune_config={"part": "decoder"}),
    ):
        with pytest.raises(ValueError) as info:
            make()
        assert str(info.value) == expected
        assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PrePruneConfig(n_samples=0), "PrePruneConfig.n_samples=0 is not allowed"),
        (lambda: PrePruneConfig(topk=None), "PrePruneConfig needs topk or threshold"),
        (lambda: PostPruneConfig(topk=None), "PostPruneConfig needs topk or threshold"),
        (lambda: PrePruneConfig(source="x"), "PrePruneConfig.source must be one of"),
        (lambda: PrePruneConfig(rule="x"), f"choose one of {PRE_PRUNE_RULES}"),
        (lambda: TrainingArguments(optim="lion"), "optim must be one of"),
        (lambda: TrainingArguments(use_cache="yes"), "use_cache must be one of"),
        (lambda: TrainingArguments(convergence_metric="f1"), "convergence_metric must be one"),
        (lambda: TrainingArguments(gradiend_dtype="int8"), "unknown gradiend_dtype"),
        (lambda: TrainingArguments(device="cpu", base_model_device_map="auto"), "not both"),
    ],
)
def test_each_bad_value_gives_its_message(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("cls", [PrePruneConfig, PostPruneConfig, TrainingArguments])
def test_post_init_only_normalises_and_delegates(cls):
    source = inspect.getsource(cls.__post_init__)
    assert "raise" not in source, f"{cls.__name__}.__post_init__ checks values itself"
    called = {
        n.func.id
        for n in ast.walk(ast.parse(inspect.cleandoc("\n" + source)))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert called & {"check_arguments", "check_prune_config"}


def test_builtin_objectives_are_accepted():
    for name in ("mlm_mask_token", "clm_next_token", "clm_mlm_head", "seq2seq_encoder_mlm"):
        assert TrainingArguments(prediction_objective=name).prediction_objective == name
    with pytest.raises(ValueError, match="choose 'auto' or one of"):
        TrainingArguments(prediction_objective="nonsense")


def test_bad_value_is_refused_before_any_model_loads(tmp_path, no_model_loads):
    with pytest.raises(ValueError, match="learning_rate=-1.0 is not allowed"):
        TrainingArguments(experiment_dir=str(tmp_path), learning_rate=-1.0)
    with pytest.raises(ConfigError, match="unknown PostPruneConfig.part .decoder.; choose one"):
        RunConfig.load(DEMO_CONFIG, ["training_args.post_prune_config.part=decoder"])
    assert list(tmp_path.iterdir()) == []


def test_argument_checks_does_not_import_arguments_at_run_time():
    tree = ast.parse(MODULE.read_text())
    runtime = [
        node
        for node in tree.body  # module level; TYPE_CHECKING blocks are ast.If, not imports
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    names = {n.module for n in runtime if isinstance(n, ast.ImportFrom)}
    names |= {a.name for n in runtime if isinstance(n, ast.Import) for a in n.names}
    assert "gradiend.trainer.arguments" not in names
    assert not any(
        isinstance(n, (ast.Import, ast.ImportFrom))
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        for n in ast.walk(f)
    ), "argument_checks has function-level imports"
    # stand-ins for the two package __init__ files (gradiend.trainer's imports arguments)
    code = "\n".join(
        [
            "import sys, types",
            f"for name, path in (('gradiend', {str(MODULE.parents[1])!r}),"
            f" ('gradiend.trainer', {str(MODULE.parent)!r})):",
            "    sys.modules[name] = types.ModuleType(name)",
            "    sys.modules[name].__path__ = [path]",
            "import gradiend.trainer.argument_checks",
            "print('gradiend.trainer.arguments' in sys.modules)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

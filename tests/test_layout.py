"""The library's layout rules (issue 21): no mixins in the trainer, small files and functions,
no import circles, one owner of the run folder's file names, a visualizer that only draws."""

from __future__ import annotations

import inspect

import pytest
from layout import ROOT, circles, modules

from gradiend import run_layout

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
# run_layout's names that are file or folder names of a run (its constants, by value)
_NAMES = {
    v
    for k, v in vars(run_layout).items()
    if k.isupper() and isinstance(v, str) and k not in ("CARD", "MODEL_DIR", "SEED_PREFIX")
}
# also ordinary words or identifiers (a figure stem is a method name too): checked as path parts
_GENERIC = {"seeds", "cache", "gradients", "model", "_rewritten"} | {
    v for k, v in vars(run_layout).items() if k.startswith("FIG_") and isinstance(v, str)
}


@pytest.fixture(scope="module")
def mods():
    return modules()


def test_trainer_is_one_class_without_mixins():
    from gradiend import TextPredictionTrainer

    assert TextPredictionTrainer.__mro__ == (TextPredictionTrainer, object)
    for name, member in inspect.getmembers(TextPredictionTrainer, inspect.isfunction):
        if hasattr(member, "__wrapped__"):
            continue  # a delegation to RunEvaluation by construction (text_trainer._delegated)
        if not name.startswith("_"):
            lines = len(inspect.getsource(member).splitlines())
            assert lines <= 40, f"TextPredictionTrainer.{name} is {lines} lines: delegate"


def test_no_file_or_function_is_too_long(mods):
    long_files = [(m.lines, n) for n, m in mods.items() if m.lines > MAX_FILE_LINES]
    assert not long_files, f"files over {MAX_FILE_LINES} lines: {long_files}"
    long_funcs = [
        (n, f"{m.name}.{f}") for m in mods.values() for f, n in m.functions
        if n > MAX_FUNCTION_LINES
    ]  # fmt: skip
    assert not long_funcs, f"functions over {MAX_FUNCTION_LINES} lines: {long_funcs}"


def test_no_import_circles(mods):
    assert circles(mods) == []


def test_circles_are_found():
    """The circle finder sees a two-file circle (so the test above can fail)."""
    from layout import Module

    a = Module("a", ROOT, 1, imports={"b"})
    b = Module("b", ROOT, 1, imports={"a", "c"})
    c = Module("c", ROOT, 1)
    assert circles({"a": a, "b": b, "c": c}) == [["a", "b"]]


def test_run_folder_names_are_spelled_in_run_layout_only(mods):
    owner = "gradiend.run_layout"
    exact = _NAMES - _GENERIC
    for name, mod in mods.items():
        if name == owner:
            continue
        spelled = sorted(exact & mod.strings) + sorted(_GENERIC & mod.path_parts)
        assert not spelled, f"{name} spells run-folder names {spelled}: use gradiend.run_layout"


def test_visualizer_modules_import_only_plotting_helpers(mods):
    allowed = ("gradiend.visualizer", "gradiend.run_layout")
    for name, mod in mods.items():
        if not name.startswith("gradiend.visualizer."):
            continue
        bad = sorted(i for i in mod.imports if not i.startswith(allowed))
        assert not bad, f"{name} imports {bad}: the visualizer draws values it is given"


def test_function_level_imports_say_why(mods):
    missing = []
    for mod in mods.values():
        lines = mod.path.read_text().splitlines()
        for lineno, target in mod.local_imports:
            here, before = lines[lineno - 1], lines[lineno - 2] if lineno > 1 else ""
            if "#" not in here and not before.strip().startswith("#"):
                missing.append(f"{mod.name}:{lineno} ({target})")
    assert not missing, f"function-level imports without a reason comment: {missing}"

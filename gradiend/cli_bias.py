"""``gradiend bias MODEL [--against BASE]``: a model's bias-suite scores (and the comparison with
another model's) as a table with intervals; changes whose intervals do not overlap are marked.

Kept apart from ``gradiend.cli`` so the command table stays small; ``gradiend.cli_parser`` adds
the arguments with ``add_arguments``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from gradiend._io import write_json
from gradiend.config import ConfigError
from gradiend.evaluator.bias import SUITES, BiasConfig, BootstrapConfig, load_suites
from gradiend.lm.loading import load_base_model
from gradiend.trainer import bias_task

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  gradiend bias runs/x/he_she/balanced_rewritten --against models/base --max-items 200
  gradiend bias HuggingFaceTB/SmolLM2-135M --suites crows,winobias --json bias.json
scores CrowS-Pairs, StereoSet, WinoBias and SEAT (gradiend.evaluator.bias) with bootstrap 95 %
intervals; '*' marks a change whose intervals do not overlap (docs/bias.md)"""

MARK = "*"


def suites_arg(text: str) -> tuple[str, ...]:
    """``crows,stereoset`` → ``("crows", "stereoset")``, each a known suite (argparse type)."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SUITES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown bias suite(s) {bad or '(none)'}: choose from {','.join(SUITES)}, "
            "comma-separated"
        )
    return names


def add_arguments(p: argparse.ArgumentParser, positive_int) -> None:
    """The ``bias`` subcommand's arguments (``positive_int``: the parser's whole-number type)."""
    p.add_argument("model", metavar="MODEL",
                   help="model folder (e.g. a rewrite's output folder), .gguf file or hub id")  # fmt: skip
    p.add_argument("--against", metavar="BASE", default=None,
                   help="compare with this model (e.g. the base model the rewrite came from)")  # fmt: skip
    p.add_argument("--suites", type=suites_arg, default=",".join(SUITES), metavar="LIST",
                   help="comma-separated suites")  # fmt: skip
    p.add_argument("--max-items", type=positive_int, default=None, metavar="N",
                   help="score a seeded sample of N items per suite (quick looks)")  # fmt: skip
    p.add_argument("--n-boot", type=positive_int, default=1000, metavar="B",
                   help="bootstrap resamples per interval")  # fmt: skip
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the result (the format of trainer.evaluate_bias; as "
                        "RUN_DIR/bias_results.json the run's report shows it)")  # fmt: skip


def _checked(ns: argparse.Namespace) -> BiasConfig:
    """Every input checked before a model loads: settings, paths, the data, the JSON target."""
    try:
        cfg = BiasConfig(suites=ns.suites, max_items=ns.max_items,
                         bootstrap=BootstrapConfig(n_boot=max(ns.n_boot, 2)))  # fmt: skip
    except ValueError as err:
        raise ConfigError("--max-items", str(err), "pass --max-items 2 or more") from err
    for key, source in (("MODEL", ns.model), ("--against", ns.against)):
        try:
            bias_task.check_source(source, key)
        except (FileNotFoundError, TypeError) as err:
            raise ConfigError(key, str(err), "pass an existing model folder or a hub id") from err
    try:
        load_suites(cfg)
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise ConfigError("--suites", str(err), "install the data named above, or leave the "
                          "suite out of --suites") from err  # fmt: skip
    if ns.json is not None and Path(ns.json).is_dir():
        raise ConfigError("--json", f"{ns.json} is a folder", "pass a file name, e.g. bias.json")
    return cfg


def run(ns: argparse.Namespace) -> int:
    """The command: score MODEL (and BASE), print the table, write the JSON."""
    cfg = _checked(ns)
    lm = load_base_model(ns.model)
    ref = load_base_model(ns.against) if ns.against is not None else None
    result = bias_task.bias_result(lm, cfg, (str(ns.model), ns.against), against=ref)
    sys.stdout.write("\n".join(table_lines(result)) + "\n")
    if ns.json is not None:
        write_json(ns.json, result)
        logger.info("bias results written to %s", ns.json)
    return 0


def _cell(s: dict) -> str:
    return f"{s['value']:7.2f} [{s['low']:7.2f}, {s['high']:7.2f}]"


def _leaves(tree: dict, path: tuple = ()) -> Iterable[tuple[tuple, dict]]:
    for key, val in tree.items():
        if isinstance(val, dict) and ({"value", "low", "high"} <= set(val) or "delta" in val):
            yield path + (key,), val
        elif isinstance(val, dict):
            yield from _leaves(val, path + (key,))


def table_lines(result: dict, only: Iterable[str] | None = None) -> list[str]:
    """The result as text rows: ``suite group metric value [low, high]``, or with a comparison
    ``before → after, Δ`` and ``*`` where the intervals do not overlap; ``only``: the groups
    to show (default all)."""
    keep = set(only) if only is not None else None
    cmp = result.get("comparison")
    tree = cmp if cmp is not None else result["scores"]["suites"]
    if cmp is not None:
        lines = [f"{result.get('against')} → {result.get('model')}",
                 f"{'suite':10s} {'group':22s} {'metric':7s} {'before [95 % interval]':>26s}"
                 f" {'after [95 % interval]':>26s} {'delta':>8s}"]  # fmt: skip
    else:
        lines = [f"{result.get('model')}",
                 f"{'suite':10s} {'group':22s} {'metric':7s} {'score [95 % interval]':>26s} n"]  # fmt: skip
    marked = 0
    for path, leaf in _leaves(tree):
        suite, group, metric = path[0], path[-2], path[-1]
        if keep is not None and group not in keep:
            continue
        head = f"{suite:10s} {group[:22]:22s} {metric:7s}"
        if cmp is None:
            lines.append(f"{head} {_cell(leaf):>26s} {leaf['n']}")
            continue
        sig = MARK if leaf["significant"] else ""
        marked += bool(sig)
        lines.append(f"{head} {_cell(leaf['before']):>26s} {_cell(leaf['after']):>26s} "
                     f"{leaf['delta']:+8.2f} {sig}")  # fmt: skip
    if cmp is not None:
        lines.append(f"{MARK} the two 95 % intervals do not overlap ({marked} change(s))")
    seconds = result["scores"].get("seconds") or {}
    lines.append("scoring seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    return lines

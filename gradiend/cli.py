"""The ``gradiend`` command: every stage of a run on a config file, plus report, compare, steer.

A thin layer over the Python API: ``gradiend.config.RunConfig`` reads and checks the config (its
sections are the API's keyword arguments), ``gradiend.cli_parser`` builds the argument parser
(``build_parser`` is re-exported here) and each subcommand calls one ``gradiend.pipeline``
function. Exit codes: 0 done, 2 bad arguments or config (reported before any model loads), 1 the
run failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path

from gradiend import cli_bias, cli_methods, run_layout
from gradiend.cli_objective import apply_objective_options
from gradiend.cli_parser import build_parser, strength_problem
from gradiend.config import ConfigError, RunConfig
from gradiend.data.inputs import DataInputError
from gradiend.demo import DemoConfig, demo_config
from gradiend.evaluator.converged_runs import unconverged_of
from gradiend.evaluator.decoder_describe import describe as describe_decoder
from gradiend.model.hub import is_repo_id, resolve_pretrained
from gradiend.model.with_gradiend import load_context
from gradiend.pipeline import (  # _trainer_kwargs: the trainer section, creator data included
    _trainer_kwargs,
    build_evaluation,
    build_trainer,
    compare_runs,
    evaluate,
    load_run_model,
    make_data,
    rewrite,
    run_all,
    selected_strength,
    train,
    train_pairs,
)
from gradiend.report import write_report
from gradiend.report.target import report_target
from gradiend.suite import PositiveTrainerSuite, SymmetricTrainerSuite
from gradiend.trainer.convergence_check import UnconvergedError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- subcommands
def _config(ns: argparse.Namespace, allowed: tuple[str, ...] = ()) -> RunConfig:
    """The run config with ``--set``; with ``--allow-unconverged`` the ``allowed`` sections get
    ``allow_unconverged: true``."""
    sets = list(ns.set or [])
    if getattr(ns, "allow_unconverged", False):
        sets += [f"{section}.allow_unconverged=true" for section in allowed]
    return RunConfig.load(ns.config, sets, trust_remote_code=ns.trust_remote_code)


def _check_trained(model_dirs: list[str], allow: bool) -> list[str]:
    """Lines naming each saved GRADIEND that did not converge; refused (``UnconvergedError``,
    exit 1) unless ``--allow-unconverged``, so a script does not go on with it silently."""
    found = {d: what for d in model_dirs if (what := unconverged_of(d)) is not None}
    if found and not allow:
        listed = "; ".join(f"{d}: {what}" for d, what in found.items())
        raise UnconvergedError(
            f"the GRADIEND did not converge ({listed}). It is saved, but evaluate, rewrite and "
            "compare refuse it: retrain it (the training log and training.json's advice say "
            "what to change), or pass --allow-unconverged to go on with it"
        )
    return [f"NOT CONVERGED (allowed by --allow-unconverged): {d}: {w}" for d, w in found.items()]


def _demo(ns: argparse.Namespace) -> int:
    cfg = DemoConfig(
        output_dir=ns.output_dir,
        model=ns.model,
        max_steps=ns.max_steps,
        seeds=ns.seeds,
        max_size_per_class=ns.max_size_per_class,
        learning_rate=ns.learning_rate,
    )
    if Path(ns.output_dir).exists() and not Path(ns.output_dir).is_dir():
        raise ConfigError("--output-dir", f"{ns.output_dir} is a file", "pass a folder path")
    trusted = ["training_args.trust_remote_code=true"] if ns.trust_remote_code else []
    run = demo_config(cfg, [*(ns.set or []), *trusted], trust_remote_code=ns.trust_remote_code)
    start = time.perf_counter()
    out = run_all(run)
    enc, dec = out.get("encoder", {}), out.get("decoder", {}).get("she")
    lines = [
        f"test correlation (he vs she): {enc.get('correlation', float('nan')):.3f}",
        f"mean encoding by class: {json.dumps(_round(enc.get('mean_by_feature_class', {})))}",
        f"neutral mean encodings: {json.dumps(_round(enc.get('neutral_mean_by_type', {})))}",
    ]
    if dec:
        lines.append(
            f"decoder (strengthen 'she'): feature_factor={dec.get('feature_factor')} "
            f"learning_rate={dec.get('learning_rate')} P(she | he-sentences) "
            f"{_fmt(dec.get('base_value'))} -> {_fmt(dec.get('value'))} at LMS "
            f"{_fmt(dec.get('lms'))} (base {_fmt(dec.get('base_lms'))}, "
            f"passed={dec.get('passed')})"
        )
        lines.append(f"rewritten model: {out.get('rewritten_model')}")
    lines.append(f"run directory: {out['run_dir']}")
    for key in sorted(k for k in out if k.endswith("_plot")):
        if out.get(key):
            lines.append(f"{key.removesuffix('_plot').replace('_', ' ')}: {out[key]}")
    lines.append(f"report: gradiend report {out['run_dir']}")
    lines.append(f"finished in {time.perf_counter() - start:.0f} s")
    _print(lines)
    return EXIT_OK


def _data(ns: argparse.Namespace) -> int:
    cfg = _config(ns)
    cfg.require("creator.output_dir", why="the data command writes its tables there")
    cfg.require("creator.base_data", "creator.feature_targets", why="the data stage needs them")
    try:
        out = make_data(cfg)
    except DataInputError as err:  # a bad creator input: exit 2, like any bad config value
        raise ConfigError(f"{err.section}.{err.argument}", err.problem, err.fix) from err
    rows = out["stats"].get("rows_per_class", {})
    lines = [f"{cls}: {json.dumps(n)}" for cls, n in rows.items()]
    if out["neutral"] is not None:
        lines.append(f"neutral: {len(out['neutral'])} sentences")
    lines.append(f"written to {cfg.resolve(cfg.creator['output_dir'])} in {out['seconds']:.1f} s")
    _print(lines)
    return EXIT_OK


def _suite_classes(ns: argparse.Namespace) -> list[str] | None:
    """The classes of ``--suite``/``--classes`` (checked: both or neither, no ``--pairs``, at
    least two distinct classes), or None for a plain run."""
    if ns.suite is None and ns.classes is None:
        return None
    if ns.suite is None or not ns.classes:
        raise ConfigError(
            "--suite" if ns.suite is None else "--classes",
            "--suite and --classes go together",
            "pass both, e.g. --suite symmetric --classes der die das",
        )
    if ns.pairs:
        raise ConfigError("--pairs", "given with --suite", "pass --pairs or --suite, not both")
    if len(set(ns.classes)) < 2 or len(set(ns.classes)) != len(ns.classes):
        raise ConfigError(
            "--classes", f"needs at least two distinct classes, got {ns.classes}",
            "name each class once, e.g. --classes der die das",
        )  # fmt: skip
    return list(ns.classes)


def _build_suite(cfg: RunConfig, kind: str, classes: list[str]):
    """The suite of the config's ``trainer`` section over ``classes`` (its data checked, no model
    loaded yet); ``trainer.target_classes`` is replaced by the classes."""
    kwargs, _ = _trainer_kwargs(cfg, "the base model the suite trains on")
    kwargs.pop("target_classes", None)
    kwargs.setdefault("progress", True)
    if kind == "symmetric":
        return SymmetricTrainerSuite(
            **kwargs, target_classes=classes, args=cfg.training_arguments()
        )
    return PositiveTrainerSuite(
        **kwargs, mode="all_but_one", feature_class_group=classes, args=cfg.training_arguments()
    )


def _train_suite(ns: argparse.Namespace, classes: list[str]) -> int:
    cfg = _config(ns)
    cfg.require("trainer.model", why="the base model the suite trains on")
    suite = _checked(_build_suite, cfg, kind=ns.suite, classes=classes)
    suite.train()
    lines, dirs, labels = [], [], suite.labels()
    for cid, child in suite.items():
        best = child.get_training_stats().get("best_score_checkpoint", {})
        lines.append(f"{labels[cid]}: correlation {_fmt(best.get('correlation'))} "
                     f"-> {child.model_dir}")  # fmt: skip
        dirs.append(str(child.model_dir))
    st = suite.stats
    lines.append(f"suite: {len(dirs)} GRADIENDs, {st.get('backward_passes')} base-model backward "
                 f"passes for {st.get('distinct_items')} distinct (sentence, word) gradients")  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        _print(lines + _check_trained(dirs, ns.allow_unconverged))
    return EXIT_OK


def _train(ns: argparse.Namespace) -> int:
    classes = _suite_classes(ns)
    if classes is not None:
        return _train_suite(ns, classes)
    if ns.pairs:
        kw = {"plot": not ns.no_plot, "trust_remote_code": ns.trust_remote_code}
        outs = train_pairs(ns.config, ns.pairs, ns.set or [], **kw)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one summary, not one per rank
            _print(
                [
                    f"{'/'.join(o['target_classes'])}: correlation {_fmt(o['correlation'])} "
                    f"(converged: {o['converged']}) -> {o['model_dir']}"
                    for o in outs
                ]
                + _check_trained([o["model_dir"] for o in outs], ns.allow_unconverged)
            )
        return EXIT_OK
    cfg = _config(ns)
    cfg.require("trainer.model", why="the base model to train on")
    out = train(cfg, _checked(build_trainer, cfg), plot=not ns.no_plot)
    _print(
        [
            f"best validation correlation: {_fmt(out['correlation'])} "
            f"(converged: {out['converged']})",
            f"GRADIEND: {out['model_dir']}",
            f"run directory: {out['run_dir']}",
        ]
        + _check_trained([out["model_dir"]], ns.allow_unconverged)
    )
    return EXIT_OK


def _evaluate(ns: argparse.Namespace) -> int:
    cfg = _config(ns, ("evaluate_encoder", "evaluate_decoder"))
    cfg.require("trainer.model", why="the base model the GRADIEND was trained on")
    evaluation = _checked(build_evaluation, cfg, require_model=True)
    apply_objective_options(ns, cfg, evaluation)  # --objective, --balance-data
    out = evaluate(
        cfg,
        evaluation,
        encoder=not ns.decoder_only,
        decoder=not ns.encoder_only,
        plot=not ns.no_plot,
    )
    lines = []
    if "encoder" in out:
        enc = out["encoder"]
        lines.append(f"test correlation: {_fmt(enc.get('correlation'))}")
        lines.append(f"mean encoding by class: {json.dumps(_round(enc['mean_by_feature_class']))}")
    lines += describe_decoder(out.get("decoder") or {})  # selections, specificity, the search
    lines.append(f"run directory: {out['run_dir']}")
    _print(lines)
    return EXIT_OK


def _rewrite(ns: argparse.Namespace) -> int:
    cfg = _config(ns, ("rewrite_base_model",))
    cfg.require("trainer.model", why="the base model to rewrite")
    out = rewrite(cfg, _checked(build_evaluation, cfg, with_data=False, require_model=True))
    _print([f"rewritten model ({out['target_class']}): {out['rewritten_model']}"])
    return EXIT_OK


def _compare(ns: argparse.Namespace) -> int:
    _check_runs(ns.runs, need=2, model=True)
    out = compare_runs(ns.runs, ns.topk, ns.part, ns.measure, ns.output_dir,
                       allow_unconverged=ns.allow_unconverged)  # fmt: skip
    width = max(len(label) for label in out["labels"])
    lines = [f"{ns.measure} (top {ns.topk}, {out['part']}):"]
    for label, row in zip(out["labels"], out["matrix"], strict=True):
        lines.append(f"  {label:<{width}}  " + "  ".join(f"{v:8.3f}" for v in row))
    for key in ("csv", "heatmap", "venn"):
        if out.get(key):
            lines.append(f"{key}: {out[key]}")
    lines += [f"NOT CONVERGED: {label}: {what}" for label, what in out["unconverged"].items()]
    _print(lines)
    return EXIT_OK


def _report(ns: argparse.Namespace) -> int:
    _check_runs(ns.runs, need=1)
    report_target(ns.runs, ns.output)  # refused here (exit 2) before any figure is drawn
    path = write_report(ns.runs, ns.output, topk=ns.topk, allow_unconverged=ns.allow_unconverged)
    _print([f"report: {path}"])
    return EXIT_OK


def _steer(ns: argparse.Namespace) -> int:
    _check_runs([ns.run], need=1, allow_hub=True)
    saved = Path(ns.run) / run_layout.RUN_CONFIG
    trusted = ns.trust_remote_code
    defaults = RunConfig.load(saved, trust_remote_code=trusted).steer if saved.is_file() else {}
    _check_runs([ns.run], need=1, allow_hub=True, model=True)  # after the config's own checks
    _check_steer_defaults(defaults)
    prompts = ns.prompt or defaults.get("prompts")
    if not prompts:
        raise ConfigError("--prompt", "no prompt given", 'pass --prompt "The doctor said that"')
    classes = list(load_context(resolve_pretrained(ns.run)).get("target_classes") or [])
    ff = ns.feature_factor
    target = ns.target_class or (None if ff is not None else defaults.get("target_class"))
    if target is None and ff is None:
        raise ConfigError(
            "--target-class", "no direction given", f"pass --target-class (one of {classes})"
        )
    if target is not None and target not in classes:
        raise ConfigError("--target-class", f"unknown class {target!r}", f"use one of {classes}")
    strength = ns.strength
    if strength is None:
        strength = defaults.get("strength") or (target and selected_strength(ns.run, target))
    if strength is None:
        raise ConfigError(
            "--strength",
            "no strength given and the run has no decoder selection for this direction",
            "pass --strength (e.g. 0.5) or run `gradiend evaluate` first",
        )
    if not math.isfinite(float(strength)):  # a selected strength; the user's were checked
        raise ConfigError("--strength", f"{strength} is not a finite number", "pass e.g. 0.5")
    mwg = load_run_model(ns.run, base_model=ns.model)
    rows = mwg.steer_generations(
        prompts,
        float(strength),
        target_class=target if ff is None else None,
        feature_factor=ff,
        max_new_tokens=ns.max_new_tokens or defaults.get("max_new_tokens", 20),
    )
    label = f"steered ({target if ff is None else f'ff={ff}'}, strength {strength})"
    _print(_side_by_side(rows, label))
    return EXIT_OK


# --------------------------------------------------------------------------- output helpers
def _print(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def _round(d: dict) -> dict:
    return {str(k): round(float(v), 3) for k, v in d.items()}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{float(x):.4f}"


def _side_by_side(rows: list[dict], label: str, width: int = 48) -> list[str]:
    lines = []
    for r in rows:
        lines.append(f"prompt: {r['prompt']}")
        left = textwrap.wrap(r["base"].strip(), width) or [""]
        right = textwrap.wrap(r["steered"].strip(), width) or [""]
        lines.append(f"  {'base':<{width}} | {label}")
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            lines.append(f"  {a:<{width}} | {b}")
        lines.append("")
    return lines


def _check_runs(runs: list[str], need: int, allow_hub: bool = False, model: bool = False) -> None:
    """Enough run folders, each existing (or a hub id) and, with ``model``, holding a GRADIEND."""
    if len(runs) < need:
        raise ConfigError("RUN_DIR", f"{need} run folders needed, got {len(runs)}", "name more")
    for r in runs:
        if not Path(r).exists() and not (allow_hub and is_repo_id(r)):
            raise ConfigError("RUN_DIR", f"{r} does not exist", "pass a run or model folder")
        if model and Path(r).exists():
            try:
                run_layout.RunLayout.find(r)
            except FileNotFoundError as err:
                raise ConfigError(
                    "RUN_DIR", f"{r} holds no GRADIEND", "pass a run folder or a model folder"
                ) from err


def _checked(build, cfg: RunConfig, require_model: bool = False, **kwargs):
    """``build(cfg)``: a trainer or a saved run's evaluation, whose construction only checks its
    inputs (no model is loaded yet), so what it refuses is bad input (exit 2)."""
    if require_model:
        args = cfg.training_arguments()
        layout = run_layout.RunLayout.from_args(
            args.experiment_dir, cfg.section("trainer").get("run_id"), args.output_dir
        )
        if not layout.has_model:
            raise ConfigError(
                "--config",
                f"no trained GRADIEND in {layout.model_dir}",
                "train the run first (gradiend train -c CONFIG), or pass its run folder: -c RUN_DIR",
            )
    try:
        return build(cfg, **kwargs)
    except (ConfigError, DataInputError):
        raise
    except (ValueError, OSError) as err:
        raise ConfigError(
            "--config", f"{type(err).__name__}: {err}", "correct the value or path named above"
        ) from err


def _check_steer_defaults(defaults: dict) -> None:
    """The run config's ``steer`` values obey the rules of the flags they stand in for."""
    strength = defaults.get("strength")
    problem = strength_problem(float(strength)) if strength is not None else None
    if problem:
        raise ConfigError(
            "steer.strength", problem, "correct it in the run config or pass --strength"
        )
    tokens = defaults.get("max_new_tokens")
    if tokens is not None and tokens < 1:
        raise ConfigError(
            "steer.max_new_tokens", f"must be at least 1, got {tokens}", "pass --max-new-tokens 20"
        )


def _log_to_stderr(level: int) -> None:
    """Show the library's own log on stderr; the root logger stays untouched. Calling ``main``
    again (tests, notebooks) replaces the handler instead of adding a second one."""
    log = logging.getLogger("gradiend")
    for old in [h for h in log.handlers if getattr(h, "_gradiend_cli", False)]:
        log.removeHandler(old)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._gradiend_cli = True
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


# --------------------------------------------------------------------------- commands
COMMANDS = {
    "demo": _demo,
    "data": _data,
    "train": _train,
    "evaluate": _evaluate,
    "rewrite": _rewrite,
    "compare": _compare,
    "report": _report,
    "steer": _steer,
    "bias": cli_bias.run,
    "compare-methods": cli_methods.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or an argparse usage error (2)
        return int(stop.code or 0)
    _log_to_stderr(logging.DEBUG if ns.verbose else logging.INFO)
    try:
        return COMMANDS[ns.command](ns)
    except (ConfigError, DataInputError) as err:  # bad input, reported before the work
        sys.stderr.write(f"gradiend {ns.command}: error: {err}\n")
        return EXIT_USAGE
    except UnconvergedError as err:  # the run failed to train a feature: not bad input
        hint = "" if "--allow-unconverged" in str(err) else " (command line: --allow-unconverged)"
        sys.stderr.write(f"gradiend {ns.command}: not converged: {err}{hint}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("gradiend: interrupted\n")
        return 130
    except Exception as err:  # noqa: BLE001 - the command line reports any failure as exit 1
        if ns.verbose:
            traceback.print_exc()
        sys.stderr.write(f"gradiend {ns.command}: failed: {type(err).__name__}: {err}\n")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

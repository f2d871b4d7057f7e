"""The ``gradiend`` argument parser: one subcommand per stage, its options, types and examples.

Kept apart from ``gradiend.cli`` (which runs the commands) so the command table stays small;
``gradiend.cli.build_parser`` re-exports ``build_parser``.
"""

from __future__ import annotations

import argparse
import math

from gradiend import cli_bias, cli_methods, run_layout
from gradiend.demo import DemoConfig

DESCRIPTION = """The ``gradiend`` command: every stage of a run on a config file, plus report, compare, steer.

A thin layer over the Python API: ``gradiend.config.RunConfig`` reads and checks the config (its
sections are the API's keyword arguments) and each subcommand calls one ``gradiend.pipeline``
function. Exit codes: 0 done, 2 bad arguments or config (reported before any model loads), 1 the
run failed.
"""

EXAMPLES = {
    None: """examples:
  gradiend demo                                   # the he-vs-she demo on SmolLM2, offline
  gradiend train -c run.yaml --set training_args.max_steps=200
  gradiend evaluate -c run.yaml --decoder-only
  gradiend report runs/x/he_she -o report.html
  gradiend steer runs/x/he_she --prompt "The doctor said that" --strength 0.5
config keys are the Python API's parameter names; see docs/cli.md""",
    "demo": """example:
  gradiend demo --output-dir runs/demo --max-steps 60 --set evaluate_encoder.max_size=50""",
    "data": """example:
  gradiend data -c run.yaml --set creator.output_dir=data/he_she
runs creator.generate_training_data and creator.generate_neutral_data; writes to
creator.output_dir""",
    "train": """examples:
  gradiend train -c run.yaml --set training_args.learning_rate=1e-4
  torchrun --nproc-per-node 4 -m gradiend.cli train -c run.yaml --pairs der,die der,das die,das
  gradiend train -c run.yaml --suite symmetric --classes der die das   # shares gradients
trains TextPredictionTrainer(**trainer, args=TrainingArguments(**training_args)); without
trainer.data the data comes from the creator sections""",
    "evaluate": """example:
  gradiend evaluate -c run.yaml --set evaluate_decoder.target_class=she
runs trainer.evaluate_encoder(**evaluate_encoder) and trainer.evaluate_decoder(**evaluate_decoder)
on the trained run""",
    "rewrite": """example:
  gradiend rewrite -c run.yaml --set rewrite_base_model.output_dir=models/she
saves the base model rewritten at the point the decoder evaluation selected""",
    "compare": """example:
  gradiend compare runs/a/he_she runs/b/he_she runs/c/he_she --topk 1000 -o runs/compare
writes similarity.csv, the heatmap and the top-k Venn diagram""",
    "report": """examples:
  gradiend report runs/demo/he_she                     # writes runs/demo/he_she/report.html
  gradiend report runs/a/he_she runs/b/he_she -o cmp.html   # one page comparing the runs""",
    "steer": """example:
  gradiend steer runs/demo/he_she --prompt "My neighbour told me that" --target-class she \\
      --strength 0.5
without --strength the decoder evaluation's selected learning rate is used""",
    "bias": cli_bias.EXAMPLES,
    "compare-methods": cli_methods.EXAMPLES,
}


SUITE_KINDS = ("symmetric", "all_but_one")  # gradiend train --suite KIND --classes ...
_Subparsers = argparse._SubParsersAction  # what add_subparsers returns


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends each option's default (unless None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.option_strings
            and action.default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The ``gradiend`` parser: one subcommand per stage, each with its examples as epilog."""
    parser = argparse.ArgumentParser(
        prog="gradiend",
        description=DESCRIPTION,
        epilog=EXAMPLES[None],
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_stages(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_steer(sub)
    _add_bias(sub)
    _add_methods(sub)
    return parser


def _subcommand(sub: _Subparsers, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand with ``help`` as its description, its examples and ``--verbose``."""
    p = sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                       formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="debug-level log, tracebacks")
    return p


def _config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config`` and ``--trust-remote-code`` (not for the demo's config) and ``--set``."""
    if required:
        p.add_argument("-c", "--config", required=True,
                       help=f"YAML/JSON config, or a run folder (its {run_layout.RUN_CONFIG})")  # fmt: skip
        _trust_arg(p)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a config key (value parsed as YAML); repeatable")  # fmt: skip


def _trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-remote-code``: the only way a config's ``trust_remote_code: true`` is accepted."""
    p.add_argument("--trust-remote-code", action="store_true",
                   help="accept a config that sets training_args.trust_remote_code: true (runs "
                        "the Python code the model folder or hub repo ships); refused without")  # fmt: skip


def _add_demo(sub: _Subparsers) -> None:
    """``demo``: its options default to ``DemoConfig``'s fields."""
    defaults = DemoConfig()
    demo = _subcommand(
        sub, "demo", "train, evaluate and rewrite a he-vs-she GRADIEND on SmolLM2 (offline)"
    )
    demo.add_argument("--output-dir", default=defaults.output_dir,
                      help="experiment folder; the run is written to OUTPUT_DIR/he_she")  # fmt: skip
    demo.add_argument("--model", default=None,
                      help="hub id, folder or .gguf file (default: the offline SmolLM2-135M-Instruct "
                      "GGUF, gradiend.demo.smollm2_path())")  # fmt: skip
    demo.add_argument("--max-steps", type=int, default=defaults.max_steps,
                      help="GRADIEND training steps per seed")  # fmt: skip
    demo.add_argument("--seeds", type=int, default=defaults.seeds,
                      help="seeds trained on the one gradient cache (all must converge)")  # fmt: skip
    demo.add_argument("--max-size-per-class", type=int, default=defaults.max_size_per_class,
                      help="training rows per class (he, she) taken from the shipped sentences")  # fmt: skip
    demo.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                      help="the GRADIEND's AdamW learning rate (docs/training.md explains the choice)")  # fmt: skip
    demo.add_argument("--trust-remote-code", action="store_true",
                      help="run the Python code that the --model folder or hub repo ships "
                           "(sets training_args.trust_remote_code: true, which the demo's "
                           "config and --set never turn on by themselves)")  # fmt: skip
    _config_args(demo, required=False)


def _unconverged_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--allow-unconverged``: go on with a GRADIEND whose training did not converge."""
    p.add_argument("--allow-unconverged", action="store_true",
                   help=f"{what} a GRADIEND whose training did not converge (collapsed or too "
                        "short), marked as such; refused without (docs/training.md#collapse)")  # fmt: skip


def _add_stages(sub: _Subparsers) -> None:
    """``data``, ``train``, ``evaluate`` and ``rewrite``: the stages that run on a config."""
    _config_args(
        _subcommand(sub, "data", "generate the training and neutral tables with the data creator")
    )
    train = _subcommand(sub, "train", "train a GRADIEND (seeds, pruning, caches as configured)")
    _config_args(train)
    train.add_argument("--no-plot", action="store_true", help="skip the convergence figure")
    train.add_argument("--pairs", nargs="+", metavar="A,B",
                       help="train one run per class pair (run_id/<A>_<B>); under torchrun the "
                            "pairs are spread over the ranks (docs/distributed.md)")  # fmt: skip
    train.add_argument("--suite", choices=SUITE_KINDS,
                       help="train a suite over --classes on one base model, each distinct "
                            "(sentence, word) gradient computed once: symmetric = one child per "
                            "pair, all_but_one = each class against the others merged "
                            "(run_id/<child_id>; docs/suites.md)")  # fmt: skip
    train.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="the suite's classes (at least two), e.g. --classes der die das",
    )
    train.add_argument("--allow-unconverged", action="store_true",
                       help="exit 0 when the trained GRADIEND did not converge (it is saved "
                            "either way; without the flag that exits 1)")  # fmt: skip
    ev = _subcommand(sub, "evaluate", "evaluate the trained GRADIEND's encoder and/or decoder")
    _config_args(ev)
    only = ev.add_mutually_exclusive_group()
    only.add_argument("--encoder-only", action="store_true")
    only.add_argument("--decoder-only", action="store_true")
    ev.add_argument("--no-plot", action="store_true", help="skip the figures")
    ev.add_argument("--objective", metavar="OBJECTIVE",
                    help="the decoder's selection: strengthen (per class, the default), balance "
                         "or parity (result key 'balanced') or prefer:CLASS (docs/decoder.md)")  # fmt: skip
    ev.add_argument("--balance-data", metavar="FILE",
                    help="masked sentences to balance on: one per line, or a .csv/.parquet "
                         "with a 'masked' column (default: the run's test sentences)")  # fmt: skip
    _unconverged_arg(ev, "evaluate")
    rw = _subcommand(sub, "rewrite", "save the base model rewritten at the selected decoder point")
    _config_args(rw)
    _unconverged_arg(rw, "rewrite the base model with")


def _add_compare(sub: _Subparsers) -> None:
    """``compare``: several runs' importance rankings against each other."""
    cmp = _subcommand(
        sub, "compare", "compare runs: similarity matrix, heatmap, top-k Venn diagram"
    )
    cmp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cmp.add_argument("--topk", type=_topk, default=1000, help="count, or fraction if < 1")
    cmp.add_argument(
        "--part",
        default=None,
        help="importance ranking (default: each run's own, snr when it was trained with neutral "
        "texts, else decoder-fit)",
    )
    cmp.add_argument("--measure", default="topk_overlap",
                     choices=["topk_overlap", "cosine", "cosine_signed", "spearman",
                              "spearman_signed", "mass_overlap"])  # fmt: skip
    cmp.add_argument("-o", "--output-dir", default=None, help="where the files go")
    _unconverged_arg(cmp, "compare")


def _add_report(sub: _Subparsers) -> None:
    """``report``: the HTML page of one run or of a comparison."""
    rep = _subcommand(
        sub, "report", "write one self-contained HTML report of one run or a comparison"
    )
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("-o", "--output", default=None,
                     help="HTML file (default RUN_DIR/report.html; comparison: ./report.html)")  # fmt: skip
    rep.add_argument("--topk", type=_topk, default=1000, help="top-k for the overlap figures")
    _unconverged_arg(rep, "compare (several runs)")


def _add_steer(sub: _Subparsers) -> None:
    """``steer``: base and steered generations of a run, side by side."""
    st = _subcommand(sub, "steer", "print base and steered generations side by side")
    st.add_argument("run", metavar="RUN_DIR", help="run folder, model folder or hub id")
    st.add_argument("--prompt", action="append", help="repeatable")
    direction = st.add_mutually_exclusive_group()
    direction.add_argument("--target-class", help="the class to strengthen")
    direction.add_argument("--feature-factor", type=_feature_factor,
                           help="raw decoder input, e.g. 1 or -1")  # fmt: skip
    st.add_argument("--strength", type=_strength, default=None,
                    help=f"step size η: the model becomes θ + η·decoder (|η| ≤ {MAX_STRENGTH:g})")  # fmt: skip
    st.add_argument("--max-new-tokens", type=positive_int, default=None,
                    help="tokens generated per prompt (default: the run config's, else 20)")  # fmt: skip
    st.add_argument("--model", default=None, help="base model (default: the recorded one)")
    _trust_arg(st)


def _add_bias(sub: _Subparsers) -> None:
    """``bias``: a model's bias-suite scores, against another model's (``gradiend.cli_bias``)."""
    p = _subcommand(sub, "bias", "score a model on CrowS-Pairs, StereoSet, WinoBias and SEAT, "
                    "optionally against another model, with bootstrap intervals")  # fmt: skip
    cli_bias.add_arguments(p, positive_int)


def _add_methods(sub: _Subparsers) -> None:
    """``compare-methods``: GRADIEND, ACTIEND and CAA side by side (``gradiend.cli_methods``)."""
    p = _subcommand(sub, "compare-methods", "train GRADIEND, ACTIEND and CAA on the same data "
                    "and compare their effects under the same decoder budget")  # fmt: skip
    cli_methods.add_arguments(p, positive_int)


# --------------------------------------------------------------------------- argument types
# steering adds strength × the decoder's update to the weights; the decoder search's default
# grid tops out at 100, so a step far past it only swamps the weights (and overflows float32)
MAX_STRENGTH = 1e6
MAX_FEATURE_FACTOR = 100.0  # the decoder is trained on inputs in [-1, 1] (the classes at ±1)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def strength_problem(value: float) -> str | None:
    """Why ``value`` is no steering strength (None when it is one); the CLI's one rule."""
    if not math.isfinite(value):
        return f"{value} is not a finite number; pass e.g. 0.5"
    if abs(value) > MAX_STRENGTH:
        return (
            f"{value:g} is out of range: steering adds strength × the decoder's update to the "
            f"weights (θ + strength·decoder), so |strength| above {MAX_STRENGTH:g} swamps every "
            "weight (the decoder search tries at most 100 by default); pass e.g. 0.5, or leave "
            "it out to use the step the decoder evaluation selected"
        )
    return None


def _strength(text: str) -> float:
    value = _number(text)
    problem = strength_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def _feature_factor(text: str) -> float:
    value = _number(text)
    if abs(value) > MAX_FEATURE_FACTOR:
        raise argparse.ArgumentTypeError(
            f"{value:g} is out of range: the decoder is trained on inputs in [-1, 1] (the "
            f"classes at ±1); pass a value with |value| ≤ {MAX_FEATURE_FACTOR:g}, e.g. 1 or -1"
        )
    return value


def positive_int(text: str) -> int:
    """A whole number ≥ 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _topk(text: str) -> int | float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"topk must be > 0 (a count, or a fraction < 1), got {text}"
        )
    return value if value < 1 else int(value)

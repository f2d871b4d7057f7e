"""``gradiend compare-methods MODEL --data … --classes A B``: GRADIEND, ACTIEND and CAA on the
same data and budget (``gradiend.trainer.methods.compare_methods``), printed as one table and
saved as ``<experiment-dir>/<run-id>/method_comparison.json`` (the report shows it).

Kept apart from ``gradiend.cli`` so the command table stays small; ``gradiend.cli_parser`` adds
the arguments with ``add_arguments``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from gradiend.config import ConfigError
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.methods import METHODS, check_methods, compare_methods

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  gradiend compare-methods models/base --data data/training_he.csv data/training_she.csv \\
      --classes he she --neutral data/neutral.txt --layers 10 20 -1
  gradiend compare-methods HuggingFaceTB/SmolLM2-135M --data he_she.csv --classes he she \\
      --methods actiend caa
trains a GRADIEND (gradient signal), an ACTIEND per layer (the best by validation |r| is kept)
and CAA, evaluates each under the same decoder budget and prints the table (docs/signals.md)"""


def add_arguments(p: argparse.ArgumentParser, positive_int) -> None:
    """The ``compare-methods`` subcommand's arguments."""
    p.add_argument("model", metavar="MODEL", help="base model: folder, .gguf file or hub id")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="training data: one file the trainer reads, or one CSV per class in "
                        "--classes order (as `gradiend data` writes training_<class>.csv)")  # fmt: skip
    p.add_argument("--classes", nargs=2, required=True, metavar=("A", "B"),
                   help="the two target classes")  # fmt: skip
    p.add_argument("--neutral", default=None, metavar="FILE",
                   help="neutral texts: a .txt file (one per line) or a file the trainer reads")  # fmt: skip
    p.add_argument("--methods", nargs="+", default=list(METHODS), metavar="METHOD",
                   help=f"any of {', '.join(METHODS)}")  # fmt: skip
    p.add_argument("--layers", nargs="+", type=int, default=[-1], metavar="I",
                   help="the ACTIEND's candidate layers (negative counts from the end)")  # fmt: skip
    p.add_argument("--target-class", default=None, help="the class strengthened (default: B)")
    p.add_argument("--max-steps", type=positive_int, default=200, help="training steps")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="GRADIEND learning rate")
    p.add_argument("--batch-size", type=positive_int, default=8, help="training batch size")
    p.add_argument("--actiend-learning-rate", type=float, default=3e-2,
                   help="ACTIEND learning rate")  # fmt: skip
    p.add_argument("--max-nll-increase", type=float, default=0.01,
                   help="the decoder budget: neutral NLL increase at most this share")  # fmt: skip
    p.add_argument("--decoder-rows", type=positive_int, default=None, metavar="N",
                   help="held-out rows per class the effect is measured on (default: all)")  # fmt: skip
    p.add_argument("--experiment-dir", default="runs", help="where the runs are written")
    p.add_argument("--run-id", default="methods", help="the comparison's folder name")


def _checked(ns: argparse.Namespace) -> tuple:
    """Methods, classes, files and the target class, checked before a model loads."""
    try:
        check_methods(ns.methods, ns.classes, ns.layers)
    except ValueError as err:
        raise ConfigError("--methods", str(err), "see gradiend compare-methods --help") from err
    if ns.target_class is not None and ns.target_class not in ns.classes:
        raise ConfigError("--target-class", f"{ns.target_class!r} is not one of --classes",
                          f"pass one of {ns.classes}")  # fmt: skip
    for f in [*ns.data, *([ns.neutral] if ns.neutral else [])]:
        if not Path(f).exists():
            raise ConfigError("--data", f"{f} does not exist", "pass an existing file")
    if len(ns.data) not in (1, 2):
        raise ConfigError("--data", f"{len(ns.data)} files", "pass one file, or one per class")
    data = ns.data[0] if len(ns.data) == 1 else {
        c: pd.read_csv(f) for c, f in zip(ns.classes, ns.data)}  # fmt: skip
    neutral = ns.neutral
    if neutral and neutral.endswith(".txt"):
        lines = Path(neutral).read_text(encoding="utf-8").splitlines()
        neutral = [t.strip() for t in lines if t.strip()]
    return data, neutral


def run(ns: argparse.Namespace) -> int:
    data, neutral = _checked(ns)
    args = TrainingArguments(
        experiment_dir=ns.experiment_dir, max_steps=ns.max_steps, learning_rate=ns.learning_rate,
        train_batch_size=ns.batch_size, eval_steps=max(1, ns.max_steps // 6), max_seeds=1,
    )  # fmt: skip
    result = compare_methods(
        ns.model, data, ns.classes, args=args, methods=ns.methods, actiend_layers=ns.layers,
        actiend_learning_rate=ns.actiend_learning_rate, target_class=ns.target_class,
        eval_neutral_data=neutral, max_nll_increase=ns.max_nll_increase,
        max_size_training_like=ns.decoder_rows, experiment_dir=ns.experiment_dir,
        run_id=ns.run_id,
    )  # fmt: skip
    sys.stdout.write(result.to_markdown() + "\n" + result.summary() + "\n")
    sys.stdout.write(f"written to {Path(ns.experiment_dir) / ns.run_id}\n")
    return 0

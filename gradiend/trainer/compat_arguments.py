"""The ``TrainingArguments`` names of gradiend 0.2.3 that ours maps onto its own machinery, or
accepts without effect where ours makes them moot.

``CompatArguments`` is the base dataclass of ``TrainingArguments``: a 0.2.3 script that sets
any of these names constructs. Fields with a meaning here are used by the stages (the
criterion, the custom evaluation, the supervised baselines, the mask placeholder, the batch
size alias); the others are listed in ``NO_EFFECT`` with the reason, and setting one to a
value other than its default warns once (``gradiend._warn``) instead of doing nothing
silently. docs/arguments.md "Coming from 0.2.3" has the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradiend._warn import warn

logger = logging.getLogger(__name__)

__all__ = ["NO_EFFECT", "CompatArguments", "resolve_compat"]

# field -> (its default, why it changes nothing here)
NO_EFFECT: dict[str, tuple[Any, str]] = {
    "precompute_gradient_batches": (
        None,
        "every training gradient is computed once and cached before training, so there is "
        "nothing to prefetch",
    ),
    "precompute_gradient_buffer_size": (
        1,
        "every training gradient is computed once and cached before training, so there is "
        "no prefetch buffer",
    ),
    "gradient_timing_steps": (
        0,
        "the time of every stage (gradients, validation, seeds) is always recorded in "
        "training.json under 'timings'",
    ),
    "eval_strategy": (
        "steps",
        "validation runs every eval_steps steps in any case: it selects the best step and "
        "decides convergence",
    ),
    "encoder_eval_balance": (
        True,
        "evaluation rows are capped per transition (encoder_eval_max_size), which balances "
        "the classes whenever a cap applies",
    ),
    "dataset_trust_remote_code": (
        None,
        "the installed `datasets` (≥ 4) runs no dataset loading scripts, so there is no "
        "remote code to trust",
    ),
    "model_use_cache": (
        False,
        "gradient passes score one masked position or next token and never read a KV cache",
    ),
    "decoder_sequence_cloze_rhs_window": (
        -1,
        "it belongs to the clm_sequence_cloze objective, which this library does not have",
    ),
    "normalize_gradiend": (
        True,
        "every GRADIEND is oriented so that decoder(+1) strengthens target_classes[0]; the "
        "rewrite and the comparisons rely on it",
    ),
    "use_cached_gradients": (
        False,
        "training gradients are always cached (in memory, and on disk with use_cache)",
    ),
    "reuse_pre_prune": (
        False,
        "pre-pruning runs once per train() and every seed shares it",
    ),
    "highlight_non_convergence": (
        True,
        "figures name a non-converged run in their title and the HTML report marks it",
    ),
}

_DEFAULT_BATCH = 32  # TrainingArguments.train_batch_size


@dataclass
class CompatArguments:
    """0.2.3 field names (the base of ``TrainingArguments``; meanings in its docstring)."""

    base_gradient_batch_size: int | None = None
    precompute_gradient_batches: bool | int | None = None
    precompute_gradient_buffer_size: int = 1
    gradient_timing_steps: int = 0
    criterion: Callable | None = None
    eval_strategy: str = "steps"
    encoder_eval_balance: bool = True
    evaluate_fn: Callable | None = None
    dataset_trust_remote_code: bool | None = None
    model_use_cache: bool = False
    mask_placeholder: str = "[MASK]"
    decoder_sequence_cloze_rhs_window: int = -1
    normalize_gradiend: bool = True
    supervised_encoder: bool = False
    supervised_decoder: bool = False
    use_cached_gradients: bool = False
    reuse_pre_prune: bool = False
    highlight_non_convergence: bool = True


def resolve_compat(args: Any) -> None:
    """Map ``base_gradient_batch_size`` onto ``train_batch_size`` (a clash is an error) and
    warn about every no-effect field set to a value other than its default."""
    base = args.base_gradient_batch_size
    if base is not None:
        if args.train_batch_size not in (_DEFAULT_BATCH, base):
            raise ValueError(
                f"base_gradient_batch_size={base!r} and train_batch_size="
                f"{args.train_batch_size!r} disagree: both are the rows of one gradient batch "
                "here; give one of them"
            )
        args.train_batch_size = base
    for name, (default, why) in NO_EFFECT.items():
        value = getattr(args, name)
        same = value == default or (default is None and value is False)
        if not same:
            warn(logger, f"TrainingArguments({name}={value!r}) has no effect: {why}")

"""Every check of an argument value, each refusal naming its fix, before any model is loaded.

``check_arguments`` / ``check_prune_config`` run when ``TrainingArguments`` / ``PrePruneConfig`` /
``PostPruneConfig`` are built (after ``__post_init__`` has turned dicts into configs and resolved
aliases): zero or negative sizes, fractions outside (0, 1], strings where lists are expected,
unknown names, … ``check_eval_call`` / ``check_decoder_call`` check the arguments of the
evaluation calls (the rewrite's own checks live with it, in ``gradiend.model.rewrite``). The
trainer's data and folders are checked in ``gradiend.trainer.data_checks``.

The checks read the dataclasses' fields by name and never import ``gradiend.trainer.arguments``
(which calls into this module), so there is no import circle.
"""

from __future__ import annotations

import difflib
import logging
import math
import numbers
import os
from typing import TYPE_CHECKING, Any

import torch

from gradiend.data.examples import SPLITS
from gradiend.lm.devices import resolve_dtype
from gradiend.lm.gradients import KINDS
from gradiend.lm.objectives import OBJECTIVES
from gradiend.metric_names import AUC_METRICS
from gradiend.model.gradiend import _ACTIVATIONS, PARTS

if TYPE_CHECKING:
    from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig, TrainingArguments

logger = logging.getLogger(__name__)

# dtypes a GRADIEND's weights and the cached training gradients may have
CACHE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# pre-pruning importance rules (see gradiend.trainer.pruning and docs/pruning.md)
PRE_PRUNE_RULES = ("label_signed_mean", "abs_mean", "signed_mean")
USE_CACHE = (False, True, "always", "only_convergent")
OPTIMIZERS = ("adamw", "adam", "sgd")
CONVERGENCE_METRICS = ("correlation", "loss", *AUC_METRICS)
EVAL_STRATEGIES = ("steps", "no")


# --------------------------------------------------------------------------- plain values
def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False, hint: str = ""):
    """``value`` is an integer ≥ ``minimum`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    none = " or None" if optional else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = max(minimum, 1)
        if isinstance(value, float) and value.is_integer() and value >= minimum:
            example = int(value)
        raise TypeError(
            f"{name} must be an integer ≥ {minimum}{none}, got {value!r} "
            f"({type(value).__name__}); pass e.g. {name}={example}"
        )
    if value < minimum:
        fix = hint or f"pass an integer ≥ {minimum}{none}"
        raise ValueError(f"{name}={value!r} is not allowed: {fix}")


def check_number(
    name: str, value: Any, low: float | None = None, strict: bool = True, optional: bool = False
):
    """``value`` is a finite real number above ``low`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not finite; pass a finite number")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else "≥"
        raise ValueError(f"{name}={value!r} is not allowed: pass a number {op} {low}")


def check_bool(name: str, value: Any) -> None:
    """A real bool: a string such as ``'False'`` would silently count as true."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be True or False, got {value!r} ({type(value).__name__}); "
            "a string such as 'False' would count as true"
        )


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """``value`` is one of ``choices`` (names of modes, kinds, optimisers, …)."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {choices}, got {value!r}{hint}")


def check_topk(name: str, value: Any, optional: bool = True) -> None:
    """A count (int ≥ 1) or a fraction (float in (0, 1])."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a count (int ≥ 1) or a fraction (float in (0, 1]), got {value!r}"
        )
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(
                f"{name}={value!r} would keep no dimension: pass a count ≥ 1 or a fraction "
                "in (0, 1] (e.g. 0.01 for the top 1 %)"
            )
        return
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(
            f"{name}={value!r} is not a fraction in (0, 1]: pass e.g. 0.01 for the top 1 %, "
            "or an int for a count of dimensions"
        )


def check_str_list(name: str, value: Any, optional: bool = True, example: str = "x") -> None:
    """A list of strings, never a bare string (which would be read letter by letter)."""
    if value is None and optional:
        return
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list, got the string {value!r}: pass {name}=[{value!r}]")
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(
            f"{name} must be a non-empty list, e.g. {name}=[{example!r}]; got {value!r}"
        )
    bad = [v for v in value if not isinstance(v, str) or not v]
    if bad:
        raise TypeError(f"{name} must hold non-empty strings; {bad[0]!r} is not one")


def check_number_list(name: str, value: Any, positive: bool = False, optional: bool = True):
    """A list of finite numbers (positive ones when ``positive``), never a string or scalar."""
    if value is None and optional:
        return
    if isinstance(value, (str, numbers.Number)):
        try:
            example = repr(float(value))
        except ValueError:
            example = "1.0"
        raise TypeError(f"{name} must be a list of numbers, got {value!r}: pass {name}=[{example}]")
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of numbers, got {value!r}")
    for v in value:
        check_number(f"an entry of {name}", v, low=0.0 if positive else None)


def check_path(name: str, value: Any, optional: bool = True) -> None:
    """A folder path (str or ``os.PathLike``), not empty."""
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name} must be a folder path (str or Path), got {value!r}")


# --------------------------------------------------------------------------- TrainingArguments
_SIZES = {  # field: (minimum, optional, what the value means)
    "train_batch_size": (1, False, "rows per training gradient batch"),
    "eval_batch_size": (1, False, "rows per evaluation forward pass"),
    "eval_steps": (1, False, "steps between in-training evaluations"),
    "num_train_epochs": (1, False, "passes over the training batches"),
    "max_seeds": (1, False, "seeds to try"),
    "min_convergent_seeds": (1, False, "convergent seeds to require"),
    "gradiend_batch_size": (1, True, "gradient batches per optimiser step"),
    "train_max_size": (1, True, "training rows per transition (None: all)"),
    "encoder_eval_max_size": (1, True, "evaluation rows per transition (None: all)"),
    "encoder_eval_train_max_size": (1, True, "validation rows per transition (None: all)"),
    "decoder_eval_max_size_training_like": (1, True, "decoder rows per class (None: all)"),
    "decoder_eval_max_size_neutral": (1, True, "neutral texts for the LMS (None: all)"),
    "latent_dim": (1, True, "latent units"),
    "seed": (0, False, "the random seed"),
    "collapse_patience": (0, False, "collapsed evaluations in a row before an early stop"),
    "importance_neutral_texts": (0, False, "neutral texts for the snr importance (0: none)"),
}


def check_arguments(args: TrainingArguments) -> None:
    """Values of ``TrainingArguments`` that cannot be right (called at construction, after the
    pruning dicts became configs and the convergence aliases were resolved)."""
    _check_modes(args)
    _check_sizes(args)
    _check_numbers(args)
    _check_convergence(args)
    _check_types(args)
    _check_names(args)
    _check_placement(args)
    _check_compat(args)
    if args.gradiend_split is not None and args.post_prune_config is not None:
        raise ValueError("a split GRADIEND is not post-pruned: set post_prune_config=None")


def _check_modes(args: TrainingArguments) -> None:
    """The named modes: what the GRADIEND reads and reconstructs, caching, the optimiser."""
    check_choice("source", args.source, KINDS)
    check_choice("target", args.target, KINDS)
    check_choice("use_cache", args.use_cache, USE_CACHE)
    check_choice("optim", args.optim, OPTIMIZERS)
    check_choice("convergence_metric", args.convergence_metric, CONVERGENCE_METRICS)


def _check_sizes(args: TrainingArguments) -> None:
    """Counts and sizes: integers, none of them zero or negative (``max_steps=-1``: epochs)."""
    for name, (low, optional, what) in _SIZES.items():
        none = ", or None" if optional else ""
        hint = f"{name} is the number of {what}: pass ≥ {low}{none}"
        check_int(name, getattr(args, name), low, optional, hint)
    check_int("max_steps", args.max_steps, -1)
    if args.max_steps == 0:
        raise ValueError(
            "max_steps=0 would train nothing: pass max_steps ≥ 1, or -1 to train for "
            "num_train_epochs epochs"
        )


def _check_numbers(args: TrainingArguments) -> None:
    """Rates and limits: finite, and positive where zero would mean nothing."""
    for name in ("learning_rate", "learning_rate_decoder"):  # "auto": the searched rates
        value = getattr(args, name)
        if value != "auto" and (value is not None or name == "learning_rate"):
            _check_rate(name, value)
    check_number("weight_decay", args.weight_decay, 0.0, strict=False)
    check_number("adam_epsilon", args.adam_epsilon, 0.0)
    check_number("gradient_cache_max_gb", args.gradient_cache_max_gb, 0.0, strict=False)
    check_number("distributed_timeout_s", args.distributed_timeout_s, 0.0)


def _check_rate(name: str, value: Any) -> None:
    if isinstance(value, str):
        raise ValueError(
            f'{name}={value!r} is not a learning rate: pass a positive number or "auto" (a '
            "search picks it; docs/training.md)"
        )
    check_number(name, value, 0.0)


def _check_convergence(args: TrainingArguments) -> None:
    """Convergence thresholds that can be reached and seed counts that can be met."""
    names = ("convergent_score_threshold", "convergent_mean_by_class_threshold")
    for name in names:
        check_number(name, getattr(args, name), 0.0, strict=False, optional=True)
    if args.convergence_metric != "loss":
        for name in names:
            if (getattr(args, name) or 0) > 1:
                raise ValueError(
                    f"{name}={getattr(args, name)} can never be reached (correlations, AUCs "
                    "and encodings lie in [-1, 1]): pass a value in [0, 1]"
                )
    if args.min_convergent_seeds > args.max_seeds:
        raise ValueError(
            f"min_convergent_seeds={args.min_convergent_seeds} > max_seeds={args.max_seeds} can "
            "never be met: raise max_seeds or lower min_convergent_seeds"
        )


def _check_types(args: TrainingArguments) -> None:
    """Flags that must be real bools, lists that must not be strings, folder paths."""
    for name in (
        "add_identity_for_other_classes",
        "do_eval",
        "fail_on_non_convergence",
        "auto_remedy",
        "trust_remote_code",
        "encoder_decoder_same_device",
        "include_other_classes",
    ):
        check_bool(name, getattr(args, name))
    if args.positive_class is not None and not isinstance(args.positive_class, str):
        raise TypeError(
            f"positive_class must be a class name (str) or None, got {args.positive_class!r}"
        )
    check_str_list("params", args.params, example="bert.encoder.layer.11.*")
    check_number_list("decoder_eval_lrs", args.decoder_eval_lrs, positive=True)
    check_number_list("decoder_eval_feature_factors", args.decoder_eval_feature_factors)
    check_path("experiment_dir", args.experiment_dir)
    check_path("output_dir", args.output_dir)


def _check_names(args: TrainingArguments) -> None:
    """The prediction objective and the (compatibility) activation names exist."""
    if args.prediction_objective != "auto" and args.prediction_objective not in OBJECTIVES:
        raise ValueError(
            f"unknown prediction_objective {args.prediction_objective!r}; choose 'auto' or one "
            f"of {list(OBJECTIVES)}"
        )
    for name in ("activation_encoder", "activation_decoder"):
        value = getattr(args, name)
        if value is not None and value not in _ACTIVATIONS:
            raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(_ACTIVATIONS)}")


def _check_placement(args: TrainingArguments) -> None:
    """dtypes that exist (and fit a GRADIEND or its cache), one way to place the base model."""
    resolve_dtype(args.torch_dtype, "torch_dtype")
    for name in ("gradiend_dtype", "gradient_cache_dtype"):
        if resolve_dtype(getattr(args, name), name) not in CACHE_DTYPES:
            raise ValueError(
                f"{name} must be 'float32', 'bfloat16' or 'float16', got {getattr(args, name)!r}"
            )
    if args.device is not None and args.base_model_device_map is not None:
        raise ValueError(
            "give either device= (one device) or base_model_device_map= (e.g. 'auto' to shard "
            "over several GPUs), not both"
        )


def _check_compat(args: TrainingArguments) -> None:
    """The 0.2.3 names (``trainer.compat_arguments``): flags, sizes, callables, the mask."""
    for name in (
        "encoder_eval_balance",
        "model_use_cache",
        "normalize_gradiend",
        "supervised_encoder",
        "supervised_decoder",
        "use_cached_gradients",
        "reuse_pre_prune",
        "highlight_non_convergence",
    ):
        check_bool(name, getattr(args, name))
    check_choice("eval_strategy", args.eval_strategy, EVAL_STRATEGIES)
    check_int("base_gradient_batch_size", args.base_gradient_batch_size, 1, optional=True)
    check_int("precompute_gradient_buffer_size", args.precompute_gradient_buffer_size, 1)
    check_int("gradient_timing_steps", args.gradient_timing_steps, 0)
    check_int("decoder_sequence_cloze_rhs_window", args.decoder_sequence_cloze_rhs_window, -1)
    if args.dataset_trust_remote_code is not None:
        check_bool("dataset_trust_remote_code", args.dataset_trust_remote_code)
    for name, example in (("criterion", "torch.nn.L1Loss()"), ("evaluate_fn", "my_eval")):
        value = getattr(args, name)
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {value!r}; pass e.g. {example}")
    if not isinstance(args.mask_placeholder, str) or not args.mask_placeholder.strip():
        raise ValueError(
            f"mask_placeholder must be the non-empty mask string of the data (e.g. '[MASK]'), "
            f"got {args.mask_placeholder!r}"
        )


# --------------------------------------------------------------------------- pruning configs
def check_prune_config(cfg: PrePruneConfig | PostPruneConfig) -> None:
    """Values of a pre- or post-pruning config (called at construction). A config with
    ``n_samples`` is a pre-pruning one, a config with ``part`` a post-pruning one."""
    name = type(cfg).__name__
    check_topk(f"{name}.topk", cfg.topk)
    check_number(f"{name}.threshold", cfg.threshold, optional=True)
    if cfg.topk is None and cfg.threshold is None:
        raise ValueError(f"{name} needs topk or threshold")
    if hasattr(cfg, "n_samples"):
        check_int(f"{name}.n_samples", cfg.n_samples, 1)
        check_int(f"{name}.batch_size", cfg.batch_size, 1)
        check_int(f"{name}.seed", cfg.seed, 0, optional=True)
        check_choice(f"{name}.source", cfg.source, KINDS)
        if cfg.rule not in PRE_PRUNE_RULES:
            raise ValueError(
                f"unknown pre-prune rule {cfg.rule!r}; choose one of {PRE_PRUNE_RULES}"
            )
    if hasattr(cfg, "part") and cfg.part is not None and cfg.part not in PARTS:
        raise ValueError(f"unknown {name}.part {cfg.part!r}; choose one of {PARTS}")


# --------------------------------------------------------------------------- evaluation calls
def check_eval_call(split: str | None = None, max_size: Any = None, name: str = "max_size"):
    """Arguments of ``evaluate_encoder`` / ``evaluate_decoder``."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_int(name, max_size, 1, optional=True, hint=f"pass {name} ≥ 1, or None for all rows")


def check_decoder_call(lrs: Any, feature_factors: Any, max_rows: Any, max_neutral: Any) -> None:
    """Arguments of ``evaluate_decoder``."""
    check_number_list("lrs", lrs, positive=True)
    check_number_list("feature_factors", feature_factors)
    check_int("max_size_training_like", max_rows, 1, optional=True)
    check_int("max_size_neutral", max_neutral, 1, optional=True)

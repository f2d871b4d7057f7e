"""Run-cache fingerprints: everything that changes a result, compared field by field.

A fingerprint is a JSON-able dict of every ``TrainingArguments`` field that can change the
trained GRADIEND, plus the base model's identity (id/path and revision, file hash or weight
hash), the content hash of the example table and the target classes. A cache is used only when
the stored fingerprint equals the new one; otherwise the differing fields are named.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from gradiend.trainer.compat_arguments import NO_EFFECT
from gradiend.trainer.seed_arguments import NOT_FINGERPRINTED

if TYPE_CHECKING:
    from gradiend.trainer.arguments import TrainingArguments

logger = logging.getLogger(__name__)

# fields that do not change the trained GRADIEND
_IGNORED = {
    "experiment_dir",
    "output_dir",
    "use_cache",
    "eval_batch_size",
    "fail_on_non_convergence",
    "decoder_eval_max_size_training_like",
    "decoder_eval_max_size_neutral",
    "decoder_eval_lrs",
    "decoder_eval_feature_factors",
    "do_eval",
    *NO_EFFECT,  # 0.2.3 names that change nothing here (trainer.compat_arguments)
    *NOT_FINGERPRINTED,  # where seeds are kept and how they are summarised (seed_arguments)
    # trackers, checkpoints and the heartbeat watch a run, never change it (trainer.run_controls)
    "report_to",
    "logging_dir",
    "save_strategy",
    "save_steps",
    "save_only_best",
    "delete_models",
    "runtime_monitor",
    "runtime_monitor_interval",
    "runtime_monitor_system_stats",
    "evaluate_fn",  # recorded beside each validation, never changes the weights
    "mask_placeholder",  # the examples' hash stands for the data
    "include_other_classes",  # evaluation rows only
    "positive_class",  # how comparisons orient the run
    "gradient_cache_max_gb",
    "metadata",
    "device",
    "base_model_device_map",
    "base_model_max_memory",
    "encoder_decoder_same_device",
    "gradiend_device",
    "plot_importance",
    "distributed_timeout_s",
    # the MLM head's own fingerprint (objective.mlm_head) stands for these
    "decoder_mlm_head_epochs",
    "decoder_mlm_head_batch_size",
    "decoder_mlm_head_lr",
    "decoder_mlm_head_max_size",
}

# fields that change the GRADIEND but not the training gradients (the gradient cache survives
# a change of these: a new learning rate or more steps reuse the extracted gradients)
_NOT_GRADIENTS = {
    "gradiend_dtype",
    "learning_rate",
    "criterion",
    "supervised_encoder",
    "supervised_decoder",
    "learning_rate_decoder",
    "lr_search_config",
    "num_train_epochs",
    "max_steps",
    "weight_decay",
    "adam_epsilon",
    "optim",
    "eval_steps",
    "encoder_eval_max_size",
    "encoder_eval_train_max_size",
    "latent_dim",
    "activation_encoder",
    "activation_decoder",
    "bias_decoder",
    "max_seeds",
    "min_convergent_seeds",
    "convergent_metric",
    "convergent_score_threshold",
    "convergence_metric",
    "convergence_threshold",
    "convergent_mean_by_class_threshold",
    "post_prune_config",
    "gradiend_batch_size",
}


# fields added after runs were recorded: left out while unset, so that the fingerprints (and the
# decoder cache keys hashed from them) of earlier runs stay what they were
_OMITTED_WHEN_UNSET = ("signal", "signal_scope", "gradiend_split")


def training_fingerprint(
    args: TrainingArguments, model: dict, data: str, targets: list[str]
) -> dict:
    """The fingerprint of a training run (see the module docstring)."""
    fp = {
        k: v
        for k, v in args.to_dict().items()
        if k not in _IGNORED and not (k in _OMITTED_WHEN_UNSET and v is None)
    }
    if args.gradiend_split is None:  # the split's loss only matters with a split
        fp.pop("gradiend_split_loss", None)
    fp.update({"base_model": model, "data_sha": data, "target_classes": list(targets)})
    return _jsonable(fp)


def gradient_fingerprint(fingerprint: dict) -> dict:
    """The part of a training fingerprint that determines the training gradients."""
    return {k: v for k, v in fingerprint.items() if k not in _NOT_GRADIENTS}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def diff_fingerprint(old: dict | None, new: dict) -> list[str]:
    """Names of the fields that differ (empty list: the cache may be used).

    Nested fields are named with dots, e.g. ``pre_prune_config.topk`` or
    ``base_model.weights_sha``.
    """
    if old is None:
        return ["<no fingerprint stored>"]
    return _diff(old, new, "")


def _diff(old: dict, new: dict, prefix: str) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out

"""Temporary: removed once every importer moved.

The argument-value checks now live in ``gradiend.trainer.argument_checks``, ``warn`` and
``MeaninglessResultWarning`` in ``gradiend.trainer.data_checks``; "validation" means only the
validation split.
"""

from gradiend.trainer.argument_checks import (
    check_arguments,
    check_bool,
    check_decoder_call,
    check_eval_call,
    check_int,
    check_number,
    check_number_list,
    check_path,
    check_prune_config,
    check_results_match,
    check_save_dir,
    check_str_list,
    check_topk,
)
from gradiend.trainer.data_checks import MeaninglessResultWarning, warn

__all__ = [
    "MeaninglessResultWarning",
    "check_arguments",
    "check_bool",
    "check_decoder_call",
    "check_eval_call",
    "check_int",
    "check_number",
    "check_number_list",
    "check_path",
    "check_prune_config",
    "check_results_match",
    "check_save_dir",
    "check_str_list",
    "check_topk",
    "warn",
]

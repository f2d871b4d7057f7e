"""Temporary: removed once every importer moved.

The trainer's input, data and folder checks now live in ``gradiend.trainer.data_checks``.
"""

from gradiend.trainer.data_checks import (
    check_against_model,
    check_neutral,
    check_objective,
    check_output_dirs,
    check_raw_data,
    check_table,
    check_trainer_inputs,
)

__all__ = [
    "check_against_model",
    "check_neutral",
    "check_objective",
    "check_output_dirs",
    "check_raw_data",
    "check_table",
    "check_trainer_inputs",
]

"""PositiveTrainerSuite: one child per positive feature class against its negative class(es)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gradiend._kwargs import strict_kwargs
from gradiend.data.examples import read_table
from gradiend.suite.base import TrainerSuite
from gradiend.suite.definitions import PositiveFeatureDefinition, positive_definitions
from gradiend.suite.views import SuiteFigures

logger = logging.getLogger(__name__)


@strict_kwargs
class PositiveTrainerSuite(SuiteFigures, TrainerSuite):
    """``mode="single"``: one child per ``PositiveFeatureDefinition``; ``mode="all_but_one"``:
    one child per class of ``feature_class_group`` against the group's other classes merged
    into one class ``non_<class>`` (the positive class encodes to +1)."""

    def __init__(
        self,
        trainer_cls: type | None = None,
        *,
        model: Any,
        data: Any = None,
        definitions: Sequence[PositiveFeatureDefinition] | None = None,
        feature_class_group: Sequence[str] | None = None,
        mode: str = "single",
        run_id: str | None = None,
        label_class_col: str = "label_class",
        **kwargs: Any,
    ):
        self.mode = mode
        self.feature_definitions = positive_definitions(definitions, feature_class_group, mode)
        self._label_class_col = label_class_col
        self._raw = None
        super().__init__(
            trainer_cls,
            model=model,
            data=data,
            run_id=run_id,
            definitions=self.feature_definitions,
            label_class_col=label_class_col,
            **kwargs,
        )

    def child_args(self, definition: PositiveFeatureDefinition):
        args = dataclasses.replace(self.args)
        if args.positive_class is None:
            args = dataclasses.replace(args, positive_class=definition.positive_feature_class)
        return args

    def data_for(self, definition: PositiveFeatureDefinition) -> Any:
        """The suite's data with the negative classes merged into one (when several)."""
        if not definition.merge_map:
            return self.data
        if self._raw is None:
            self._raw = read_table(self.data)
        return merge_classes(self._raw, definition.merge_map, self._label_class_col)


def merge_classes(
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    merge_map: Mapping[str, Sequence[str]],
    label_class_col: str = "label_class",
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """``data`` with each ``merge_map`` entry's classes renamed to its key (one class)."""
    rename = {m: name for name, members in merge_map.items() for m in members}
    if isinstance(data, pd.DataFrame):
        if label_class_col not in data.columns:
            raise ValueError(
                f"merging classes needs the class column {label_class_col!r}; columns are "
                f"{list(data.columns)} (pass label_class_col=...)"
            )
        out = data.copy()
        for col in (label_class_col, "alternative_class"):
            if col in out.columns:
                out[col] = out[col].astype(str).replace(rename)
        return out
    missing = sorted(m for m in rename if m not in data)
    if missing:
        raise ValueError(f"classes {missing} are not in the data (classes: {sorted(data)})")
    out = {k: v for k, v in data.items() if k not in rename}
    for name, members in merge_map.items():
        out[name] = pd.concat(
            [data[m].rename(columns={m: name}) for m in members], ignore_index=True
        )
    return out

"""The config's ``compare`` section declares ``compare_runs``' parameters itself (the config
cannot import the pipeline, which imports the config): the two must stay equal."""

from __future__ import annotations

import dataclasses
import inspect
import typing

from gradiend.config import CompareArgs, RunConfig
from gradiend.pipeline import compare_runs


def test_compare_section_declares_compare_runs_parameters():
    params = inspect.signature(compare_runs).parameters
    fields = {f.name: f.default for f in dataclasses.fields(CompareArgs)}
    assert fields == {name: p.default for name, p in params.items()}
    hints = typing.get_type_hints(compare_runs)
    hints.pop("return", None)
    assert typing.get_type_hints(CompareArgs) == hints


def test_compare_section_keys_are_checked():
    RunConfig.from_dict({"compare": {"runs": ["a", "b"], "topk": 0.1}})
    try:
        RunConfig.from_dict({"compare": {"top_k": 10}})
    except ValueError as err:
        assert "compare.top_k" in str(err) and "topk" in str(err)
    else:
        raise AssertionError("an unknown compare key passed validation")

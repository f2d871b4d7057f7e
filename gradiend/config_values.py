"""Config values against the API's type hints: numeric text made numbers, then a type check.

YAML 1.1 (PyYAML) reads ``1e-3`` and ``1.0e3`` as strings (its floats need a dot and a signed
exponent), and ``--set`` values are parsed the same way, so ``coerce`` turns such numeric text
into a number wherever the declared type wants one; ``check`` then refuses what still does not
fit, saying how to write it. Kept apart from ``gradiend.config`` so each stays small.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradiend.config_read import ConfigError

# decimal numbers as YAML 1.1 leaves them as text: 1e-3, 1E5, .5e2, -2e+3, 1.0e3
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_LISTS = (list, tuple, Sequence, typing.Sequence, Iterable, typing.Iterable, Collection)
# a list-valued key whose single-item example would mislead
_LIST_EXAMPLES = {"target_classes": "[he, she]"}


def arms(hint: Any) -> tuple[Any, ...]:
    """The members of a union hint, or the hint itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _list_inner(hint: Any) -> Any:
    """The item type of a list-like hint (``Any`` when bare), or None when it is not one."""
    if typing.get_origin(hint) in _LISTS or hint in (list, tuple):
        args = typing.get_args(hint)
        return args[0] if args else Any
    return None


def _dataclass_hints(hint: Any) -> dict[str, Any] | None:
    """The field hints of the first dataclass member of ``hint``, or None."""
    for arm in arms(hint):
        if isinstance(arm, type) and dataclasses.is_dataclass(arm):
            try:
                return typing.get_type_hints(arm)
            except (NameError, TypeError):  # pragma: no cover - an unresolvable annotation
                return {}
    return None


def coerce(value: Any, hint: Any) -> Any:
    """``value`` with numeric text (``"1e-3"``) turned into a number where ``hint`` wants one,
    inside lists and dataclass mappings too; anything else is returned as it is."""
    if isinstance(value, str):
        return value if matches(value, hint) else _as_number(value, hint)
    if isinstance(value, list):
        for arm in arms(hint):
            inner = _list_inner(arm)
            if inner is not None:
                out = [coerce(v, inner) for v in value]
                if matches(out, arm):
                    return out
        return value
    fields = _dataclass_hints(hint) if isinstance(value, dict) else None
    if fields:
        return {k: coerce(v, fields[k]) if k in fields else v for k, v in value.items()}
    return value


def _as_number(text: str, hint: Any) -> Any:
    if not _NUMBER.fullmatch(text.strip()):
        return text
    number = float(text)
    if not math.isfinite(number):
        return text
    if number.is_integer() and int in arms(hint):
        return int(number)
    return number if matches(number, hint) else text


def check(key: str, value: Any, hint: Any) -> None:
    """Raise ``ConfigError`` when ``value`` does not fit ``hint`` (fields of a dataclass given
    as a mapping are checked one by one), with a fix that shows how to write it."""
    if not matches(value, hint):
        raise ConfigError(key, f"expected {type_name(hint)}, got {value!r}", _fix(key, value, hint))
    fields = _dataclass_hints(hint) if isinstance(value, dict) else None
    for k, v in value.items() if fields else ():
        if k in fields:
            check(f"{key}.{k}", v, fields[k])


def _fix(key: str, value: Any, hint: Any) -> str:
    leaf = key.rsplit(".", 1)[-1]
    wanted = set(arms(hint))
    if float in wanted:
        return "give a float, written as a number such as 1.0e-3 or 0.001"
    if int in wanted:
        return "give a whole number such as 100"
    if bool in wanted:
        return "give true or false"
    if any(_list_inner(a) is not None for a in wanted):
        items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [value]
        example = _LIST_EXAMPLES.get(leaf) if len(items) < 2 else None
        example = example or "[" + ", ".join(str(v) for v in items) + "]"
        return f"write a YAML list: {leaf}: {example}"
    return f"give a {type_name(hint)}"


def matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value (str, number, bool, list, dict, None) fits ``hint``."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (Path,) or (isinstance(hint, type) and issubclass(hint, Path)):
        return isinstance(value, str)
    inner = _list_inner(hint)
    if inner is not None:  # one string is not a list of them (a union with str says so itself)
        return isinstance(value, list) and all(matches(v, inner) for v in value)
    if origin in (dict, Mapping, typing.Mapping) or hint is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True  # other classes (callables, spaCy objects, …): not expressible in a file


def type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    text = str(hint).replace("typing.", "").replace("collections.abc.", "")
    return text.replace("NoneType", "None")

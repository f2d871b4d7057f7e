"""Keyword typos get a "did you mean": one wrapper shared by every public constructor."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``names`` (case ignored first), else the list."""
    names = sorted(set(names))
    same_case = [n for n in names if n.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid names are {', '.join(names)}"


def init_names(cls: type) -> list[str] | None:
    """The keyword names ``cls(...)`` accepts, or None when it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not p.VAR_POSITIONAL]


def strict_kwargs(cls: T) -> T:
    """Make ``cls(**kwargs)`` reject an unknown keyword with a TypeError that says "did you
    mean" (instead of Python's bare "unexpected keyword argument")."""
    names = init_names(cls)
    if names is None:
        return cls
    init = cls.__init__
    what = "field" if dataclasses.is_dataclass(cls) else "parameter"

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in names:
                raise TypeError(f"{cls.__name__} has no {what} {key!r}{did_you_mean(key, names)}")
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls

"""Axis labels of transitions: ``a → b`` (directed) and ``a ↔ b`` (a pair, both directions).

A transition is given as two classes, a ``"a→b"`` / ``"a->b"`` string, a ``(a, b)`` pair, or
any object with ``source``/``target`` (or ``a``/``b``) attributes. ``latex=True`` writes the
arrows as math-mode commands for figures drawn with LaTeX text.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_SEPARATORS = ("→", "->", "↔", "<->")


def transition_directed_arrow(latex: bool = False) -> str:
    """The arrow of a directed transition (source → target)."""
    return r"$\rightarrow$" if latex else "→"


def transition_bidi_arrow(latex: bool = False) -> str:
    """The arrow of an unordered pair (both directions)."""
    return r"$\leftrightarrow$" if latex else "↔"


def _classes(transition: Any, target: Any) -> tuple[str, str]:
    if target is not None:
        return str(transition), str(target)
    if isinstance(transition, str):
        for sep in sorted(_SEPARATORS, key=len, reverse=True):
            if sep in transition:
                a, b = transition.split(sep, 1)
                return a.strip(), b.strip()
        raise ValueError(
            f"{transition!r} is not a transition: write 'a→b' or 'a->b', or pass two classes"
        )
    if isinstance(transition, (tuple, list)) and len(transition) == 2:
        return str(transition[0]), str(transition[1])
    for first, second in (("source", "target"), ("a", "b")):
        if hasattr(transition, first) and hasattr(transition, second):
            return str(getattr(transition, first)), str(getattr(transition, second))
    raise TypeError(
        f"cannot read a transition from {type(transition).__name__}: pass 'a→b', (a, b) or "
        "two classes"
    )


def format_transition_label(
    transition: Any,
    target: Any = None,
    *,
    bidirectional: bool = False,
    latex: bool = False,
    names: dict[str, str] | None = None,
) -> str:
    """``"a → b"`` (``bidirectional``: ``"a ↔ b"``); ``names`` renames classes for display."""
    a, b = _classes(transition, target)
    names = names or {}
    a, b = names.get(a, a), names.get(b, b)
    arrow = transition_bidi_arrow(latex) if bidirectional else transition_directed_arrow(latex)
    return f"{a} {arrow} {b}"

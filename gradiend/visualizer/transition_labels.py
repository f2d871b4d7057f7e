"""Axis labels of transitions: ``a → b`` (directed) and ``a ↔ b`` (a pair, both directions).

A transition is given as two classes, a ``"a→b"`` / ``"a->b"`` string, a ``(a, b)`` pair, or
any object with ``source``/``target`` (or ``a``/``b``) attributes. ``latex=True`` writes the
arrows as math-mode commands for figures drawn with LaTeX text. The helpers live in
``gradiend.visualizer._common`` so that every figure module can use them.
"""

from __future__ import annotations

from gradiend.visualizer._common import (
    format_transition_label,
    transition_bidi_arrow,
    transition_directed_arrow,
)

__all__ = ["format_transition_label", "transition_bidi_arrow", "transition_directed_arrow"]

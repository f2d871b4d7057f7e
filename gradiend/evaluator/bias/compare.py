"""Before/after comparison of two bias results: deltas, and which changes are clear."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _leaves(tree: dict, path: tuple = ()) -> dict[tuple, dict]:
    out = {}
    for key, val in tree.items():
        if isinstance(val, dict) and {"value", "low", "high"} <= set(val):
            out[path + (key,)] = val
        elif isinstance(val, dict):
            out.update(_leaves(val, path + (key,)))
    return out


def compare_bias(before: dict, after: dict) -> dict:
    """Every score both results hold, as ``{suite: {group: {metric: row}}}`` where a row has
    ``before``, ``after``, ``delta`` and ``significant`` (the two 95 % intervals do not overlap)."""
    for name, res in (("before", before), ("after", after)):
        if not isinstance(res, dict) or "suites" not in res:
            raise ValueError(f"compare_bias: {name} is not an evaluate_bias result (no 'suites')")
    a, b = _leaves(before["suites"]), _leaves(after["suites"])
    out: dict = {}
    for path in sorted(set(a) & set(b)):
        x, y = a[path], b[path]
        row = {
            "before": x,
            "after": y,
            "delta": y["value"] - x["value"],
            "significant": bool(y["low"] > x["high"] or y["high"] < x["low"]),
        }
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = row
    if not out:
        logger.warning("compare_bias: the two results share no scores (different suites?)")
    return out

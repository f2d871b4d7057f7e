"""Specificity of a rewrite: does it move the target word only where it should?

For a checked point (every selected point and the budget-cost table's points) and the base
model, ``decoder_eval`` scores once: the held-out neutral texts (the NLL and, at every scored
position, the probability of each class's words — their first token), the test rows of every
target class, and the control sentences of each control pair. From those raw scores this module
builds the ``specificity`` record of a direction that promotes class ``T`` (strengthening ``T``,
or weakening the other class):

* ``neutral``: mean ``P(T's words)`` per scored token of neutral text, before / after / ratio;
* ``flip``: on the other class's sentences, the share preferring ``T``'s words before and after,
  and the share that flipped to prefer them;
* ``own``: mean ``P(T's words)`` on ``T``'s own sentences, before / after;
* ``controls``: per control pair ``(a, b)`` (e.g. ``("was", "were")``), on sentences holding
  ``a`` or ``b`` with it masked, the mean share ``P(a) / (P(a) + P(b))`` before / after and the
  share of sentences whose preferred word changed — how far the rewrite transfers to them.

Control sentences are the run's neutral texts that contain ``a`` or ``b`` as a word (the first
occurrence masked, at most ``MAX_CONTROL_ROWS``), or the texts given as a pair's third element.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradiend.lm.scoring import RowTargets

MAX_CONTROL_ROWS = 64


def parse_control_pairs(pairs: Any) -> tuple[tuple[str, str, tuple[str, ...] | None], ...]:
    """``[("was", "were"), ("is", "are", [texts])]`` → checked triples (an error names the bad
    pair and the expected form)."""
    if pairs is None:
        return ()
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"control_pairs must be a list of (word, word) pairs, got {pairs!r}")
    out = []
    for pair in pairs:
        ok = isinstance(pair, (list, tuple)) and len(pair) in (2, 3)
        words = list(pair[:2]) if ok else []
        if not ok or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError(
                f"control pair {pair!r}: expected (word, word) or (word, word, [texts]), "
                'e.g. control_pairs=[("was", "were")]'
            )
        if words[0] == words[1]:
            raise ValueError(f"control pair {pair!r}: the two words must differ")
        texts = None
        if len(pair) == 3:
            if isinstance(pair[2], str) or not all(isinstance(t, str) for t in pair[2]):
                raise ValueError(
                    f"control pair {pair!r}: the third element must be a list of texts"
                )
            texts = tuple(pair[2])
        out.append((words[0], words[1], texts))
    return tuple(out)


def control_sentences(
    pairs: Sequence[tuple[str, str, tuple[str, ...] | None]], pool: Sequence[str]
) -> list[list[tuple[str, str, int]]]:
    """Per pair, ``(text, word, start)`` of the first occurrence of either word in each text
    (the pair's own texts, else ``pool``); a pair without any is an error naming the fix."""
    out = []
    for a, b, texts in pairs:
        pattern = re.compile(rf"(?<!\w)({re.escape(a)}|{re.escape(b)})(?!\w)")
        found = []
        for text in texts if texts is not None else pool:
            m = pattern.search(text)
            if m:
                found.append((text, m.group(1), m.start()))
            if len(found) >= MAX_CONTROL_ROWS:
                break
        if not found:
            where = "the given texts" if texts is not None else "the run's neutral texts"
            raise ValueError(
                f"control pair ({a!r}, {b!r}): no sentence of {where} contains either word. "
                f"Fix: give sentences as a third element, e.g. ({a!r}, {b!r}, [texts])"
            )
        out.append(found)
    return out


def control_rows(
    pairs: Sequence[tuple[str, str, Any]], found: list[list[tuple[str, str, int]]], mask: str
) -> tuple[list[RowTargets], list[str], list[int]]:
    """Scoring rows of the control sentences: the found word masked, the words of pair ``i``
    under the classes ``"i:a"`` / ``"i:b"``. Returns the rows, the classes and each row's pair."""
    rows, owner, classes = [], [], []
    for i, ((a, b, _), hits) in enumerate(zip(pairs, found, strict=True)):
        classes += [f"{i}:a", f"{i}:b"]
        for text, word, start in hits:
            masked = text[:start] + mask + text[start + len(word) :]
            rows.append(RowTargets(masked, {f"{i}:a": [a], f"{i}:b": [b]}))
            owner.append(i)
    return rows, classes, owner


def record(
    target: str,
    classes: Sequence[str],
    row_classes: Sequence[str],
    base: dict,
    point: dict,
    pairs: Sequence[tuple[str, str, Any]] = (),
    control_owner: Sequence[int] = (),
) -> dict[str, Any]:
    """The ``specificity`` record of a point promoting ``target`` (see the module doc) from the
    raw checks of the base model and of the point (``neutral`` sums and ``n_tokens``, per-row
    class probabilities ``rows``, control probabilities ``controls``)."""
    j = list(classes).index(target)
    rc = np.asarray(row_classes)
    b_rows, p_rows = np.asarray(base["rows"]), np.asarray(point["rows"])
    out: dict[str, Any] = {"target": target, "neutral": _neutral(j, base, point)}
    other = rc != target
    prefer_b, prefer_p = _prefers(b_rows[other], j), _prefers(p_rows[other], j)
    out["flip"] = {
        "n_rows": int(other.sum()),
        "prefer_before": _mean(prefer_b),
        "prefer_after": _mean(prefer_p),
        "flipped": _mean(~prefer_b & prefer_p),
    }
    own = rc == target
    out["own"] = {
        "n_rows": int(own.sum()),
        "before": _mean(b_rows[own, j]) if len(b_rows) else None,
        "after": _mean(p_rows[own, j]) if len(p_rows) else None,
    }
    out["controls"] = _controls(pairs, control_owner, base, point)
    return out


def _neutral(j: int, base: dict, point: dict) -> dict[str, Any]:
    before = base["neutral"][j] / base["n_tokens"] if base["n_tokens"] else float("nan")
    after = point["neutral"][j] / point["n_tokens"] if point["n_tokens"] else float("nan")
    ratio = after / before if before > 0 else float("nan")
    return {"before": before, "after": after, "ratio": ratio, "n_tokens": int(point["n_tokens"])}


def _controls(pairs, owner, base: dict, point: dict) -> list[dict[str, Any]]:
    out = []
    owner = np.asarray(owner, dtype=np.int64)
    b_all, p_all = np.asarray(base["controls"]), np.asarray(point["controls"])
    for i, (a, b, _) in enumerate(pairs):
        rows = owner == i
        sb = _share(b_all[rows][:, 2 * i : 2 * i + 2])
        sp = _share(p_all[rows][:, 2 * i : 2 * i + 2])
        out.append(
            {
                "pair": [a, b],
                "n_rows": int(rows.sum()),
                "share_before": _mean(sb),
                "share_after": _mean(sp),
                "flipped": _mean((sb > 0.5) != (sp > 0.5)),
            }
        )
    return out


def _prefers(probs: np.ndarray, j: int) -> np.ndarray:
    """Rows whose class ``j`` words are likelier than every other class's."""
    if not len(probs):
        return np.zeros(0, dtype=bool)
    others = np.delete(probs, j, axis=1)
    return probs[:, j] > others.max(axis=1)


def _share(ab: np.ndarray) -> np.ndarray:
    total = ab.sum(axis=1)
    return np.divide(ab[:, 0], total, out=np.full(len(ab), 0.5), where=total > 0)


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None

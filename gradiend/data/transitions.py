"""Which directed class transitions a run's rows carry: ``TransitionSpec``, ``pair``, ``identity``.

A transition ``a→b`` is a row whose factual word is of class ``a`` and whose alternative word is
of class ``b`` (same masked context); ``a→a`` is an identity row (alternative = factual, which
a GRADIEND should map to nothing). By default a trainer trains on the two directions of its
target pair; ``transition_selection=`` names other transitions to train on, and
``TrainingArguments(include_other_classes=True)`` adds every other transition to the rows
``evaluate_encoder`` encodes (not to training).

The label of a row follows the library's one sign convention (``decoder(+1)`` strengthens
``target_classes[0]``): see ``transition_label``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ARROW",
    "TransitionSpec",
    "identity",
    "pair",
    "resolve_selection",
    "resolve_positive_class",
    "transition_id",
    "transition_label",
]

ARROW = "→"
_ARROWS = (ARROW, "->", "=>")


def transition_id(factual: str, alternative: str) -> str:
    """``"a→b"``: the id a transition has in the ``transition`` column."""
    return f"{factual}{ARROW}{alternative}"


def _parse(item: Any) -> list[tuple[str, str]]:
    """One selection item → directed ``(factual, alternative)`` tuples."""
    if isinstance(item, TransitionSpec):
        return list(item.transitions)
    if isinstance(item, str):
        for arrow in _ARROWS:
            if arrow in item:
                a, b = (s.strip() for s in item.split(arrow, 1))
                if a and b:
                    return [(a, b)]
        raise ValueError(
            f"transition {item!r} is not of the form 'a→b' (or 'a->b'); use pair('a', 'b') for "
            "both directions or identity('a') for a→a"
        )
    if (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and all(isinstance(c, (str, int)) for c in item)
    ):
        return [(str(item[0]), str(item[1]))]
    raise TypeError(
        f"a transition must be a TransitionSpec (pair(a, b), identity(c)), an 'a→b' string or "
        f"an (a, b) tuple; got {item!r}"
    )


@dataclass(frozen=True, init=False)
class TransitionSpec:
    """An ordered set of directed transitions ``(factual_class, alternative_class)``.

    ``TransitionSpec([pair("a", "b"), identity("c"), "c→a"])``; specs add with ``+``.
    """

    transitions: tuple[tuple[str, str], ...]

    def __init__(self, transitions: Iterable[Any] | Any = ()) -> None:
        items = [transitions] if isinstance(transitions, (str, TransitionSpec)) else transitions
        if isinstance(items, tuple) and len(items) == 2 and all(isinstance(c, str) for c in items):
            items = [items]  # TransitionSpec(("a", "b")) is one transition
        out: list[tuple[str, str]] = []
        for item in items:
            out += _parse(item)
        object.__setattr__(self, "transitions", tuple(dict.fromkeys(out)))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.transitions)

    def __len__(self) -> int:
        return len(self.transitions)

    def __contains__(self, item: Any) -> bool:
        return all(t in self.transitions for t in _parse(item))

    def __add__(self, other: Any) -> TransitionSpec:
        return TransitionSpec([self, *(_as_items(other))])

    __radd__ = __add__

    @property
    def ids(self) -> list[str]:
        """The transitions as ``"a→b"`` strings, in order."""
        return [transition_id(a, b) for a, b in self.transitions]

    @property
    def classes(self) -> list[str]:
        """Every class a transition names, in order of first appearance."""
        return list(dict.fromkeys(c for t in self.transitions for c in t))

    def identities(self) -> list[str]:
        """Classes with an identity transition ``c→c``."""
        return [a for a, b in self.transitions if a == b]

    def __repr__(self) -> str:
        return f"TransitionSpec({self.ids})"


def _as_items(value: Any) -> list[Any]:
    if isinstance(value, (str, TransitionSpec)):
        return [value]
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(c, str) for c in value):
        return [value]
    return list(value)


def pair(a: str, b: str, *, directed: bool = False) -> TransitionSpec:
    """The transitions between classes ``a`` and ``b``: ``a→b`` and ``b→a``
    (``directed=True``: ``a→b`` only)."""
    a, b = str(a), str(b)
    if a == b:
        raise ValueError(f"pair({a!r}, {b!r}) needs two different classes; use identity({a!r})")
    return TransitionSpec([(a, b)] if directed else [(a, b), (b, a)])


def identity(*classes: str) -> TransitionSpec:
    """Identity transitions ``c→c`` (alternative = factual word) for each class given."""
    if not classes:
        raise ValueError("identity() needs at least one class, e.g. identity('neut_nom')")
    return TransitionSpec([(str(c), str(c)) for c in classes])


Selection = TransitionSpec | str | Sequence[Any] | None


def resolve_selection(
    selection: Selection, classes: Sequence[str], targets: Sequence[str]
) -> list[tuple[str, str]]:
    """The transitions a trainer trains on, checked against the data's classes.

    ``None``: both directions of the target pair. ``"all"``: every ordered pair of different
    classes. Otherwise every named class must exist and both target directions must be there
    (they orient the GRADIEND and give its validation correlation).
    """
    a, b = str(targets[0]), str(targets[1])
    if selection is None:
        return [(a, b), (b, a)]
    if isinstance(selection, str) and selection.strip().lower() == "all":
        return [(a, b), (b, a)] + [
            (x, y) for x in classes for y in classes if x != y and {x, y} != {a, b}
        ]
    spec = TransitionSpec(_as_items(selection))
    if not len(spec):
        raise ValueError("transition_selection is empty; pass None for the target pair")
    unknown = [c for c in spec.classes if c not in classes]
    if unknown:
        raise ValueError(
            f"transition_selection names class(es) {unknown} that the data does not have; "
            f"classes are {list(classes)}"
        )
    missing = [t for t in ((a, b), (b, a)) if t not in spec.transitions]
    if missing:
        raise ValueError(
            f"transition_selection lacks {[transition_id(*t) for t in missing]}: a trainer for "
            f"the pair ({a!r}, {b!r}) trains on both of its directions; add pair({a!r}, {b!r})"
        )
    first = [(a, b), (b, a)]
    return first + [t for t in spec.transitions if t not in first]


def _direction(cls: str, targets: Sequence[str]) -> int:
    return 1 if cls == targets[0] else -1 if cls == targets[1] else 0


def transition_label(factual: str, alternative: str, targets: Sequence[str], target: str) -> float:
    """+1 when the decoder target of a row pushes the model towards ``targets[0]``, −1 towards
    ``targets[1]``, 0 when it pushes neither way (identity rows, transitions between other
    classes).

    With ``target="diff"`` (``g_f − g_a``) a row moves the model from its factual class to its
    alternative class: the sign of ``dir(alternative) − dir(factual)`` with ``dir`` = +1 for
    ``targets[0]``, −1 for ``targets[1]``, 0 otherwise. ``"alternative"`` (``g_a``) moves away
    from the alternative class (``−dir(alternative)``), ``"factual"`` away from the factual one.
    On the pair's own rows this is the label every run has always had.
    """
    if factual == alternative:
        return 0.0
    f, a = _direction(factual, targets), _direction(alternative, targets)
    value = {"diff": a - f, "alternative": -a, "factual": -f}.get(target, a - f)
    return float((value > 0) - (value < 0))


def resolve_positive_class(positive_class: str | None, target_classes: Sequence[str]) -> str:
    """The class a binary run counts as positive in cross-run comparisons.

    ``positive_class`` when given (it must be a target class); otherwise the class whose
    partner is named ``non_X`` / ``non-X`` (``X`` is positive), else ``target_classes[0]``.
    """
    tcs = [str(c) for c in target_classes]
    if positive_class is not None:
        if str(positive_class) not in tcs:
            raise ValueError(
                f"positive_class={positive_class!r} is not one of the target classes {tcs}"
            )
        return str(positive_class)
    for c in tcs:
        for other in tcs:
            if other != c and other.lower() in (f"non_{c}".lower(), f"non-{c}".lower()):
                return c
    return tcs[0]

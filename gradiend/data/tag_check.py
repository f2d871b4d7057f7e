"""Refuse ``spacy_tags`` that no token can have under the loaded spaCy pipeline: an unknown key
(``"POS"``, ``"Foo"``) or a value the pipeline never produces (``{"Gender": "Masculine"}``)
would otherwise silently collect no rows after a full scan."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from typing import Any

from .inputs import DataInputError, DataTypeError
from .ud_features import OPEN_FEATURES, UD_FEATURES, feature_name

logger = logging.getLogger(__name__)

ATTR_KEYS = ("pos", "tag", "dep")


def _pipe_labels(nlp: Any, name: str) -> set[str] | None:
    if nlp is None or name not in getattr(nlp, "pipe_names", []):
        return None
    return set(nlp.get_pipe(name).labels)


def _add_features(out: dict[str, set[str]], morph: str) -> None:
    for feat in morph.split("|"):
        name, _, value = feat.partition("=")
        if value and name != "POS":
            out.setdefault(name, set()).update(value.split(","))


def declared_features(nlp: Any) -> dict[str, set[str]]:
    """The morphological features (and their values) the pipeline says it sets: the
    morphologizer's labels and the attribute ruler's ``MORPH`` values. Empty when it declares
    none (a blank pipeline with a custom component, say)."""
    out: dict[str, set[str]] = {}
    for label in _pipe_labels(nlp, "morphologizer") or ():
        _add_features(out, label)
    if nlp is not None and "attribute_ruler" in getattr(nlp, "pipe_names", []):
        for pattern in nlp.get_pipe("attribute_ruler").patterns:
            morph = pattern.get("attrs", {}).get("MORPH")
            if isinstance(morph, str):
                _add_features(out, morph)
    return out


def possible_values(nlp: Any) -> dict[str, set[str] | None]:
    """Each valid tag key and the values it can take under ``nlp`` (None: any value)."""
    from spacy.parts_of_speech import IDS  # optional extra: spacy (nlp is a spaCy pipeline)

    out: dict[str, set[str] | None] = {"pos": {p for p in IDS if p}}
    out["tag"] = _pipe_labels(nlp, "tagger") or None
    out["dep"] = _pipe_labels(nlp, "parser") or None
    declared = declared_features(nlp)
    if declared:  # the pipeline says which features it sets: only those can match
        out.update(declared)
        return out
    for name in OPEN_FEATURES:
        out[name] = None
    out.update({name: set(values) for name, values in UD_FEATURES.items()})
    return out


def closest(wrong: str, options: Iterable[str]) -> str | None:
    """The option ``wrong`` most likely meant: same but for case, a prefix (``Feminine`` →
    ``Fem``), else the closest spelling."""
    options = sorted(set(options))
    low = wrong.lower()
    for test in (
        lambda o: o.lower() == low,
        lambda o: len(o) >= 3 and (low.startswith(o.lower()) or o.lower().startswith(low)),
    ):
        hits = [o for o in options if test(o)]
        if hits:
            return difflib.get_close_matches(wrong, hits, n=1, cutoff=0)[0]
    close = difflib.get_close_matches(wrong, options, n=1)
    return close[0] if close else None


def _listing(values: Iterable[str], n: int = 40) -> str:
    values = sorted(values)
    more = f", … ({len(values)} in all)" if len(values) > n else ""
    return ", ".join(values[:n]) + more


def check_spec(
    spec: Any, owner: str, known: dict[str, set[str] | None], argument: str, section: str
) -> None:
    """Refuse a key or value of ``spec`` that no token can have; ``owner`` says whose it is."""
    if not isinstance(spec, dict):
        raise DataTypeError(
            argument, f"{owner}: got {spec!r}, not a dict", "pass e.g. {'pos': 'PRON'}", section
        )
    for key, want in spec.items():
        values = want if isinstance(want, (list, tuple)) else [want]
        if not isinstance(key, str) or not values or not all(isinstance(v, str) for v in values):
            raise DataTypeError(
                argument,
                f"{owner}: {{{key!r}: {want!r}}} is not a tag name with a string value "
                "(or a list of them)",
                "pass e.g. {'pos': 'PRON', 'Case': ['Nom', 'Acc']}",
                section,
            )
        if key not in known:
            raise DataInputError(argument, f"{owner}: {_unknown_key(key, known)}", *_fix(section))
        allowed = known[key]
        if allowed is None and feature_name(key) in UD_FEATURES and key not in ATTR_KEYS:
            allowed = set(UD_FEATURES[feature_name(key)])
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad and len(bad) == len(values):
            guess = closest(bad[0], allowed or ())
            mean = f"; did you mean {guess!r}?" if guess else ""
            raise DataInputError(
                argument,
                f"{owner}: {{{key!r}: {want!r}}} can match no token: this spaCy pipeline gives "
                f"{key!r} the values {_listing(allowed or ())}{mean} (names and values are "
                "case-sensitive)",
                f"use one of those values, e.g. {{{key!r}: {(guess or sorted(allowed)[0])!r}}}",
                section,
            )


def _unknown_key(key: str, known: dict[str, set[str] | None]) -> str:
    if key.lower() == "lemma":
        mean = "; for lemmas pass use_lemma=True on the filter."
    else:
        guess = closest(key, known)
        mean = f"; did you mean {guess!r}?" if guess else "."
    never = ""
    if feature_name(key) in UD_FEATURES:
        never = " (a Universal Dependencies feature, but this spaCy pipeline never sets it)"
    features = sorted(k for k in known if k not in ATTR_KEYS)
    return (
        f"unknown spacy_tags key {key!r}{never}{mean} Valid keys: 'pos', 'tag', 'dep' "
        f"(token.pos_, tag_, dep_) and the morphological features {_listing(features)}"
    )


def _fix(section: str) -> tuple[str, str]:
    return "spell the key as listed (keys and values are case-sensitive)", section


def check_spacy_tags(nlp: Any, configs: Iterable[Any]) -> None:
    """Refuse every ``spacy_tags`` key or value of ``configs`` that no token can have."""
    if nlp is None:
        return
    known = possible_values(nlp)
    for cfg in configs:
        for _, tags in cfg.rules():
            check_spec(tags, f"class {cfg.id!r}", known, "feature_targets", "creator")


def check_excluded_tags(nlp: Any, specs: list[Any]) -> None:
    """The same check for ``generate_neutral_data(excluded_spacy_tags=...)``."""
    if nlp is None:
        return
    known = possible_values(nlp)
    for i, spec in enumerate(specs):
        owner = f"excluded_spacy_tags[{i}]"
        check_spec(spec, owner, known, "excluded_spacy_tags", "generate_neutral_data")

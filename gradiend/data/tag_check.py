"""Spot ``spacy_tags`` that no token can have under the loaded spaCy pipeline (a typo such as
``{"Gender": "Masculine"}`` would otherwise silently collect no rows after a full scan)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gradiend._warn import warn

logger = logging.getLogger(__name__)


def _pipe_labels(nlp: Any, name: str) -> set[str] | None:
    if name not in getattr(nlp, "pipe_names", []):
        return None
    return set(nlp.get_pipe(name).labels)


def possible_values(nlp: Any) -> dict[str, set[str]]:
    """Values each tag key can take under ``nlp`` (keys whose values cannot be known: absent)."""
    from spacy.parts_of_speech import IDS  # optional extra: spacy (nlp is a spaCy pipeline)

    out: dict[str, set[str]] = {"pos": {p for p in IDS if p}}
    for key, pipe in (("tag", "tagger"), ("dep", "parser")):
        labels = _pipe_labels(nlp, pipe)
        if labels:
            out[key] = labels
    morph = _pipe_labels(nlp, "morphologizer")
    if morph:
        for label in morph:
            for feat in label.split("|"):
                name, _, value = feat.partition("=")
                if value and name != "POS":
                    out.setdefault(name, set()).update(value.split(","))
    return out


def check_spacy_tags(nlp: Any, configs: Iterable[Any]) -> list[str]:
    """Warn about every tag value no token can have; return the warnings."""
    if nlp is None:
        return []
    known = possible_values(nlp)
    has_morph = _pipe_labels(nlp, "morphologizer") is not None
    problems = []
    for cfg in configs:
        for _, tags in cfg.rules():
            for key, want in tags.items():
                allowed = [want] if isinstance(want, str) else list(want)
                values = known.get(key)
                if values is None and (key in ("pos", "tag", "dep") or not has_morph):
                    continue  # this pipeline does not tell which values it can produce
                if values is None or not set(allowed) & values:
                    hint = f"; it uses {', '.join(sorted(values)[:12])}" if values else ""
                    problems.append(
                        f"spacy_tags {{{key!r}: {want!r}}} of class {cfg.id!r} can match no token "
                        f"of this spaCy pipeline{hint}. Fix the tag (names and values are "
                        "case-sensitive), or that class will collect no rows."
                    )
    for msg in problems:
        warn(logger, msg, stacklevel=4)
    return problems

"""Feature filters: which words (and, with spaCy, which morphology) make a sentence a class example."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradiend._kwargs import strict_kwargs

from .inputs import DataInputError, DataTypeError

logger = logging.getLogger(__name__)

SpacyTagSpec = dict[str, str]
"""Token constraints, e.g. ``{"pos": "DET", "Case": "Nom", "Gender": "Masc"}``.

``pos``/``tag``/``dep`` compare ``token.pos_``/``tag_``/``dep_``; every other key is a
morphological feature compared as ``token.morph.get(key) == [value]``. A value may also be a list
of accepted values.
"""

_ATTR_KEYS = {"pos": "pos_", "tag": "tag_", "dep": "dep_"}
_DATA_HINT = "pip install gradiend[data]"


@strict_kwargs
@dataclass
class TextFilterConfig:
    """One feature class: its target words, optional spaCy constraints and how to mask them.

    ``targets`` (or the alias ``target``) are matched as whole words, case-insensitively; they may
    also be nested ``TextFilterConfig`` objects whose ``spacy_tags`` extend/override this one's.
    With ``spacy_tags`` a match also needs the token to satisfy every tag, which resolves
    syncretism (German ``der`` as Masc-Nom versus Fem-Dat). ``use_lemma`` matches and labels by
    lemma. ``id`` names the class (default: first target). ``min_left_context_words``
    overrides the creator's value for this class; ``weight`` is kept for compatibility.
    """

    targets: Sequence[str | TextFilterConfig] | str | None = None
    spacy_tags: SpacyTagSpec | None = None
    use_lemma: bool = False
    id: str | None = None
    mask: str = "[MASK]"
    weight: float = 1.0
    min_left_context_words: int | None = None
    target: str | Sequence[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.targets is None and self.target is None:
            raise DataInputError(
                "TextFilterConfig", "needs `targets` (or `target`)", "pass e.g. targets=['he']"
            )
        if self.targets is None:
            self.targets = self.target
        elif self.target is not None:
            extra = [self.target] if isinstance(self.target, str) else list(self.target)
            self.targets = [*_as_list(self.targets), *extra]
        self.target = None
        self.targets = _as_list(self.targets)
        self._check()
        if self.id is None:
            first = self.targets[0]
            self.id = first if isinstance(first, str) else first.id

    def _check(self) -> None:
        """Refuse what would match nothing or everything: no targets, a target that is not a
        non-empty string (or a nested filter), an empty id or mask, a negative left context."""
        where = "TextFilterConfig"
        if not self.targets:
            raise DataInputError(f"{where}.targets", "is empty", "pass e.g. targets=['he']")
        for t in self.targets:
            if not isinstance(t, (str, TextFilterConfig)) or (isinstance(t, str) and not t.strip()):
                raise DataTypeError(
                    f"{where}.targets",
                    f"holds {t!r} ({type(t).__name__}), not a word",
                    "pass non-empty strings (or nested TextFilterConfig objects)",
                )
        if self.spacy_tags is not None and not isinstance(self.spacy_tags, dict):
            raise DataTypeError(
                f"{where}.spacy_tags",
                f"must be a dict, got {self.spacy_tags!r}",
                "pass e.g. spacy_tags={'pos': 'PRON'}",
            )
        if self.id is not None and (not isinstance(self.id, str) or not self.id.strip()):
            raise DataInputError(f"{where}.id", f"{self.id!r} is not a class name", "pass a str")
        if not isinstance(self.mask, str) or not self.mask.strip():
            raise DataInputError(f"{where}.mask", f"{self.mask!r} is empty", "pass e.g. '[MASK]'")
        n = self.min_left_context_words
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise DataInputError(
                f"{where}.min_left_context_words",
                f"must be an int >= 0 or None, got {n!r}",
                "pass e.g. 3 (None: the creator's value)",
            )

    def rules(self, parent_tags: SpacyTagSpec | None = None) -> list[tuple[tuple[str, ...], dict]]:
        """Flatten nested targets to ``(words, tags)`` rules, children's tags overriding parents'."""
        tags = {**(parent_tags or {}), **(self.spacy_tags or {})}
        words = tuple(t for t in self.targets if isinstance(t, str))
        out = [(words, tags)] if words else []
        for child in self.targets:
            if isinstance(child, TextFilterConfig):
                out.extend(child.rules(tags))
        return out

    @property
    def words(self) -> list[str]:
        """All target strings, nested ones included."""
        return [w for words, _ in self.rules() for w in words]

    @property
    def needs_spacy(self) -> bool:
        return self.use_lemma or any(tags for _, tags in self.rules())


def _as_list(value: Any) -> list:
    if isinstance(value, (str, TextFilterConfig)):
        return [value]
    return list(value)


def filter_list(feature_targets: Any) -> list[TextFilterConfig]:
    """``feature_targets`` as a list of ``TextFilterConfig`` (one is accepted alone)."""
    if isinstance(feature_targets, TextFilterConfig):
        return [feature_targets]
    if isinstance(feature_targets, (str, dict)):
        feature_targets = [feature_targets]
    items = list(feature_targets or [])
    for i, f in enumerate(items):
        if not isinstance(f, TextFilterConfig):
            raise DataTypeError(
                f"feature_targets[{i}]",
                f"is a {type(f).__name__} ({f!r:.60}), not a TextFilterConfig",
                "pass TextFilterConfig(targets=[...], id=...) per class",
            )
    return items


def word_regex(words: Iterable[str]) -> re.Pattern[str] | None:
    """Case-insensitive whole-word alternation, longest words first; ``None`` for no words."""
    unique = sorted({w.strip() for w in words if w.strip()}, key=lambda w: (-len(w), w))
    if not unique:
        return None
    body = "|".join(re.escape(w) for w in unique)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def token_matches(token: Any, tags: SpacyTagSpec) -> bool:
    """True when the spaCy ``token`` satisfies every constraint in ``tags``."""
    for key, want in tags.items():
        allowed = [want] if isinstance(want, str) else list(want)
        if key in _ATTR_KEYS:
            if getattr(token, _ATTR_KEYS[key]) not in allowed:
                return False
        else:
            got = token.morph.get(key)
            if len(got) != 1 or got[0] not in allowed:
                return False
    return True


@dataclass
class Match:
    """One matched span in a sentence: character offsets and the word that labels it."""

    start: int
    end: int
    word: str


class CompiledFilter:
    """A ``TextFilterConfig`` ready to match: a regex, and the spaCy rules when tags are set."""

    def __init__(self, config: TextFilterConfig, min_left_context_words: int) -> None:
        self.config = config
        self.id = str(config.id)
        self.rules = [(frozenset(w.lower() for w in words), tags) for words, tags in config.rules()]
        self.regex = word_regex(config.words)
        self.needs_spacy = config.needs_spacy
        self.use_lemma = config.use_lemma
        self.min_left = (
            config.min_left_context_words
            if config.min_left_context_words is not None
            else min_left_context_words
        )
        # With use_lemma, inflected forms ("was" for "be") differ from the targets on the
        # surface, so the regex cannot pre-filter and every sentence is parsed.
        self.prefilter = None if self.use_lemma else self.regex

    def match_text(self, text: str) -> list[Match]:
        """Regex-only matching (no spaCy tags, no lemma)."""
        if self.regex is None:
            return []
        return [Match(m.start(), m.end(), m.group()) for m in self.regex.finditer(text)]

    def match_doc(self, doc: Any) -> tuple[list[Match], int]:
        """spaCy matching; returns the matches and how many word hits failed the tags."""
        if self.use_lemma:
            return self._match_lemma(doc)
        matches, rejected = [], 0
        for m in self.regex.finditer(doc.text) if self.regex else ():
            span = doc.char_span(m.start(), m.end(), alignment_mode="expand")
            token = span.root if span is not None and len(span) else None
            word = m.group().lower()
            ok = token is not None and any(
                word in words and token_matches(token, tags) for words, tags in self.rules
            )
            if ok:
                matches.append(Match(m.start(), m.end(), m.group()))
            else:
                rejected += 1
        return matches, rejected

    def _match_lemma(self, doc: Any) -> tuple[list[Match], int]:
        matches, rejected = [], 0
        for tok in doc:
            lemma, text = tok.lemma_.lower(), tok.lower_
            hit = [tags for words, tags in self.rules if lemma in words or text in words]
            if not hit:
                continue
            if any(token_matches(tok, tags) for tags in hit):
                start = tok.idx
                matches.append(Match(start, start + len(tok.text), tok.lemma_ or tok.text))
            else:
                rejected += 1
        return matches, rejected

    def left_context_ok(self, text: str, match: Match) -> bool:
        """At least ``min_left`` words (``\\w+``) precede the match."""
        if self.min_left <= 0:
            return True
        return len(re.findall(r"\w+", text[: match.start])) >= self.min_left


def mask_text(text: str, matches: Sequence[Match], mask: str) -> str:
    """Replace every matched span by ``mask``."""
    parts, last = [], 0
    for m in sorted(matches, key=lambda m: m.start):
        parts.append(text[last : m.start])
        parts.append(mask)
        last = m.end
    parts.append(text[last:])
    return "".join(parts)


def spacy_components_to_disable(
    nlp: Any, tag_specs: Iterable[SpacyTagSpec], lemma: bool
) -> list[str]:
    """Pipeline components not needed for ``tag_specs``/lemmas (NER, text classifiers, …)."""
    keys = {k for spec in tag_specs for k in spec}
    unneeded = {
        "ner", "entity_ruler", "entity_linker", "textcat", "textcat_multilabel", "spancat",
        "span_finder", "senter", "sentencizer", "coref", "span_resolver", "span_cleaner",
    }  # fmt: skip
    if "dep" not in keys:
        unneeded.add("parser")
    if not lemma:
        unneeded.add("lemmatizer")
    return [name for name in nlp.pipe_names if name in unneeded]


def load_spacy(spacy_model: Any) -> Any:
    """Load a spaCy pipeline by package name, or pass a loaded ``spacy.Language`` through."""
    if spacy_model is None or not isinstance(spacy_model, str):
        return spacy_model
    try:
        import spacy  # optional extra: spacy (gradiend[data])
    except ImportError as err:
        raise ImportError(f"spacy_model={spacy_model!r} needs spaCy: {_DATA_HINT}") from err
    try:
        return spacy.load(spacy_model)
    except OSError as err:
        raise OSError(
            f"spaCy model {spacy_model!r} is not installed. Install it with "
            f"`python -m spacy download {spacy_model}` (or `pip install {spacy_model}`), "
            "or pass a loaded spacy.Language as spacy_model."
        ) from err

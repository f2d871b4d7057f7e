"""Before the scan: what the loaded spaCy pipeline gives each class's words on a sample of the
corpus (the first sentences holding them), so a ``spacy_tags`` condition that none of them meets
is refused with what the pipeline does produce, instead of a full scan that collects no rows."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gradiend._warn import warn

from .filters import (
    CompiledFilter,
    spacy_components_to_disable,
    token_matches,
    word_regex,
)
from .inputs import DataInputError

logger = logging.getLogger(__name__)

MIN_EVIDENCE = 10  # occurrences with no match before the check refuses (fewer: a warning)
MAX_READ = 20_000  # sentences read at most to find the sample


class _Morph(dict):
    def get(self, key: str, default: Any = None) -> list[str]:  # token.morph.get semantics
        return list(super().get(key, default or []))


@dataclass(frozen=True)
class Tok:
    """What the pipeline gave one occurrence of a target word."""

    word: str
    pos_: str
    tag_: str
    dep_: str
    morph: _Morph

    @classmethod
    def of(cls, token: Any, word: str) -> Tok:
        feats = {k: v.split(",") for k, v in token.morph.to_dict().items()}
        return cls(word, token.pos_, token.tag_, token.dep_, _Morph(feats))

    def triple(self) -> str:
        morph = "|".join(f"{k}={','.join(v)}" for k, v in sorted(self.morph.items())) or "-"
        return f"{self.pos_}/{self.tag_}/{morph}"


@dataclass
class RuleSample:
    """One ``(words, spacy_tags)`` rule of a class and its occurrences in the sample."""

    class_id: str
    words: tuple[str, ...]
    tags: dict[str, Any]
    toks: list[Tok] = field(default_factory=list)

    def count(self, tags: dict[str, Any]) -> int:
        return sum(token_matches(t, tags) for t in self.toks)

    def describe(self) -> str:
        """Per word (most frequent first): its count and its top pos/tag/morph readings."""
        by_word: dict[str, Counter[str]] = {}
        for t in self.toks:
            by_word.setdefault(t.word, Counter())[t.triple()] += 1
        parts = []
        for word, c in sorted(by_word.items(), key=lambda kv: -sum(kv[1].values()))[:5]:
            top = ", ".join(f"{r} {n}" for r, n in c.most_common(3))
            parts.append(f"{word!r} ({sum(c.values())}): {top}")
        return "; ".join(parts)


@dataclass
class TagSample:
    """The sample's rules and how many sentences were read to find them."""

    rules: list[RuleSample]
    sentences_read: int
    per_class: dict[str, int]

    def summary(self, class_id: str) -> str:
        """A line for the class's error message: occurrences, matches, readings."""
        lines = [
            f"{len(r.toks)} occurrences of {list(r.words)} in {self.per_class[class_id]} sampled "
            f"sentences, {r.count(r.tags)} with spacy_tags {r.tags}"
            + (f" (the pipeline gives {r.describe()})" if r.toks else "")
            for r in self.rules
            if r.class_id == class_id
        ]
        return "; ".join(lines)


def _occurrences(doc: Any, f: CompiledFilter, words: frozenset[str]) -> Iterator[Tok]:
    if f.use_lemma:
        for tok in doc:
            if tok.lemma_.lower() in words or tok.lower_ in words:
                yield Tok.of(tok, tok.lower_)
        return
    regex = word_regex(words)
    for m in regex.finditer(doc.text) if regex else ():
        span = doc.char_span(m.start(), m.end(), alignment_mode="expand")
        if span is not None and len(span):
            yield Tok.of(span.root, m.group().lower())


def sample_tags(
    sentences: Iterator[str], filters: list[CompiledFilter], nlp: Any, size: int
) -> tuple[TagSample | None, Iterator[str]]:
    """Read sentences until every class with spaCy tags has ``size`` holding its words (or
    ``MAX_READ`` were read), parse those, and return the sample and the sentences unread
    (the read ones first, so the scan sees every sentence once)."""
    tagged = [f for f in filters if f.needs_spacy]
    if not tagged or size <= 0 or nlp is None:
        return None, sentences
    buffer: list[str] = []
    picked: dict[str, list[int]] = {f.id: [] for f in tagged}
    for sentence in sentences:
        buffer.append(sentence)
        for f in tagged:
            got = picked[f.id]
            if len(got) < size and (f.prefilter is None or f.prefilter.search(sentence)):
                got.append(len(buffer) - 1)
        if len(buffer) >= MAX_READ or all(len(v) >= size for v in picked.values()):
            break
    rest = itertools.chain(buffer, sentences)
    index = sorted({i for v in picked.values() for i in v})
    tags = [t for f in tagged for _, t in f.rules]
    disable = spacy_components_to_disable(nlp, tags, any(f.use_lemma for f in tagged))
    docs = dict(zip(index, nlp.pipe([buffer[i] for i in index], disable=disable), strict=True))
    rules = []
    for f in tagged:
        for words, rule_tags in f.rules:
            if not rule_tags:
                continue  # a nested rule without tags matches every occurrence
            r = RuleSample(f.id, tuple(sorted(words)), dict(rule_tags))
            r.toks = [t for i in picked[f.id] for t in _occurrences(docs[i], f, words)]
            rules.append(r)
    per_class = {cid: len(v) for cid, v in picked.items()}
    return TagSample(rules, len(buffer), per_class), rest


def _key_notes(r: RuleSample) -> list[str]:
    """Why each failing key fails: the feature is never set on these words, or has other values."""
    notes = []
    for key, want in r.tags.items():
        if r.count({key: want}):
            continue
        if key in ("pos", "tag", "dep"):
            got = Counter(getattr(t, f"{key}_") for t in r.toks)
        else:
            got = Counter(v for t in r.toks for v in t.morph.get(key))
        if not got:
            notes.append(f"this pipeline sets no {key!r} on these words")
        else:
            top = ", ".join(f"{v} {n}" for v, n in got.most_common(4))
            notes.append(f"{key!r} is {top} on them, never {want!r}")
    return notes


def suggest(r: RuleSample) -> dict[str, Any] | None:
    """A condition that the sample meets: the keys that pass kept, each failing one replaced
    by the most common value of the same attribute (a feature the pipeline never sets on these
    words by their most common fine-grained ``tag``)."""
    kept = {k: v for k, v in r.tags.items() if r.count({k: v})}
    for key in [k for k in r.tags if k not in kept]:
        toks = [t for t in r.toks if token_matches(t, kept)]
        if key in ("pos", "tag", "dep"):
            values = Counter(getattr(t, f"{key}_") for t in toks)
        else:
            values = Counter(v for t in toks for v in t.morph.get(key))
        if not values and "tag" not in kept and "tag" not in r.tags:
            key, values = "tag", Counter(t.tag_ for t in toks if t.tag_)
        if values:
            kept[key] = values.most_common(1)[0][0]
    return kept if kept and kept != r.tags and r.count(kept) else None


def check_sample(sample: TagSample | None, pipeline: str) -> None:
    """Refuse a class whose condition none of ``MIN_EVIDENCE`` or more sampled occurrences of its
    words meets; warn when the sample is smaller, or when one word of a class never matches."""
    for r in sample.rules if sample is not None else ():
        hits = r.count(r.tags)
        if not r.toks or hits:
            _warn_dead_words(r, hits)
            continue
        guess = suggest(r)
        problem = (
            f"class {r.class_id!r}: spacy_tags {r.tags} match none of the {len(r.toks)} "
            f"occurrences of {list(r.words)} in the first {sample.per_class[r.class_id]} "
            f"sentences holding them ({'; '.join(_key_notes(r))}), so the class would collect "
            f"no rows. What {pipeline} gives these words there: {r.describe()}"
        )
        fix = (
            f"spacy_tags={guess} matches {r.count(guess)} of the {len(r.toks)}"
            if guess
            else "loosen spacy_tags to what the pipeline gives"
        ) + " (tag_sample_size=0 skips this check)"
        if len(r.toks) >= MIN_EVIDENCE:
            raise DataInputError("feature_targets", problem, fix)
        warn(logger, f"{problem}. Fix: {fix}")


def _warn_dead_words(r: RuleSample, hits: int) -> None:
    """One word of a class with matches whose every sampled occurrence fails the tags."""
    if not hits:
        return
    words = Counter(t.word for t in r.toks)
    good = Counter(t.word for t in r.toks if token_matches(t, r.tags))
    dead = [w for w, n in words.items() if n >= MIN_EVIDENCE and not good[w]]
    if dead:
        warn(
            logger,
            f"class {r.class_id!r}: spacy_tags {r.tags} match no sampled occurrence of {dead} "
            f"(the pipeline gives {r.describe()}); those words will give the class no rows. "
            "Fix: drop them from the targets or loosen the tags",
            stacklevel=5,
        )

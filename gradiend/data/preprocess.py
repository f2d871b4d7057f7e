"""Text preprocessing before matching: sentence splitting and length/character filters."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gradiend._kwargs import strict_kwargs

from .inputs import DataInputError, DataTypeError, check_size

logger = logging.getLogger(__name__)

# Abbreviations (lower-cased, without the final period) after which a period does not end a
# sentence. English and German; extend through `TextPreprocessConfig.abbreviations`.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof st jr sr vs etc e.g i.e cf approx ca no nr fig vol ed eds inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec mt ft gen col lt sgt capt rev hon esp et al
    z.b u.a d.h bzw usw vgl ggf evtl sog bspw inkl zzgl hr fr frl str s.o s.u u.ä o.ä m.e a.a.o
    """.split()
)

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s+|$)")
_NEEDS_SPLIT = re.compile(r"[.!?…][\"'”’»)\]]*\s+\S")
_QUOTE_OPENERS = "\"'“‘„«(["


@strict_kwargs
@dataclass
class TextPreprocessConfig:
    """How raw texts become candidate sentences (the incumbent's argument names).

    ``split_to_sentences``: ``False`` keeps texts whole, ``True`` yields one sentence each, an int
    ``n`` yields consecutive windows of ``n`` sentences. ``min_chars``/``max_chars`` bound the
    length, ``exclude_chars`` drops texts containing any of those characters and ``custom_filter``
    keeps a text only when it returns ``True``. ``splitter`` picks spaCy's sentencizer
    (``"spacy"``), the built-in rules (``"rules"``) or spaCy when installed (``"auto"``);
    ``language`` is the spaCy language code whose tokenizer knows the abbreviations (default:
    the creator's spaCy pipeline's language, else ``"en"``).
    """

    split_to_sentences: bool | int = False
    min_chars: int | None = None
    max_chars: int | None = None
    exclude_chars: str | Iterable[str] | None = None
    custom_filter: Callable[[str], bool] | None = None
    splitter: str = "auto"
    language: str | None = None
    abbreviations: Iterable[str] | None = None

    def __post_init__(self) -> None:
        where = "TextPreprocessConfig"
        if self.splitter not in ("auto", "spacy", "rules"):
            raise DataInputError(
                f"{where}.splitter", f"got {self.splitter!r}", "pass 'auto', 'spacy' or 'rules'"
            )
        n = self.split_to_sentences
        if not isinstance(n, bool) and (not isinstance(n, int) or n < 1):
            raise DataInputError(
                f"{where}.split_to_sentences", f"got {n!r}", "pass False, True or an int >= 1"
            )
        check_size(f"{where}.min_chars", self.min_chars, minimum=0)
        check_size(f"{where}.max_chars", self.max_chars)
        if self.min_chars is not None and self.max_chars is not None:
            if self.min_chars > self.max_chars:
                raise DataInputError(
                    f"{where}.min_chars",
                    f"min_chars ({self.min_chars}) > max_chars ({self.max_chars}) keeps no text",
                    "make min_chars <= max_chars",
                )
        if self.custom_filter is not None and not callable(self.custom_filter):
            raise DataTypeError(
                f"{where}.custom_filter",
                f"{self.custom_filter!r} is not callable",
                "pass a function text -> bool",
            )
        chars = self.exclude_chars
        if chars is not None and not isinstance(chars, str):
            if not all(isinstance(c, str) for c in chars):
                raise DataTypeError(
                    f"{where}.exclude_chars", f"got {chars!r}", "pass a str such as '<>|'"
                )


def split_sentences_rules(text: str, abbreviations: Iterable[str] | None = None) -> list[str]:
    """Split ``text`` at ``.!?`` that end a sentence, skipping abbreviations, initials and ordinals.

    A break needs the next word to start with an upper-case letter, a digit or an opening quote,
    so that "e.g. a dog" or "Dr. Smith" stay whole and closing quotes stay with their sentence.
    """
    abbrev = ABBREVIATIONS if abbreviations is None else ABBREVIATIONS | set(abbreviations)
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        rest = text[end:].lstrip()
        if rest and not (rest[0].isupper() or rest[0].isdigit() or rest[0] in _QUOTE_OPENERS):
            continue
        if m.group().startswith(".") and len(m.group().rstrip("\"'”’»)]")) == 1:
            word = re.search(r"(\S+)$", text[start : m.start()])
            last = word.group(1).lstrip(_QUOTE_OPENERS).lower() if word else ""
            if (
                last in abbrev
                or (len(last) == 1 and last.isalpha())
                or re.fullmatch(r"\d{1,2}", last)
            ):
                continue
            if "." in last and re.fullmatch(r"(\w\.)+\w", last):  # e.g. "u.s", "z.b"
                continue
        piece = text[start:end].strip()
        if piece:
            sentences.append(piece)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


class SentenceSplitter:
    """Splits texts into sentences with spaCy's sentencizer, or rules when spaCy is missing."""

    def __init__(self, config: TextPreprocessConfig, language: str | None = None) -> None:
        self.config = config
        lang = config.language or language or "en"
        self._nlp: Any = None
        if config.splitter in ("auto", "spacy"):
            try:
                import spacy  # optional extra: spacy (gradiend[data])
            except ImportError as err:
                if config.splitter == "spacy":
                    raise ImportError(
                        "splitter='spacy' needs spaCy: pip install gradiend[data]"
                    ) from err
                logger.info("spaCy not installed; splitting sentences with the built-in rules")
            else:
                self._nlp = spacy.blank(lang)
                self._nlp.add_pipe("sentencizer")

    def split_many(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[list[str]]:
        """Yield the list of sentences of each text, in input order."""
        if self._nlp is None:
            for text in texts:
                yield self._split_one_rules(text)
            return
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._split_batch_spacy(batch)
                batch = []
        if batch:
            yield from self._split_batch_spacy(batch)

    def _split_one_rules(self, text: str) -> list[str]:
        if not _NEEDS_SPLIT.search(text):
            return [text.strip()] if text.strip() else []
        return split_sentences_rules(text, self.config.abbreviations)

    def _split_batch_spacy(self, batch: list[str]) -> Iterator[list[str]]:
        # Texts without an inner sentence end skip the tokenizer entirely.
        needs = [i for i, t in enumerate(batch) if _NEEDS_SPLIT.search(t)]
        docs = dict(zip(needs, self._nlp.pipe(batch[i] for i in needs), strict=True))
        for i, text in enumerate(batch):
            if i in docs:
                yield _merge_continuations(text, docs[i].sents)
            else:
                yield [text.strip()] if text.strip() else []


def _merge_continuations(text: str, sents: Iterable[Any]) -> list[str]:
    """spaCy's sentences, re-joined where a "sentence" starts lower-case (e.g. after `"Hi!" he`)."""
    spans: list[list[int]] = []
    for sent in sents:
        piece = sent.text.strip()
        if not piece:
            continue
        if spans and piece[0].islower():
            spans[-1][1] = sent.end_char
        else:
            spans.append([sent.start_char, sent.end_char])
    return [text[a:b].strip() for a, b in spans]


def _windows(sentences: list[str], n: int) -> list[str]:
    return [" ".join(sentences[i : i + n]) for i in range(0, len(sentences), n)]


def _rejection(text: str, config: TextPreprocessConfig, excluded: frozenset[str]) -> str | None:
    """Return why ``text`` is dropped by the filters of ``config``, or ``None`` to keep it."""
    if config.min_chars is not None and len(text) < config.min_chars:
        return "too_short"
    if config.max_chars is not None and len(text) > config.max_chars:
        return "too_long"
    if excluded and any(c in excluded for c in text):
        return "excluded_chars"
    if config.custom_filter is not None and not config.custom_filter(text):
        return "custom_filter"
    return None


def preprocess_texts(
    texts: Iterable[str],
    config: TextPreprocessConfig | None = None,
    stats: Counter[str] | None = None,
    language: str | None = None,
) -> Iterator[str]:
    """Lazily turn raw ``texts`` into the candidate sentences described by ``config``.

    ``None`` passes non-empty texts through unchanged. Reasons for dropping a text are counted in
    ``stats`` (``too_short``, ``too_long``, ``excluded_chars``, ``custom_filter``, ``empty``).
    ``language`` is the splitter's language when ``config.language`` is not set.
    """
    counter = stats if stats is not None else Counter()
    if config is None:
        for text in texts:
            if text.strip():
                yield text
            else:
                counter["empty"] += 1
        return
    excluded = frozenset(config.exclude_chars or ())
    split = config.split_to_sentences
    if split is False:
        units: Iterable[list[str]] = ([t] for t in texts)
    else:
        units = SentenceSplitter(config, language).split_many(texts)
        if split is not True and split > 1:
            units = (_windows(s, split) for s in units)
    for pieces in units:
        for piece in pieces:
            if not piece.strip():
                counter["empty"] += 1
                continue
            reason = _rejection(piece, config, excluded)
            if reason is None:
                yield piece
            else:
                counter[reason] += 1

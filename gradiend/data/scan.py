"""The single streaming pass over sentences that collects class examples or neutral sentences.

A combined regex pre-filters sentences; only candidates of classes with spaCy constraints are
parsed, in batches, with unneeded pipeline components disabled. Collection stops as soon as every
class is full.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from .filters import (
    CompiledFilter,
    Match,
    SpacyTagSpec,
    mask_text,
    spacy_components_to_disable,
    token_matches,
    word_regex,
)

logger = logging.getLogger(__name__)


class ClassCollector:
    """Scans sentences and keeps up to ``max_size`` rows per class, with reasons for rejections."""

    def __init__(
        self,
        filters: list[CompiledFilter],
        nlp: Any,
        max_size: int | None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> None:
        self.filters = filters
        self.nlp = nlp
        self.max_size = max_size
        self.batch_size = batch_size
        self.progress = progress
        self.rows: dict[str, list[dict]] = {f.id: [] for f in filters}
        self.excluded: dict[str, Counter[str]] = {f.id: Counter() for f in filters}
        self._seen: dict[str, set[str]] = {f.id: set() for f in filters}
        self.full: set[str] = set()
        self.scanned = 0
        self.parsed = 0
        self.no_target = 0
        self.stopped_early = False
        spacy_filters = [f for f in filters if f.needs_spacy]
        tags = [t for f in spacy_filters for _, t in f.rules]
        lemma = any(f.use_lemma for f in spacy_filters)
        self._disable = spacy_components_to_disable(nlp, tags, lemma) if spacy_filters else []
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the active classes and their combined pre-filter after a class fills up."""
        self.active = [f for f in self.filters if f.id not in self.full]
        self._parse_all = any(f.needs_spacy and f.prefilter is None for f in self.active)
        self._union = word_regex(w for f in self.active for w in f.config.words)

    def run(self, sentences: Iterable[str], total: int | None = None) -> None:
        """Consume ``sentences`` until exhausted or every class holds ``max_size`` rows."""
        start = time.perf_counter()
        pending: list[str] = []
        bar = tqdm(
            sentences,
            desc="Scanning sentences",
            unit=" sent",
            total=total,
            disable=not self.progress,
        )
        for sentence in bar:
            if not self.active:
                self.stopped_early = True
                break
            self.scanned += 1
            if not self._parse_all and (self._union is None or not self._union.search(sentence)):
                self.no_target += 1
                continue
            needs_doc = False
            for f in self.active:
                if f.needs_spacy:
                    needs_doc |= f.prefilter is None or bool(f.prefilter.search(sentence))
                else:
                    matches = f.match_text(sentence)
                    if matches:
                        self._add(f, sentence, matches)
            if needs_doc:
                pending.append(sentence)
                if len(pending) >= self.batch_size:
                    self._parse(pending)
                    pending = []
            if self.progress and self.scanned % 1000 == 0:
                bar.set_postfix(rows=sum(len(r) for r in self.rows.values()))
        if pending and self.active:
            self._parse(pending)
        bar.close()
        self.seconds = time.perf_counter() - start

    def _parse(self, sentences: list[str]) -> None:
        for doc in self.nlp.pipe(sentences, batch_size=self.batch_size, disable=self._disable):
            self.parsed += 1
            for f in list(self.active):
                if not f.needs_spacy:
                    continue
                matches, rejected = f.match_doc(doc)
                self.excluded[f.id]["tag_mismatch"] += rejected
                if matches:
                    self._add(f, doc.text, matches)

    def _add(self, f: CompiledFilter, text: str, matches: list[Match]) -> None:
        stats = self.excluded[f.id]
        if f.id in self.full:
            stats["class_full"] += 1
            return
        # The first mask needs its left context; later masks are masked too so that no
        # unmasked target word gives the answer away.
        if not f.left_context_ok(text, matches[0]):
            stats["left_context"] += 1
            return
        if text in self._seen[f.id]:
            stats["duplicate"] += 1
            return
        self._seen[f.id].add(text)
        words = [m.word for m in matches]
        self.rows[f.id].append(
            {
                "text": text,
                "masked": mask_text(text, matches, f.config.mask),
                "label": words[0],
                "mask_labels": "|".join(words),
                "token_count": len(words),
            }
        )
        if self.max_size is not None and len(self.rows[f.id]) >= self.max_size:
            self.full.add(f.id)
            self._refresh()

    def stats(self) -> dict[str, Any]:
        return {
            "sentences_scanned": self.scanned,
            "sentences_without_target_word": self.no_target,
            "sentences_parsed_by_spacy": self.parsed,
            "stopped_early": self.stopped_early,
            "scan_seconds": round(getattr(self, "seconds", 0.0), 3),
            "classes": {
                f.id: {"matches": len(self.rows[f.id]), "excluded": dict(self.excluded[f.id])}
                for f in self.filters
            },
        }


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def collect_neutral(
    sentences: Iterable[str],
    excluded_words: Iterable[str],
    excluded_tags: list[SpacyTagSpec],
    nlp: Any,
    max_size: int | None,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[list[str], dict[str, Any]]:
    """Keep sentences with none of ``excluded_words`` and no token matching ``excluded_tags``."""
    start = time.perf_counter()
    regex = word_regex(excluded_words)
    disable = spacy_components_to_disable(nlp, excluded_tags, False) if excluded_tags else []
    kept: list[str] = []
    seen: set[str] = set()
    why: Counter[str] = Counter()
    scanned = 0

    def word_ok(sentences: Iterable[str]) -> Iterator[str]:
        nonlocal scanned
        for s in sentences:
            scanned += 1
            if regex is not None and regex.search(s):
                why["excluded_word"] += 1
            elif s in seen:
                why["duplicate"] += 1
            else:
                seen.add(s)
                yield s

    bar = tqdm(desc="Neutral sentences", unit=" sent", disable=not progress, total=max_size)
    for batch in _batched(word_ok(sentences), batch_size):
        if excluded_tags:
            docs = nlp.pipe(batch, batch_size=batch_size, disable=disable)
            ok = [
                not any(token_matches(t, spec) for t in doc for spec in excluded_tags)
                for doc in docs
            ]
            why["excluded_tag"] += ok.count(False)
            batch = [s for s, good in zip(batch, ok, strict=True) if good]
        room = len(batch) if max_size is None else max_size - len(kept)
        kept.extend(batch[:room])
        bar.update(min(room, len(batch)))
        if max_size is not None and len(kept) >= max_size:
            break
    bar.close()
    stats = {
        "sentences_scanned": scanned,
        "rows": len(kept),
        "excluded": dict(why),
        "stopped_early": max_size is not None and len(kept) >= max_size,
        "scan_seconds": round(time.perf_counter() - start, 3),
    }
    return kept, stats

"""The default balance sentences of ``evaluate_decoder(objective="balance")``: the run's scored
rows with the context that reveals their class cut away, so that the context no longer
decides between the two classes.

A row's own sentence names its class (a he-sentence names a man), so balancing on it asks the
model to stop following the context, and a base model that prefers one class there puts the
"most balanced" point at the budget's edge. The neutral context of a row instead keeps only
the words next to the mask up to the nearest *class-revealing* word on either side, and at
most ``LEFT_WINDOW`` words before the mask:

* **Class-revealing words** (data-driven, any language or class set): every class word, and
  each context word whose smoothed rate in one class's rows of the whole run table is at least
  ``RATIO`` times its rate in the other's (``(n_c + 1) / (N_c + 2)`` per class: a word seen in
  one row only is not enough).
* A row whose neutral context has no word before the mask is left out (causal LMs predict the
  mask from its left context alone); each kept sentence remembers its row's class, so that the
  balance can be taken per class (``decoder_objective.balance_record``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import pandas as pd

from gradiend.lm.scoring import RowTargets

logger = logging.getLogger(__name__)

RATIO = 3.0  # smoothed per-class rate ratio from which a context word reveals its class
LEFT_WINDOW = 4  # at most this many words before the mask (names seen once are not flagged)
_PUNCT = ".,;:!?\"'()[]«»“”‘’"


def word_key(token: str) -> str:
    """A whitespace token as a vocabulary word: lower case, without surrounding punctuation."""
    return token.strip(_PUNCT).lower()


def revealing_words(
    texts: Iterable[str], classes: Iterable[str], class_words: dict[str, list[str]], mask: str
) -> set[str]:
    """The class words and the context words that point to one class (see the module doc)."""
    rows: dict[str, Counter] = {}
    totals: Counter = Counter()
    for text, cls in zip(texts, classes, strict=True):
        totals[cls] += 1
        words = {word_key(t) for t in text.replace(mask, " ").split()} - {""}
        rows.setdefault(cls, Counter()).update(words)
    found = {word_key(w) for ws in class_words.values() for w in ws} - {""}
    labels = list(totals)
    vocab = set().union(*rows.values()) if rows else set()
    for word in vocab - found:
        rates = [(rows[c][word] + 1) / (totals[c] + 2) for c in labels]
        if len(rates) > 1 and max(rates) >= RATIO * min(rates):
            found.add(word)
    return found


def neutral_context(text: str, mask: str, revealing: set[str], window: int = LEFT_WINDOW):
    """``text`` cut to the words around its single ``mask`` up to the nearest revealing word
    on each side (at most ``window`` words before it); ``None`` when no word stays before it."""
    tokens = text.split()
    at = next((i for i, t in enumerate(tokens) if mask in t), None)
    if at is None:
        return None
    start = at
    while start > 0 and at - start < window and word_key(tokens[start - 1]) not in revealing:
        start -= 1
    end = at + 1
    while end < len(tokens) and word_key(tokens[end]) not in revealing:
        end += 1
    if start == at:
        return None
    return " ".join(tokens[start:end])


def neutral_balance_targets(
    table: pd.DataFrame,
    targets: Sequence[RowTargets],
    row_classes: Sequence[str],
    class_words: dict[str, list[str]],
    mask: str,
) -> tuple[list[RowTargets], list[str]]:
    """The default balance sentences (each scored row's neutral context, its class words) and
    the class of each one's row; the rows themselves where no neutral context remains."""
    revealing = revealing_words(table["masked"].astype(str), table["factual_class"].astype(str),
                                class_words, mask)  # fmt: skip
    out, classes = [], []
    for row, cls in zip(targets, row_classes, strict=True):
        text = neutral_context(row.text, mask, revealing)
        if text is not None:
            out.append(RowTargets(text, row.words))
            classes.append(str(cls))
    if not out:
        logger.warning("no scored row keeps a neutral context before its mask: balancing on "
                       "the rows themselves (pass balance_data= for sentences of your own)")  # fmt: skip
        return list(targets), [str(c) for c in row_classes]
    logger.info("balance sentences: %d neutral contexts of %d rows (%d class-revealing words)",
                len(out), len(targets), len(revealing))  # fmt: skip
    return out, classes

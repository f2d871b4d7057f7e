"""The decoder evaluation's task, built from a run's data: which rows, which words at their
mask, which neutral texts the LMS scores (and which words it then ignores)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from gradiend.data.examples import cap_per_group, row_words
from gradiend.evaluator.decoder_eval import DecoderTask
from gradiend.evaluator.decoder_specificity import (
    control_rows,
    control_sentences,
    parse_control_pairs,
)
from gradiend.evaluator.encoder_rows import fill_masks
from gradiend.lm.objectives import Objective
from gradiend.lm.scoring import RowTargets, case_variants
from gradiend.trainer.eval_data import EvalData

logger = logging.getLogger(__name__)


def build_decoder_task(
    data: EvalData,
    objective: Objective,
    classes: list[str],
    strengthen: bool,
    max_rows: int | None,
    max_neutral: int | None,
    model_fingerprint: Any = None,
    controls: tuple[tuple, list] = ((), []),
    balance: bool | list[str] = False,
) -> DecoderTask:
    """The frozen task of one ``evaluate_decoder`` call; ``controls``: the parsed control
    pairs and their sentences (``control_sentences``), found before the model loads;
    ``balance``: an objective's sentences (``True``: the default, the scored rows)."""
    rows = decoder_rows(data, classes, strengthen, max_rows)
    targets, mode = row_targets(data, objective, rows)
    lms_texts, ignore = lms_texts_of(data, objective.mask, rows, max_neutral)
    check_rows = decoder_rows(data, list(data.target_classes), True, max_rows)
    check_targets, _ = row_targets(data, objective, check_rows)
    pairs, found = controls
    control_targets, control_classes, owner = control_rows(pairs, found, objective.mask)
    return DecoderTask(
        target_classes=tuple(data.target_classes),
        rows=rows,
        targets=tuple(targets),
        target_mode=mode,
        lms_texts=tuple(lms_texts),
        ignore_words=tuple(ignore),
        neutral_pool=tuple(data.neutral_texts()),
        model_fingerprint=model_fingerprint,
        check_targets=tuple(check_targets),
        check_row_classes=tuple(check_rows["factual_class"].astype(str)),
        control_pairs=tuple(pairs),
        control_targets=tuple(control_targets),
        control_classes=tuple(control_classes),
        control_owner=tuple(owner),
        balance_targets=tuple(balance_targets(data, objective, targets, balance)),
    )


def balance_targets(
    data: EvalData, objective: Objective, targets: list[RowTargets], balance: bool | list[str]
) -> list[RowTargets]:
    """The sentences an objective balances on: ``True`` → the scored rows of both classes
    (their class words at the mask, as for the class probabilities); a list → the user's
    masked sentences with the class words (``decoder_eval_targets`` when it maps them);
    ``False`` → none."""
    if balance is True:
        return list(targets)
    if not balance:
        return []
    spec = data.decoder_eval_targets
    if isinstance(spec, dict) and all(c in spec for c in data.target_classes):
        words = {c: [v for w in _as_list(spec[c]) for v in case_variants(str(w))]
                 for c in data.target_classes}  # fmt: skip
    else:
        words = data.class_words()
    if _overlap(words, objective.scorer()):
        logger.warning("the target classes share words: their probabilities on the balance "
                       "sentences overlap; pass decoder_eval_targets={class: [words]}")  # fmt: skip
    return [RowTargets(text, words) for text in balance]


def find_controls(data: EvalData, control_pairs: Any) -> tuple[tuple, list]:
    """The checked control pairs and their sentences (the pair's own texts, else the run's
    neutral texts): bad pairs are refused before any model is loaded."""
    pairs = parse_control_pairs(control_pairs)
    if not pairs:
        return (), []
    pool = data.neutral_texts() if data.neutral is not None else []
    return pairs, control_sentences(pairs, pool)


def decoder_rows(
    data: EvalData, classes: list[str], strengthen: bool, cap: int | None
) -> pd.DataFrame:
    """Held-out pair rows of the classes that the requested directions are measured on."""
    tcs = data.target_classes
    needed = {o for c in classes for o in tcs if (o != c) == strengthen}
    df = None
    for split in ("test", "validation", "train"):
        df = data.split(split)
        df = df[(df["factual_class"] != df["alternative_class"]) & df["factual_class"].isin(needed)]
        if len(df):
            if split != "test":
                logger.warning("no test rows for the decoder evaluation; using %s", split)
            break
    if df is None or not len(df):
        raise ValueError(f"no rows of classes {sorted(needed)} to evaluate the decoder on")
    return cap_per_group(df, cap, data.seed).reset_index(drop=True)


def row_targets(
    data: EvalData, objective: Objective, rows: pd.DataFrame
) -> tuple[list[RowTargets], str]:
    """Single-mask texts with the words of every target class (static sets with case
    variants, an explicit mapping, or per-row words: ``decoder_eval_targets="label"``)."""
    mask, tcs, spec = objective.mask, data.target_classes, data.decoder_eval_targets
    static = None
    if isinstance(spec, dict):
        static = {
            c: [v for w in _as_list(spec[c]) for v in case_variants(str(w))]
            for c in tcs
            if c in spec
        }
    elif spec != "label":
        static = data.class_words()
        if _overlap(static, objective.scorer()):
            logger.info("the classes share words; scoring the decoder per row")
            static = None
    out = []
    for rec in rows.to_dict("records"):
        text, fact, alt = _single_mask(rec, mask)
        words = (
            static
            if static is not None
            else {rec["factual_class"]: [fact], rec["alternative_class"]: [alt]}
        )
        out.append(RowTargets(text, words))
    return out, "static" if static is not None else "label"


def lms_texts_of(
    data: EvalData, mask: str, rows: pd.DataFrame, cap: int | None
) -> tuple[list[str], list[str]]:
    """Neutral texts (capped), else the rows with their factual words filled in, whose
    target words are then ignored."""
    if data.neutral is not None and len(data.neutral):
        texts = data.neutral_texts()
        return (texts[:cap] if cap else texts), []
    texts = list(dict.fromkeys(fill_masks(r, mask) for r in rows.to_dict("records")))
    words = data.class_words()
    return (texts[:cap] if cap else texts), sorted({w for ws in words.values() for w in ws})


def _single_mask(rec: dict, mask: str) -> tuple[str, str, str]:
    """The row's text with one target mask (the one whose word is the row's factual word; the
    others filled with their own words), and the factual/alternative word at it."""
    facts, alts = row_words(rec)
    parts = rec["masked"].split(mask)
    n = len(parts) - 1
    lower = [f.lower() for f in facts]
    idx = lower.index(str(rec["factual"]).lower()) if str(rec["factual"]).lower() in lower else 0
    text = parts[0]
    for i, part in enumerate(parts[1:]):
        text += (mask if i == idx else facts[min(i, len(facts) - 1)]) + part
    idx = min(idx, n - 1)
    return text, facts[min(idx, len(facts) - 1)], alts[min(idx, len(alts) - 1)]


def _overlap(words: dict[str, list[str]], objective) -> bool:
    unk = objective.tokenizer.unk_token_id
    ids = {
        c: {t for w in ws if unk not in (t := tuple(objective.word_ids(w)))}
        for c, ws in words.items()
    }
    sets = list(ids.values())
    return any(sets[i] & sets[j] for i in range(len(sets)) for j in range(i + 1, len(sets)))


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]

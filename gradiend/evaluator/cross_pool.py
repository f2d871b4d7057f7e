"""The shared test pool of many runs and every run's encodings of it, computed once.

The cross-encoding family (``cross_family.py``) reads one ``CrossEncoderSummary``: the held-out
rows of every run pooled over all their directed transitions (``a→b``, identity ``a→a``), and
the encoding of every pooled row by every run (by each selected seed of a run). Each run's
GRADIEND is loaded once and encodes the whole pool in one pass; every matrix is then a view of
those numbers, so several matrices and figures cost no further base-model passes.

A run is a trainer (``TextPredictionTrainer``: ``eval_data`` and ``get_model()``), a saved
run's ``RunEvaluation`` (``data`` and ``get_model()``, see ``gradiend.pipeline``), a mapping or
list of those, or a suite (anything with ``.trainers``). The pool holds every run's trained
transitions and (``include_other_classes``) the evaluation-only rows of every other transition
between its classes. A sentence held out by one run but trained on by another is left out of
the pool: no run is scored on its own training sentences. A run that did not converge is
refused (``UnconvergedError``) unless ``allow_unconverged=True``; its matrix rows are then
marked ``" (NOT CONVERGED)"``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradiend._io import read_json_cache
from gradiend.data.examples import cap_per_group
from gradiend.evaluator.converged_runs import check_runs, marked
from gradiend.lm.items import build_items
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import SEED_PREFIX
from gradiend.trainer.eval_data import EvalData

logger = logging.getLogger(__name__)

SEED_SELECTIONS = ("best", "all_convergent", "all_tried")
ROW_KEY = ["masked", "factual", "alternative", "factual_class", "alternative_class"]
SENTENCE_KEY = ["masked", "factual", "factual_class"]  # one sentence, whatever its counterfactual
ARROW = "→"


@dataclass(frozen=True)
class CrossRun:
    """One labelled run as the cross-encoding family needs it."""

    label: str
    data: EvalData
    get_model: Callable[[], ModelWithGradiend]
    layout: Any = None  # RunLayout: where its seeds are
    args: Any = None  # TrainingArguments (batch size, positive_class), when known

    @property
    def target_classes(self) -> tuple[str, str]:
        return tuple(self.data.target_classes[:2])

    @property
    def label_side(self) -> str:
        """Which class of a row its +1 label follows (``eval_data.encoding_labels``): the
        factual class when the decoder reconstructs the alternative gradient, else the
        counterfactual (alternative) class."""
        return "factual" if self.data.target == "alternative" else "counterfactual"


def resolve_runs(runs: Any) -> list[CrossRun]:
    """Labelled runs from a suite, a mapping or a list of trainers / ``RunEvaluation``s."""
    if hasattr(runs, "trainers") and not isinstance(runs, Mapping):
        runs = runs.trainers
    if isinstance(runs, (str, os.PathLike)) or _is_run(runs):
        runs = [runs]
    if isinstance(runs, Mapping):
        labelled = {str(k): v for k, v in runs.items()}
    else:
        labelled = {}
        for i, run in enumerate(list(runs)):
            name = _name(run) or f"run {i}"
            labelled[name if name not in labelled else f"{name} ({i})"] = run
    if not labelled:
        raise ValueError("no runs to cross-encode: pass trainers (a list, a dict or a suite)")
    return [_cross_run(label, run) for label, run in labelled.items()]


def _is_run(obj: Any) -> bool:
    return callable(getattr(obj, "get_model", None)) and (
        hasattr(obj, "eval_data") or hasattr(obj, "data")
    )


def _name(run: Any) -> str | None:
    layout = getattr(run, "layout", None)
    run_id = getattr(run, "run_id", None)
    if run_id:
        return str(run_id)
    return None if layout is None else layout.run_dir.name


def _cross_run(label: str, run: Any) -> CrossRun:
    if not _is_run(run):
        raise TypeError(
            f"run {label!r} is a {type(run).__name__}: the cross-encoding matrices encode each "
            "run's held-out rows, so they need its data and base model. Pass trainers, a "
            "suite, or saved runs opened with gradiend.pipeline.build_evaluation(config); "
            "run folders alone suit the weight comparisons (compute_similarity_matrix)"
        )
    data = run.eval_data if hasattr(run, "eval_data") else run.data
    if data is None or len(data.target_classes) < 2:
        raise ValueError(f"run {label!r} has no data with two target classes to encode")
    layout, args = getattr(run, "layout", None), getattr(run, "args", None)
    return CrossRun(label, data, run.get_model, layout, args)


def check_seed_selection(seed_selection: str) -> None:
    if seed_selection not in SEED_SELECTIONS:
        raise ValueError(
            f"unknown seed_selection {seed_selection!r}; choose one of {SEED_SELECTIONS}"
        )


def seed_members(run: CrossRun, seed_selection: str) -> Iterator[tuple[str, ModelWithGradiend]]:
    """``(member name, model)`` of each selected seed, loaded one at a time. ``best`` is the
    run's chosen GRADIEND; the other selections read its saved seeds (a run trained with one
    seed, or saved without its seeds, has only its best)."""
    best = run.get_model()
    dirs = _seed_dirs(run, seed_selection)
    if not dirs:
        yield run.label, best
        return
    for name, path in dirs:
        gradiend = GradiendModel.from_pretrained(path, device=best.gradiend.W_e.device)
        yield f"{run.label}/{name}", ModelWithGradiend(best.lm, gradiend, objective=best.objective)


def _seed_dirs(run: CrossRun, seed_selection: str) -> list[tuple[str, Any]]:
    if seed_selection == "best" or run.layout is None:
        return []
    dirs = run.layout.seed_runs()
    if seed_selection == "all_convergent":
        report = read_json_cache(run.layout.seed_report) or {}
        keep = {f"{SEED_PREFIX}{s}" for s in report.get("convergent_seeds", [])}
        dirs = [d for d in dirs if d.name in keep]
        if not dirs:
            logger.warning("run %r records no convergent saved seed; using its best", run.label)
    return [(d.name, d) for d in dirs]


# --------------------------------------------------------------------------- the shared pool
def shared_pool(
    runs: list[CrossRun],
    split: str = "test",
    max_size: int | None = None,
    include_other_classes: bool = True,
) -> pd.DataFrame:
    """Every run's ``split`` rows, pooled (each distinct row once) over all transitions
    (``include_other_classes``: also each run's untrained ones), less the sentences any run
    trained on; at most ``max_size`` rows per transition (seeded)."""
    tables = [r.data.table.df for r in runs]
    if include_other_classes:
        tables += [r.data.table.other_rows() for r in runs]
    tables = [t for t in tables if len(t)]
    cols = ROW_KEY + (["mask_labels"] if all("mask_labels" in t for t in tables) else [])
    rows = pd.concat([t[cols + ["split"]] for t in tables], ignore_index=True)
    key = _key(rows, ROW_KEY)
    held = rows[rows["split"] == split]
    if split != "train":
        trained = set(_key(rows[rows["split"] == "train"], SENTENCE_KEY))
        dropped = _key(held, SENTENCE_KEY).isin(trained).to_numpy()
        if dropped.any():
            logger.info("%d pooled row(s) are another run's training rows: left out", dropped.sum())
        held = held[~dropped]
    held = held.loc[~key[held.index].duplicated()].drop(columns="split")
    if held.empty:
        raise ValueError(f"the runs have no {split!r} rows to pool; choose another split")
    held = held.assign(transition=held["factual_class"] + ARROW + held["alternative_class"])
    held["feature_class_id"] = held["transition"]  # cap_per_group groups by this column
    held = cap_per_group(held, max_size, runs[0].data.seed).drop(columns="feature_class_id")
    return held.sort_values(["transition", "masked"], kind="stable").reset_index(drop=True)


def _key(rows: pd.DataFrame, columns: list[str]) -> pd.Series:
    if rows.empty:
        return pd.Series([], index=rows.index, dtype=str)
    return rows[columns].astype(str).agg("\x1f".join, axis=1)


# --------------------------------------------------------------------------- the summary value
@dataclass(frozen=True, eq=False)
class CrossEncoderSummary:
    """The shared pool and every run's encodings of it (``build_cross_task_encoder_summary``).

    ``pool``: one row per pooled example (``transition``, classes, words, text);
    ``encodings``: ``[pool row, member]`` first-latent encodings, a member being a run
    (``label``) or one of its seeds (``label/seed_<n>``); ``members``: label → its members;
    ``runs``: label → ``CrossRun`` (target classes, label side); ``unconverged``: label →
    what its record says, for the runs allowed in unconverged (``allow_unconverged``).
    """

    pool: pd.DataFrame
    encodings: pd.DataFrame
    members: dict[str, tuple[str, ...]]
    runs: dict[str, CrossRun]
    split: str
    seed_selection: str
    unconverged: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.members)

    def row_label(self, label: str) -> str:
        """A run's label as a matrix row: marked when the run did not converge."""
        return marked(label, self.unconverged)

    def transitions(self, include_identity: bool = True) -> list[str]:
        """The pool's directed transitions in pool order (identity ``a→a`` last)."""
        pairs = self.pool.drop_duplicates("transition")
        moving = pairs[pairs["factual_class"] != pairs["alternative_class"]]["transition"]
        same = pairs[pairs["factual_class"] == pairs["alternative_class"]]["transition"]
        return list(moving) + (list(same) if include_identity else [])

    def feature_classes(self) -> list[str]:
        """Every class of the pool: the runs' target classes first, in run order."""
        targets = [c for r in self.runs.values() for c in r.target_classes]
        found = list(self.pool["factual_class"]) + list(self.pool["alternative_class"])
        return list(dict.fromkeys([c for c in targets if c in set(found)] + found))

    def long(self) -> pd.DataFrame:
        """Per (run, member, transition): ``mean``, ``std`` and ``n`` of the encodings."""
        frames = []
        for label, members in self.members.items():
            for member in members:
                enc = pd.DataFrame(
                    {"transition": self.pool["transition"], "e": self.encodings[member]}
                )
                stats = enc.groupby("transition", sort=False)["e"].agg(["mean", "std", "count"])
                frames.append(
                    stats.rename(columns={"count": "n"})
                    .reset_index()
                    .assign(run=label, member=member)
                )
        return pd.concat(frames, ignore_index=True)[
            ["run", "member", "transition", "mean", "std", "n"]
        ]


def build_cross_task_encoder_summary(
    trainers: Any,
    split: str = "test",
    max_size: int | None = None,
    seed_selection: str = "best",
    batch_size: int | None = None,
    *,
    include_other_classes: bool = True,
    allow_unconverged: bool = False,
) -> CrossEncoderSummary:
    """Pool every run's ``split`` rows over all transitions and encode the pool with each run
    (each selected seed) once; every cross-encoding matrix can be read from the result.

    ``max_size`` caps the rows per transition; ``batch_size`` defaults to each run's
    ``eval_batch_size`` (32 without one). Runs that did not converge are refused before any
    encoding unless ``allow_unconverged=True``.
    """
    check_seed_selection(seed_selection)
    runs = resolve_runs(trainers)
    bad = check_runs({r.label: [r] for r in runs}, "cross-encoding", allow_unconverged)
    pool = shared_pool(runs, split, max_size, include_other_classes)
    columns: dict[str, np.ndarray] = {}
    members: dict[str, tuple[str, ...]] = {}
    for run in runs:
        size = batch_size or getattr(run.args, "eval_batch_size", None) or 32
        names = []
        for name, model in seed_members(run, seed_selection):
            items = build_items(pool, model.objective)
            enc = model.encode_items(items, model.source, size, progress=False, split=True)
            columns[name] = enc[:, 0].detach().cpu().double().numpy()
            names.append(name)
        members[run.label] = tuple(names)
        logger.info(
            "run %r encoded %d pooled rows (%d member(s))", run.label, len(pool), len(names)
        )
    encodings = pd.DataFrame(columns, index=pool.index)
    return CrossEncoderSummary(
        pool, encodings, members, {r.label: r for r in runs}, split, seed_selection, dict(bad)
    )

"""The stages of a run, driven by a ``RunConfig``: data → train → evaluate → rewrite, plus
cross-run comparison and steering. Each function is a few calls of the public API (the CLI's
subcommands call exactly these); each records its wall time in ``<run_dir>/timings.json``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradiend import distributed as dist
from gradiend._io import read_json, write_json
from gradiend.config import ConfigError, RunConfig
from gradiend.data import TextPredictionDataCreator
from gradiend.evaluator.compare import compare
from gradiend.evaluator.figures import (
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
)
from gradiend.model import ModelWithGradiend
from gradiend.model.runs import label_runs
from gradiend.model.word_rows import DEFAULT_REGION
from gradiend.run_layout import (
    FIG_SHIFTS,
    FIG_SIMILARITY_HEATMAP,
    FIG_TOPK_HEATMAP,
    FIG_VENN,
    TIMINGS,
    RunLayout,
    figure_file,
    similarity_csv,
)
from gradiend.trainer import TextPredictionTrainer
from gradiend.trainer.saved_run import saved_run

logger = logging.getLogger(__name__)


def record_timing(run_dir: str | Path, stage: str, seconds: float) -> None:
    """Merge ``{stage: seconds}`` into ``<run_dir>/timings.json`` (rank 0 only)."""
    if not dist.is_main():
        return
    path = Path(run_dir) / TIMINGS
    data = read_json(path) if path.is_file() else {}
    data[stage] = round(float(seconds), 3)
    write_json(path, data)


# --------------------------------------------------------------------------- data
def build_creator(cfg: RunConfig):

    cfg.require("creator.base_data", "creator.feature_targets", why="the data stage needs them")
    return TextPredictionDataCreator(**cfg.creator_kwargs())


def make_data(cfg: RunConfig) -> dict[str, Any]:
    """``{"training", "neutral", "stats"}`` from the creator (neutral only when the config has a
    ``generate_neutral_data`` section). Files go to ``creator.output_dir`` when it is set."""
    creator = build_creator(cfg)
    t0 = time.perf_counter()
    training = creator.generate_training_data(**cfg.section("generate_training_data"))
    stats = dict(creator.stats or {})
    neutral = None
    if cfg.generate_neutral_data:
        neutral = creator.generate_neutral_data(**cfg.section("generate_neutral_data"))
    seconds = time.perf_counter() - t0
    return {"training": training, "neutral": neutral, "stats": stats, "seconds": seconds}


# --------------------------------------------------------------------------- trainer
def _trainer_kwargs(cfg: RunConfig, why: str) -> tuple[dict[str, Any], float | None]:
    """The config's ``trainer`` keywords; without ``trainer.data`` the data comes from the
    creator sections (and the seconds that took)."""
    cfg.require("trainer.model", why=why)
    kwargs = cfg.section("trainer")
    seconds = None
    if kwargs.get("data") is None:
        data = make_data(cfg)
        kwargs["data"], seconds = data["training"], data["seconds"]
        if kwargs.get("eval_neutral_data") is None and data["neutral"] is not None:
            kwargs["eval_neutral_data"] = data["neutral"]
    return kwargs, seconds


def build_trainer(cfg: RunConfig, progress: bool = True):
    """``TextPredictionTrainer(**trainer, args=TrainingArguments(**training_args))``; without
    ``trainer.data`` the data comes from the creator sections."""
    kwargs, seconds = _trainer_kwargs(cfg, "the base model to train on")
    kwargs.setdefault("progress", progress)
    trainer = TextPredictionTrainer(**kwargs, args=cfg.training_arguments())
    if seconds is not None:
        record_timing(trainer.run_dir, "data", seconds)
    return trainer


def build_evaluation(cfg: RunConfig, progress: bool = True, with_data: bool = True):
    """The saved run's ``RunEvaluation`` (no trainer: nothing is trained or re-extracted;
    ``with_data=False``, for a rewrite, reads no data either)."""
    if with_data:
        kwargs, _ = _trainer_kwargs(cfg, "the base model the GRADIEND was trained on")
    else:
        cfg.require("trainer.model", why="the base model to rewrite")
        kwargs = cfg.section("trainer")
    progress = kwargs.pop("progress", progress)
    return saved_run(kwargs, cfg.training_arguments(), progress, with_data)


def train(cfg: RunConfig, trainer=None, plot: bool = True) -> dict[str, Any]:
    """Train (or reuse the cached run), save the resolved config beside it, plot convergence."""
    trainer = trainer or build_trainer(cfg)
    t0 = time.perf_counter()
    trainer.train()
    record_timing(trainer.run_dir, "train", time.perf_counter() - t0)
    if dist.is_main():
        cfg.save(trainer.layout.run_config, resolved=True)
    stats = trainer.get_training_stats()
    out = {
        "run_dir": str(trainer.run_dir),
        "model_dir": str(trainer.model_dir),
        "correlation": stats.get("best_score_checkpoint", {}).get("correlation"),
        "converged": stats.get("convergence_info", {}).get("converged"),
    }
    if plot and dist.is_main():
        out["convergence_plot"] = trainer.plot_training_convergence(show=False)["path"]
    return out


def parse_pair(text: str) -> list[str]:
    """``"der,die"`` → ``["der", "die"]`` (two different, non-empty class names)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ConfigError(
            "--pairs",
            f"{text!r} is not a pair of two different class names",
            "write them joined by a comma, e.g. --pairs der,die der,das",
        )
    return parts


def pair_configs(
    cfg_path: str | Path,
    pairs: Sequence[str],
    overrides: Sequence[str] = (),
    trust_remote_code: bool = False,
) -> list[RunConfig]:
    """One ``RunConfig`` per class pair: ``trainer.target_classes`` set to the pair and
    ``trainer.run_id`` to ``<run_id>/<a>_<b>`` (``<a>_<b>`` without a run_id). All are read
    and checked before anything is trained."""
    base = RunConfig.load(cfg_path, overrides, trust_remote_code=trust_remote_code)
    run_id = base.trainer.get("run_id")
    out = []
    for text in pairs:
        a, b = parse_pair(text)
        rid = f"{run_id}/{a}_{b}" if run_id else f"{a}_{b}"
        extra = [f"trainer.target_classes=[{a!r}, {b!r}]", f"trainer.run_id={rid!r}"]
        out.append(
            RunConfig.load(cfg_path, [*overrides, *extra], trust_remote_code=trust_remote_code)
        )
    return out


def train_pairs(
    cfg_path: str | Path,
    pairs: Sequence[str],
    overrides: Sequence[str] = (),
    plot: bool = True,
    evaluate_runs: bool = False,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Train one GRADIEND per class pair (each with its seeds), then optionally evaluate it.
    Under torchrun with at least as many pairs as ranks the pairs are spread over the ranks
    (``gradiend.distributed.run_suite``); otherwise each pair uses every rank in turn."""
    configs = pair_configs(cfg_path, pairs, overrides, trust_remote_code)

    def one(cfg: RunConfig) -> dict[str, Any]:
        out = train(cfg, plot=plot)
        if evaluate_runs:
            out.update(evaluate(cfg, plot=plot))
        out["target_classes"] = cfg.trainer.get("target_classes")
        out["rank"] = int(os.environ.get("RANK", "0"))  # which process trained it
        return out

    timeout = configs[0].training_args.get("distributed_timeout_s", dist.DEFAULT_TIMEOUT_S)
    return dist.run_suite(configs, one, timeout_s=timeout)


def evaluate(
    cfg: RunConfig, trainer=None, encoder: bool = True, decoder: bool = True, plot: bool = True
) -> dict[str, Any]:
    """``evaluate_encoder`` and/or ``evaluate_decoder`` with the config's arguments (on the
    trainer when given, else on the saved run)."""
    trainer = trainer or build_evaluation(cfg)
    out: dict[str, Any] = {"run_dir": str(trainer.run_dir)}
    if encoder:
        t0 = time.perf_counter()
        kw = {"return_df": True, **cfg.section("evaluate_encoder")}
        if plot:
            kw.setdefault("plot", True)
            kw.setdefault("plot_kwargs", {"show": False})
        enc = trainer.evaluate_encoder(**kw)
        record_timing(trainer.run_dir, "evaluate_encoder", time.perf_counter() - t0)
        out["encoder"] = {k: enc[k] for k in ("correlation", "mean_by_feature_class") if k in enc}
        out["encoder"]["neutral_mean_by_type"] = enc.get("neutral_mean_by_type", {})
        if enc.get("plot"):
            out["encoder_plot"] = enc["plot"]["path"]
    if decoder:
        t0 = time.perf_counter()
        kw = {"plot": plot, **cfg.section("evaluate_decoder")}
        dec = trainer.evaluate_decoder(**kw)
        record_timing(trainer.run_dir, "evaluate_decoder", time.perf_counter() - t0)
        out["decoder"] = {k: v for k, v in dec.items() if k != "grid"}
        shifts = trainer.layout.figure(FIG_SHIFTS, trainer.img_format)
        if plot and shifts.exists():
            out["decoder_plot"] = str(shifts)
    return out


def rewrite(cfg: RunConfig, trainer=None) -> dict[str, Any]:
    """``rewrite_base_model`` at the selected point; saved to ``rewrite_base_model.output_dir``
    (default ``<run_dir>/<class>_rewritten``)."""
    trainer = trainer or build_evaluation(cfg, with_data=False)
    kw = cfg.section("rewrite_base_model")
    target = kw.get("target_class") or trainer.target_classes[0]
    kw.setdefault("target_class", target)
    kw.setdefault("output_dir", str(trainer.layout.rewritten_dir(target)))
    t0 = time.perf_counter()
    trainer.rewrite_base_model(**kw)
    record_timing(trainer.run_dir, "rewrite", time.perf_counter() - t0)
    return {"rewritten_model": kw["output_dir"], "target_class": kw["target_class"]}


# --------------------------------------------------------------------------- compare
def compare_runs(
    runs: Sequence[str | Path] | None = None,
    topk: int | float = 1000,
    part: str | None = None,
    measure: str = "topk_overlap",
    output_dir: str | Path | None = None,
    img_format: str = "png",
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
) -> dict[str, Any]:
    """Similarity matrix of several runs (run or model folders), its heatmap and the top-k
    Venn diagram (UpSet bars beyond three runs), by importance ``part`` (default: each run's
    own ranking, see ``GradiendModel.resolve_part``) over ``region`` (default ``rest``: all but
    the feature words' own embedding rows). Every run is loaded once (``compare``).
    Writes ``similarity.csv``, ``topk_heatmap.<fmt>`` (``similarity_heatmap.<fmt>`` for a
    measure other than ``topk_overlap``) and ``topk_venn.<fmt>`` into ``output_dir`` when given.
    A run that did not converge is refused unless ``allow_unconverged`` (then marked)."""
    runs = [str(r) for r in runs or []]
    if len(runs) < 2:
        raise ValueError(f"compare needs at least two runs, got {len(runs)}")
    found = compare(label_runs(runs), measure=measure, topk=topk, part=part, region=region,
                    allow_unconverged=allow_unconverged)  # fmt: skip
    out_dir = Path(output_dir) if output_dir is not None else None

    def path(stem: str) -> Path | None:
        return None if out_dir is None else figure_file(out_dir, stem, img_format)

    plot = {"show": False, "img_format": img_format}
    if measure == "topk_overlap":
        heat = plot_topk_overlap_heatmap(found, output_path=path(FIG_TOPK_HEATMAP), **plot)
    else:
        heat = plot_similarity_heatmap(found, output_path=path(FIG_SIMILARITY_HEATMAP), **plot)
    venn = plot_topk_overlap_venn(found, output_path=path(FIG_VENN), **plot)
    result: dict[str, Any] = {
        "labels": list(found.frame.index),
        "matrix": found.frame.to_numpy().tolist(),
        "part": found.part,  # the ranking used (each run's default when part=None)
        "region": found.region,
        "heatmap": heat["path"],
        "venn": venn["path"],
        "regions": venn["data"]["regions"],
        "unconverged": found.unconverged,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv = similarity_csv(out_dir)
        found.frame.to_csv(csv)
        result["csv"] = str(csv)
    return result


def seed_dirs(run_dir: str | Path) -> list[str]:
    """Saved seed runs of a run folder (``seeds/seed_*`` with weights)."""
    return [str(d) for d in RunLayout.locate(run_dir).seed_runs()]


# --------------------------------------------------------------------------- steering
def load_run_model(run_dir: str | Path, base_model: Any = None):
    """The ``ModelWithGradiend`` of a run folder (or model folder / hub id), with the base model
    it records (or ``base_model``)."""
    return ModelWithGradiend.from_pretrained(run_dir, base_model=base_model)


def selected_strength(run_dir: str | Path, target_class: str) -> float | None:
    """The learning rate the decoder evaluation selected for strengthening ``target_class``."""
    path = RunLayout.locate(run_dir).decoder_results
    if not path.is_file():
        return None
    entry = read_json(path).get(target_class)
    return float(entry["learning_rate"]) if isinstance(entry, dict) else None


# --------------------------------------------------------------------------- everything
def run_all(cfg: RunConfig, plot: bool = True) -> dict[str, Any]:
    """data → train → evaluate (encoder and decoder) → rewrite → compare the seeds."""
    trainer = build_trainer(cfg)
    out = train(cfg, trainer, plot=plot)
    out.update(evaluate(cfg, trainer, plot=plot))
    if cfg.rewrite_base_model or cfg.evaluate_decoder:
        out.update(rewrite(cfg, trainer))
    seeds = seed_dirs(trainer.run_dir)
    if len(seeds) >= 2 and plot:
        kw = {k: v for k, v in cfg.section("compare").items() if k not in ("runs", "output_dir")}
        kw.setdefault("allow_unconverged", True)  # the kept GRADIEND converged; a seed is marked
        cmp = compare_runs(seeds, output_dir=trainer.run_dir, **kw)
        out.update(
            topk_heatmap_plot=cmp["heatmap"], topk_venn_plot=cmp["venn"], topk_overlap=cmp["matrix"]
        )
    return out

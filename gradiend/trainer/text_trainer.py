"""TextPredictionTrainer: the facade of the published workflow. It only wires the stages.

Training runs through ``trainer.training`` and ``trainer.seeds``; the evaluations, the rewrite
and their figures through ``trainer.evaluation.RunEvaluation`` (which needs no trainer); the
run folder's paths come from ``run_layout.RunLayout``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend import distributed as dist
from gradiend._io import clean_orphans, read_json
from gradiend.data.examples import ExampleTable
from gradiend.data.fingerprint import data_hash
from gradiend.data.pairing import ClassOptions
from gradiend.data.transitions import resolve_positive_class
from gradiend.lm import fisher as fisher_mod
from gradiend.lm.devices import model_devices
from gradiend.lm.items import build_items
from gradiend.lm.loading import BaseLM, describe_model
from gradiend.lm.mlm_head import MLMHead
from gradiend.lm.objectives import Objective
from gradiend.model import word_rows
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import CONTEXT, TRAINING, RunLayout
from gradiend.trainer import bias_task, lr_search, run_cache, trainer_figures, training, watch
from gradiend.trainer import objective as objective_mod
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.data_checks import (
    check_neutral,
    check_output_dirs,
    check_table,
    check_trainer_inputs,
)
from gradiend.trainer.eval_data import EvalData, encoding_labels, read_examples, read_neutral
from gradiend.trainer.evaluation import RunEvaluation
from gradiend.trainer.fingerprint import training_fingerprint
from gradiend.trainer.seeds import SeedJob, run_seeds
from gradiend.trainer.trainer_config import trainer_kwargs
from gradiend.trainer.validation_encodings import train_on_main

logger = logging.getLogger(__name__)

__all__ = ["TextPredictionTrainer", "encoding_labels"]

_CONTEXT_KEYS = ("source", "target", "target_classes", "feature_class_encoding_direction")


def _delegated(method):
    """A trainer method that runs ``method`` on the trainer's ``RunEvaluation`` (same name,
    signature and docstring)."""

    @functools.wraps(method)
    def delegate(self, *args, **kwargs):
        result = method(self._evaluation(), *args, **kwargs)
        watch.log_call(self, method, args, kwargs, result)  # to the trackers of report_to
        return result

    return delegate


@trainer_kwargs
class TextPredictionTrainer:
    """Train, evaluate and apply a GRADIEND for one pair of classes of masked sentences."""

    def __init__(
        self,
        model: Any,
        run_id: str | None = None,
        data: Any = None,
        target_classes: list[str] | None = None,
        *,
        args: TrainingArguments | None = None,
        training_args: TrainingArguments | None = None,
        tokenizer: Any = None,
        masked_col: str = "masked",
        split_col: str | None = "split",
        label_col: str = "label",
        label_class_col: str = "label_class",
        alternative_col: str = "alternative",
        alternative_class_col: str = "alternative_class",
        eval_neutral_data: Any = None,
        eval_neutral_additional_excluded_words: list[str] | None = None,
        eval_neutral_max_rows: int | None = None,
        decoder_eval_targets: dict | str | None = None,
        img_format: str = "png",
        mask: str = "[MASK]",
        progress: bool = True,
        hf_config: str | None = None,
        hf_split: str | list[str] | None = None,
        all_classes: list[str] | None = None,
        class_merge_map: dict[str, list[str]] | None = None,
        class_merge_transition_groups: list[list[str]] | None = None,
        transition_selection: Any = None,
        max_counterfactuals_per_sentence: int = 1,
        random_state: int | None = None,
        split_ratios: Any = (0.8, 0.1, 0.1),
    ):
        given = dict(locals())  # the column and class keywords, read by name below
        check_trainer_inputs(model, data, target_classes, run_id, eval_neutral_max_rows)
        self.args = args or training_args or TrainingArguments()
        if not isinstance(self.args, TrainingArguments):
            raise TypeError(f"args must be a TrainingArguments, got {type(self.args).__name__}")
        dist.init_from_env(self.args.distributed_timeout_s)  # under torchrun: split the work
        self.model_arg, self.tokenizer_arg = model, tokenizer
        self.run_id, self.mask, self.progress = run_id, mask, progress
        self.img_format = img_format
        self.decoder_eval_targets = decoder_eval_targets
        columns = {k: v for k, v in given.items() if k.endswith("_col")}  # in signature order
        check_neutral(eval_neutral_data, "text")
        options = ClassOptions(**{k: given[k] for k in ClassOptions.__dataclass_fields__})
        self._read_table(data, target_classes, columns, (hf_config, hf_split), options)
        self.neutral_df = read_neutral(eval_neutral_data, eval_neutral_max_rows, self.args.seed)
        self._check_snr_texts()
        self.layout = RunLayout.from_args(
            self.args.experiment_dir, run_id, self.args.output_dir, self.args.seed_runs_dir
        )
        self._check_dirs()
        self.neutral_excluded = {w.lower() for w in eval_neutral_additional_excluded_words or []}
        self._init_state()

    def _init_state(self) -> None:
        """What the trainer loads or builds later, empty until then."""
        self._lm: BaseLM | None = None
        self._model: ModelWithGradiend | None = None
        self._stats: dict | None = None
        self._objective_cache: Objective | None = None
        self._decoder_memo: dict = {}  # the base model's decoder scores, shared across calls
        self._hooks = None  # train()'s callbacks and checkpoints (trainer.watch)
        self._tracking = None  # the open trackers of report_to (gradiend.tracking.run)
        self._computer_factory = None  # a suite's shared gradient store (gradiend.suite)

    # ------------------------------------------------------------------ paths and data
    def _read_table(self, data, target_classes, columns: dict, hf: tuple, options) -> None:
        """The example table (classes, transitions, splits; every check that needs no model),
        the target pair, the positive class and the mask string."""
        self.class_options = options
        self.table: ExampleTable = read_examples(
            data, target_classes, columns, self.args, *hf, options
        )
        self.target_classes = self.table.target_classes
        self.positive_class = resolve_positive_class(self.args.positive_class, self.target_classes)
        self.mask = self.args.mask_placeholder if self.mask == "[MASK]" else self.mask
        check_table(self.table.df, self.target_classes, self.mask)

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    @property
    def model_dir(self) -> Path:
        return self.layout.model_dir

    @property
    def mlm_head_dir(self) -> Path:
        return self.layout.mlm_head

    @property
    def eval_data(self) -> EvalData:
        """What the evaluations read: the table, the neutral texts and how rows are labelled."""
        return EvalData(
            table=self.table,
            neutral=self.neutral_df,
            target=self.args.target,
            seed=self.args.seed,
            extra_excluded=frozenset(self.neutral_excluded),
            decoder_eval_targets=self.decoder_eval_targets,
            include_other_classes=self.args.include_other_classes,
        )

    def labels(self, df: pd.DataFrame) -> np.ndarray:
        return encoding_labels(df, self.target_classes, self.args.target)

    def _check_snr_texts(self) -> None:
        post = self.args.post_prune_config
        if post is not None and post.part == "snr" and not self._importance_texts():
            raise ValueError(
                "PostPruneConfig(part='snr') ranks by the neutral texts' gradient scale: pass "
                f"eval_neutral_data with ≥ {fisher_mod.MIN_TEXTS} texts and "
                "importance_neutral_texts > 0, or choose part='decoder-fit'"
            )

    def _check_dirs(self) -> None:
        """Refuse output folders that a save would wreck; tidy what a killed run left."""
        check_output_dirs(self.run_dir, self.model_dir, Path(self.args.experiment_dir or "runs"))
        if dist.is_main():  # the writer tidies; another node's processes look dead from here
            for folder in self.layout.tidy_folders():
                clean_orphans(folder)

    # ------------------------------------------------------------------ base model, objective
    def _base(self) -> BaseLM:
        if self._lm is None:
            self._lm = self.args.placement().load(self.model_arg, self.tokenizer_arg)
            logger.info(
                "base model on %s (%s)",
                ", ".join(str(d) for d in model_devices(self._lm.model)),
                next(self._lm.model.parameters()).dtype,
            )
        return self._lm

    @property
    def gradiend_device(self) -> torch.device:
        """Where the GRADIEND, its optimiser state and (when it fits) the gradient cache live."""
        return self.args.placement().gradiend_device(self._base().model)

    def _objective(self) -> Objective:
        if self._objective_cache is None:
            self._objective_cache = objective_mod.choose_objective(
                self._base(),
                self.args.prediction_objective,
                self.mlm_head_dir,
                self.mask,
                self.train_decoder_only_mlm_head,
            )
        return self._objective_cache

    def _param_patterns(self) -> list[str] | None:
        """``args.params``, or the objective's default selection (e.g. a seq2seq encoder)."""
        model = self._base().model  # a signal_scope of a gradient signal names them by meaning
        scoped = training.scope_patterns(self.args, model)
        return scoped or self.args.params or self._objective().default_params(model)

    def _head_labels(self) -> list[str]:
        return objective_mod.head_labels(self.table.df)

    def train_decoder_only_mlm_head(
        self,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        max_size: int | None = None,
        use_cache: bool = True,
    ) -> MLMHead:
        """Train (or reuse, when data and settings match) the MLM head of a decoder-only model
        on the training split, with the backbone frozen; saved in ``<run_dir>/decoder_mlm_head``.
        Defaults come from ``TrainingArguments.decoder_mlm_head_*``."""
        given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_size": max_size}
        cfg = dataclasses.replace(
            self.args.head_training(), **{k: v for k, v in given.items() if v is not None}
        )
        head = objective_mod.train_head(
            self._base(), self.table, cfg, self.mlm_head_dir, self.mask, use_cache, self.progress
        )
        self._objective_cache = None  # the next objective uses this head
        return head

    # ------------------------------------------------------------------ training
    def _fingerprint(self) -> dict:
        fp = training_fingerprint(
            self.args, describe_model(self.model_arg), data_hash(self.table.df), self.target_classes
        )
        extra = self._objective().fingerprint()
        if extra:
            fp["objective"] = extra
        texts = self._importance_texts()
        if texts:  # they rank the dimensions (snr) and so choose the post-pruned ones
            fp["importance_texts"] = fisher_mod.texts_hash(texts)
        return fp

    def _importance_texts(self) -> list[str]:
        """The neutral texts whose gradient scale ranks the dimensions (``snr``): the last
        ``importance_neutral_texts`` of ``eval_neutral_data``; none when there are fewer than
        ``fisher.MIN_TEXTS``."""
        n = self.args.importance_neutral_texts
        if not n or self.neutral_df is None or len(self.neutral_df) < fisher_mod.MIN_TEXTS:
            return []
        return self.neutral_df["text"].astype(str).tolist()[-n:]

    def _neutral_scale(self, computer, objective) -> torch.Tensor | None:
        """``F`` of the importance texts over the GRADIEND's dimensions (``None``: no texts)."""
        texts = self._importance_texts()
        if not texts:
            logger.info(
                "no neutral texts for the snr importance (eval_neutral_data with ≥ %d texts): "
                "dimensions are ranked by decoder-fit",
                fisher_mod.MIN_TEXTS,
            )
            return None
        max_length = objective.scorer().max_length
        try:
            return fisher_mod.fisher_of(self._base(), computer, max_length, texts, self.progress)
        except ValueError as err:  # e.g. no neutral gradient reaches the selected parameters
            post = self.args.post_prune_config
            if post is not None and post.part == "snr":
                raise
            logger.warning("snr importance unavailable (%s): ranking by decoder-fit", err)
            return None

    def train(self, callbacks: list | None = None) -> ModelWithGradiend:
        """Train (or reuse a matching cached run) and return the oriented best model.

        ``callbacks``: ``TrainingCallback`` objects called at the loop's events. With
        ``report_to``, ``save_strategy="steps"`` or ``runtime_monitor`` the run is also tracked,
        checkpointed (a killed run resumes) and watched (docs/training.md "Callbacks, tracking
        and checkpoints")."""
        self._check_dirs()
        run_watch = watch.RunWatch(self, callbacks)  # a missing tracker fails before loading
        self._hooks = run_watch.hooks
        with run_watch.running():
            model = self._train_or_reuse()
        run_watch.after_training(self)
        return model

    def _train_or_reuse(self) -> ModelWithGradiend:
        fingerprint = self._fingerprint()
        cached = self._try_cache(fingerprint)
        if cached is not None:
            return cached
        self._train_new(fingerprint)
        if not dist.is_main():  # the same weights as rank 0: read back what it wrote
            self._stats = read_json(self.layout.training)
            gradiend = GradiendModel.from_pretrained(self.model_dir, device=self.gradiend_device)
            self._model = ModelWithGradiend(self._base(), gradiend, objective=self._objective())
        return self._model

    def _train_new(self, fingerprint: dict) -> None:
        """Gradients → seeds → the saved GRADIEND (rank 0 trains; the others serve or wait)."""
        t0 = time.perf_counter()
        lm, objective, args = self._base(), self._objective(), self.args
        tuned = lr_search.take_tuned(self, fingerprint)  # gradients tune_learning_rate cached
        setup = tuned.setup if tuned else self._gradients(fingerprint, t0)
        reused = setup.batches.computed if tuned else 0  # computed by tune_learning_rate
        meta = self._metadata()  # + the feature tokens' embedding rows (their own region)
        meta[word_rows.METADATA_KEY] = word_rows.record(
            lm.model, word_rows.target_token_ids(setup.train_items)
        )

        def fit() -> None:  # rank 0 trains (the GRADIEND is small) and writes every artefact
            t = time.perf_counter()
            scale = self._neutral_scale(setup.computer, objective)
            setup.timings["importance_scale"] = time.perf_counter() - t
            variant = training.source_variant(
                setup, args, self.layout, fingerprint, self.labels(setup.val_df), self.progress
            )  # a remedy for a collapse may read another source
            job = dataclasses.replace(self._seed_job(scale), variant=setup.variant)
            job, searched = lr_search.search_for_job(job, args, setup)
            model, stats = run_seeds(
                job, setup.pmap, setup.indices, setup.batches, setup.evaluate, meta, fingerprint,
                variant,
            )  # fmt: skip
            stats["lr_search"] = searched or (tuned.summary if tuned else None)
            stats["timings"] = {
                **setup.timings,
                "training_total": time.perf_counter() - t0,
                **stats.get("timings", {}),
            }
            self._record(stats, model, scale, setup, reused)
            self._save(model, stats)
            self._model = ModelWithGradiend(lm, model, objective=objective)
            if self.args.plot_importance:
                self._plot_importance_after_training()

        train_on_main(fit, setup.shared)

    def _gradients(self, fingerprint: dict, t0: float) -> training.GradientSetup:
        """The training and validation gradients of this run, cached (``trainer.training``)."""
        lm, objective, args = self._base(), self._objective(), self.args
        setup = training.prepare(
            lm, objective, self.table, args, self._param_patterns(), self.gradiend_device,
            self.labels, self.progress, started=t0, computer_factory=self._computer_factory,
        )  # fmt: skip
        training.add_batches(setup, args, self.layout, fingerprint, self.progress)
        training.add_validation(setup, args, self.labels(setup.val_df), self.progress)
        return setup

    def _seed_job(self, scale: torch.Tensor | None) -> SeedJob:
        args = self.args
        return SeedJob(
            loop=args.loop(),
            plan=args.seed_plan(),
            convergence=args.convergence(),
            architecture=args.architecture(),
            layout=self.layout,
            target_classes=tuple(self.target_classes),
            device=self.gradiend_device,
            post_prune=args.post_prune_config,
            use_cache=args.use_cache,
            training_args=args.to_dict(),
            neutral_scale=scale,
            progress=self.progress,
            remedy=args.remedy_plan(),
            analysis=args.seed_analysis(),
            hooks=self._hooks,  # callbacks and periodic checkpoints of this train() call
        )

    def _record(self, stats: dict, model: GradiendModel, scale, setup, reused: int = 0) -> None:
        """What ``training.json`` says beyond the seeds: rankings, data split, passes (those of
        this ``train()``; ``reused``: batches ``tune_learning_rate`` computed before it)."""
        stats["importance"] = {  # which ranking the model's default is, and from what
            "default_part": model.resolve_part(None),
            "neutral_texts": len(self._importance_texts()) if scale is not None else 0,
        }
        stats["n_training_batches"] = len(setup.batches)
        stats["data_split"] = self.table.split_info
        stats["target_classes"] = list(self.target_classes)  # the figures' class colours
        stats["base_passes"] = {"training_batches_computed": setup.batches.computed - reused}
        if reused:
            stats["base_passes"]["training_batches_from_tune_learning_rate"] = reused
        if dist.is_distributed():
            stats["distributed"] = {
                "world_size": dist.world_size(),
                "validation": "per-row gradients" if setup.shared is None else "shared JVP passes",
            }

    def _metadata(self) -> dict:
        lm = self._base()
        return {
            "base_model": lm.source if isinstance(self.model_arg, (str, Path)) else None,
            "base_model_fingerprint": lm.fingerprint,
            "kind": lm.kind,
            "prediction_objective": self._objective().name,
            "params": self._param_patterns(),
            "source": self.args.source,
            "target": self.args.target,
            "target_classes": self.target_classes,
            "mask": self.mask,
            "feature_class_encoding_direction": {
                self.target_classes[0]: 1,
                self.target_classes[1]: -1,
            },
        }

    def _save(self, model: GradiendModel, stats: dict) -> None:
        self._stats = stats
        context = {k: model.metadata.get(k) for k in _CONTEXT_KEYS}
        model.save_pretrained(self.model_dir, extra_files={TRAINING: stats, CONTEXT: context})
        objective_mod.save_objective(self._objective(), self.model_dir)
        logger.info("GRADIEND written to %s", self.model_dir)

    def _try_cache(self, fingerprint: dict) -> ModelWithGradiend | None:
        return run_cache.try_cache(self, fingerprint)

    def _wrap(self, gradiend: GradiendModel) -> ModelWithGradiend:
        objective = objective_mod.objective_for(self._objective(), gradiend.metadata)
        if word_rows.METADATA_KEY not in gradiend.metadata:  # saved before they were recorded
            items = build_items(self.table.split("train"), self._objective())
            word_rows.set_word_rows(gradiend, word_rows.target_token_ids(items), self._base().model)
        return ModelWithGradiend(self._base(), gradiend, objective=objective)

    # ------------------------------------------------------------------ results
    def get_model(self) -> ModelWithGradiend:
        if self._model is None:
            if not self.layout.model_config.exists():
                raise RuntimeError("no trained model yet: call train() first")
            self._model = self._wrap(
                GradiendModel.from_pretrained(self.model_dir, device=self.gradiend_device)
            )
        return self._model

    load_model = get_model

    def get_training_stats(self) -> dict:
        if self._stats is None:
            if not self.layout.training.exists():
                raise RuntimeError("no training statistics yet: call train() first")
            self._stats = read_json(self.layout.training)
        return self._stats

    # ------------------------------------------------------------------ evaluation (delegated)
    def _evaluation(self) -> RunEvaluation:
        return RunEvaluation(
            get_model=self.get_model,
            data=self.eval_data,
            layout=self.layout,
            decoder=self.args.decoder_eval(),
            encoder_max_size=self.args.encoder_eval_max_size,
            use_cache=bool(self.args.use_cache),
            img_format=self.img_format,
            progress=self.progress,
            memo=self._decoder_memo,
        )

    evaluate_encoder = _delegated(RunEvaluation.evaluate_encoder)
    evaluate_decoder = _delegated(RunEvaluation.evaluate_decoder)
    rewrite_base_model = _delegated(RunEvaluation.rewrite_base_model)
    modify_model = _delegated(RunEvaluation.modify_model)  # hooks for activation signals
    stitch_seed_components = _delegated(RunEvaluation.stitch_seed_components)  # split + seeds
    evaluate_bias = bias_task.evaluate_bias_of_trainer  # docs/debias.md

    # ------------------------------------------------------------------ figures
    plot_probability_shifts = _delegated(RunEvaluation.plot_probability_shifts)
    plot_encoder_distributions = _delegated(RunEvaluation.plot_encoder_distributions)
    plot_components = _delegated(RunEvaluation.plot_components)  # a split GRADIEND
    plot_importance_by_layer = trainer_figures.plot_importance_by_layer
    plot_training_convergence = trainer_figures.plot_training_convergence
    _plot_importance_after_training = trainer_figures.plot_importance_after_training
    multi_seed = trainer_figures.multi_seed
    finish_tracking = trainer_figures.finish_tracking

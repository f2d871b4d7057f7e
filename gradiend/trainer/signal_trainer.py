"""SignalTrainer: a GRADIEND trained on vectors the user extracted (activations of their own
pipeline, gradients of another tool, …), with the text trainer's training lifecycle.

The vectors are checked, split and batched by ``trainer.signal_vectors``; training is the text
trainer's: ``trainer.seeds.run_seeds`` (seeds, orientation, convergence, collapse detection and
the learning-rate remedy, post-pruning), ``trainer.loop.train_loop`` (checkpoints and resume
through ``trainer.watch``), the run cache and ``training.json``; ``evaluate_encoder`` computes
``evaluator.encoder.encoder_metrics`` on the test split.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend._io import clean_orphans, read_json, write_json, write_text
from gradiend._kwargs import strict_kwargs
from gradiend.evaluator.encoder import encoder_metrics
from gradiend.lm.params import ParamMap, ParamSpec
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import CONTEXT, TRAINING, RunLayout
from gradiend.trainer import lr_search, run_cache, trainer_figures, watch
from gradiend.trainer.argument_checks import check_eval_call
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.convergence_check import check_converged
from gradiend.trainer.data_checks import check_output_dirs
from gradiend.trainer.fingerprint import training_fingerprint
from gradiend.trainer.seeds import SeedJob, run_seeds
from gradiend.trainer.signal_vectors import (
    VectorData,
    as_matrix,
    build_setup,
    check_lm_free,
    check_ratios,
)
from gradiend.trainer.supervised import loop_variant

logger = logging.getLogger(__name__)

__all__ = ["SignalTrainer"]

VECTOR_SPEC = "vectors"  # the one "parameter" of a GRADIEND trained without a base model
_CONTEXT_KEYS = ("source", "target", "target_classes", "feature_class_encoding_direction")
_NEEDS_LM = (
    "{name} needs a language model and masked sentences, which SignalTrainer has not: apply "
    "the decoder yourself (trainer.decoder_vector(+1) strengthens {cls!r}), or train with "
    "TextPredictionTrainer"
)


@strict_kwargs
class SignalTrainer:
    """Train, evaluate and save a GRADIEND on precomputed vectors of two classes.

    ``positive_vectors`` / ``negative_vectors``: shape ``(n, d)`` each (tensors, arrays or lists
    of 1-D vectors); ``decoder(+1)`` strengthens the positive class (``target_classes[0]``).
    ``model_with_gradiend``: ``None`` builds a GRADIEND of input size ``d``; a
    ``ModelWithGradiend`` lends its parameter map (its input size must be ``d``) and
    ``get_model()`` returns the trained GRADIEND tied to its base model.
    """

    def __init__(
        self,
        model_with_gradiend: ModelWithGradiend | None = None,
        positive_vectors: Any = None,
        negative_vectors: Any = None,
        args: TrainingArguments | None = None,
        *,
        neutral_vectors: Any = None,
        target_classes: tuple[str, str] | list[str] = ("positive", "negative"),
        run_id: str | None = None,
        split_ratios: Any = (0.8, 0.1, 0.1),
        random_state: int | None = None,
        training_args: TrainingArguments | None = None,
        img_format: str = "png",
        progress: bool = True,
    ):
        self.args = args or training_args or TrainingArguments()
        if not isinstance(self.args, TrainingArguments):
            raise TypeError(f"args must be a TrainingArguments, got {type(self.args).__name__}")
        check_lm_free(self.args)
        self.model_with_gradiend = _check_model(model_with_gradiend)
        classes = _check_classes(target_classes)
        dim = None if model_with_gradiend is None else model_with_gradiend.gradiend.input_dim
        pos = as_matrix(positive_vectors, "positive_vectors", dim)
        neg = as_matrix(negative_vectors, "negative_vectors", pos.shape[1])
        neutral = None
        if neutral_vectors is not None:
            neutral = as_matrix(neutral_vectors, "neutral_vectors", pos.shape[1], min_rows=1)
        seed = self.args.seed if random_state is None else int(random_state)
        self.data = VectorData(classes, (pos, neg), neutral, check_ratios(split_ratios), seed)
        self.target_classes = list(classes)
        self.run_id, self.img_format, self.progress = run_id, img_format, progress
        self.layout = RunLayout.from_args(
            self.args.experiment_dir, run_id, self.args.output_dir, self.args.seed_runs_dir
        )
        self._model: GradiendModel | None = None
        self._stats: dict | None = None
        self._hooks = None  # train()'s callbacks and checkpoints (trainer.watch)
        self._tracking = None  # the open trackers of report_to

    # ------------------------------------------------------------------ paths and devices
    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    @property
    def model_dir(self) -> Path:
        return self.layout.model_dir

    @property
    def input_dim(self) -> int:
        """The length of every vector (the GRADIEND's input size)."""
        return self.data.dim

    @property
    def gradiend_device(self) -> torch.device:
        """``gradiend_device``, else the given GRADIEND's device, else CUDA when available."""
        if self.args.gradiend_device:
            return torch.device(self.args.gradiend_device)
        if self.model_with_gradiend is not None:
            return self.model_with_gradiend.gradiend.W_e.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def split_info(self) -> dict:
        """The seeded split: seed, ratios, counts and row indices per class and split."""
        return self.data.record()

    # ------------------------------------------------------------------ training
    def train(self, callbacks: list | None = None) -> ModelWithGradiend | GradiendModel:
        """Train (or reuse a matching cached run with ``use_cache``) and return the oriented
        best GRADIEND (tied to the base model when a ``ModelWithGradiend`` was given);
        ``callbacks``, ``report_to`` and ``save_strategy="steps"`` work as in
        ``TextPredictionTrainer.train``."""
        check_output_dirs(self.run_dir, self.model_dir, Path(self.args.experiment_dir or "runs"))
        for folder in self.layout.tidy_folders():
            clean_orphans(folder)
        run_watch = watch.RunWatch(self, callbacks)
        self._hooks = run_watch.hooks
        with run_watch.running():
            fingerprint = self._fingerprint()
            if run_cache.try_cache(self, fingerprint) is None:
                self._train_new(fingerprint)
        run_watch.after_training(self)
        return self.get_model()

    def _fingerprint(self) -> dict:
        mwg = self.model_with_gradiend
        source = {"input_dim": self.input_dim, "trainer": "SignalTrainer"}
        if mwg is not None:
            source["base_model_fingerprint"] = mwg.lm.fingerprint
        return training_fingerprint(self.args, source, self.data.sha(), self.target_classes)

    def _train_new(self, fingerprint: dict) -> None:
        """Batches → seeds (with the learning-rate search when asked) → the saved GRADIEND."""
        t0, args = time.perf_counter(), self.args
        pmap, indices, meta = self._shape()
        setup = build_setup(self.data, args, pmap, indices)
        setup.timings["batches"] = time.perf_counter() - t0
        job = dataclasses.replace(
            self._seed_job(), variant=loop_variant(args, setup.batch_rows, setup.train_labels)
        )
        job, searched = lr_search.search_for_job(job, args, setup)
        model, stats = run_seeds(
            job, pmap, indices, setup.batches, setup.evaluate, meta, fingerprint, None
        )
        stats["lr_search"] = searched
        stats["timings"] = {
            **setup.timings,
            "training_total": time.perf_counter() - t0,
            **stats.get("timings", {}),
        }
        stats["importance"] = {"default_part": model.resolve_part(None), "neutral_texts": 0}
        stats["n_training_batches"] = len(setup.batches)
        stats["data_split"] = self.split_info
        stats["target_classes"] = list(self.target_classes)
        self._stats = stats
        self._save(model, self.model_dir)
        self._model = model

    def _shape(self) -> tuple[ParamMap, Any, dict]:
        """The GRADIEND's index map, pre-pruned indices and metadata: the given model's, or
        one block of ``d`` dimensions named ``vectors``."""
        c0, c1 = self.target_classes
        meta = {
            "target_classes": [c0, c1],
            "feature_class_encoding_direction": {c0: 1, c1: -1},
            "trained_by": "SignalTrainer",
        }
        if self.args.metadata:
            meta["metadata"] = dict(self.args.metadata)
        mwg = self.model_with_gradiend
        if mwg is not None:
            return mwg.param_map, mwg.gradiend.indices, {**mwg.gradiend.metadata, **meta}
        d = self.input_dim
        pmap = ParamMap([ParamSpec(VECTOR_SPEC, (d,), 0)], d)
        return pmap, None, {"source": VECTOR_SPEC, "target": VECTOR_SPEC, **meta}

    def _seed_job(self) -> SeedJob:
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
            progress=self.progress,
            remedy=args.remedy_plan(),  # a collapse: the smaller learning rate, then seeds
            analysis=args.seed_analysis(),
            hooks=self._hooks,
        )

    def _save(self, model: GradiendModel, path: Path) -> Path:
        context = {k: model.metadata.get(k) for k in _CONTEXT_KEYS}
        out = model.save_pretrained(path, extra_files={TRAINING: self._stats, CONTEXT: context})
        logger.info("GRADIEND written to %s", out)
        return out

    def _wrap(self, gradiend: GradiendModel) -> GradiendModel:
        """The run cache's hook (``trainer.run_cache``): the trainer keeps the GRADIEND."""
        return gradiend

    # ------------------------------------------------------------------ results
    def get_gradiend(self) -> GradiendModel:
        """The trained GRADIEND (read from the run folder when this trainer did not train)."""
        if self._model is None:
            if not self.layout.model_config.exists():
                raise RuntimeError("no trained model yet: call train() first")
            self._model = GradiendModel.from_pretrained(self.model_dir, self.gradiend_device)
        return self._model

    def get_model(self) -> ModelWithGradiend | GradiendModel:
        """The trained GRADIEND, tied to the given ``ModelWithGradiend``'s base model when
        there is one (a ``ModelWithGradiend``), else the ``GradiendModel`` itself."""
        gradiend, mwg = self.get_gradiend(), self.model_with_gradiend
        if mwg is None:
            return gradiend
        return ModelWithGradiend(mwg.lm, gradiend, objective=mwg.objective)

    load_model = get_model

    def get_training_stats(self) -> dict:
        """``training.json`` of the run (seeds, evaluations, split, convergence, collapse)."""
        if self._stats is None:
            if not self.layout.training.exists():
                raise RuntimeError("no training statistics yet: call train() first")
            self._stats = read_json(self.layout.training)
        return self._stats

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the trained GRADIEND (with ``training.json``) to ``path``, atomically; reload
        it with ``GradiendModel.from_pretrained(path)``."""
        self.get_training_stats()
        return self._save(self.get_gradiend(), Path(path))

    def _columns(self, gradiend: GradiendModel) -> torch.Tensor | None:
        """The positions in the vectors of the GRADIEND's input dimensions (``None``: all, in
        order; a post-pruned GRADIEND keeps some)."""
        mwg = self.model_with_gradiend
        if gradiend.input_dim == self.input_dim:
            return None
        base = torch.arange(self.input_dim) if mwg is None else mwg.gradiend.global_indices()
        order = torch.argsort(base)
        return order[torch.searchsorted(base[order], gradiend.global_indices().cpu())]

    @torch.no_grad()
    def encode(self, vectors: Any) -> np.ndarray:
        """The encodings (one float per vector, in [−1, 1]) of ``vectors``, shape ``(n, d)``."""
        x = as_matrix(vectors, "vectors", self.input_dim, min_rows=1)
        gradiend = self.get_gradiend()
        cols = self._columns(gradiend)
        x = x if cols is None else x[:, cols]
        return gradiend.encode(x)[:, 0].float().cpu().numpy()

    @torch.no_grad()
    def decoder_vector(self, value: float = 1.0) -> torch.Tensor:
        """``decoder(value)``, shape ``(d,)``: ``+1`` reconstructs the positive class's vector,
        ``−1`` the negative class's (dimensions a post-pruning dropped are 0)."""
        gradiend = self.get_gradiend()
        out, cols = gradiend.decode(float(value)).float().cpu(), self._columns(gradiend)
        if cols is None:
            return out
        return torch.zeros(self.input_dim).index_copy_(0, cols, out)

    def direction(self) -> torch.Tensor:
        """``(decoder(+1) − decoder(−1)) / 2``: the learned direction from the negative to the
        positive class (the decoder's bias cancels)."""
        return (self.decoder_vector(1.0) - self.decoder_vector(-1.0)) / 2

    # ------------------------------------------------------------------ evaluation
    def evaluate_encoder(
        self,
        split: str = "test",
        max_size: int | None = None,
        return_df: bool = False,
        neutral: bool = True,
        allow_unconverged: bool = False,
    ) -> dict:
        """Encode the held-out vectors of ``split`` (and the neutral vectors) and return the
        text trainer's metric keys (correlation, class means, AUC family, neutral means);
        written to ``encoded_values_*.csv/.json`` in the run folder."""
        check_eval_call(split, max_size)
        self.get_gradiend()
        check_converged(self.layout, "evaluate_encoder", allow_unconverged)
        max_size = max_size if max_size is not None else self.args.encoder_eval_max_size
        df = self._encoder_rows(split, max_size, neutral)
        c0, c1 = self.target_classes
        metrics = encoder_metrics(df, {1: c0, -1: c1, 0: "neutral"})
        csv_path, json_path = self.layout.encoder_files(split, max_size)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(csv_path, df.to_csv(index=False))
        write_json(json_path, {"fingerprint": {"data_sha": self.data.sha()}, **metrics})
        if return_df:
            metrics["encoder_df"] = df
        return metrics

    def _encoder_rows(self, split: str, max_size: int | None, neutral: bool) -> pd.DataFrame:
        """One row per encoded vector: ``encoded``, ``label``, ``type``, ``factual_class``."""
        x, labels = self.data.rows(split, max_size)
        if len(x) == 0:
            raise ValueError(f"the {split!r} split is empty: give split_ratios with a {split} part")
        df = pd.DataFrame(
            {
                "encoded": self.encode(x),
                "label": labels,
                "type": "training",
                "factual_class": self.data.class_names(labels),
            }
        )
        if neutral and self.data.neutral is not None:
            rows = self.data.neutral[: max_size * 2] if max_size else self.data.neutral
            extra = {"label": 0.0, "type": "neutral_dataset", "factual_class": "neutral"}
            df = pd.concat([df, pd.DataFrame({"encoded": self.encode(rows), **extra})])
        return df.reset_index(drop=True)

    plot_training_convergence = trainer_figures.plot_training_convergence

    def evaluate_decoder(self, *args: Any, **kwargs: Any) -> dict:
        """Refused: the decoder evaluation scores a language model on masked sentences."""
        raise RuntimeError(_NEEDS_LM.format(name="evaluate_decoder", cls=self.target_classes[0]))

    def rewrite_base_model(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: choosing the rewrite's step size needs the decoder evaluation."""
        msg = _NEEDS_LM.format(name="rewrite_base_model", cls=self.target_classes[0])
        raise RuntimeError(msg)


def _check_model(model: Any) -> ModelWithGradiend | None:
    if model is None or isinstance(model, ModelWithGradiend):
        return model
    raise TypeError(
        "model_with_gradiend must be a ModelWithGradiend or None (None builds a GRADIEND of "
        f"the vectors' length), got {type(model).__name__}; pass the vectors as "
        "positive_vectors= and negative_vectors="
    )


def _check_classes(target_classes: Any) -> tuple[str, str]:
    names = [str(c) for c in target_classes] if isinstance(target_classes, (list, tuple)) else []
    if len(names) != 2 or names[0] == names[1] or "neutral" in names:
        raise ValueError(
            f"target_classes={target_classes!r}: give two distinct names (not 'neutral'), the "
            "positive vectors' class first"
        )
    return names[0], names[1]

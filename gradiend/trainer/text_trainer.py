"""TextPredictionTrainer: the facade of the published workflow. It only wires the stages."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError

from gradiend import distributed as dist
from gradiend._io import clean_orphans, read_json, read_json_cache
from gradiend.data.examples import ExampleTable, build_examples, read_table
from gradiend.evaluator import fisher as fisher_mod
from gradiend.evaluator.encoder import class_summary
from gradiend.evaluator.encoder_rows import cap_per_group
from gradiend.lm.devices import gradiend_device, model_devices, resolve_dtype, storage_device
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.items import build_items, check_rows
from gradiend.lm.loading import BaseLM, describe_model, load_base_model
from gradiend.lm.params import ParamMap
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend, jvp_encode
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.decoder_mixin import DecoderMixin
from gradiend.trainer.encoder_mixin import EncoderMixin
from gradiend.trainer.fingerprint import (
    data_hash,
    diff_fingerprint,
    gradient_fingerprint,
    training_fingerprint,
)
from gradiend.trainer.gradient_data import (
    GradientBatches,
    per_example_matrix,
    schedule_batches,
    stable_hash,
)
from gradiend.trainer.input_checks import (
    check_against_model,
    check_neutral,
    check_objective,
    check_output_dirs,
    check_raw_data,
    check_table,
    check_trainer_inputs,
)
from gradiend.trainer.objective_mixin import ObjectiveMixin
from gradiend.trainer.pruning import pre_prune, stratified_sample
from gradiend.trainer.seeds import run_seeds
from gradiend.trainer.shared_validation import SharedValidation, train_on_main

logger = logging.getLogger(__name__)


def encoding_labels(df: pd.DataFrame, targets: list[str], target: str) -> np.ndarray:
    """+1 for rows whose decoder target pushes the model towards ``targets[0]``, −1 towards
    ``targets[1]``, 0 for identity rows. This is the one sign convention of the library:
    after orientation ``decoder(+1)`` strengthens ``targets[0]``."""
    a = targets[0]
    key = df["factual_class"] if target == "alternative" else df["alternative_class"]
    lab = np.where(key == a, 1.0, -1.0)
    return np.where(df["factual_class"] == df["alternative_class"], 0.0, lab)


class TextPredictionTrainer(ObjectiveMixin, EncoderMixin, DecoderMixin):
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
    ):
        check_trainer_inputs(model, data, target_classes, run_id, eval_neutral_max_rows)
        self.args = args or training_args or TrainingArguments()
        if not isinstance(self.args, TrainingArguments):
            raise TypeError(f"args must be a TrainingArguments, got {type(self.args).__name__}")
        dist.init_from_env(self.args.distributed_timeout_s)  # under torchrun: split the work
        self.model_arg, self.tokenizer_arg = model, tokenizer
        self.run_id, self.mask, self.progress = run_id, mask, progress
        self.img_format = img_format
        self.decoder_eval_targets = decoder_eval_targets
        raw = read_table(data)
        columns = (label_col, label_class_col, alternative_col, alternative_class_col)
        check_raw_data(raw, masked_col, split_col, *columns)
        check_neutral(eval_neutral_data, "text")
        self.table: ExampleTable = build_examples(
            raw,
            target_classes,
            masked_col=masked_col,
            split_col=split_col,
            label_col=label_col,
            label_class_col=label_class_col,
            alternative_col=alternative_col,
            alternative_class_col=alternative_class_col,
            add_identity_for_other_classes=self.args.add_identity_for_other_classes,
            seed=self.args.seed,
            hf_config=hf_config,
            hf_split=hf_split,
        )
        self.target_classes = self.table.target_classes
        for split in ("train",):
            counts = self.table.df[self.table.df["split"] == split]["factual_class"].value_counts()
            for c in self.target_classes:
                if counts.get(c, 0) == 0:
                    raise ValueError(f"class {c!r} has no rows in the {split} split")
        check_table(self.table.df, self.target_classes, mask)
        self.neutral_df = _read_neutral(eval_neutral_data, eval_neutral_max_rows, self.args.seed)
        post = self.args.post_prune_config
        if post is not None and post.part == "snr" and not self._importance_texts():
            raise ValueError(
                "PostPruneConfig(part='snr') ranks by the neutral texts' gradient scale: pass "
                f"eval_neutral_data with ≥ {fisher_mod.MIN_TEXTS} texts and "
                "importance_neutral_texts > 0, or choose part='decoder-fit'"
            )
        self._check_dirs()
        self.neutral_excluded = {w.lower() for w in eval_neutral_additional_excluded_words or []}
        self._lm: BaseLM | None = None
        self._model: ModelWithGradiend | None = None
        self._stats: dict | None = None
        self._scale: torch.Tensor | None = None  # neutral F for the snr importance (train)

    # ------------------------------------------------------------------ paths
    @property
    def run_dir(self) -> Path:
        base = Path(self.args.experiment_dir or "runs")
        return base / self.run_id if self.run_id else base

    @property
    def model_dir(self) -> Path:
        return Path(self.args.output_dir) if self.args.output_dir else self.run_dir / "model"

    def _check_dirs(self) -> None:
        """Refuse output folders that a save would wreck; tidy what a killed run left."""
        check_output_dirs(self.run_dir, self.model_dir, Path(self.args.experiment_dir or "runs"))
        if dist.is_main():  # the writer tidies; another node's processes look dead from here
            for folder in (self.run_dir, self.model_dir.parent, self.run_dir / "seeds"):
                clean_orphans(folder)

    # ------------------------------------------------------------------ base model
    def _base(self) -> BaseLM:
        if self._lm is None:
            device = self.args.device
            if self.args.base_model_device_map is None and device is None:
                device = dist.rank_device()  # under torchrun with GPUs: this rank's own GPU
            self._lm = load_base_model(
                self.model_arg,
                self.tokenizer_arg,
                self.args.torch_dtype,
                self.args.trust_remote_code,
                device=device,
                device_map=self.args.base_model_device_map,
                max_memory=self.args.base_model_max_memory,
            )
            logger.info(
                "base model on %s (%s)",
                ", ".join(str(d) for d in model_devices(self._lm.model)),
                next(self._lm.model.parameters()).dtype,
            )
        return self._lm

    @property
    def gradiend_device(self) -> torch.device:
        """Where the GRADIEND, its optimiser state and (when it fits) the gradient cache live."""
        # under torchrun every GPU belongs to a rank: the GRADIEND stays on this rank's
        same = self.args.encoder_decoder_same_device or dist.rank_device() is not None
        return gradiend_device(self._base().model, self.args.gradiend_device, same)

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

    def _neutral_scale(self, lm, computer, objective) -> torch.Tensor | None:
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
            return fisher_mod.fisher_of(lm, computer, max_length, texts, self.progress)
        except ValueError as err:  # e.g. no neutral gradient reaches the selected parameters
            post = self.args.post_prune_config
            if post is not None and post.part == "snr":
                raise
            logger.warning("snr importance unavailable (%s): ranking by decoder-fit", err)
            return None

    def _wrap(self, gradiend: GradiendModel) -> ModelWithGradiend:
        return ModelWithGradiend(
            self._base(), gradiend, objective=self._objective_for(gradiend.metadata)
        )

    def labels(self, df: pd.DataFrame) -> np.ndarray:
        return encoding_labels(df, self.target_classes, self.args.target)

    # ------------------------------------------------------------------ training
    def train(self) -> ModelWithGradiend:
        """Train (or reuse a matching cached run) and return the oriented best model."""
        self._check_dirs()
        fingerprint = self._fingerprint()
        cached = self._try_cache(fingerprint)
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        lm = self._base()
        objective = self._objective()
        check_objective(lm.kind, objective)
        df = self.table.df
        check_rows(df, objective, str(lm.source))
        pmap = ParamMap.from_model(lm.model, self._param_patterns())
        computer = GradientComputer(lm, objective, pmap, device=self.gradiend_device)
        train_df = self.table.split("train")
        val_df = cap_per_group(
            self.table.split("validation"),
            self.args.encoder_eval_train_max_size or self.args.encoder_eval_max_size,
            self.args.seed,
        )
        train_items, val_items = build_items(train_df, objective), build_items(val_df, objective)
        check_against_model(
            lm.kind,
            objective,
            pd.concat([train_df, val_df]),
            train_items + val_items,
            pmap.numel,
            self.args,
        )
        timings: dict[str, float] = {"load_and_check": time.perf_counter() - t0}

        t = time.perf_counter()
        indices = None
        if self.args.pre_prune_config is not None:
            indices = self._pre_prune(computer, train_df, train_items)
            computer.set_indices(indices)
        timings["pre_prune"] = time.perf_counter() - t

        t = time.perf_counter()
        batches_idx = schedule_batches(
            train_df.reset_index(drop=True),
            self.args.train_batch_size,
            self.args.seed,
            self.args.train_max_size,
        )
        needed = self.args.max_steps * (self.args.gradiend_batch_size or 1)
        if 0 < needed < len(batches_idx):  # a short run never visits every batch
            batches_idx = batches_idx[:needed]
        cache_dir = None
        if self.args.use_cache:
            key = stable_hash(
                gradient_fingerprint(fingerprint), indices if indices is not None else "all"
            )
            cache_dir = self.run_dir / "cache" / "gradients" / key
        batches = GradientBatches(
            computer,
            train_items,
            batches_idx,
            self.args.source,
            self.args.target,
            self.args.gradient_cache_max_gb * 1e9,
            cache_dir,
            self.progress,
            dtype=resolve_dtype(self.args.gradient_cache_dtype),
        )
        timings["training_gradients"] = time.perf_counter() - t
        t = time.perf_counter()
        evaluate, shared = self._val_evaluator(computer, val_df, val_items)
        timings["validation_gradients"] = time.perf_counter() - t

        meta = self._metadata(pmap)

        def fit() -> None:  # rank 0 trains (the GRADIEND is small) and writes every artefact
            t = time.perf_counter()
            self._scale = self._neutral_scale(lm, computer, objective)
            timings["importance_scale"] = time.perf_counter() - t
            model, stats = run_seeds(self, pmap, indices, batches, evaluate, meta, fingerprint)
            timings["training_total"] = time.perf_counter() - t0
            stats["timings"] = {**timings, **stats.get("timings", {})}
            stats["importance"] = {  # which ranking the model's default is, and from what
                "default_part": model.resolve_part(None),
                "neutral_texts": len(self._importance_texts()) if self._scale is not None else 0,
            }
            stats["n_training_batches"] = len(batches)
            stats["data_split"] = self.table.split_info
            stats["target_classes"] = list(self.target_classes)  # the figures' class colours
            stats["base_passes"] = {"training_batches_computed": batches.computed}
            if dist.is_distributed():
                stats["distributed"] = {
                    "world_size": dist.world_size(),
                    "validation": "per-row gradients" if shared is None else "shared JVP passes",
                }
            self._save(model, stats)
            self._model = ModelWithGradiend(lm, model, objective=objective)
            if self.args.plot_importance:
                self._plot_importance_after_training()

        train_on_main(fit, shared)
        if not dist.is_main():  # the same weights as rank 0: read back what it wrote
            self._stats = read_json(self.model_dir / "training.json")
            gradiend = GradiendModel.from_pretrained(self.model_dir, device=self.gradiend_device)
            self._model = ModelWithGradiend(lm, gradiend, objective=objective)
        return self._model

    def _plot_importance_after_training(self) -> None:
        """The localisation figure of a fresh run (skipped, with a note, without matplotlib)."""
        try:
            path = self.plot_importance_by_layer(show=False)["path"]
        except ImportError as err:
            logger.info("importance figure not drawn: %s", err)
            return
        logger.info("importance by layer and module: %s", path)

    def _pre_prune(self, computer, train_df, train_items):
        cfg = self.args.pre_prune_config
        seed = self.args.seed if cfg.seed is None else cfg.seed
        pos = stratified_sample(train_df.reset_index(drop=True), cfg.n_samples, seed)
        labels = self.labels(train_df)
        return pre_prune(
            computer,
            [train_items[i] for i in pos],
            [float(labels[i]) for i in pos],
            cfg,
            self.progress,
        )

    def _val_evaluator(self, computer: GradientComputer, val_df: pd.DataFrame, val_items):
        """A callback giving the validation summary of a GRADIEND (matrix product when the
        per-example gradients fit in memory, else a JVP pass per evaluation, shared by the
        ranks under torch.distributed), and the :class:`SharedValidation` the other ranks
        serve (``None`` when there is none)."""
        labels = self.labels(val_df)
        frame = pd.DataFrame(
            {
                "label": labels,
                "type": "training",
                "factual_class": val_df["factual_class"].to_numpy(),
            }
        )
        kind = self.args.source
        dtype = resolve_dtype(self.args.gradient_cache_dtype)
        need = len(val_items) * computer.dim * (torch.finfo(dtype).bits // 8)
        fits = need <= self.args.gradient_cache_max_gb * 0.5e9
        fits = fits and storage_device(computer.device, need, "validation gradients") == "device"
        steps = self.args.max_steps if self.args.max_steps > 0 else 10**9
        n_evals = steps // self.args.eval_steps + 2
        jvp_passes = n_evals * -(-len(val_items) // self.args.eval_batch_size)
        fits = fits and len(val_items) <= jvp_passes  # else JVP passes are the cheaper way
        fits = dist.broadcast(fits, "choosing the validation path")  # rank 0's free memory
        matrix = (
            per_example_matrix(
                computer, val_items, kind, self.args.eval_batch_size, self.progress, dtype
            )
            if fits
            else None
        )

        shared = None
        if not fits and dist.is_distributed():
            shared = SharedValidation(computer, val_items, kind, self.args.eval_batch_size)

        def evaluate(model: GradiendModel) -> dict:
            if matrix is not None:
                # in chunks: the 16-bit matrix is never copied whole to float32
                enc = torch.cat([model.encode(m)[:, 0] for m in matrix.split(8)])
            elif shared is not None:
                enc = shared.encode(model)[:, 0]
            else:
                enc = jvp_encode(model, computer, val_items, kind, self.args.eval_batch_size)[:, 0]
            frame["encoded"] = enc.detach().float().cpu().numpy()
            return class_summary(frame)

        return evaluate, shared

    def _metadata(self, pmap: ParamMap) -> dict:
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
        model.save_pretrained(
            self.model_dir,
            extra_files={
                "training.json": stats,
                "gradiend_context.json": {
                    k: model.metadata.get(k)
                    for k in (
                        "source",
                        "target",
                        "target_classes",
                        "feature_class_encoding_direction",
                    )
                },
            },
        )
        self._save_objective(self.model_dir)
        logger.info("GRADIEND written to %s", self.model_dir)

    def _try_cache(self, fingerprint: dict) -> ModelWithGradiend | None:
        mode = self.args.use_cache
        stats = read_json_cache(self.model_dir / "training.json") if mode else None
        if stats is None:
            return None
        if mode in (True, "only_convergent"):
            differ = diff_fingerprint(stats.get("cache_fingerprint"), fingerprint)
            if differ:
                logger.info("cached run in %s not used: %s differ(s)", self.model_dir, differ)
                return None
        if mode == "only_convergent" and not stats.get("convergence_info", {}).get("converged"):
            logger.info("cached run in %s not used: it did not converge", self.model_dir)
            return None
        try:
            gradiend = GradiendModel.from_pretrained(self.model_dir, device=self.gradiend_device)
        except (KeyError, OSError, ValueError, SafetensorError) as err:
            logger.warning(
                "cached GRADIEND in %s is unreadable (%s); retraining", self.model_dir, err
            )
            return None
        logger.info("using the cached GRADIEND in %s", self.model_dir)
        self._stats = stats
        self._model = self._wrap(gradiend)
        return self._model

    # ------------------------------------------------------------------ results
    def get_model(self) -> ModelWithGradiend:
        if self._model is None:
            if (self.model_dir / "config.json").exists():
                self._model = self._wrap(
                    GradiendModel.from_pretrained(self.model_dir, device=self.gradiend_device)
                )
            else:
                raise RuntimeError("no trained model yet: call train() first")
        return self._model

    load_model = get_model

    def get_training_stats(self) -> dict:
        if self._stats is None:
            path = self.model_dir / "training.json"
            if not path.exists():
                raise RuntimeError("no training statistics yet: call train() first")
            self._stats = read_json(path)
        return self._stats


def _read_neutral(data: Any, max_rows: int | None, seed: int) -> pd.DataFrame | None:
    if data is None:
        return None
    if isinstance(data, (list, tuple)):
        df = pd.DataFrame({"text": [str(t) for t in data]})
    elif isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, (str, Path)) and Path(data).suffix not in (".csv", ".parquet"):
        from gradiend.data.hub import load_neutral_hub_data

        df = load_neutral_hub_data(data)
    else:
        from gradiend.data.examples import read_table

        df = read_table(data)
    col = "text" if "text" in df.columns else "masked" if "masked" in df.columns else None
    if col is None:
        raise ValueError(f"eval_neutral_data needs a 'text' column; columns are {list(df.columns)}")
    df = pd.DataFrame({"text": df[col].astype(str)})
    if max_rows is not None:
        df = df.sample(n=min(max_rows, len(df)), random_state=seed)
    return df.reset_index(drop=True)

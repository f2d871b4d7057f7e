"""Configuration dataclasses with the incumbent's names and defaults.

Unknown fields are a clear error (with a suggestion) rather than a silent no-op. Each
``__post_init__`` only normalises (dicts → configs, aliases → one value) and then calls
``gradiend.trainer.argument_checks``, where every value check lives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gradiend._kwargs import strict_kwargs
from gradiend.evaluator.decoder_eval import DecoderEvalConfig
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.lm.mlm_head import HeadTraining
from gradiend.lm.placement import Placement
from gradiend.lm.signals import Signal, SignalScope, as_scope, as_signal
from gradiend.model.split import GradiendSplit, as_split, check_loss
from gradiend.trainer.argument_checks import (
    CACHE_DTYPES,
    PRE_PRUNE_RULES,
    check_arguments,
    check_prune_config,
)
from gradiend.trainer.collapse import CollapseRule
from gradiend.trainer.compat_arguments import CompatArguments, resolve_compat
from gradiend.trainer.loop import Architecture, LoopConfig, SeedPlan
from gradiend.trainer.lr_search import LRSearchConfig, lr_search_config
from gradiend.trainer.remedy import RemedyPlan
from gradiend.trainer.run_controls import RunControlArguments, resolve_run_controls
from gradiend.trainer.seed_arguments import SeedAnalysisArguments, check_seed_analysis

__all__ = [
    "CACHE_DTYPES",
    "PRE_PRUNE_RULES",
    "PostPruneConfig",
    "PrePruneConfig",
    "TrainingArguments",
    "strict_fields",
]


def strict_fields(cls):
    """Make ``cls(**kwargs)`` reject unknown names with a 'did you mean' hint
    (``gradiend._kwargs.strict_kwargs``, shared by every public constructor)."""
    return strict_kwargs(cls)


@strict_fields
@dataclass
class PrePruneConfig:
    """Keep the top dimensions by gradient statistics of a few samples, before training."""

    n_samples: int = 16
    topk: int | float | None = 0.01
    threshold: float | None = None
    source: str = "diff"
    seed: int | None = None
    rule: str = "label_signed_mean"
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_prune_config(self)


@strict_fields
@dataclass
class PostPruneConfig:
    """Keep the top dimensions by importance of ``part`` after training, then re-fit the
    encoder (``refit_encoder``) so the class means it reported stay (docs/pruning.md).
    ``part=None``: the model's default ranking (``snr`` when neutral texts gave the gradient
    scale, else ``decoder-fit``)."""

    topk: int | float | None = 0.05
    threshold: float | None = None
    part: str | None = None
    refit_encoder: bool = True

    def __post_init__(self) -> None:
        check_prune_config(self)


_PRUNE_CONFIGS = {"pre_prune_config": PrePruneConfig, "post_prune_config": PostPruneConfig}


def _prune_config(name: str, value: Any) -> PrePruneConfig | PostPruneConfig | None:
    """A pruning config from a dict of its fields; the config itself or None pass through.
    The type is refused here (not in argument_checks, which must not import these classes)."""
    cls = _PRUNE_CONFIGS[name]
    if isinstance(value, dict):
        return cls(**value)
    if value is not None and not isinstance(value, cls):
        raise TypeError(
            f"{name} must be a {cls.__name__} (e.g. {cls.__name__}(topk=0.01)), a dict of "
            f"its fields, or None; got {value!r}"
        )
    return value


@strict_fields
@dataclass
class TrainingArguments(CompatArguments, RunControlArguments, SeedAnalysisArguments):
    """Everything that controls a GRADIEND training run (incumbent names and defaults).

    Unknown names are refused with a "did you mean" hint; docs/arguments.md has the table of
    defaults and the incumbent's names.

    Attributes:
        experiment_dir: Folder of the runs; a run is written to `experiment_dir/run_id/`.
        output_dir: Where the trained GRADIEND is saved (default:
            `experiment_dir/run_id/model`).
        use_cache: Reuse what an earlier run with the same inputs wrote: the trained model (when
            its fingerprint matches), per-batch gradient files, encoder and decoder results.
            `"always"`: any saved model; `"only_convergent"`: a converged one.
        source: What the encoder reads: `"alternative"`, `"factual"` or `"diff"` gradients.
        target: What the decoder reconstructs: `"diff"` (factual − alternative), `"factual"` or
            `"alternative"`.
        add_identity_for_other_classes: Also train on identity rows (factual = alternative) of
            classes outside the target pair, which should encode to 0.
        train_batch_size: Rows per cached gradient batch (one GRADIEND sample is the batch-mean
            gradient).
        gradiend_batch_size: Cached batches per optimiser step (default 1).
        train_max_size: Cap on training rows (all by default).
        learning_rate: Learning rate of the GRADIEND (see choosing it), or `"auto"`: a search
            of short probes on the cached gradients picks it (training: learning-rate search).
        learning_rate_decoder: The decoder's own learning rate: `None` (the encoder's), a float,
            or `"auto"` (at least the rate that lets the decoder reach the targets' size).
        lr_search_config: `LRSearchConfig` of the learning-rate search; setting it searches
            from `learning_rate`.
        num_train_epochs: Passes over the cached batches when `max_steps` ≤ 0.
        max_steps: Optimiser steps per seed; > 0 overrides `num_train_epochs`.
        weight_decay: AdamW weight decay.
        adam_epsilon: AdamW epsilon.
        optim: `"adamw"`, `"adam"` or `"sgd"`.
        eval_steps: Validation encodings every this many steps (and at step 0 and the end); the
            best step by |correlation| is kept.
        eval_batch_size: Batch size of validation, encoder and decoder evaluation passes.
        encoder_eval_max_size: Rows per class for validation during training and the default
            `max_size` of `evaluate_encoder`.
        encoder_eval_train_max_size: Rows per class for validation during training (overrides
            `encoder_eval_max_size` there).
        decoder_eval_max_size_training_like: Rows per class scored by `evaluate_decoder` (class
            probabilities).
        decoder_eval_max_size_neutral: Neutral texts scored by `evaluate_decoder` (LMS).
        decoder_eval_lrs: Step sizes η of the decoder grid (default: an adaptive search).
        decoder_eval_feature_factors: Feature factors of the decoder grid (default ±1).
        do_eval: Accepted for compatibility; validation always runs.
        include_other_classes: `evaluate_encoder` also encodes rows of every other transition
            between the data's classes (label 0 unless the row moves towards or away from a
            target class); training and validation keep the trained transitions.
        positive_class: The target class counted as positive when runs are compared (default:
            `X` when the partner is named `non_X`, else `target_classes[0]`).
        params: Base-model parameters the GRADIEND reads: full names or `*` patterns (see
            `params` patterns); default every backbone parameter.
        signal: What the GRADIEND reads: `None`/`"gradient"` (parameter gradients),
            `"activation"` (ACTIEND) or `"activation_gradient"`, or a `Signal` (docs/signals.md).
        signal_scope: Where: a `SignalScope` (`layers(0, 3)`, `layer(9)`, `embeddings()`, …)
            resolved per architecture; `None`: `params` (gradients) or every block's output.
        gradiend_split: `GradiendSplit.none()` (default), `.single()` or `.by_tensor()` (one
            latent per tensor or site, block-diagonal masks; docs/signals.md "Components").
        gradiend_split_loss: A split's loss: `"mean"`, `"sum"`, `"size_weighted"` or `"full"`.
        prediction_objective: `"auto"`, `"mlm_mask_token"`, `"clm_next_token"`, `"clm_mlm_head"`
            or `"seq2seq_encoder_mlm"` (model kinds).
        decoder_mlm_head_epochs: Epochs of the MLM head of a decoder-only model
            (`clm_mlm_head`).
        decoder_mlm_head_batch_size: Batch size of that head's training.
        decoder_mlm_head_lr: Learning rate of that head's training.
        decoder_mlm_head_max_size: Cap on the rows that head trains on.
        torch_dtype: dtype of the base model (`"bfloat16"`, `"float16"`; default float32).
        trust_remote_code: Passed to `from_pretrained`.
        device: The device a model loaded by name goes to (default: CUDA when available).
        base_model_device_map: `from_pretrained`'s `device_map`, e.g. `"auto"` to shard over
            GPUs; give this or `device`.
        base_model_max_memory: `from_pretrained`'s `max_memory` with a device map.
        encoder_decoder_same_device: `False` puts the GRADIEND on a GPU the base model does not
            use, when there is one.
        gradiend_device: Force the GRADIEND's device (default: the base model's last device).
        gradiend_dtype: dtype of the GRADIEND's weights.
        gradient_cache_dtype: dtype of cached training gradients (16 bits halve the memory;
            gpu).
        latent_dim: Accepted for compatibility; the GRADIEND has one latent unit.
        activation_encoder: Accepted for compatibility; the encoder is `tanh`.
        activation_decoder: Accepted for compatibility; the decoder is linear.
        bias_decoder: Accepted for compatibility; the decoder has a bias.
        seed: First seed; seed `i` of a run is `seed + i`.
        max_seeds: Seeds tried, all on one gradient cache.
        min_convergent_seeds: Stop once this many seeds converged; the best is kept.
        convergent_metric: `"correlation"` (default), `"loss"` or an AUC metric (`"roc_auc"`,
            `"min_auc_n_o"`, `"encoding_e"`, …; docs/training.md "AUC metrics").
        convergent_score_threshold: |correlation| a converged run reaches (default 0.5; 0.9
            for an AUC metric).
        convergence_metric: Alias of `convergent_metric`.
        convergence_threshold: Alias of `convergent_score_threshold`.
        convergent_mean_by_class_threshold: |mean encoding| each target class reaches (default
            0.5).
        fail_on_non_convergence: Raise when fewer than `min_convergent_seeds` converge.
        auto_remedy: When a seed collapses (both classes encode to one side), retrain it with
            `source="diff"`, then a 10× smaller learning rate, then both, and keep what
            converged (training: collapse); `False`: only the next seed.
        collapse_patience: Validation evaluations in a row that must show a collapse before the
            attempt is stopped early (0: never stop early, never remedy).
        pre_prune_config: `PrePruneConfig`: pick input dimensions before training (pruning).
        post_prune_config: `PostPruneConfig`: keep the top dimensions after training and re-fit
            the encoder.
        importance_neutral_texts: Neutral texts (the last of `eval_neutral_data`) whose
            gradient scale ranks the dimensions (`snr` importance, the default ranking); 0 or no
            neutral data: rank by `decoder-fit`.
        plot_importance: Draw the importance-by-layer figure after `train()` (needs the `plot`
            extra).
        gradient_cache_max_gb: Above this size the training gradients are recomputed each step
            instead of cached.
        metadata: Free-form dict saved with the model.
        distributed_timeout_s: Under `torch.distributed`, seconds a rank waits in a collective
            before it stops with a clear error; must exceed the longest single-rank stage
            (rank 0 training the GRADIEND). Not part of the run's fingerprint.

    Watching and resuming a run (``RunControlArguments``; docs/training.md "Callbacks,
    tracking and checkpoints"; none is part of the fingerprint):
        report_to: Trackers to log to: `"tensorboard"`, `"wandb"`, `"mlflow"`, `"trackio"`, a
            list of them, `"all"` (every installed one) or `"none"` (default).
        logging_dir: Where the trackers write (default `<run>/logs`).
        save_strategy: `"steps"`: a resumable checkpoint every `save_steps` steps; `"best"`
            (default) and `"no"`: only the best step's GRADIEND, saved at the end.
        save_steps: Optimiser steps between periodic checkpoints.
        save_only_best: Keep only the newest checkpoint while a seed trains and remove them
            when it ends; `False` keeps every checkpoint.
        delete_models: After `train()`, remove the checkpoints and the per-seed weights (the
            selected GRADIEND stays).
        runtime_monitor: Write a heartbeat line to `<run>/runtime_monitor.jsonl` every
            `runtime_monitor_interval` seconds (and the message of a CUDA out-of-memory error).
        runtime_monitor_interval: Seconds between heartbeats.
        runtime_monitor_system_stats: Add the process and CUDA memory to each heartbeat.

    Multi-seed analysis (``SeedAnalysisArguments``; docs/training.md "Multi-seed analysis"):
        analyze_seed_stability: Train all `max_seeds` seeds for `trainer.multi_seed()` and
            write their top-k stability to `seeds/seed_stability.json`.
        seed_stability_topk: Top-k per seed of that summary (default 1000).
        seed_stability_part: Importance it ranks by (default `"decoder-weight"`).
        saved_seed_runs: Seed folders that keep weights: `"all_tried"` (default),
            `"all_convergent"` or `"best_only"`.
        seed_runs_dir: Folder of the seed runs (default `<run>/seeds`).
        seed_selection_eval_max_size: Validation rows per class `multi_seed(selection="best")`
            ranks the seeds by.
        split_resplit_per_seed: Refused (every seed shares one gradient cache of one split).
        split_resplit_strategy: `"random"` or `"balanced_cycle"`.

    0.2.3 names (``CompatArguments``; "no effect" ones warn when set, docs/arguments.md):
        base_gradient_batch_size: Rows per gradient batch; sets `train_batch_size`.
        criterion: Loss `criterion(prediction, target)` instead of MSE (e.g. `nn.L1Loss()`).
        evaluate_fn: `evaluate_fn(gradiend) -> dict` at each validation, kept in its record.
        supervised_encoder: Baseline: fit the encoder to the labels (MSE), decoder untrained.
        supervised_decoder: Baseline: the decoder's least-squares fit of the targets on the
            labels (with `supervised_encoder`: both parts supervised).
        mask_placeholder: The mask string of the data when the trainer's `mask` is unset.
        precompute_gradient_batches: No effect (every gradient is cached once).
        precompute_gradient_buffer_size: No effect (no prefetch buffer).
        gradient_timing_steps: No effect (stage timings are in `training.json`).
        eval_strategy: No effect (validation always runs; it picks the best step).
        encoder_eval_balance: No effect (rows are capped per transition).
        dataset_trust_remote_code: No effect (`datasets` ≥ 4 runs no scripts).
        model_use_cache: No effect (gradient passes read no KV cache).
        decoder_sequence_cloze_rhs_window: No effect (no sequence-cloze objective).
        normalize_gradiend: No effect (every GRADIEND is oriented).
        use_cached_gradients: No effect (gradients are always cached).
        reuse_pre_prune: No effect (one pre-pruning serves every seed).
        highlight_non_convergence: No effect (non-converged runs are named as such).
    """

    # output
    experiment_dir: str | None = None
    output_dir: str | None = None
    use_cache: bool | str = False
    # what the GRADIEND reads and reconstructs
    source: str = "alternative"
    target: str = "diff"
    add_identity_for_other_classes: bool = False
    # loop
    train_batch_size: int = 32
    gradiend_batch_size: int | None = None
    train_max_size: int | None = None
    learning_rate: float | Literal["auto"] = 1e-5
    learning_rate_decoder: float | Literal["auto"] | None = None
    lr_search_config: LRSearchConfig | None = None
    num_train_epochs: int = 3
    max_steps: int = -1
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    optim: str = "adamw"
    # evaluation
    eval_steps: int = 250
    eval_batch_size: int = 32
    encoder_eval_max_size: int | None = None
    encoder_eval_train_max_size: int | None = None
    decoder_eval_max_size_training_like: int | None = None
    decoder_eval_max_size_neutral: int | None = None
    decoder_eval_lrs: list[float] | None = None
    decoder_eval_feature_factors: list[float] | None = None
    do_eval: bool = True
    include_other_classes: bool = False
    positive_class: str | None = None
    # base model
    params: list[str] | None = None
    signal: Signal | str | None = None
    signal_scope: SignalScope | str | None = None
    gradiend_split: GradiendSplit | str | None = None
    gradiend_split_loss: str = "mean"
    prediction_objective: str = "auto"
    # the MLM head of decoder-only models (prediction_objective="clm_mlm_head")
    decoder_mlm_head_epochs: int = 5
    decoder_mlm_head_batch_size: int = 4
    decoder_mlm_head_lr: float = 1e-4
    decoder_mlm_head_max_size: int | None = None
    torch_dtype: str | None = None
    trust_remote_code: bool = False
    # placement and precision (see docs/gpu.md)
    device: str | None = None
    base_model_device_map: str | dict | None = None
    base_model_max_memory: dict | None = None
    encoder_decoder_same_device: bool = False
    gradiend_device: str | None = None
    gradiend_dtype: str = "float32"
    gradient_cache_dtype: str = "bfloat16"
    # GRADIEND architecture
    latent_dim: int | None = None
    activation_encoder: str | None = None
    activation_decoder: str | None = None
    bias_decoder: bool | None = None
    # seeds and convergence
    seed: int = 0
    max_seeds: int = 3
    min_convergent_seeds: int = 1
    convergent_metric: str | None = None
    convergent_score_threshold: float | None = None
    convergence_metric: str | None = None  # alias of convergent_metric (issue 5's name)
    convergence_threshold: float | None = None  # alias of convergent_score_threshold
    convergent_mean_by_class_threshold: float | None = None
    fail_on_non_convergence: bool = False
    auto_remedy: bool = True  # collapse → source="diff", then a smaller learning rate
    collapse_patience: int = 2
    # pruning
    pre_prune_config: PrePruneConfig | None = None
    post_prune_config: PostPruneConfig | None = None
    importance_neutral_texts: int = 32
    # figures drawn by train() (needs the plot extra; skipped without it)
    plot_importance: bool = True
    # memory
    gradient_cache_max_gb: float = 4.0
    metadata: dict = field(default_factory=dict)
    # torch.distributed (docs/distributed.md): seconds a rank waits in a collective before it
    # gives up; must exceed the longest single-rank stage (rank 0 training the GRADIEND)
    distributed_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        """Normalise (pruning dicts → configs, aliases → one value), then check every value."""
        self.pre_prune_config = _prune_config("pre_prune_config", self.pre_prune_config)
        self.post_prune_config = _prune_config("post_prune_config", self.post_prune_config)
        self.lr_search_config = lr_search_config(self.lr_search_config)
        self._resolve_aliases()
        self._resolve_signal()
        split, _ = as_split(self.gradiend_split), check_loss(self.gradiend_split_loss)
        self.gradiend_split = None if split.is_none else split  # none(): today's fingerprint
        resolve_compat(self)  # 0.2.3 names: the batch-size alias, warnings for no-effect ones
        resolve_run_controls(self)  # trackers, checkpoints, heartbeat (trainer.run_controls)
        check_seed_analysis(self)  # the multi-seed fields (trainer.seed_arguments)
        check_arguments(self)

    def _resolve_signal(self) -> None:
        """``signal``/``signal_scope`` strings → values; clashes with ``params`` and pre-pruning
        are refused here, before any model is loaded."""
        if self.signal is not None:
            self.signal = as_signal(self.signal)
        self.signal_scope = as_scope(self.signal_scope)
        if self.signal_scope is not None and self.params is not None:
            raise ValueError(
                "give params= or signal_scope=, not both (signal_scope replaces params)"
            )
        if self.signal is not None and self.signal.is_activation and self.pre_prune_config:
            raise ValueError(
                "pre_prune_config needs parameter gradients; an activation signal has few "
                "dimensions (hidden size × sites): drop pre_prune_config (post_prune_config works)"
            )

    def _resolve_aliases(self) -> None:
        """Fill both spellings of the convergence fields with one value (clash → error)."""
        for old, new in (
            ("convergent_metric", "convergence_metric"),
            ("convergent_score_threshold", "convergence_threshold"),
        ):
            a, b = getattr(self, old), getattr(self, new)
            if a is not None and b is not None and a != b:
                raise ValueError(f"{old}={a!r} and its alias {new}={b!r} disagree")
            value = a if a is not None else b
            setattr(self, old, value)
            setattr(self, new, value)
        self.convergent_metric = self.convergence_metric = self.convergent_metric or "correlation"

    # derived values with the incumbent's defaults
    @property
    def score_threshold(self) -> float:
        """The given threshold, else 0.5 for the correlation and 0.9 for an AUC metric."""
        default = 0.5 if self.convergent_metric in ("correlation", "loss") else 0.9
        t = self.convergent_score_threshold
        return default if t is None else t

    @property
    def mean_threshold(self) -> float:
        t = self.convergent_mean_by_class_threshold
        return 0.5 if t is None else t

    def to_dict(self) -> dict:
        return asdict(self)

    # projections: each stage receives only its slice (frozen values)
    def loop(self) -> LoopConfig:
        return LoopConfig(
            max_steps=self.max_steps,
            num_train_epochs=self.num_train_epochs,
            eval_steps=self.eval_steps,
            learning_rate=self.learning_rate,
            learning_rate_decoder=self.learning_rate_decoder,
            weight_decay=self.weight_decay,
            adam_epsilon=self.adam_epsilon,
            optim=self.optim,
            gradiend_batch_size=self.gradiend_batch_size or 1,
        )

    def seed_plan(self) -> SeedPlan:
        return SeedPlan(
            seed=self.seed,
            max_seeds=self.max_seeds,
            min_convergent_seeds=self.min_convergent_seeds,
            fail_on_non_convergence=self.fail_on_non_convergence,
        )

    def remedy_plan(self) -> RemedyPlan:
        """Collapse detection and the automatic remedies (``trainer.remedy``)."""
        return RemedyPlan(
            enabled=self.auto_remedy, rule=CollapseRule(patience=self.collapse_patience)
        )

    def convergence(self) -> ConvergenceRule:
        return ConvergenceRule(
            metric=self.convergence_metric,
            score_threshold=self.score_threshold,
            mean_threshold=self.mean_threshold,
            loss_threshold=self.convergent_score_threshold,
        )

    def architecture(self) -> Architecture:
        return Architecture(
            latent_dim=self.latent_dim or 1,
            activation_encoder=self.activation_encoder or "tanh",
            activation_decoder=self.activation_decoder or "id",
            bias_decoder=True if self.bias_decoder is None else self.bias_decoder,
            dtype=self.gradiend_dtype,
            split=None if self.gradiend_split is None else self.gradiend_split.to_json(),
            split_loss=self.gradiend_split_loss,
        )

    def placement(self) -> Placement:
        return Placement(
            device=self.device,
            device_map=self.base_model_device_map,
            max_memory=self.base_model_max_memory,
            torch_dtype=self.torch_dtype,
            trust_remote_code=self.trust_remote_code,
            gradiend=self.gradiend_device,
            encoder_decoder_same_device=self.encoder_decoder_same_device,
        )

    def decoder_eval(self) -> DecoderEvalConfig:
        """The run's decoder-evaluation defaults (``evaluate_decoder``'s keywords override)."""
        return DecoderEvalConfig(
            lrs=tuple(self.decoder_eval_lrs) if self.decoder_eval_lrs else None,
            feature_factors=(
                tuple(self.decoder_eval_feature_factors)
                if self.decoder_eval_feature_factors
                else None
            ),
            max_size_training_like=self.decoder_eval_max_size_training_like,
            max_size_neutral=self.decoder_eval_max_size_neutral,
            batch_size=self.eval_batch_size,
            seed=self.seed,
            use_cache=bool(self.use_cache),
        )

    def head_training(self) -> HeadTraining:
        """How the MLM head of a decoder-only model is trained (``clm_mlm_head``)."""
        return HeadTraining(
            epochs=self.decoder_mlm_head_epochs,
            batch_size=self.decoder_mlm_head_batch_size,
            lr=self.decoder_mlm_head_lr,
            max_size=self.decoder_mlm_head_max_size,
            seed=self.seed,
        )

"""Evaluating and rewriting one trained run, without the trainer.

``RunEvaluation`` holds what those steps read — the GRADIEND (loaded on first use), the run's
``EvalData``, its ``RunLayout`` and the evaluation defaults — and calls the stages' flows
(``evaluator.encoder_eval``, ``evaluator.decoder_eval``, ``ModelWithGradiend.rewrite_from_results``).
``TextPredictionTrainer`` delegates to it; ``gradiend evaluate`` and ``gradiend rewrite`` build
it from a saved run folder (``RunEvaluation.for_saved_run``) and never build a trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend import distributed as dist
from gradiend._io import read_json, read_json_cache
from gradiend.data.examples import cap_per_group
from gradiend.evaluator import decoder_eval, encoder_eval
from gradiend.evaluator.decoder_describe import describe_summary
from gradiend.evaluator.decoder_eval import DecoderEvalConfig
from gradiend.evaluator.decoder_heldout import as_heldout_config
from gradiend.evaluator.decoder_objective import (
    DecoderObjective,
    check_balance_data,
    check_objective_call,
    parse_objective,
)
from gradiend.evaluator.decoder_search import AdaptiveSearchConfig
from gradiend.evaluator.encoder_components import with_training_verdicts
from gradiend.evaluator.encoder_eval import EncoderTask
from gradiend.lm.objectives import MASK
from gradiend.model.rewrite import check_rewrite_dirs, read_results, summary_key
from gradiend.model.stitch import require_components
from gradiend.model.with_gradiend import ModelWithGradiend, load_context
from gradiend.run_layout import FIG_COMPONENTS, FIG_ENCODER, FIG_SHIFTS, RunLayout
from gradiend.trainer.argument_checks import check_decoder_call, check_eval_call
from gradiend.trainer.convergence_check import (
    check_converged,
    read_training,
    refuses_unconverged,
)
from gradiend.trainer.decoder_task import build_decoder_task, find_controls
from gradiend.trainer.eval_data import EvalData
from gradiend.trainer.seed_stitch import (
    StitchedComponents,
    saved_components,
    stitch_seed_components,
)
from gradiend.visualizer import (
    plot_components,
    plot_encoder_distributions,
    plot_probability_shifts,
)

logger = logging.getLogger(__name__)

# evaluate_decoder's keywords with their own defaults (not the run's): None is a value there
_CALL_KEYS = ("part", "search", "max_nll_increase", "search_config", "precondition", "heldout")


@dataclass
class RunEvaluation:
    """The encoder and decoder evaluations, the rewrite and their figures of one run."""

    get_model: Callable[[], ModelWithGradiend]
    data: EvalData | None  # None: a rewrite, which reads no data
    layout: RunLayout
    decoder: DecoderEvalConfig = field(default_factory=DecoderEvalConfig)
    encoder_max_size: int | None = None
    use_cache: bool = False
    img_format: str = "png"
    progress: bool = True
    memo: dict = field(default_factory=dict)  # the base model's decoder scores this session

    @property
    def target_classes(self) -> list[str]:
        if self.data is not None:
            return self.data.target_classes
        return [str(c) for c in load_context(self.layout.model_dir).get("target_classes", [])]

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    def model_fingerprint(self) -> Any:
        """The training run's cache fingerprint (``None`` when it has no record)."""
        stats = read_json_cache(self.layout.training)
        return None if stats is None else stats.get("cache_fingerprint")

    # ------------------------------------------------------------------ encoder
    def evaluate_encoder(
        self,
        split: str = "test",
        max_size: int | None = None,
        return_df: bool = False,
        plot: bool = False,
        plot_kwargs: dict | None = None,
        use_cache: bool | None = None,
        neutral: bool = True,
        allow_unconverged: bool = False,
    ) -> dict:
        """Encode held-out rows (and neutral variants) and return the incumbent's metric keys."""
        check_eval_call(split, max_size)
        check_converged(self.layout, "evaluate_encoder", allow_unconverged)
        mwg = self.get_model()
        max_size = max_size if max_size is not None else self.encoder_max_size
        task = self._encoder_task(split, max_size, neutral)
        cache = self.use_cache if use_cache is None else use_cache
        enc_df, result = encoder_eval.evaluate_encoder(mwg, task, self.layout, cache, neutral)
        result = with_training_verdicts(result, read_training(self.layout.training))
        if return_df:
            result["encoder_df"] = enc_df
        if plot and dist.is_main():
            kwargs = plot_kwargs or {}
            result["plot"] = self.plot_encoder_distributions(encoder_df=enc_df, **kwargs)
            if "components" in result:  # a split GRADIEND: which components carry the feature
                result["components_plot"] = self.plot_components({**result, "encoder_df": enc_df})
        return result

    def _encoder_task(self, split: str, max_size: int | None, neutral: bool) -> EncoderTask:
        data = self.data
        rows = cap_per_group(data.encoder_split(split), max_size, data.seed)
        texts = None
        if neutral and data.neutral is not None:
            n = max_size * 2 if max_size else len(data.neutral)
            texts = tuple(data.neutral_texts()[:n])
        tcs = data.target_classes
        return EncoderTask(
            split=split,
            max_size=max_size,
            rows=rows,
            labels=data.labels(rows),
            neutral_texts=texts,
            excluded=frozenset(data.excluded_words()),
            class_names={1: tcs[0], -1: tcs[1], 0: "neutral"},
            batch_size=self.decoder.batch_size,
            seed=data.seed,
            model_fingerprint=self.model_fingerprint(),
        )

    def plot_encoder_distributions(self, encoder_df: pd.DataFrame | None = None, **kwargs) -> dict:
        """The encoder-distribution figure (``gradiend.visualizer.encoder``) of the run's test
        encodings; saved as ``run_dir/encoder_distributions.<fmt>``."""
        if encoder_df is None:
            encoder_df = self.evaluate_encoder(return_df=True)["encoder_df"]
        kwargs.setdefault("output", self.layout.figure(FIG_ENCODER, self.img_format))
        kwargs.setdefault("target_classes", self.target_classes)
        kwargs.setdefault("img_format", self.img_format)
        return plot_encoder_distributions(encoder_df, **kwargs)

    def plot_components(
        self, encoder_results: dict | None = None, output: Any = None, show: bool | None = False
    ) -> dict:
        """The component figure of a split GRADIEND (``gradiend.visualizer.components``): each
        component's encoder |r| and its encodings per class; saved as
        ``run_dir/encoder_components.<fmt>``. ``encoder_results``: an
        ``evaluate_encoder(return_df=True)`` result (default: a new evaluation of the test rows)."""
        require_components(saved_components(self.layout), "plot_components")
        if encoder_results is None:
            encoder_results = self.evaluate_encoder(return_df=True)
        if "encoder_df" not in encoder_results or "components" not in encoder_results:
            raise ValueError(
                "encoder_results must be an evaluate_encoder(return_df=True) result of a split "
                "GRADIEND (with its 'encoder_df' and 'components'); pass None to evaluate anew"
            )
        if output is None:
            output = self.layout.figure(FIG_COMPONENTS, self.img_format)
        return plot_components(
            encoder_results["encoder_df"], encoder_results["components"], output=output,
            show=show, target_classes=self.target_classes, img_format=self.img_format,
        )  # fmt: skip

    def stitch_seed_components(
        self, output_dir: str | Path | None = None, device: str | None = None
    ) -> StitchedComponents:
        """One GRADIEND whose every component comes from the seed run with the best validation
        |r| for it (``gradiend.trainer.seed_stitch``); saved atomically to ``output_dir`` when
        given. Returns a ``StitchedComponents`` (the model and each component's seed)."""
        return stitch_seed_components(self.layout, output_dir, device)

    # ------------------------------------------------------------------ decoder
    @refuses_unconverged("evaluate_decoder")
    def evaluate_decoder(
        self,
        target_class: str | list[str] | None = None,
        increase_target_probabilities: bool = True,
        lrs: list[float] | None = None,
        feature_factors: list[float] | None = None,
        selector: Any = None,
        max_size_training_like: int | None = None,
        max_size_neutral: int | None = None,
        use_cache: bool | None = None,
        plot: bool = False,
        part: str = "decoder",
        search: str = "adaptive",
        max_nll_increase: float | None = 0.01,
        search_config: AdaptiveSearchConfig | None = None,
        precondition: Any = None,
        heldout: Any = None,
        control_pairs: Any = None,
        objective: str = "strengthen",
        balance_data: Any = None,
    ) -> dict[str, Any]:
        """Score ``θ + η·decoder(ff)`` along each direction and select a point per class.

        ``search="adaptive"`` (default) finds the edge of the budget per direction
        (``gradiend.evaluator.decoder_search``); ``search="grid"`` or explicit ``lrs`` score
        every step size of the grid. The budget is the selector's LMS rule (default
        ``LMSThresholdPolicy(0.99)``) and neutral ``NLL ≤ (1 + max_nll_increase) · NLL(base)``
        (``None``: no NLL bound). Returns ``{<class> or <class>_weaken: summary, "grid":
        [every evaluated point], "search": cost}`` (see ``gradiend.evaluator.decoder``).
        ``selector`` is a policy object, a callable ``(candidates, metric, base) -> entry |
        Selection``, or a float LMS ratio. ``precondition="fisher"`` (or a ``FisherConfig``)
        rewrites along ``decoder(ff) ⊘ (F + λ)``, ``F`` the neutral texts' diagonal Fisher
        (``gradiend.lm.fisher``): a stronger rewrite inside the same budget. Unset keywords
        take the run's defaults. ``heldout``: the budget's held-out check; ``control_pairs``:
        their transfer in ``specificity``. ``objective="balance"``/``"parity"``/``"prefer:<c>"``:
        one summary over every direction and h = 0 on ``balance_data`` (docs/decoder.md)."""
        check_decoder_call(lrs, feature_factors, max_size_training_like, max_size_neutral)
        strengthen = increase_target_probabilities
        goal, balance = self.check_objective(objective, balance_data, target_class, strengthen)
        controls = find_controls(self.data, control_pairs)  # before the model loads
        cfg = self._decoder_config(
            lrs=tuple(lrs) if lrs else None,
            feature_factors=tuple(feature_factors) if feature_factors else None,
            max_size_training_like=max_size_training_like, max_size_neutral=max_size_neutral,
            use_cache=use_cache, part=part, search=search, max_nll_increase=max_nll_increase,
            search_config=search_config or AdaptiveSearchConfig(), precondition=precondition,
            heldout=as_heldout_config(heldout),
        )  # fmt: skip
        classes = _as_list(target_class) or self.target_classes
        decoder_eval.check_classes(classes, self.target_classes)
        mwg = self.get_model()
        task = build_decoder_task(
            self.data, mwg.objective, classes, strengthen, cfg.max_size_training_like,
            cfg.max_size_neutral, self.model_fingerprint(), controls,
            balance=False if goal is None else (balance or True),
        )  # fmt: skip
        on_written = (lambda results: self.plot_probability_shifts(results)) if plot else None
        return decoder_eval.evaluate_decoder(mwg, task, cfg, self.layout, classes, strengthen,
                                             selector, self.progress, self.memo, on_written,
                                             goal)  # fmt: skip

    def check_objective(
        self, objective: Any, balance_data: Any, target_class: Any = None, strengthen: Any = True
    ) -> tuple[DecoderObjective | None, list[str] | None]:
        """``evaluate_decoder``'s objective (``None``: per class) and balance sentences,
        checked before any work (the mask is the run's, from its saved context)."""
        goal = parse_objective(objective, self.target_classes)
        check_objective_call(goal, target_class, strengthen)
        mask = MASK
        if balance_data is not None:
            mask = str(load_context(self.layout.model_dir).get("mask") or MASK)
        return goal, check_balance_data(balance_data, mask, goal)

    def _decoder_config(self, **overrides: Any) -> DecoderEvalConfig:
        """The run's defaults with every keyword that was given (not ``None``) on top; the
        call's own keywords (``_CALL_KEYS``) replace them as given, ``None`` included."""
        given = {k: v for k, v in overrides.items() if v is not None or k in _CALL_KEYS}
        return dataclasses.replace(self.decoder, **given)

    def plot_probability_shifts(
        self, decoder_results: dict | None = None, output=None, **kwargs
    ) -> dict:
        """The probability-shift figure (``gradiend.visualizer.decoder``) of the results."""
        if decoder_results is None:
            path = self.layout.decoder_results
            decoder_results = read_json(path) if path.exists() else self.evaluate_decoder()
        kwargs.setdefault("img_format", self.img_format)
        kwargs.setdefault("target_classes", self.target_classes)
        if output is None:
            tc = kwargs.get("target_class")
            suffix = f"_{tc}" if tc else ""
            output = self.layout.figure(FIG_SHIFTS, kwargs["img_format"], suffix)
        return plot_probability_shifts(decoder_results, output=output, **kwargs)

    # ------------------------------------------------------------------ rewrite
    def rewrite_base_model(
        self,
        decoder_results: dict | None = None,
        target_class: str | list[str] | None = None,
        increase_target_probabilities: bool = True,
        output_dir: str | Path | None = None,
        allow_unconverged: bool = False,
    ):
        """The base model rewritten at the selected point of ``target_class`` (a list gives one
        model per class). With ``output_dir`` the model and tokenizer are saved there (a
        sub-folder per class for a list) so ``AutoModelFor*.from_pretrained`` reloads them.
        Without ``decoder_results`` the run's ``decoder_results.json`` is read. Bad input is
        refused before the base model is loaded."""
        check_converged(self.layout, "rewrite_base_model", allow_unconverged)
        results = read_results(self.layout) if decoder_results is None else decoder_results
        classes = _as_list(target_class) or self.target_classes[:1]
        if output_dir is not None:
            check_rewrite_dirs(output_dir, classes, isinstance(target_class, list),
                              increase_target_probabilities)  # fmt: skip
        models = self.get_model().rewrite_from_results(
            results, target_class, increase_target_probabilities, output_dir, self.layout
        )
        for cls in classes:  # what the rewrite does, beside what it costs
            key = summary_key(cls, increase_target_probabilities)
            if isinstance(results.get(key), dict):
                logger.info(
                    "rewrite at the selected point: %s", describe_summary(key, results[key])
                )
        return models

    def modify_model(
        self,
        decoder_results: dict | None = None,
        target_class: str | None = None,
        increase_target_probabilities: bool = True,
        allow_unconverged: bool = False,
    ):
        """The base model at ``target_class``'s selected point: weight-rewritten for a gradient
        signal, a ``HookedModel`` (forward hooks at the trained sites) for an activation signal;
        ``HookedModel.save_pretrained_modified`` saves it (docs/signals.md)."""
        check_converged(self.layout, "modify_model", allow_unconverged)
        results = read_results(self.layout) if decoder_results is None else decoder_results
        return self.get_model().modify_model(
            results, target_class, increase_target_probabilities, self.layout
        )


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]

"""Trainer methods for decoder evaluation, the model rewrite and the probability-shift plot.

``DecoderMixin`` is mixed into ``TextPredictionTrainer``; it only uses the trainer's public
state (``table``, ``target_classes``, ``neutral_df``, ``args``, ``run_dir``, ``get_model``,
``get_training_stats``, ``img_format``, ``decoder_eval_targets``, ``progress``).

Files in the run directory: ``decoder_grid_cache.json`` (grid entries by ``(ff, lr)`` under a key
of everything that changes them; reused with ``use_cache``) and ``decoder_results.json`` (the
summaries of every evaluated direction and the last grid; read by ``rewrite_base_model`` when no
results are passed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from gradiend import distributed as dist
from gradiend._io import read_json, read_json_cache, write_json
from gradiend.data.examples import row_words
from gradiend.evaluator import decoder as dec
from gradiend.evaluator import fisher as fisher_mod
from gradiend.evaluator.decoder_scoring import PointScorer, PointStore, screen_groups
from gradiend.evaluator.decoder_search import (
    AdaptiveSearchConfig,
    initial_step,
    search_direction,
)
from gradiend.evaluator.encoder_rows import cap_per_group, fill_masks
from gradiend.evaluator.fisher import FisherConfig, as_fisher_config, texts_hash
from gradiend.lm.scoring import LMSScorer, RowTargets, TargetScorer, case_variants
from gradiend.trainer.fingerprint import data_hash
from gradiend.trainer.validation import check_decoder_call, check_results_match, check_save_dir

logger = logging.getLogger(__name__)

GRID_CACHE = "decoder_grid_cache.json"
RESULTS = "decoder_results.json"


class DecoderMixin:
    """``evaluate_decoder``, ``rewrite_base_model`` and ``plot_probability_shifts``."""

    # ------------------------------------------------------------------ evaluation
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
        precondition: str | FisherConfig | None = None,
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
        (``gradiend.evaluator.fisher``): a stronger rewrite inside the same budget.
        """
        check_decoder_call(lrs, feature_factors, max_size_training_like, max_size_neutral)
        if search not in ("adaptive", "grid"):
            raise ValueError(f"search must be 'adaptive' or 'grid', not {search!r}")
        t0 = time.perf_counter()
        strengthen = increase_target_probabilities
        tcs = list(self.target_classes)
        classes = _as_list(target_class) or tcs
        for c in classes:
            dec.feature_factor(c, tcs)  # validates
        explicit = lrs or self.args.decoder_eval_lrs
        ffs = list(
            feature_factors
            or self.args.decoder_eval_feature_factors
            or dec.default_feature_factors(classes, tcs, strengthen)
        )
        selector = dec.as_policy(selector)
        budget = dec.budget_for(selector, max_nll_increase)
        mode = "grid" if explicit or search == "grid" else "adaptive"
        if mode == "adaptive" and not budget.constrained:
            logger.info("no LMS or NLL bound to search the edge of; scoring the grid instead")
            mode = "grid"
        cfg = search_config or AdaptiveSearchConfig()
        fisher_cfg = as_fisher_config(precondition)
        mwg = self.get_model()
        rows = self._decoder_rows(classes, strengthen, max_size_training_like)
        targets, tmode = self._decoder_targets(rows)
        lms_texts, ignore_words = self._lms_texts(rows, max_size_neutral)
        pool = [] if self.neutral_df is None else self.neutral_df["text"].astype(str).tolist()
        fisher_texts = fisher_mod.select_texts(fisher_cfg, pool, lms_texts)
        key = self._grid_key(mwg, part, rows, targets, tmode, lms_texts, cfg)
        pre = None
        if fisher_cfg is not None:
            fkey = _hash([key["model"], key["gradiend"], texts_hash(fisher_texts)])
            pre = {"method": "fisher", "damping": fisher_cfg.damping, "key": fkey}
            pre["n_texts"] = len(fisher_texts)
            key["precondition"] = pre
        cache = bool(self.args.use_cache) if use_cache is None else use_cache
        store = PointStore(Path(self.run_dir) / GRID_CACHE, key, cache)
        scorer = self._point_scorer(mwg, rows, targets, lms_texts, ignore_words, cfg)
        base = self._base_point(mwg, store, scorer, key)
        scale = None
        if pre is not None:
            progress = getattr(self, "progress", True)
            fisher = fisher_mod.load_or_compute(  # every rank the same; rank 0 writes
                self.run_dir, mwg, fisher_texts, pre["key"], cache, progress, dist.is_main()
            )
            scale = fisher_mod.scale_vector(fisher, fisher_cfg.damping)
        with mwg.scaled_updates(scale):
            if mode == "grid":
                points = dec.grid_points(ffs, list(explicit or dec.DEFAULT_LRS))
                grid = self._run_grid(mwg, points, store, scorer, part)
            else:
                metrics = {
                    dec.direction_factor(c, tcs, strengthen): dec.metric_for(c, strengthen)
                    for c in classes
                }
                grid = [base] + self._run_search(
                    mwg, ffs, store, scorer, base, budget, metrics, part, cfg
                )
        dist.on_main(store.save, "writing the decoder cache")
        results: dict[str, Any] = dec.select(
            grid, classes, tcs, strengthen, selector, max_nll_increase
        )
        fingerprint = _tensor_hash(mwg)  # rewrite_base_model checks it is this GRADIEND
        for entry in results.values():
            entry["part"] = part
            entry["search"] = mode
            entry["gradiend_fingerprint"] = fingerprint
            entry["precondition"] = pre
        results["grid"] = grid
        results["search"] = _search_info(mode, t0, scorer, grid, lms_texts, rows)

        def write() -> None:  # rank 0 writes; the others see the files after it
            self._save_decoder_results(results)
            if plot:
                self.plot_probability_shifts(results)

        dist.on_main(write, "writing the decoder results")
        return results

    def _decoder_rows(self, classes: list[str], strengthen: bool, cap: int | None) -> pd.DataFrame:
        """Held-out pair rows of the classes that the requested directions are measured on."""
        tcs = list(self.target_classes)
        needed = {o for c in classes for o in tcs if (o != c) == strengthen}
        df = None
        for split in ("test", "validation", "train"):
            df = self.table.split(split)
            df = df[
                (df["factual_class"] != df["alternative_class"]) & df["factual_class"].isin(needed)
            ]
            if len(df):
                if split != "test":
                    logger.warning("no test rows for the decoder evaluation; using %s", split)
                break
        if df is None or not len(df):
            raise ValueError(f"no rows of classes {sorted(needed)} to evaluate the decoder on")
        cap = cap if cap is not None else self.args.decoder_eval_max_size_training_like
        return cap_per_group(df, cap, self.args.seed).reset_index(drop=True)

    def _decoder_targets(self, rows: pd.DataFrame) -> tuple[list[RowTargets], str]:
        """Single-mask texts with the words of every target class (static sets with case
        variants, an explicit mapping, or per-row words: ``decoder_eval_targets="label"``)."""
        mask, tcs = self.get_model().objective.mask, list(self.target_classes)
        spec = self.decoder_eval_targets
        static = None
        if isinstance(spec, dict):
            static = {
                c: [v for w in _as_list(spec[c]) for v in case_variants(str(w))]
                for c in tcs
                if c in spec
            }
        elif spec != "label":
            static = self._static_word_sets()
            if _overlap(static, self.get_model().objective.scorer()):
                logger.info("the classes share words; scoring the decoder per row")
                static = None
        out = []
        for rec in rows.to_dict("records"):
            text, fact, alt = _single_mask(rec, mask)
            words = (
                static
                if static is not None
                else {rec["factual_class"]: [fact], rec["alternative_class"]: [alt]}
            )
            out.append(RowTargets(text, words))
        return out, "static" if static is not None else "label"

    def _static_word_sets(self) -> dict[str, list[str]]:
        df = self.table.df
        sets: dict[str, list[str]] = {c: [] for c in self.target_classes}
        for col, cls_col in (("factual", "factual_class"), ("alternative", "alternative_class")):
            for word, cls in zip(df[col].astype(str), df[cls_col], strict=True):
                if cls in sets:
                    sets[cls] += case_variants(word)
        return {c: list(dict.fromkeys(ws)) for c, ws in sets.items()}

    def _lms_texts(self, rows: pd.DataFrame, cap: int | None) -> tuple[list[str], list[str]]:
        """Neutral texts (capped), else the rows with their factual words filled in, whose
        target words are then ignored."""
        cap = cap if cap is not None else self.args.decoder_eval_max_size_neutral
        if self.neutral_df is not None and len(self.neutral_df):
            texts = self.neutral_df["text"].astype(str).tolist()
            return (texts[:cap] if cap else texts), []
        mask = self.get_model().objective.mask
        texts = list(dict.fromkeys(fill_masks(r, mask) for r in rows.to_dict("records")))
        words = self._static_word_sets()
        return (texts[:cap] if cap else texts), sorted({w for ws in words.values() for w in ws})

    # ------------------------------------------------------------------ grid + cache
    def _grid_key(self, mwg, part, rows, targets, mode, lms_texts, cfg) -> dict:
        try:
            model_fp = self.get_training_stats().get("cache_fingerprint")
        except RuntimeError:
            model_fp = None
        return {
            "model": _hash(model_fp),
            "gradiend": _tensor_hash(mwg),
            "part": part,
            "rows": data_hash(rows),
            "mode": mode,
            "targets": _hash([(t.text, t.words) for t in targets]),
            "lms_texts": _hash(lms_texts),
            "n_rows": len(rows),
            "n_lms_texts": len(lms_texts),
            "screen": [cfg.screen_fraction, cfg.min_screen_texts, cfg.z],
            "seed": self.args.seed,
            "version": 2,
        }

    def _point_scorer(self, mwg, rows, targets, lms_texts, ignore_words, cfg) -> PointScorer:
        obj, lm = mwg.objective.scorer(), mwg.lm  # clm_mlm_head: the causal LM's own objective
        tcs = list(self.target_classes)
        bs = self.args.eval_batch_size
        device = next(lm.model.parameters()).device
        ignore = {i for w in ignore_words for i in obj.word_ids(w)}
        groups = screen_groups(len(lms_texts), cfg.screen_fraction, cfg.min_screen_texts, 42)
        lms = LMSScorer(
            lm.tokenizer,
            lm.kind,
            lms_texts,
            sorted(ignore),
            bs,
            seed=42,
            max_length=obj.max_length,
            device=device,
            groups=groups,
        )
        row_classes = rows["factual_class"].astype(str).tolist()
        target_scorer = TargetScorer(obj, targets, tcs, bs, device)
        lms.split = target_scorer.split = True  # under torch.distributed: batches over ranks
        return PointScorer(target_scorer, lms, row_classes, tcs, cfg.z)

    def _base_point(self, mwg, store: PointStore, scorer: PointScorer, key: dict) -> dict:
        """The unmodified model's full scores (from the store, this session, or scored now)."""
        pk = dec.point_key(0, 0)
        memo = self.__dict__.setdefault("_decoder_memo", {})
        # the base model's scores do not depend on how the update vector is preconditioned
        mk = _hash({k: v for k, v in key.items() if k != "precondition"})
        if store.get(pk, True) is None or pk not in store.stats:
            if mk in memo:
                entry, stats = memo[mk]
                store.put(pk, {**entry, "_stats": stats})
            else:
                entry = scorer.full(mwg.base_model)
                entry["id"] = dec.point_id(0, 0)
                store.put(pk, entry)
        memo[mk] = (store.entries[pk], store.stats[pk])
        return store.entries[pk]

    def _run_grid(self, mwg, points, store: PointStore, scorer: PointScorer, part) -> list:
        todo = [p for p in points if store.get(dec.point_key(*p), True) is None]
        if todo:
            t0 = time.perf_counter()
            done = dec.run_grid(mwg, todo, scorer.full, part, getattr(self, "progress", True))
            for pk, entry in done.items():
                store.put(pk, entry)
            logger.info("decoder grid: %d points in %.1f s", len(todo), time.perf_counter() - t0)
        return [store.entries[dec.point_key(*p)] for p in points]

    def _run_search(self, mwg, ffs, store, scorer, base, budget, metrics, part, cfg) -> list:
        """The adaptive search along each direction; returns its points in (ff, η) order."""
        base_stats = store.stats[dec.point_key(0, 0)]
        weight_norm = math.sqrt(sum(float(t.float().pow(2).sum()) for t in mwg.grads.snapshot()))
        bar = tqdm(desc="decoder search", unit="point", disable=not getattr(self, "progress", True))
        found: list[tuple[float, float]] = []
        for ff in ffs:
            update = mwg.get_update_vector(ff, part)
            eta0 = initial_step(float(update.norm()), weight_norm, cfg.initial_relative_change)

            def evaluate(lr: float, full: bool, ff=ff, update=update) -> dict:
                pk = dec.point_key(ff, lr)
                have = store.get(pk, full)
                if have is not None:
                    return have
                screened = store.entries.get(pk)
                with mwg.applied(lr, ff, part, update=update) as model:
                    if full and screened is not None:
                        entry = scorer.confirm(model, screened, store.stats[pk])
                    elif full:
                        entry = scorer.full(model)
                    else:
                        entry = scorer.screen(model, base, base_stats)
                entry["id"] = dec.point_id(ff, lr)
                bar.update(1)
                return store.put(pk, entry)

            metric = metrics.get(ff, dec.lr_of)
            trace = search_direction(evaluate, base, budget, metric, eta0, cfg)
            found += [(ff, lr) for lr in trace.screened + trace.confirmed]
        bar.close()
        return [store.entries[dec.point_key(*p)] for p in sorted(set(found))]

    def _save_decoder_results(self, results: dict) -> None:
        path = Path(self.run_dir) / RESULTS
        merged = read_json_cache(path) or {}
        merged.update(results)
        write_json(path, merged)

    # ------------------------------------------------------------------ rewrite
    def rewrite_base_model(
        self,
        decoder_results: dict | None = None,
        target_class: str | list[str] | None = None,
        increase_target_probabilities: bool = True,
        output_dir: str | Path | None = None,
    ):
        """The base model rewritten at the selected point of ``target_class`` (a list gives one
        model per class). With ``output_dir`` the model and tokenizer are saved there (a
        sub-folder per class for a list) so ``AutoModelFor*.from_pretrained`` reloads them."""
        if decoder_results is None:
            path = Path(self.run_dir) / RESULTS
            if not path.exists():
                raise RuntimeError("no decoder results: call evaluate_decoder() first")
            decoder_results = read_json(path)
        classes = _as_list(target_class) or list(self.target_classes)[:1]
        if output_dir is not None:
            for cls in classes if isinstance(target_class, list) else [None]:
                key = dec.summary_key(cls, increase_target_probabilities) if cls else ""
                check_save_dir(Path(output_dir) / key)
        mwg = self.get_model()
        check_results_match(decoder_results, _tensor_hash(mwg))
        models = []
        for cls in classes:
            key = dec.summary_key(cls, increase_target_probabilities)
            if key not in decoder_results:
                raise KeyError(
                    f"the decoder results have no entry {key!r}; run "
                    f"evaluate_decoder(target_class={cls!r}, increase_target_probabilities="
                    f"{increase_target_probabilities})"
                )
            entry = decoder_results[key]
            pre = entry.get("precondition")
            scale = None
            if pre:
                fisher = fisher_mod.load_fisher(self.run_dir, pre["key"])
                scale = fisher_mod.scale_vector(fisher, pre["damping"])
            with mwg.scaled_updates(scale):
                rewritten = mwg.rewrite_base_model(
                    entry["learning_rate"], entry["feature_factor"], entry.get("part", "decoder")
                )
            model = plain_model(rewritten)
            if output_dir is not None:
                out = Path(output_dir) / key if isinstance(target_class, list) else Path(output_dir)
                save = lambda m=model, o=out: save_model(m, mwg.tokenizer, o)  # noqa: E731
                dist.on_main(save, "saving the rewritten model")
            models.append(model)
        return models if isinstance(target_class, list) else models[0]

    def plot_probability_shifts(
        self, decoder_results: dict | None = None, output=None, **kwargs
    ) -> dict:
        """The probability-shift figure (``gradiend.visualizer.decoder``) of the results."""
        from gradiend.visualizer.decoder import plot_probability_shifts

        if decoder_results is None:
            path = Path(self.run_dir) / RESULTS
            decoder_results = read_json(path) if path.exists() else self.evaluate_decoder()
        kwargs.setdefault("img_format", self.img_format)
        kwargs.setdefault("target_classes", list(self.target_classes))
        if output is None:
            tc = kwargs.get("target_class")
            output = Path(self.run_dir) / (
                f"decoder_probability_shifts{f'_{tc}' if tc else ''}.{kwargs['img_format']}"
            )
        return plot_probability_shifts(decoder_results, output=output, **kwargs)


# --------------------------------------------------------------------------- helpers
def _search_info(mode: str, t0: float, scorer: PointScorer, grid, lms_texts, rows) -> dict:
    """What the evaluation cost: wall time, full-pass equivalents and the points scored."""
    info = {
        "mode": mode,
        "seconds": time.perf_counter() - t0,
        "full_pass_equivalents": scorer.work,
        "n_points": len(grid),
        "n_screened": sum(e.get("scored") == "screen" for e in grid),
        "n_lms_texts": len(lms_texts),
        "n_rows": len(rows),
    }
    logger.info(
        "decoder %s: %d points, %.1f full-pass equivalents, %.1f s",
        mode,
        len(grid),
        scorer.work,
        info["seconds"],
    )
    return info


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """An ordinary HF model: GGUF/quantised loads are rebuilt from their config without
    ``quantization_config`` (they refuse ``save_pretrained``)."""
    config = model.config
    if getattr(model, "hf_quantizer", None) is None and not hasattr(config, "quantization_config"):
        return model
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    cls = AutoModelForMaskedLM if "MaskedLM" in type(model).__name__ else AutoModelForCausalLM
    plain = cls.from_config(config, dtype=next(model.parameters()).dtype)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def save_model(model: torch.nn.Module, tokenizer: Any, output_dir: str | Path) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    logger.info("rewritten model and tokenizer saved to %s", out)
    return out


def _single_mask(rec: dict, mask: str) -> tuple[str, str, str]:
    """The row's text with one target mask (the one whose word is the row's factual word; the
    others filled with their own words), and the factual/alternative word at it."""
    facts, alts = row_words(rec)
    parts = rec["masked"].split(mask)
    n = len(parts) - 1
    lower = [f.lower() for f in facts]
    idx = lower.index(str(rec["factual"]).lower()) if str(rec["factual"]).lower() in lower else 0
    text = parts[0]
    for i, part in enumerate(parts[1:]):
        text += (mask if i == idx else facts[min(i, len(facts) - 1)]) + part
    idx = min(idx, n - 1)
    return text, facts[min(idx, len(facts) - 1)], alts[min(idx, len(alts) - 1)]


def _overlap(words: dict[str, list[str]], objective) -> bool:
    unk = objective.tokenizer.unk_token_id
    ids = {
        c: {t for w in ws if unk not in (t := tuple(objective.word_ids(w)))}
        for c, ws in words.items()
    }
    sets = list(ids.values())
    return any(sets[i] & sets[j] for i in range(len(sets)) for j in range(i + 1, len(sets)))


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tensor_hash(mwg) -> str:
    """A cheap content hash of the GRADIEND (strided samples of every tensor)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(mwg.gradiend.state_dict().items()):
            flat = t.detach().reshape(-1)
            h.update(name.encode() + str(tuple(t.shape)).encode())
            h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

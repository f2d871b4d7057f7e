"""The trainer's encoder evaluation and figures: held-out rows and neutral texts encoded, the
incumbent's metric keys, results cached in the run folder, and the plots drawn from a run."""

from __future__ import annotations

import logging

import pandas as pd

from gradiend import distributed as dist
from gradiend._io import read_json_cache, write_json
from gradiend.evaluator.encoder import encoder_metrics
from gradiend.evaluator.encoder_rows import cap_per_group, encoder_rows
from gradiend.trainer.fingerprint import data_hash
from gradiend.trainer.validation import check_eval_call

logger = logging.getLogger(__name__)


class EncoderMixin:
    """``evaluate_encoder`` and the plots of a trained run (mixed into the trainer)."""

    def evaluate_encoder(
        self,
        split: str = "test",
        max_size: int | None = None,
        return_df: bool = False,
        plot: bool = False,
        plot_kwargs: dict | None = None,
        use_cache: bool | None = None,
        neutral: bool = True,
    ) -> dict:
        """Encode held-out rows (and neutral variants) and return the incumbent's metric keys."""
        check_eval_call(split, max_size)
        mwg = self.get_model()
        max_size = max_size if max_size is not None else self.args.encoder_eval_max_size
        rows = cap_per_group(self.table.split(split), max_size, self.args.seed)
        stem = f"encoded_values{f'_max_size_{max_size}' if max_size else ''}_split_{split}"
        csv_path, json_path = self.run_dir / f"{stem}.csv", self.run_dir / f"{stem}.json"
        use_cache = bool(self.args.use_cache) if use_cache is None else use_cache
        fp = {
            "model": self.get_training_stats().get("cache_fingerprint"),
            "rows": data_hash(rows),
            "neutral": neutral,
        }
        cached = read_json_cache(json_path) if use_cache and csv_path.exists() else None
        if cached is not None and cached.get("fingerprint") == fp:
            try:
                enc_df = pd.read_csv(csv_path)
                return self._encoder_result(enc_df, return_df, plot and dist.is_main(), plot_kwargs)
            except (OSError, ValueError, KeyError) as err:
                logger.warning("cache file %s is unreadable (%s); recomputing", csv_path, err)
        neutral_texts = None
        if neutral and self.neutral_df is not None:
            n = max_size * 2 if max_size else len(self.neutral_df)
            neutral_texts = self.neutral_df["text"].astype(str).tolist()[:n]
        excluded = self._excluded_words()
        enc_df = encoder_rows(
            mwg,
            rows,
            self.labels(rows),
            neutral_texts,
            excluded,
            self.args.eval_batch_size,
            self.args.seed,
            include_neutral_training=neutral and split == "test",
        )

        def write() -> dict:  # rank 0 writes; the others see the files after it
            result = self._encoder_result(enc_df, return_df, plot, plot_kwargs)
            enc_df.to_csv(csv_path, index=False)
            summary = {k: v for k, v in result.items() if k != "encoder_df"}
            write_json(json_path, {"fingerprint": fp, **summary})
            return result

        result = dist.on_main(write, "writing the encoder results")
        if result is None:  # other ranks: the same numbers, no figure
            result = self._encoder_result(enc_df, return_df, False, None)
        return result

    def _excluded_words(self) -> set[str]:
        df = self.table.df
        words = {w.lower() for w in pd.concat([df["factual"], df["alternative"]]).astype(str)}
        return words | self.neutral_excluded

    def _encoder_result(self, enc_df, return_df, plot, plot_kwargs) -> dict:
        names = {1: self.target_classes[0], -1: self.target_classes[1], 0: "neutral"}
        result = encoder_metrics(enc_df, names)
        if return_df:
            result["encoder_df"] = enc_df
        if plot:
            result["plot"] = self.plot_encoder_distributions(
                encoder_df=enc_df, **(plot_kwargs or {})
            )
        return result

    def plot_encoder_distributions(self, encoder_df: pd.DataFrame | None = None, **kwargs) -> dict:
        from gradiend.visualizer.encoder import plot_encoder_distributions

        if encoder_df is None:
            encoder_df = self.evaluate_encoder(return_df=True)["encoder_df"]
        kwargs.setdefault("output", self.run_dir / f"encoder_distributions.{self.img_format}")
        kwargs.setdefault("target_classes", self.target_classes)
        kwargs.setdefault("img_format", self.img_format)
        return plot_encoder_distributions(encoder_df, **kwargs)

    def plot_importance_by_layer(self, output=None, **kwargs) -> dict:
        """Importance share per layer × module type of the trained GRADIEND
        (``gradiend.visualizer.importance``); saved as ``run_dir/importance_by_layer.<fmt>``."""
        from gradiend.visualizer.importance import plot_importance_by_layer

        output = output or self.run_dir / f"importance_by_layer.{self.img_format}"
        kwargs.setdefault("img_format", self.img_format)
        return plot_importance_by_layer(
            {self.run_id or "run": self.get_model().gradiend}, output_path=output, **kwargs
        )

    def plot_training_convergence(self, output=None, **kwargs) -> dict:
        from gradiend.visualizer.convergence import plot_training_convergence

        output = output or self.run_dir / f"training_convergence.{self.img_format}"
        kwargs.setdefault("img_format", self.img_format)
        kwargs.setdefault("target_classes", list(self.target_classes))
        return plot_training_convergence(self.get_training_stats(), output=output, **kwargs)

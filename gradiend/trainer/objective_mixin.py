"""Trainer methods that choose the prediction objective, and the decoder-only MLM head.

``prediction_objective="auto"``: ``mlm_mask_token`` for masked LMs, ``seq2seq_encoder_mlm`` for
encoder-decoder models, and for decoder-only models ``clm_mlm_head`` when a trained head is in
the run directory (``<run_dir>/decoder_mlm_head``), else ``clm_next_token``. Naming
``clm_mlm_head`` trains the head when none matches (by fingerprint) and reuses it otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gradiend.lm.mlm_head import HEAD_DIR, HeadTraining, MLMHead, fit_or_load_head, head_rows
from gradiend.lm.objectives import Objective, make_objective

logger = logging.getLogger(__name__)


class ObjectiveMixin:
    """Uses the trainer's ``args``, ``table``, ``run_dir``, ``mask``, ``progress``, ``_base``."""

    @property
    def mlm_head_dir(self) -> Path:
        return Path(self.run_dir) / HEAD_DIR

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
        lm = self._base()
        if lm.kind != "clm":
            raise ValueError(f"the MLM head is for decoder-only models; this one is {lm.kind!r}")
        a = self.args
        cfg = HeadTraining(
            epochs=a.decoder_mlm_head_epochs if epochs is None else epochs,
            batch_size=a.decoder_mlm_head_batch_size if batch_size is None else batch_size,
            lr=a.decoder_mlm_head_lr if lr is None else lr,
            max_size=a.decoder_mlm_head_max_size if max_size is None else max_size,
            seed=a.seed,
        )
        head = fit_or_load_head(
            lm,
            head_rows(self.table.split("train")),
            self._head_labels(),
            self.mlm_head_dir,
            cfg,
            self.mask,
            validation=head_rows(self.table.split("validation")),
            use_cache=use_cache,
            progress=self.progress,
        )
        self.__dict__.pop("_objective_cache", None)  # the next objective uses this head
        return head

    def _head_labels(self) -> list[str]:
        df = self.table.df
        words = list(df["factual"].astype(str)) + list(df["alternative"].astype(str))
        if "mask_labels" in df.columns:
            words += [w for v in df["mask_labels"].dropna() for w in str(v).split("|") if w]
        return sorted(set(words))

    def _objective(self) -> Objective:
        cached = self.__dict__.get("_objective_cache")
        if cached is not None:
            return cached
        lm, name = self._base(), self.args.prediction_objective
        kwargs = {}
        if lm.kind == "clm" and name in ("auto", "clm_mlm_head"):
            present = (self.mlm_head_dir / "head.json").exists()
            if name == "clm_mlm_head":
                kwargs["head"] = self.train_decoder_only_mlm_head()
            elif present:
                logger.info("a trained MLM head is in %s: using clm_mlm_head", self.mlm_head_dir)
                kwargs["head"] = MLMHead.from_pretrained(self.mlm_head_dir)
                name = "clm_mlm_head"
        objective = make_objective(name, lm.kind, lm.tokenizer, mask=self.mask, **kwargs)
        self.__dict__["_objective_cache"] = objective
        return objective

    def _param_patterns(self) -> list[str] | None:
        """``args.params``, or the objective's default selection (e.g. a seq2seq encoder)."""
        return self.args.params or self._objective().default_params(self._base().model)

    def _save_objective(self, model_dir: Path) -> None:
        """Save what the GRADIEND needs beside it to be reloaded (the MLM head)."""
        head = getattr(self._objective(), "head", None)
        if head is not None:
            head.save_pretrained(Path(model_dir) / HEAD_DIR)

    def _objective_for(self, metadata: dict) -> Objective | None:
        """The trainer's objective when a loaded GRADIEND was trained with it."""
        objective = self._objective()
        return objective if metadata.get("prediction_objective") == objective.name else None

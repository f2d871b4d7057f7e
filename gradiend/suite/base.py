"""TrainerSuite: many children (one ``TextPredictionTrainer`` each) over one base model.

A suite builds its children up front (bad input fails before any model is loaded), loads the
base model once for all of them and hands every child the same :class:`GradientStore`, so each
distinct (sentence, word) gradient is computed once per suite. Each child's folder
(``<experiment_dir>/<run_id>/<child_id>/``) is a normal run: it can be loaded, evaluated or
resumed on its own, and ``use_cache`` reuses finished children when a suite is run again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gradiend import distributed as dist
from gradiend._io import write_json
from gradiend._kwargs import did_you_mean, init_names
from gradiend.lm.gradients import finite_check_once
from gradiend.suite.store import GradientStore
from gradiend.trainer.arguments import TrainingArguments

logger = logging.getLogger(__name__)

SUITE_RECORD = "suite.json"


class TrainerSuite:
    """Children keyed by id (``definitions``: objects with ``child_id``, ``label`` and
    ``target_classes``); ``data_for(definition)`` gives a child's data (default: the suite's).
    ``gradient_store_max_gb`` bounds the shared store (default: ``args.gradient_cache_max_gb``)."""

    def __init__(
        self,
        trainer_cls: type | None = None,
        *,
        model: Any,
        data: Any = None,
        run_id: str | None = None,
        args: TrainingArguments | None = None,
        training_args: TrainingArguments | None = None,
        definitions: Sequence[Any] = (),
        share_gradients: bool = True,
        gradient_store_max_gb: float | None = None,
        **trainer_kwargs: Any,
    ):
        if trainer_cls is None:
            # lazy: importing the trainer loads the model stack, needed only here
            from gradiend.trainer import TextPredictionTrainer as trainer_cls
        self.trainer_cls = trainer_cls
        _check_kwargs(type(self), trainer_cls, trainer_kwargs)
        self.args = args or training_args or TrainingArguments()
        if not isinstance(self.args, TrainingArguments):
            raise TypeError(f"args must be a TrainingArguments, got {type(self.args).__name__}")
        self.model_arg, self.data, self.run_id = model, data, run_id
        self.share_gradients = share_gradients
        if gradient_store_max_gb is None:
            gradient_store_max_gb = self.args.gradient_cache_max_gb
        self.store = GradientStore(gradient_store_max_gb)
        self.definitions = list(definitions)
        self.trainer_kwargs = trainer_kwargs
        self._children: dict[str, Any] = {}
        for d in self.definitions:  # every child now: bad input is refused before any model
            self._children[d.child_id] = self._make_child(d)
        self._lm = None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ children
    def data_for(self, definition: Any) -> Any:
        return self.data

    def child_args(self, definition: Any) -> TrainingArguments:
        return dataclasses.replace(self.args)

    def _make_child(self, definition: Any):
        rid = definition.child_id if self.run_id is None else f"{self.run_id}/{definition.child_id}"
        return self.trainer_cls(
            model=self.model_arg,
            run_id=rid,
            data=self.data_for(definition),
            target_classes=list(definition.target_classes),
            args=self.child_args(definition),
            **self.trainer_kwargs,
        )

    @property
    def child_ids(self) -> list[str]:
        return list(self._children)

    @property
    def trainers(self) -> dict[str, Any]:
        return dict(self._children)

    def labels(self) -> dict[str, str]:
        return {d.child_id: d.label for d in self.definitions}

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())

    def items(self):
        return self._children.items()

    def get_trainer(self, key: Any):
        """A child by id, by label or by its pair of classes (in either order)."""
        if key in self._children:
            return self._children[key]
        for d in self.definitions:
            if key == d.label:
                return self._children[d.child_id]
            if not isinstance(key, str) and set(map(str, key)) == set(d.target_classes):
                return self._children[d.child_id]
        raise KeyError(f"no child {key!r} in this suite; children are {self.child_ids}")

    @property
    def suite_dir(self) -> Path:
        base = Path(self.args.experiment_dir or "runs")
        return base / self.run_id if self.run_id else base

    # ------------------------------------------------------------------ one base model
    def _attach(self, children: Iterable[Any] | None = None) -> None:
        """Load the base model once and give it (and the shared store) to the children."""
        children = list(self._children.values() if children is None else children)
        if not children:
            return
        if self._lm is None:
            self._lm = next((c._lm for c in children if c._lm is not None), None)
            if self._lm is None:
                self._lm = children[0]._base()
        for child in children:
            if child._lm is None:
                child._lm = self._lm
            if self.share_gradients:
                child._computer_factory = self.store.factory(child)

    # ------------------------------------------------------------------ training
    def train(self, use_cache: bool | str | None = None, children: Sequence[str] | None = None):
        """Train every child (or the ids in ``children``) and return ``{child_id: model}``.

        ``use_cache`` overrides the children's ``TrainingArguments.use_cache`` (``True``:
        finished children are reused, a killed suite resumes where it stopped). Under torchrun
        with at least as many children as ranks, child ``i`` trains on rank ``i % world`` (each
        rank shares one store among its children); otherwise every child uses all ranks in turn.
        """
        ids = self.child_ids if children is None else [self._id_of(c) for c in children]
        if use_cache is not None:
            for cid in ids:
                child = self._children[cid]
                child.args = dataclasses.replace(child.args, use_cache=use_cache)
        t0 = time.perf_counter()
        with self._shared():
            if dist.is_distributed() and len(ids) >= dist.world_size():
                self._train_spread(ids)
            else:
                self._attach([self._children[c] for c in ids])
                for cid in ids:
                    self._train_one(cid)
        self.timings["train"] = time.perf_counter() - t0
        self._write_record()
        return {cid: self._children[cid].get_model() for cid in ids}

    def _shared(self):
        """The scope of the children's shared fixed costs: the base model's finite-weight check
        is made by the first computer built on it, once per suite (not once per child)."""
        return finite_check_once(self.store.checked)

    def _id_of(self, key: Any) -> str:
        child = self.get_trainer(key)
        return next(cid for cid, c in self._children.items() if c is child)

    def _train_one(self, cid: str) -> dict:
        t = time.perf_counter()
        before = self.store.stats.backward_passes
        self._children[cid].train()
        took = time.perf_counter() - t
        self.timings[f"child:{cid}"] = took
        return {
            "child_id": cid,
            "seconds": took,
            "backward_passes": self.store.stats.backward_passes - before,
        }

    def _train_spread(self, ids: list[str]) -> None:
        """Children over the ranks (``distributed.run_suite``); rank 0 reads the results back."""

        def one(cid: str) -> dict:
            self._attach([self._children[cid]])
            out = self._train_one(cid)
            out["store"] = self.store.stats.to_dict()
            return out

        results = dist.run_suite(ids, one, timeout_s=self.args.distributed_timeout_s)
        self.rank_results = results

    @property
    def stats(self) -> dict:
        """Base-model passes of this suite's process: ``backward_passes`` beside
        ``distinct_items`` (the distinct (sentence, word) gradients it needed), and timings."""
        out = self.store.stats.to_dict()
        out["distinct_items"] = self.store.distinct_items
        out["children"] = len(self._children)
        out["timings"] = dict(self.timings)
        return out

    def _write_record(self) -> None:
        if not dist.is_main() or self.args.experiment_dir is None:
            return
        record = {
            "children": {d.child_id: {"label": d.label, "target_classes": list(d.target_classes)}
                         for d in self.definitions},
            "stats": self.stats,
        }  # fmt: skip
        write_json(self.suite_dir / SUITE_RECORD, record)

    # ------------------------------------------------------------------ results
    def get_models(self, gradiend_only: bool = False) -> dict[str, Any]:
        """``{child_id: ModelWithGradiend}`` (``gradiend_only``: the ``GradiendModel`` alone)."""
        self._attach()
        with self._shared():
            models = {cid: c.get_model() for cid, c in self._children.items()}
        return {k: m.gradiend for k, m in models.items()} if gradiend_only else models

    def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``{child_id: child.<method>(*args, **kwargs)}`` on every child."""
        self._attach()
        for child in self._children.values():
            if not callable(getattr(child, method, None)):
                raise AttributeError(f"{type(child).__name__} has no method {method!r}")
        with self._shared():
            return {cid: getattr(c, method)(*args, **kwargs) for cid, c in self._children.items()}

    def evaluate_encoder(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("evaluate_encoder", **kwargs)

    def evaluate_decoder(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("evaluate_decoder", **kwargs)

    def evaluate(self, encoder: bool = True, decoder: bool = True, **kwargs: Any) -> dict:
        out: dict[str, Any] = {}
        if encoder:
            out["encoder"] = self.evaluate_encoder(**kwargs.pop("encoder_kwargs", {}))
        if decoder:
            out["decoder"] = self.evaluate_decoder(**kwargs.pop("decoder_kwargs", {}))
        return out

    def clear_model_cache(self) -> None:
        """Forget the loaded models (base model, GRADIENDs) and the stored gradients."""
        self.store.clear()
        self.store.checked.clear()  # a model loaded again is checked again
        self._lm = None
        for child in self._children.values():
            child._lm, child._model = None, None


def _check_kwargs(suite_cls: type, trainer_cls: type, kwargs: dict) -> None:
    """A keyword neither the suite nor its children take is refused, with a "did you mean"."""
    child = init_names(trainer_cls)
    if child is None:
        return
    own = [n for c in suite_cls.__mro__ if "__init__" in vars(c) for n in init_names(c) or []]
    names = set(child) | set(own)
    for key in kwargs:
        if key not in names:
            raise TypeError(
                f"{suite_cls.__name__} has no parameter {key!r}{did_you_mean(key, names)}"
            )

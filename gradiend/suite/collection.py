"""TrainerCollection: trainers and suites trained and compared together."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradiend.suite.base import TrainerSuite
from gradiend.suite.views import SuiteFigures

logger = logging.getLogger(__name__)


class TrainerCollection(SuiteFigures):
    """An ordered set of trainers keyed by id (a suite contributes its children). Trainers
    built on the very same model object share one base model while they train."""

    def __init__(self, *trainers: Any, ids: Iterable[str] | None = None):
        self._children: dict[str, Any] = {}
        self._suites: list[TrainerSuite] = []
        names = list(ids) if ids is not None else None
        for i, t in enumerate(trainers):
            self._add(t, None if names is None else names[i])

    @classmethod
    def merge(cls, suites: Iterable[Any] = (), trainers: Iterable[Any] = ()) -> TrainerCollection:
        """One collection of every child of ``suites`` and every trainer of ``trainers``."""
        return cls(*list(suites), *list(trainers))

    def _add(self, t: Any, name: str | None) -> None:
        if isinstance(t, TrainerCollection):
            for cid, child in t.items():
                self._put(cid, child)
            self._suites += [s for s in t._suites if s not in self._suites]
            return
        if isinstance(t, TrainerSuite):
            self._suites.append(t)
            for cid, child in t.items():
                self._put(cid if t.run_id is None else f"{t.run_id}/{cid}", child)
            return
        if not hasattr(t, "train") or not hasattr(t, "get_model"):
            raise TypeError(
                f"a TrainerCollection holds trainers and suites, not {type(t).__name__}"
            )
        self._put(name or t.run_id or f"trainer_{len(self._children)}", t)

    def _put(self, key: str, child: Any) -> None:
        if key in self._children and self._children[key] is not child:
            raise ValueError(f"two trainers share the id {key!r}: give ids=[...]")
        self._children[key] = child

    def items(self):
        return self._children.items()

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())

    @property
    def trainers(self) -> dict[str, Any]:
        return dict(self._children)

    def labels(self) -> dict[str, str]:
        return {k: k for k in self._children}

    def get_trainer(self, key: str):
        if key not in self._children:
            raise KeyError(f"no trainer {key!r}; ids are {list(self._children)}")
        return self._children[key]

    def train(self, use_cache: bool | str | None = None) -> dict[str, Any]:
        """Train each suite (sharing its gradients) and each other trainer; ``{id: model}``."""
        in_suite = {id(c) for s in self._suites for c in s}
        for suite in self._suites:
            suite.train(use_cache=use_cache)
        shared: dict[int, Any] = {}
        for child in self._children.values():
            if id(child) in in_suite:
                continue
            if use_cache is not None:
                child.args = dataclasses.replace(child.args, use_cache=use_cache)
            key = None if isinstance(child.model_arg, (str, Path)) else id(child.model_arg)
            if child._lm is None and key is not None and key in shared:
                child._lm = shared[key]
            child.train()
            shared.setdefault(key, child._lm)
        return {k: c.get_model() for k, c in self._children.items()}

    def _attach(self) -> None:
        """Each suite's children on their suite's one base model (loaded once per suite)."""
        for suite in self._suites:
            suite._attach()

    def get_models(self, gradiend_only: bool = False) -> dict[str, Any]:
        self._attach()
        models = {k: c.get_model() for k, c in self._children.items()}
        return {k: m.gradiend for k, m in models.items()} if gradiend_only else models

    def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``{id: trainer.<method>(*args, **kwargs)}`` on every trainer."""
        self._attach()
        return {k: getattr(c, method)(*args, **kwargs) for k, c in self._children.items()}

    def evaluate_encoder(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("evaluate_encoder", **kwargs)

    def evaluate_decoder(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("evaluate_decoder", **kwargs)

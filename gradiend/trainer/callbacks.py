"""Training callbacks: code of yours that runs at the loop's events (``train(callbacks=[…])``).

Subclass ``TrainingCallback`` and override the hooks you need; each receives keyword arguments
only, so a hook can ignore what it does not read (``**_``). The events:

- ``on_step(seed, step, loss)`` after every optimiser step (``loss`` is a 0-dim tensor on the
  GRADIEND's device; ``float(loss)`` waits for the device, so read it only when you need it),
- ``on_evaluate(seed, step, summary, learning_rate)`` after every validation evaluation
  (``summary``: correlation, ``mean_by_class``, … of the current weights; step 0 included),
- ``on_save(seed, step, path)`` after a periodic checkpoint was written (``save_strategy="steps"``),
- ``on_seed_end(seed, record, stats)`` when a seed finished (its record as in
  ``training.json["seeds"]``).

A hook that raises stops the training with that error (it is not taken for a failing seed).
The trackers of ``report_to`` and the runtime monitor are callbacks of this kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["CallbackError", "CallbackList", "TrainingCallback", "TrainerCallback"]

EVENTS = ("on_step", "on_evaluate", "on_save", "on_seed_end")


class TrainingCallback:
    """Base class of a callback: every hook does nothing until overridden."""

    def on_step(self, *, seed: int, step: int, loss: Any, **_: Any) -> None:
        """After optimiser step ``step`` of ``seed``."""

    def on_evaluate(
        self, *, seed: int, step: int, summary: dict, learning_rate: float, **_: Any
    ) -> None:
        """After a validation evaluation at ``step`` (``summary`` as in ``training.json``)."""

    def on_save(self, *, seed: int, step: int, path: Any, **_: Any) -> None:
        """After the checkpoint of ``step`` was written to the folder ``path``."""

    def on_seed_end(self, *, seed: int, record: dict, stats: dict, **_: Any) -> None:
        """When ``seed`` finished: its record and its statistics (evaluations, losses)."""


TrainerCallback = TrainingCallback  # Hugging Face's name for the same idea


class CallbackError(RuntimeError):
    """A callback raised: training stops (the seed loop does not retry the next seed)."""


class CallbackList:
    """Several callbacks called in order; only the hooks some callback overrides are called,
    so a loop without callbacks pays nothing per step."""

    def __init__(self, callbacks: Iterable[Any] = ()):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not any(callable(getattr(cb, e, None)) for e in EVENTS):
                raise TypeError(
                    f"callback {cb!r} has none of the hooks {', '.join(EVENTS)}: subclass "
                    "gradiend.TrainingCallback and override the ones you need"
                )
        self._hooks = {e: [h for cb in self.callbacks if (h := _override(cb, e))] for e in EVENTS}

    def __bool__(self) -> bool:
        return any(self._hooks.values())

    def wants(self, event: str) -> bool:
        return bool(self._hooks[event])

    def call(self, event: str, **kwargs: Any) -> None:
        for hook in self._hooks[event]:
            try:
                hook(**kwargs)
            except CallbackError:
                raise
            except Exception as err:
                raise CallbackError(
                    f"callback {getattr(hook, '__self__', hook)!r} raised in {event}: "
                    f"{type(err).__name__}: {err}"
                ) from err


def _override(cb: Any, event: str):
    """``cb``'s hook for ``event`` unless it is the base class's no-op."""
    hook = getattr(cb, event, None)
    if not callable(hook):
        return None
    base = getattr(TrainingCallback, event)
    if getattr(hook, "__func__", None) is base:
        return None
    return hook

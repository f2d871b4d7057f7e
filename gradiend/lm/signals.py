"""What a GRADIEND reads: the signal (parameter gradient, hidden activation or its loss
gradient) and the scope (which parameters or which layer outputs), as two small values.

``Signal.gradient()`` is classic GRADIEND. ``Signal.activation(token_selector=…)`` (ACTIEND)
reads the hidden state at chosen token positions of the scoped layers' outputs, by a forward
pass alone; ``Signal.activation_gradient(…)`` reads the gradient of the loss with respect to
that hidden state. ``SignalScope`` names the sites by meaning (``layers(0, 3)``, ``layer(9)``,
``embeddings()``); ``gradiend.lm.topology`` resolves it for each architecture family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradiend._kwargs import strict_kwargs

logger = logging.getLogger(__name__)

SIGNAL_KINDS = ("gradient", "activation", "activation_gradient")
SELECTORS = ("all", "mean", "cls", "mask", "prediction", "pre_prediction")
SCALES = (None, "running_rms")
SCOPE_KINDS = ("default", "full", "layers", "layer", "embeddings", "word_embedding", "values")

TokenSelector = str | int | Callable[[list[int], list[int]], int | Sequence[int]]


def check_selector(selector: Any, name: str = "token_selector") -> None:
    """A selector is one of ``SELECTORS``, an int (a position, negative from the end) or a
    callable ``f(input_ids, prediction_positions) -> position(s)``."""
    if callable(selector) or (isinstance(selector, int) and not isinstance(selector, bool)):
        return
    if selector not in SELECTORS:
        raise ValueError(
            f"{name}={selector!r} is not a token selector; use one of {list(SELECTORS)}, an "
            "int position (negative counts from the end) or a callable "
            "f(input_ids, prediction_positions) -> position(s)"
        )


@strict_kwargs
@dataclass(frozen=True)
class Signal:
    """One training signal. ``token_selector`` picks the positions whose hidden states are
    averaged (activation signals only); ``target_token_selector`` those of the decoder's
    target (default: the same); ``scale="running_rms"`` divides each site by its RMS over the
    training rows, so that no layer dominates by its norm alone."""

    kind: str = "gradient"
    token_selector: TokenSelector = "prediction"
    target_token_selector: TokenSelector | None = None
    scale: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SIGNAL_KINDS:
            raise ValueError(f"unknown signal {self.kind!r}; choose one of {list(SIGNAL_KINDS)}")
        check_selector(self.token_selector)
        if self.target_token_selector is not None:
            check_selector(self.target_token_selector, "target_token_selector")
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r}: use None or 'running_rms'")

    @classmethod
    def gradient(cls) -> Signal:
        """The parameter gradient of the prediction loss (classic GRADIEND, the default)."""
        return cls("gradient")

    @classmethod
    def activation(
        cls,
        token_selector: TokenSelector = "prediction",
        target_token_selector: TokenSelector | None = None,
        scale: str | None = None,
    ) -> Signal:
        """The hidden activation at the selected positions (ACTIEND; no backward pass)."""
        return cls("activation", token_selector, target_token_selector, scale)

    @classmethod
    def activation_gradient(
        cls,
        token_selector: TokenSelector = "prediction",
        target_token_selector: TokenSelector | None = None,
        scale: str | None = None,
    ) -> Signal:
        """The gradient of the loss with respect to the hidden activation at those positions."""
        return cls("activation_gradient", token_selector, target_token_selector, scale)

    @property
    def is_activation(self) -> bool:
        """Whether the signal lives at activation sites (not in parameter space)."""
        return self.kind != "gradient"

    @property
    def target_selector(self) -> TokenSelector:
        return (
            self.token_selector
            if self.target_token_selector is None
            else self.target_token_selector
        )

    def to_json(self) -> dict:
        """A JSON value (a callable selector is recorded by name and cannot be reloaded)."""
        sel = [_selector_json(self.token_selector), _selector_json(self.target_token_selector)]
        return {"kind": self.kind, "token_selector": sel[0], "target_token_selector": sel[1],
                "scale": self.scale}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> Signal:
        return cls(**{k: data.get(k) for k in ("kind", "token_selector", "target_token_selector",
                                                "scale")})  # fmt: skip


def _selector_json(selector: Any) -> Any:
    if callable(selector):
        return f"callable:{getattr(selector, '__qualname__', repr(selector))}"
    return selector


def as_signal(value: Signal | str | dict | None) -> Signal:
    """``TrainingArguments.signal`` as a ``Signal`` (strings name the kind, with defaults)."""
    if value is None:
        return Signal.gradient()
    if isinstance(value, Signal):
        return value
    if isinstance(value, str):
        if value not in SIGNAL_KINDS:
            raise ValueError(f"unknown signal {value!r}; choose one of {list(SIGNAL_KINDS)}")
        return Signal(value)
    if isinstance(value, dict):
        return Signal(**value)
    raise TypeError(f"signal must be a Signal, one of {list(SIGNAL_KINDS)} or None; got {value!r}")


@strict_kwargs
@dataclass(frozen=True)
class SignalScope:
    """Where a signal is read: parameters (gradient signals) or layer outputs (activation
    signals), named by meaning and resolved per architecture (``gradiend.lm.topology``).
    ``layers(start, end)`` is half-open like ``range``; negative layer numbers count from the
    end."""

    kind: str = "default"
    start: int | None = None
    end: int | None = None
    params: tuple[str, ...] | None = None
    activation_sites: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ValueError(f"unknown scope {self.kind!r}; choose one of {list(SCOPE_KINDS)}")
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise TypeError(f"SignalScope {name} must be an int layer number, got {v!r}")

    @classmethod
    def default(cls) -> SignalScope:
        """Every backbone parameter (gradients) or every transformer block's output."""
        return cls("default")

    @classmethod
    def full(cls) -> SignalScope:
        """Every parameter, heads included (gradients); embeddings and every block's output."""
        return cls("full")

    @classmethod
    def layers(cls, start: int | None = None, end: int | None = None) -> SignalScope:
        """Blocks ``start`` to ``end - 1`` (all without arguments)."""
        return cls("layers", start, end)

    @classmethod
    def layer(cls, index: int) -> SignalScope:
        """One transformer block (its parameters, or its output)."""
        return cls("layer", index)

    @classmethod
    def embeddings(cls) -> SignalScope:
        """The embedding parameters, or the embedding layer's output."""
        return cls("embeddings")

    @classmethod
    def word_embedding(cls) -> SignalScope:
        """The token embedding matrix, or its output."""
        return cls("word_embedding")

    @classmethod
    def from_values(
        cls, params: Sequence[str] | None = None, activation_sites: Sequence[str] | None = None
    ) -> SignalScope:
        """An explicit scope: parameter names or ``*`` patterns, module paths of sites."""
        if params is None and activation_sites is None:
            raise ValueError("SignalScope.from_values needs params=[...] or activation_sites=[...]")
        for name, v in (("params", params), ("activation_sites", activation_sites)):
            if v is not None and (isinstance(v, str) or not all(isinstance(x, str) for x in v)):
                raise TypeError(f"{name} must be a list of strings, got {v!r}")
        return cls(
            "values",
            params=None if params is None else tuple(params),
            activation_sites=None if activation_sites is None else tuple(activation_sites),
        )


def as_scope(value: SignalScope | str | dict | None) -> SignalScope | None:
    """``TrainingArguments.signal_scope`` as a ``SignalScope`` (``None`` stays ``None``:
    ``params`` or the objective's default decides)."""
    if value is None or isinstance(value, SignalScope):
        return value
    if isinstance(value, str):
        if value not in ("default", "full", "layers", "embeddings", "word_embedding"):
            raise ValueError(
                f"signal_scope={value!r}: as a string use 'default', 'full', 'layers', "
                "'embeddings' or 'word_embedding'; else SignalScope.layer(i) etc."
            )
        return SignalScope(value)
    if isinstance(value, dict):
        data = dict(value)
        for key in ("params", "activation_sites"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return SignalScope(**data)
    raise TypeError(f"signal_scope must be a SignalScope, a string or None; got {value!r}")

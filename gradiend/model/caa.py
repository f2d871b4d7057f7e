"""CAA (contrastive activation addition): the difference of the two classes' mean activations
at the sites of an activation signal, as a steering vector shaped like a GRADIEND.

``caa_model`` returns a ``ModelWithGradiend`` over the same sites, scaling and centre as the
ACTIEND it is built from, whose decoder is ``decoder(±1) = ±(μ_A − μ_B)/2`` (no bias) and whose
encoder is the projection on that direction. Everything that takes a ``ModelWithGradiend``
then treats the baseline as it treats the ACTIEND: the decoder search under the same budget,
``modify_model``, saving and ``intervene``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd
import torch

from gradiend.lm.activations import ActivationComputer
from gradiend.lm.items import build_items
from gradiend.model.gradiend import GradiendModel

if TYPE_CHECKING:
    from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)


def caa_direction(grads: ActivationComputer, rows: pd.DataFrame, classes: list[str]):
    """``μ_A − μ_B``: the mean (centred, scaled) activation of the factual-A rows minus that
    of the factual-B rows, over every site dimension."""
    means = []
    for cls in classes[:2]:
        part = rows[rows["factual_class"] == cls]
        if part.empty:
            raise ValueError(f"CAA needs rows of both classes; none of class {cls!r}")
        means.append(grads.per_example(build_items(part, grads.objective), "alternative").mean(0))
    return means[0] - means[1]


def caa_model(mwg: ModelWithGradiend, rows: pd.DataFrame) -> ModelWithGradiend:
    """The CAA steering vector of ``rows`` (the training split) at ``mwg``'s activation sites."""
    from gradiend.model.with_gradiend import ModelWithGradiend  # reason: it imports this module

    if not isinstance(mwg.grads, ActivationComputer):
        raise ValueError(
            "CAA reads activations: build it from a GRADIEND trained with an activation signal "
            "(TrainingArguments(signal=Signal.activation(...)))"
        )
    meta = {**mwg.gradiend.metadata, "method": "caa"}
    gradiend = GradiendModel(mwg.param_map.numel, param_map=mwg.param_map, **meta)
    gradiend.to(mwg.gradiend.W_e.device)
    caa = ModelWithGradiend(mwg.lm, gradiend, objective=mwg.objective)
    caa.grads.use_signal(mwg.grads.signal)
    d = caa_direction(caa.grads, rows, mwg.target_classes).float()
    norm2 = float(d.pow(2).sum())
    if not norm2 > 0:
        raise ValueError("the two classes have the same mean activation: no CAA direction")
    with torch.no_grad():
        gradiend.W_d.copy_((d / 2)[:, None].to(gradiend.W_d))
        gradiend.b_d.zero_()
        gradiend.W_e.copy_((2 * d / norm2)[None, :].to(gradiend.W_e))  # class means → ±tanh(1)
        gradiend.b_e.zero_()
    return caa

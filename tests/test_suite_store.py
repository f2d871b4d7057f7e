"""The suite's gradient store computes per-item gradients batched (gradiend.suite.batched): each
must equal the one-encoding-at-a-time gradient, with fewer backward passes, within the bounds."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import he_she_data
from tiny import make_model

from gradiend.lm.gradients import GradientComputer
from gradiend.lm.items import build_items
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap
from gradiend.suite.batched import group_rows, rows_per_pass
from gradiend.suite.store import GradientStore, SharedGradientComputer, enc_key

pytestmark = pytest.mark.usefixtures("one_thread")

# linear layers (outer products), layer norms (the generic vjp path), all of the last layer
PATTERNS = {"mlm": ["*layer.1.*", "*.0.attention.output.*"], "clm": ["*layers.1.*"]}


def _setup(planted, kind: str, n: int = 10, patterns=None):
    model, tok = planted[kind]
    lm = load_base_model((model, tok))
    objective = make_objective("auto", lm.kind, tok)
    df = _frame(n)
    items = build_items(df, objective)
    pmap = ParamMap.from_model(lm.model, patterns or PATTERNS[kind])
    return lm, objective, pmap, items


def _frame(n: int):
    import pandas as pd  # reason: only the tests that build rows need a frame

    data = he_she_data(n)
    rows = []
    for cls, other in (("he", "she"), ("she", "he")):
        for m in data[cls]["masked"]:
            rows.append({"masked": m, "factual": cls, "alternative": other,
                         "factual_class": cls, "alternative_class": other})  # fmt: skip
    return pd.DataFrame(rows)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal to float32 rounding: 1e-5 relative, entries near zero to 1e-5 of the largest."""
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


def _computer(lm, objective, pmap, **store_kw) -> SharedGradientComputer:
    return SharedGradientComputer(lm, objective, pmap, store=GradientStore(**store_kw))


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_batched_gradients_equal_one_at_a_time(planted, kind):
    lm, objective, pmap, items = _setup(planted, kind)
    batched = _computer(lm, objective, pmap, batch_size=8)
    single = _computer(lm, objective, pmap, batch_size=1)
    plain = GradientComputer(lm, objective, pmap)
    encs = [it.factual for it in items] + [it.alternative for it in items]
    got = batched.vectors(encs)  # a row per input, its factual and alternative word two slots
    want = single.vectors(encs)
    for g, w in zip(got, want, strict=True):
        assert g.abs().sum() > 0
        _close(g, w)
    # and against the plain computer's per-example gradients of the diff
    _close(batched.per_example(items, "diff"), plain.per_example(items, "diff"))
    st, one = batched.store.stats, single.store.stats
    distinct = {enc_key(e) for e in encs}  # causal prefixes repeat: fewer than 2 per item
    assert one.backward_passes == one.items_computed == len(distinct)  # one pass per encoding
    assert st.items_computed == st.batched_items == len(distinct)
    n_rows = len(group_rows(encs))
    assert st.forward_passes == -(-n_rows // 8)  # rows of 8 at most, one forward each
    assert st.forward_passes < st.backward_passes == st.batched_passes <= 2 * st.forward_passes
    assert st.items_per_pass == pytest.approx(len(distinct) / st.batched_passes)
    assert st.items_per_pass > 3
    assert st.items_served > st.items_computed  # the diff came from the store


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_encodings_from_the_store_equal_the_jvp(planted, kind):
    lm, objective, pmap, items = _setup(planted, kind, n=6)
    store = _computer(lm, objective, pmap, batch_size=4)
    plain = GradientComputer(lm, objective, pmap)
    direction = torch.randn(pmap.numel, generator=torch.Generator().manual_seed(0))
    want = plain._double_vjp(items, "diff", direction)
    got = store.directional(items, "diff", direction)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert store.store.stats.double_backward_passes == 0


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_every_backbone_parameter_batched(planted, kind):
    # the default selection: word embeddings (tied to BERT's decoder), position embeddings
    # looked up once for the batch, layer norms, every linear layer
    lm, objective, pmap, items = _setup(planted, kind, n=4, patterns=None)
    pmap = ParamMap.from_model(lm.model, None)
    assert any("word_embeddings" in s.name or "embed_tokens" in s.name for s in pmap.specs)
    batched = _computer(lm, objective, pmap, batch_size=8)
    single = _computer(lm, objective, pmap, batch_size=1)
    encs = [it.factual for it in items] + [it.alternative for it in items]
    for g, w in zip(batched.vectors(encs), single.vectors(encs), strict=True):
        _close(g, w)
    assert batched.store.stats.batched_items == batched.store.stats.items_computed


def test_a_parameter_used_outside_its_module_falls_back(caplog):
    # a hook scales the last layer's output by the final norm's weight: a use that the norm
    # module's own calls do not see, so the per-sample gradients cannot sum to the batch's
    model, tok = make_model("clm")
    weight = model.model.norm.weight

    def outside(mod, args, out):
        return out * weight if torch.is_tensor(out) else (out[0] * weight, *out[1:])

    handle = model.model.layers[1].register_forward_hook(outside)
    try:
        lm = load_base_model((model, tok))
        objective = make_objective("auto", lm.kind, tok)
        items = build_items(_frame(4), objective)
        pmap = ParamMap.from_model(lm.model, ["*norm.weight"])
        batched = _computer(lm, objective, pmap, batch_size=8)
        single = _computer(lm, objective, pmap, batch_size=1)
        encs = [it.factual for it in items]
        with caplog.at_level(logging.WARNING, logger="gradiend.suite.store"):
            got = batched.vectors(encs)
        assert "batched per-item gradients are not available" in caplog.text
        assert "used outside its module" in caplog.text
        for g, w in zip(got, single.vectors(encs), strict=True):
            _close(g, w)
        assert batched.store.stats.batched_items == 0
    finally:
        handle.remove()


def test_objective_with_own_losses_keeps_the_per_item_path(planted, caplog):
    lm, objective, pmap, items = _setup(planted, "clm", n=4)

    class OwnLosses(type(objective)):
        def losses(self, model, items, params=None):
            return super().losses(model, items, params)

    own = OwnLosses(objective.tokenizer)
    computer = _computer(lm, own, pmap, batch_size=8)
    with caplog.at_level(logging.INFO, logger="gradiend.suite.store"):
        got = computer.vectors([it.factual for it in items])
    assert "has its own losses()" in caplog.text
    st = computer.store.stats
    assert st.batched_passes == 0 and st.backward_passes == len(items)
    want = _computer(lm, objective, pmap, batch_size=8).vectors([it.factual for it in items])
    for g, w in zip(got, want, strict=True):
        _close(g, w)


def test_memory_bounds(planted):
    lm, objective, pmap, items = _setup(planted, "clm", n=4)
    size_gb = 4 * pmap.numel / 1e9
    # the store holds 3 vectors: 8 encodings computed, the first ones dropped and recomputed
    computer = _computer(lm, objective, pmap, max_gb=3.5 * size_gb, batch_size=8)
    encs = [it.factual for it in items] + [it.alternative for it in items]
    first = computer.vectors(encs)
    assert len(computer.store.table(computer.space)) == 3
    again = computer.vectors(encs[:2])
    assert computer.store.stats.items_computed == len(encs) + 2
    for g, w in zip(again, first[:2], strict=True):
        _close(g, w)
    # the rows of one pass shrink to what batch_max_gb holds (2 float32 copies per row)
    assert rows_per_pass(pmap.numel, 32, 5 * 8 * pmap.numel / 1e9) == 5
    assert rows_per_pass(pmap.numel, 32, 1e-12) == 1
    with pytest.raises(ValueError, match="batch_size"):
        GradientStore(batch_size=0)


def test_memory_bound_drops_what_no_child_still_to_come_asks_for_first(planted):
    lm, objective, pmap, items = _setup(planted, "clm", n=4)
    size = 4 * pmap.numel
    computer = _computer(lm, objective, pmap, max_gb=3.5 * size / 1e9, batch_size=8)
    store, space = computer.store, computer.space
    encs = [it.factual for it in items]
    computer.vectors(encs[:3])
    keys = [enc_key(e) for e in encs]
    # the newest entry is only asked for by child 0, the older two by child 1, now served
    store._last_use[space] = (0, {keys[0]: 1, keys[1]: 1, keys[2]: 0})
    store.current = 1
    assert store.room(space) == int(3.5 * size - 3 * size + size)  # the dead entry counts
    computer.vectors(encs[3:4])
    table = store.table(space)
    assert keys[0] in table and keys[1] in table and keys[3] in table and keys[2] not in table
    store.current = 0  # nothing is dead for child 0: the oldest goes, as before
    computer.vectors(encs[2:3])
    assert keys[0] not in table and keys[2] in table

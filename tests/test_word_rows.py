"""The feature words' own embedding rows are a region of their own ("word rows"): rankings,
localisation and comparisons look at the rest by default; identical top-k sets draw as one
circle; the importance heatmap labels every layer on a log scale."""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import he_she_data, he_she_trainer
from tiny import make_model
from transformers import LlamaForCausalLM

from gradiend import GradiendModel
from gradiend.evaluator.compare import compare, topk_sets
from gradiend.lm.items import build_items
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap
from gradiend.model import word_rows
from gradiend.model.localise import region_summary
from gradiend.report.figures import location_rows
from gradiend.visualizer.importance import plot_importance_by_layer
from gradiend.visualizer.topk import draw_topk_venn, merge_identical

TOKENS = [74, 75]  # " he", " she" in the tiny vocabulary
HIDDEN = 32


def _rows(spec, tokens=TOKENS) -> set[int]:
    width = spec.numel // spec.shape[0]
    return {spec.offset + t * width + c for t in tokens for c in range(width)}


def _spec(pmap: ParamMap, name: str):
    return next(s for s in pmap.specs if s.name == name)


def _untied():
    model, _ = make_model("clm")
    pmap = ParamMap.from_model(
        model, ["model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.*"]
    )
    return model, pmap


def test_untied_word_rows_are_the_input_and_output_rows_of_the_tokens():
    model, pmap = _untied()
    entry = word_rows.record(model, [75, 74, 74])
    assert entry == {
        "token_ids": TOKENS,
        "input": "model.embed_tokens.weight",
        "output": "lm_head.weight",
        "output_bias": None,
    }
    got = set(word_rows.word_row_indices(pmap, entry).tolist())
    want = _rows(_spec(pmap, "model.embed_tokens.weight")) | _rows(_spec(pmap, "lm_head.weight"))
    assert got == want and len(got) == 2 * len(TOKENS) * HIDDEN


def test_tied_word_rows_are_the_one_shared_matrix():
    model, _ = make_model("clm")
    model.config.tie_word_embeddings = True
    tied = LlamaForCausalLM(model.config)
    entry = word_rows.record(tied, TOKENS)
    assert entry["input"] == entry["output"] == "model.embed_tokens.weight"
    pmap = ParamMap.from_model(tied)  # named_parameters lists the shared matrix once
    got = set(word_rows.word_row_indices(pmap, entry).tolist())
    assert got == _rows(_spec(pmap, "model.embed_tokens.weight"))


def test_mlm_word_rows_include_the_output_bias_of_the_tokens():
    model, _ = make_model("mlm")
    entry = word_rows.record(model, TOKENS)
    assert entry["input"] == entry["output"] == "bert.embeddings.word_embeddings.weight"
    assert entry["output_bias"] == "cls.predictions.bias"
    pmap = ParamMap.from_model(model, ["bert.embeddings.word_embeddings.weight", "cls.*bias"])
    bias = _spec(pmap, "cls.predictions.bias")
    got = set(word_rows.word_row_indices(pmap, entry).tolist())
    want = _rows(_spec(pmap, "bert.embeddings.word_embeddings.weight"))
    assert got == want | {bias.offset + t for t in TOKENS}


def test_target_token_ids_are_the_tokens_the_data_trains():
    _, tok = make_model("clm")
    data = pd.concat(
        [df.assign(factual_class=g, alternative_class=o, factual=g, alternative=o)
         for (g, df), o in zip(he_she_data(8).items(), ("she", "he"), strict=True)]
    )  # fmt: skip
    items = build_items(data, make_objective("clm_next_token", "clm", tok))
    assert word_rows.target_token_ids(items) == sorted(tok.convert_tokens_to_ids(["he", "she"]))


# --------------------------------------------------------------------------- rankings
def _gradiend(pmap: ParamMap, word: torch.Tensor, rest: torch.Tensor, record=True):
    """A GRADIEND over ``pmap`` whose |W_d| is ``word`` on the word rows and ``rest`` elsewhere."""
    meta = {"word_rows": {"token_ids": TOKENS, "names": ["model.embed_tokens.weight"]}}
    g = GradiendModel(pmap.numel, param_map=pmap, **(meta if record else {}))
    mask = torch.isin(g.global_indices(), word_rows.word_row_indices(pmap, meta["word_rows"]))
    weights = torch.empty(pmap.numel)
    weights[mask], weights[~mask] = word, rest
    with torch.no_grad():
        g.W_d.copy_(weights[:, None])
        g.W_e.copy_(weights[None, :])
    return g, mask


def _small_pmap() -> ParamMap:
    model, _ = make_model("clm")
    return ParamMap.from_model(model, ["model.embed_tokens.weight", "model.layers.*.mlp.up_proj.*"])


def _pair(differ: str):
    """Two GRADIENDs whose word rows dominate every ranking; they differ only in ``differ``."""
    pmap = _small_pmap()
    gen = torch.Generator().manual_seed(0)
    n_word = len(TOKENS) * HIDDEN
    n_rest = pmap.numel - n_word
    word_a = 100 + torch.rand(n_word, generator=gen)
    rest_a = torch.rand(n_rest, generator=gen)
    word_b = 100 + torch.rand(n_word, generator=gen) if differ == "word_rows" else word_a
    rest_b = torch.rand(n_rest, generator=gen) if differ == "rest" else rest_a
    return _gradiend(pmap, word_a, rest_a)[0], _gradiend(pmap, word_b, rest_b)[0]


def test_default_ranking_excludes_the_word_rows_and_the_word_row_view_has_only_them():
    pmap = _small_pmap()
    g, mask = _gradiend(pmap, 50 + torch.rand(64), torch.rand(pmap.numel - 64))
    words = set(g.global_indices()[mask].tolist())
    top = set(g.get_topk_weights("decoder-weight", 100).tolist())
    assert len(top) == 100 and top.isdisjoint(words)
    assert set(g.get_topk_weights("decoder-weight", 200, region="word_rows").tolist()) == words
    assert set(g.get_topk_weights("decoder-weight", 64, region="all").tolist()) == words
    # a fractional topk is of the region's size
    assert len(g.get_topk_weights("decoder-weight", 0.5, region="word_rows")) == 32
    # localisation of the default region has no word-row mass; "all" is dominated by them
    rest = g.importance_by_module("decoder-weight", topk=100)
    emb = rest.set_index("param").loc["model.embed_tokens.weight"]
    assert emb["dims"] == _spec(pmap, "model.embed_tokens.weight").numel - 64
    everything = g.importance_by_module("decoder-weight", topk=64, region="all")
    assert everything.iloc[0]["param"] == "model.embed_tokens.weight"
    assert everything.iloc[0]["topk_share"] == 1.0
    summary = region_summary(g, "decoder-weight", topk=64)
    assert summary["word_row_dims"] == 64 and summary["topk_share"] == 1.0
    with pytest.raises(ValueError, match="unknown region"):
        g.get_topk_weights(region="words")


def test_runs_differing_outside_the_word_rows_no_longer_look_identical():
    a, b = _pair("rest")
    over = {r: compare({"a": a, "b": b}, topk=64, part="decoder-weight", region=r) for r in
            word_rows.REGIONS}  # fmt: skip
    frac = {r: float(c.frame.loc["a", "b"]) for r, c in over.items()}
    assert frac["all"] == 1.0  # the word rows fill both top-64 sets
    assert frac["word_rows"] == 1.0
    assert frac["rest"] < 0.3  # unrelated rest: about chance
    assert over["rest"].region == "rest" and over["rest"].frame.attrs["region"] == "rest"
    assert compare({"a": a, "b": b}, topk=64, part="decoder-weight").region == "rest"
    cos = compare({"a": a, "b": b}, "cosine", region="rest").frame.loc["a", "b"]
    assert cos < compare({"a": a, "b": b}, "cosine", region="all").frame.loc["a", "b"]


def test_runs_differing_only_inside_the_word_rows_agree_on_the_rest():
    a, b = _pair("word_rows")
    sets = {r: topk_sets({"a": a, "b": b}, 64, "decoder-weight", region=r) for r in ("rest",)}
    assert sets["rest"]["a"] == sets["rest"]["b"]
    words = compare({"a": a, "b": b}, topk=16, part="decoder-weight", region="word_rows")
    assert float(words.frame.loc["a", "b"]) < 0.6


def test_a_gradiend_without_a_record_ranks_everything_with_a_note(caplog, tmp_path):
    pmap = _small_pmap()
    g, mask = _gradiend(pmap, 50 + torch.rand(64), torch.rand(pmap.numel - 64), record=False)
    with caplog.at_level(logging.INFO, logger="gradiend.model.word_rows"):
        top = g.get_topk_weights("decoder-weight", 64)
    assert "records no word rows" in caplog.text
    assert set(top.tolist()) == set(g.global_indices()[mask].tolist())  # as region="all"
    with pytest.raises(ValueError, match="set_word_rows"):
        g.get_topk_weights("decoder-weight", 10, region="word_rows")
    entry = word_rows.set_word_rows(g, TOKENS)  # names guessed from the parameter map
    assert entry["names"] == ["model.embed_tokens.weight"]
    assert set(g.get_topk_weights("decoder-weight", 64).tolist()).isdisjoint(top.tolist())
    g.save_pretrained(tmp_path / "g")
    loaded = GradiendModel.from_pretrained(tmp_path / "g")
    assert loaded.metadata["word_rows"] == entry
    assert torch.equal(loaded.get_topk_weights("decoder-weight", 64), g.get_topk_weights(
        "decoder-weight", 64))  # fmt: skip


def test_the_report_location_is_the_ranking():
    pmap = _small_pmap()
    g, _ = _gradiend(pmap, 50 + torch.rand(64), torch.rand(pmap.numel - 64))
    rows, words = location_rows(g, 100)
    frame = g.importance_by_module(topk=100)
    assert [r["param"] for r in rows] == list(frame["param"])
    top = g.get_topk_weights(topk=100)
    for r in rows:
        spec = _spec(pmap, r["param"])
        inside = ((top >= spec.offset) & (top < spec.offset + spec.numel)).sum()
        assert r["topk"] == int(inside)
    assert words["word_row_dims"] == 64


def test_training_records_the_word_rows(tmp_path):
    model, tok = make_model("clm")
    trainer = he_she_trainer((model, tok), tmp_path, n_neutral=None, max_steps=8, eval_steps=4)
    entry = trainer.get_model().gradiend.metadata["word_rows"]
    assert entry["token_ids"] == sorted(tok.convert_tokens_to_ids(["he", "she"]))
    assert entry["input"] == "model.embed_tokens.weight" and entry["output"] == "lm_head.weight"
    saved = GradiendModel.from_pretrained(trainer.model_dir)
    assert saved.metadata["word_rows"] == entry


# --------------------------------------------------------------------------- figures
def test_venn_of_identical_sets_is_one_circle():
    s = set(range(10))
    assert list(merge_identical({"a": s, "b": set(s), "c": {1, 2}})) == ["a = b", "c"]
    out = draw_topk_venn({"a": s, "b": set(s)}, {("a",): 0, ("b",): 0, ("a", "b"): 10}, 10)
    assert out["data"]["identical"] == [["a", "b"]]
    ax = out["figure"].axes[0]
    assert len(ax.patches) == 1
    assert any("a = b" in t.get_text() and "identical" in t.get_text() for t in ax.texts)
    pytest.importorskip("matplotlib_venn")
    other = draw_topk_venn({"a": s, "b": {1, 20}}, {("a",): 8, ("b",): 1, ("a", "b"): 2}, 10)
    assert other["data"]["identical"] == [] and len(other["figure"].axes[0].patches) >= 2


def test_importance_heatmap_labels_every_layer_on_a_log_scale():
    table = pd.DataFrame(
        {
            "layer": pd.array([0, 2, 5, None], dtype="Int64"),
            "module": ["mlp.up_proj", "mlp.up_proj", "self_attn.o_proj", "embed_tokens"],
            "mass_share": [0.9, 0.001, 0.05, 0.049],
            "topk_share": [0.5, 0.2, 0.2, 0.1],
        }
    )
    out = plot_importance_by_layer({"run": table}, show=False)
    fig = out["figure"]
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0", "1", "2", "3", "4", "5", "other"]
    assert out["data"]["layers"] == labels
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out as a saved one is
    box = fig.bbox
    for t in [*ax.get_yticklabels(), *ax.get_xticklabels()]:
        ext = t.get_window_extent()
        assert ext.x0 >= box.x0 - 1 and ext.y0 >= box.y0 - 1 and ext.x1 <= box.x1 + 1
    norm = ax.images[0].norm
    assert type(norm).__name__ == "LogNorm"
    small, large = float(norm(0.001)), float(norm(0.9))
    assert 0.0 <= small < large - 0.5  # the 0.001 cell is coloured, far from the 0.9 one
    assert np.isclose(float(norm(0.9)), 1.0)
    with pytest.raises(ValueError, match="scale"):
        plot_importance_by_layer({"run": table}, show=False, scale="sqrt")

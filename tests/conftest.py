"""Shared fixtures: planted-feature tiny models (masked and causal) and their data."""

from __future__ import annotations

import os
import random

import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny import make_model, pretrain, sentence  # noqa: E402

PRETRAIN_STEPS = {"mlm": 600, "clm": 200}


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (restored after it): tiny models run many small
    ops, and on a shared 2-core machine extra threads only contend (a 30-step pretrain goes from
    0.5 s to 20 s). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _gguf_cache(tmp_path_factory):
    """Every GGUF load after the first reads a safetensors copy (de-quantising SmolLM2 takes
    about 15 s a load; the slow tests and doc pages load it many times)."""
    if "GRADIEND_GGUF_CACHE" not in os.environ:
        os.environ["GRADIEND_GGUF_CACHE"] = str(tmp_path_factory.mktemp("gguf"))
    yield


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def planted():
    """``{kind: (model, tokenizer)}``: tiny models trained on text where the pronoun agrees
    with the subject's gender (the planted feature)."""
    out = {}
    for kind in ("mlm", "clm"):
        model, tok = make_model(kind)
        out[kind] = (pretrain(model, tok, kind, steps=PRETRAIN_STEPS[kind]), tok)
    return out


def he_she_data(n: int = 120, seed: int = 1) -> dict[str, pd.DataFrame]:
    """Per-class frames (the creator's format) for he vs she."""
    rng = random.Random(seed)
    data = {}
    for g in ("he", "she"):
        s = [sentence(rng, g) for _ in range(n)]
        data[g] = pd.DataFrame({"masked": [x.replace(f" {g} ", " [MASK] ") for x in s], g: g})
    return data


def three_pronouns() -> dict[str, pd.DataFrame]:
    """he, she and it: three classes of masked pronouns (40 sentences each)."""
    data = he_she_data(40)
    rng = random.Random(7)
    it = [s for s in (sentence(rng, None) for _ in range(400)) if " it " in s][:40]
    data["it"] = pd.DataFrame({"masked": [s.replace(" it ", " [MASK] ") for s in it], "it": "it"})
    return data


def fast_args(tmp_path, **overrides):
    """TrainingArguments that train a planted-feature GRADIEND in about a second."""
    from gradiend import TrainingArguments

    base = dict(
        experiment_dir=str(tmp_path),
        train_batch_size=4,
        max_steps=120,
        eval_steps=20,
        learning_rate=1e-3,
        max_seeds=1,
    )
    base.update(overrides)
    return TrainingArguments(**base)


def neutral_texts(n: int = 40, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng, None) for _ in range(n)]


def he_she_trainer(
    model, tmp_path, run_id: str = "he_she", n_neutral: int | None = 40, **overrides
):
    """A trained he/she trainer on a planted model (``fast_args`` with ``overrides``; no neutral
    data with ``n_neutral=None``)."""
    from gradiend import TextPredictionTrainer

    trainer = TextPredictionTrainer(
        model=model,
        run_id=run_id,
        data=he_she_data(),
        eval_neutral_data=None if n_neutral is None else neutral_texts(n_neutral),
        args=fast_args(tmp_path, **overrides),
        progress=False,
    )
    trainer.train()
    return trainer


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything tries to load a base model (bad input must be refused first)."""
    import gradiend.lm.loading as loading
    import gradiend.lm.placement as placement

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(loading, "load_base_model", refuse)
    monkeypatch.setattr(placement, "load_base_model", refuse)


@pytest.fixture
def he_she():
    return he_she_data()


@pytest.fixture
def neutral():
    return neutral_texts()

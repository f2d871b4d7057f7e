"""Signals and scopes: every token selector and scope on tiny BERT-, GPT-2- and Llama-like
models built here, checked against the models' own ``output_hidden_states`` (an independent
oracle); the unknown-architecture error; a planted feature recovered by an ACTIEND."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts
from tiny import make_tokenizer
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from gradiend import (
    ModelWithGradiend,
    Signal,
    SignalScope,
    TextPredictionTrainer,
    TrainingArguments,
)
from gradiend.lm.activations import ActivationComputer, build_site_map, selected_positions
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap, SiteMap, match_param_patterns
from gradiend.lm.topology import resolve_scope

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [
    "the king said that [MASK] will come today .",
    "the queen thinks that [MASK] will sing .",
    "the boy knows that [MASK] will read the book again now .",
]


def _tiny(arch: str):
    """A tiny model of ``arch`` from its transformers config (random weights, eval mode)."""
    torch.manual_seed(0)
    tok = make_tokenizer("mlm" if arch == "bert" else "clm")
    n = len(tok)
    if arch == "bert":
        cfg = BertConfig(vocab_size=n, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)  # fmt: skip
        model = BertForMaskedLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=n, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                         bos_token_id=5, eos_token_id=3, pad_token_id=0)  # fmt: skip
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=n, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                          bos_token_id=5, eos_token_id=3, pad_token_id=0)  # fmt: skip
        model = LlamaForCausalLM(cfg)
    return load_base_model((model.eval(), tok))


ARCHS = ["bert", "gpt2", "llama"]
BLOCKS = {"bert": "bert.encoder.layer", "gpt2": "transformer.h", "llama": "model.layers"}
EMB_SITE = {"bert": "bert.embeddings", "gpt2": "transformer.drop", "llama": "model.embed_tokens"}
WORD = {
    "bert": "bert.embeddings.word_embeddings",
    "gpt2": "transformer.wte",
    "llama": "model.embed_tokens",
}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_scope_resolves_to_the_family_paths(arch):
    lm = _tiny(arch)
    b = BLOCKS[arch]
    names = [n for n, _ in lm.model.named_parameters()]
    cases = {
        SignalScope.default(): (None, [f"{b}.0", f"{b}.1"]),
        SignalScope.layers(): ([f"{b}.0.*", f"{b}.1.*"], [f"{b}.0", f"{b}.1"]),
        SignalScope.layers(1, 2): ([f"{b}.1.*"], [f"{b}.1"]),
        SignalScope.layer(-1): ([f"{b}.1.*"], [f"{b}.1"]),
        SignalScope.word_embedding(): ([f"{WORD[arch]}.weight"], [WORD[arch]]),
        SignalScope.full(): (["*"], [EMB_SITE[arch], f"{b}.0", f"{b}.1"]),
    }
    for scope, (params, sites) in cases.items():
        got = resolve_scope(lm.model, scope)
        assert (got.params, got.sites) == (params, sites), scope
        if params:  # every pattern selects real parameters
            assert match_param_patterns(names, params)
    emb = resolve_scope(lm.model, SignalScope.embeddings())
    assert emb.sites == [EMB_SITE[arch]]
    chosen = match_param_patterns(names, emb.params)
    assert chosen and all("emb" in n or ".wte." in n or ".wpe." in n for n in chosen)
    explicit = SignalScope.from_values(params=[f"{b}.0.*"], activation_sites=[f"{b}.0"])
    assert resolve_scope(lm.model, explicit).sites == [f"{b}.0"]
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        resolve_scope(lm.model, SignalScope.layer(5))
    with pytest.raises(ValueError, match="not a module"):
        resolve_scope(lm.model, SignalScope.from_values(activation_sites=["nowhere.0"]))


def _oracle(lm, objective, text: str, layer: int, selector) -> torch.Tensor:
    """The mean hidden state of block ``layer`` at the selector's positions, from the model's
    ``output_hidden_states`` on the unpadded input."""
    item = objective.item(text, ["he"], ["she"])
    enc = item.factual
    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([enc.input_ids]), output_hidden_states=True)
    hidden = out.hidden_states[layer + 1][0]
    pos = selected_positions(selector, enc, objective)
    return hidden[pos].mean(0)


def _selectors(arch: str) -> list:
    out = ["all", "mean", "cls", 1, -1, "prediction", "pre_prediction", lambda ids, pos: [0, 2]]
    return out + (["mask"] if arch == "bert" else [])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_selector_matches_the_hidden_states_oracle(arch):
    lm = _tiny(arch)
    objective = make_objective("auto", lm.kind, lm.tokenizer)
    items = [objective.item(s, ["he"], ["she"]) for s in SENTENCES]  # lengths differ: padding
    for selector in _selectors(arch):
        signal = Signal.activation(token_selector=selector)
        pm = build_site_map(lm.model, signal, SignalScope.layer(0))
        comp = ActivationComputer(lm, objective, pm)
        comp.use_signal(signal)
        got = comp.raw_vectors(items, "factual")
        want = torch.stack([_oracle(lm, objective, s, 0, selector) for s in SENTENCES])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=str(selector))
        comp.fit(items, [1.0, -1.0, 1.0])  # the centre: the mean of the two class means
        mu = (want[[0, 2]].mean(0) + want[1]) / 2
        torch.testing.assert_close(comp.per_example(items, "alternative"), want - mu,
                                   atol=1e-5, rtol=1e-4)  # fmt: skip
        torch.testing.assert_close(comp.per_example(items, "diff"), mu - want,
                                   atol=1e-5, rtol=1e-4)  # fmt: skip


def test_selector_positions_and_errors():
    lm = _tiny("llama")
    objective = make_objective("auto", lm.kind, lm.tokenizer)
    enc = objective.item(SENTENCES[0], ["he"], ["she"]).factual  # "[BOS] the king said that"
    assert len(enc.input_ids) == 5 and enc.positions == [4]
    assert selected_positions("prediction", enc, objective) == [4]
    assert selected_positions("pre_prediction", enc, objective) == [3]
    assert selected_positions("all", enc, objective) == [0, 1, 2, 3, 4]
    assert selected_positions(-2, enc, objective) == [3]
    with pytest.raises(ValueError, match="use 'prediction'"):
        selected_positions("mask", enc, objective)
    with pytest.raises(ValueError, match="picked positions"):
        selected_positions(9, enc, objective)
    with pytest.raises(ValueError, match="not a token selector"):
        Signal.activation(token_selector="middle")


def test_activation_gradient_matches_autograd_oracle():
    lm = _tiny("llama")
    objective = make_objective("auto", lm.kind, lm.tokenizer)
    items = [objective.item(s, ["he"], ["she"]) for s in SENTENCES]
    pm = build_site_map(lm.model, Signal.activation_gradient(), SignalScope.layer(0))
    got = ActivationComputer(lm, objective, pm).per_example(items, "diff")
    he, she = (objective.word_ids(w)[0] for w in ("he", "she"))
    for i, it in enumerate(items):
        ids = torch.tensor([it.factual.input_ids])  # the base model is frozen: a leaf input
        emb = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
        out = lm.model(inputs_embeds=emb, output_hidden_states=True)
        h = out.hidden_states[1]
        logp = out.logits[0, -1].log_softmax(-1)
        (g,) = torch.autograd.grad(-logp[he] + logp[she], h)
        torch.testing.assert_close(got[i], g[0, -1], atol=1e-6, rtol=1e-4)


class _Mystery(nn.Module):
    """An architecture no adapter knows: blocks under ``stack.blocks``."""

    def __init__(self):
        super().__init__()
        self.config = type("Cfg", (), {"model_type": "mystery", "hidden_size": 4})()
        self.stack = nn.Module()
        self.stack.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])


def test_unknown_architecture_prints_a_scope_ready_to_copy():
    model = _Mystery()
    with pytest.raises(ValueError, match="no topology adapter for model_type 'mystery'") as err:
        resolve_scope(model, SignalScope.layers())
    text = str(err.value)
    suggestion = text.split("\n", 1)[1].strip()
    assert suggestion == (
        'SignalScope.from_values(params=["stack.blocks.0.*", "stack.blocks.2.*"], '
        'activation_sites=["stack.blocks.0", "stack.blocks.2"])'
    )
    scope = eval(suggestion, {"SignalScope": SignalScope})  # ready to copy: it runs
    assert resolve_scope(model, scope).sites == ["stack.blocks.0", "stack.blocks.2"]


def test_signal_arguments_accept_strings_and_refuse_clashes():
    args = TrainingArguments(signal="activation", signal_scope="layers")
    assert args.signal == Signal.activation() and args.signal_scope == SignalScope.layers()
    assert TrainingArguments().signal is None  # the gradient signal, as before
    with pytest.raises(ValueError, match="unknown signal"):
        TrainingArguments(signal="activations")
    with pytest.raises(ValueError, match="not both"):
        TrainingArguments(params=["x.*"], signal_scope=SignalScope.layer(0))
    with pytest.raises(ValueError, match="pre_prune_config needs parameter gradients"):
        TrainingArguments(signal="activation", pre_prune_config={"topk": 0.5})


def _mean_hidden(lm, objective, rows, layer: int) -> torch.Tensor:
    texts = list(rows)
    return torch.stack([_oracle(lm, objective, t, layer, "prediction") for t in texts]).mean(0)


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_planted_feature_is_recovered_by_an_actiend(planted, tmp_path, kind):
    model, tok = planted[kind]
    data = he_she_data()
    trainer = TextPredictionTrainer(
        model=(model, tok), run_id=f"actiend_{kind}", data=data, progress=False,
        eval_neutral_data=neutral_texts(40),
        args=fast_args(tmp_path, signal=Signal.activation(scale="running_rms"),
                       signal_scope=SignalScope.layer(-1), learning_rate=3e-2),
    )  # fmt: skip
    mwg = trainer.train()
    assert isinstance(mwg.param_map, SiteMap) and mwg.param_map.sites == [
        "bert.encoder.layer.1" if kind == "mlm" else "model.layers.1"
    ]
    enc = trainer.evaluate_encoder()
    assert abs(enc["correlation"]) > 0.95
    means = enc["mean_by_class"]
    assert means[1.0] > 0.5 and means[-1.0] < -0.5
    # the decoder's direction is the classes' mean difference (computed here, independently)
    lm, objective = mwg.lm, mwg.objective
    first, second = (data[c]["masked"] for c in trainer.target_classes)
    diff = _mean_hidden(lm, objective, first, 1) - _mean_hidden(lm, objective, second, 1)
    direction = mwg.gradiend.W_d[:, 0].detach()
    cos = torch.nn.functional.cosine_similarity(direction, diff, dim=0)
    assert cos > 0.9
    # saved with its sites and reloaded onto the same base model
    again = ModelWithGradiend.from_pretrained(trainer.run_dir, base_model=mwg.lm)
    assert isinstance(again.grads, ActivationComputer) and again.param_map == mwg.param_map
    items = [objective.item(s, ["he"], ["she"]) for s in data["he"]["masked"][:4]]
    torch.testing.assert_close(again.encode_items(items, progress=False),
                               mwg.encode_items(items, progress=False))  # fmt: skip


def test_gradient_signal_scope_selects_one_layer(planted, tmp_path):
    model, tok = planted["clm"]
    trainer = TextPredictionTrainer(
        model=(model, tok), run_id="grad_layer", data=he_she_data(), progress=False,
        args=fast_args(tmp_path, signal="gradient", signal_scope=SignalScope.layer(0)),
    )  # fmt: skip
    mwg = trainer.train()
    assert isinstance(mwg.param_map, ParamMap) and not isinstance(mwg.param_map, SiteMap)
    assert mwg.param_map.names and all(n.startswith("model.layers.0.") for n in mwg.param_map.names)
    again = ModelWithGradiend.from_pretrained(trainer.run_dir, base_model=mwg.lm)
    assert again.param_map == mwg.param_map

"""Model topology adapters: where the blocks and embeddings of each architecture family sit,
so that a ``SignalScope`` named by meaning resolves to parameter patterns and module paths.

Families: BERT-like, DistilBERT, GPT-2-like, Llama-like, OPT, GPT-NeoX and Gemma 3 (text and
multimodal checkpoints). Any other architecture gets an error that prints a ready-to-copy
``SignalScope.from_values(...)`` built from the model's own module names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from gradiend.lm.signals import SignalScope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """Paths relative to the backbone: the block list, the embedding modules (their
    parameters), the module whose output is the embedding activation and the token embedding."""

    family: str
    blocks: str
    embeddings: tuple[str, ...]
    embedding_site: str
    word_embedding: str


FAMILIES = {
    "bert-like": Topology(
        "bert-like", "encoder.layer", ("embeddings",), "embeddings", "embeddings.word_embeddings"
    ),
    "distilbert": Topology(
        "distilbert",
        "transformer.layer",
        ("embeddings",),
        "embeddings",
        "embeddings.word_embeddings",
    ),
    "gpt2-like": Topology("gpt2-like", "h", ("wte", "wpe"), "drop", "wte"),
    "llama-like": Topology(
        "llama-like", "layers", ("embed_tokens",), "embed_tokens", "embed_tokens"
    ),
    "opt": Topology(
        "opt",
        "decoder.layers",
        ("decoder.embed_tokens", "decoder.embed_positions"),
        "decoder.embed_tokens",
        "decoder.embed_tokens",
    ),
    "gpt_neox": Topology("gpt_neox", "layers", ("embed_in",), "embed_in", "embed_in"),
    "gemma3": Topology("gemma3", "layers", ("embed_tokens",), "embed_tokens", "embed_tokens"),
}

MODEL_TYPES = {
    **dict.fromkeys(
        ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"),
        "bert-like",
    ),
    "distilbert": "distilbert",
    **dict.fromkeys(("gpt2", "gpt_neo", "gptj", "gpt_bigcode"), "gpt2-like"),
    **dict.fromkeys(
        ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2"),
        "llama-like",
    ),
    "opt": "opt",
    "gpt_neox": "gpt_neox",
    **dict.fromkeys(("gemma3", "gemma3_text"), "gemma3"),
}

# where a family's text backbone may sit below the model's base prefix (multimodal Gemma 3)
_INNER = ("", "language_model.", "model.")


@dataclass(frozen=True)
class ResolvedScope:
    """A scope for one model: parameter patterns (``None``: the backbone default) and the
    activation sites (module paths whose output is a ``[batch, tokens, hidden]`` tensor)."""

    params: list[str] | None
    sites: list[str]


class ModelTopology:
    """The adapter of one loaded model: block paths, embedding paths."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.model_type = str(getattr(getattr(model, "config", None), "model_type", "") or "")
        family = MODEL_TYPES.get(self.model_type)
        if family is None:
            raise ValueError(unknown_architecture_message(model, self.model_type))
        self.spec = FAMILIES[family]
        self.root = self._find_root()

    def _find_root(self) -> str:
        """The prefix under which ``spec.blocks`` is a ``ModuleList`` of this model."""
        prefix = getattr(self.model, "base_model_prefix", "") or ""
        starts = [f"{prefix}.{inner}" if prefix else inner for inner in _INNER]
        for start in [*starts, ""]:
            if isinstance(_submodule(self.model, start + self.spec.blocks), nn.ModuleList):
                return start
        raise ValueError(unknown_architecture_message(self.model, self.model_type))

    @property
    def n_layers(self) -> int:
        return len(self.model.get_submodule(self.root + self.spec.blocks))

    def block(self, i: int) -> str:
        n = self.n_layers
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise ValueError(f"layer {i} does not exist: this model has {n} layers (0..{n - 1})")
        return f"{self.root}{self.spec.blocks}.{j}"

    def blocks(self, start: int | None = None, end: int | None = None) -> list[str]:
        n = self.n_layers
        idx = list(range(n))[slice(start, end)]
        if not idx:
            raise ValueError(f"layers({start}, {end}) selects no layer of {n} (half-open range)")
        return [self.block(i) for i in idx]

    def path(self, rel: str) -> str:
        return self.root + rel

    def resolve(self, scope: SignalScope) -> ResolvedScope:
        """Parameter patterns and activation sites of ``scope`` for this model."""
        spec = self.spec
        emb_params = [f"{self.path(e)}.*" for e in spec.embeddings if self._has(e)]
        if scope.kind == "default":
            return ResolvedScope(None, self.blocks())
        if scope.kind == "full":
            return ResolvedScope(["*"], [self.path(spec.embedding_site), *self.blocks()])
        if scope.kind in ("layers", "layer"):
            sites = (
                self.blocks(scope.start, scope.end)
                if scope.kind == "layers"
                else [self.block(scope.start)]
            )
            return ResolvedScope([f"{s}.*" for s in sites], sites)
        if scope.kind == "embeddings":
            return ResolvedScope(emb_params, [self.path(spec.embedding_site)])
        if scope.kind == "word_embedding":
            word = self.path(spec.word_embedding)
            return ResolvedScope([f"{word}.weight"], [word])
        raise ValueError(f"scope {scope.kind!r} is resolved without a topology")  # values

    def _has(self, rel: str) -> bool:
        return _submodule(self.model, self.path(rel)) is not None


def resolve_scope(model: nn.Module, scope: SignalScope | None) -> ResolvedScope:
    """``scope`` for ``model``; ``from_values`` scopes are checked against its modules, the
    others go through the family's topology (an unknown family is a clear error)."""
    scope = scope or SignalScope.default()
    if scope.kind != "values":
        return ModelTopology(model).resolve(scope)
    sites = list(scope.activation_sites or [])
    for site in sites:
        if _submodule(model, site) is None:
            near = [n for n, _ in model.named_modules() if n.endswith(site.split(".")[-1])][:4]
            raise ValueError(
                f"activation site {site!r} is not a module of {type(model).__name__}"
                + (f"; similar names: {near}" if near else "")
            )
    return ResolvedScope(None if scope.params is None else list(scope.params), sites)


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path.rstrip("."))
    except AttributeError:
        return None


def _largest_block_list(model: nn.Module) -> tuple[str, int] | None:
    """The longest ``ModuleList`` of the model (the usual home of its transformer blocks)."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and (best is None or len(mod) > best[1]):
            best = (name, len(mod))
    return best


def unknown_architecture_message(model: nn.Module, model_type: str) -> str:
    """Why a scope by meaning cannot be resolved, with an explicit scope to copy."""
    found = _largest_block_list(model)
    known = ", ".join(sorted(FAMILIES))
    head = (
        f"no topology adapter for model_type {model_type or '?'!r} ({type(model).__name__}); "
        f"the known families are {known}. Give the scope explicitly"
    )
    if found is None:
        return head + ": SignalScope.from_values(params=[...], activation_sites=[...])"
    name, n = found
    pick = [0, n - 1] if n > 1 else [0]
    params = ", ".join(f'"{name}.{i}.*"' for i in pick)
    sites = ", ".join(f'"{name}.{i}"' for i in pick)
    return (
        f"{head}, e.g. (blocks found at {name!r}, {n} of them):\n"
        f"    SignalScope.from_values(params=[{params}], activation_sites=[{sites}])"
    )

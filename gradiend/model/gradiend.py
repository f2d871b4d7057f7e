"""GradiendModel: the one-neuron (by default) autoencoder over gradient space, as a plain artefact.

``h = act_e(W_e s + b_e)``, ``ŝ = act_d(W_d h + b_d)``. Input dimension ``j`` is the base-global
index ``global_indices()[j]`` of the base model, so weights of differently pruned runs compare.
Saved as ``config.json`` + ``model.safetensors`` (+ ``mapping_indices.safetensors`` when pruned,
+ ``importance.safetensors`` when the least-squares decoder of the training data is known); the
file names come from ``gradiend.run_layout``. The importance ranking of the input dimensions
(``PARTS``) is ``gradiend.model.importance``; the methods here delegate to it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from gradiend import run_layout
from gradiend._io import atomic_dir, check_replaceable, read_json, write_json
from gradiend.lm.params import ParamMap
from gradiend.model import importance as importance_mod
from gradiend.model.files import finite_weights, inside, read_tensors
from gradiend.model.hub import GradiendHubMixin, model_card, resolve_pretrained
from gradiend.model.importance import DEFAULT_PART, PARTS, SNR_EPS
from gradiend.model.localise import by_layer, by_module
from gradiend.model.split import ComponentViews
from gradiend.model.word_rows import DEFAULT_REGION

__all__ = [
    "DEFAULT_PART",
    "PARTS",
    "SNR_EPS",
    "GradiendModel",
    "is_gradiend_config",
    "owned_files",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# the files ``save_pretrained`` writes (a folder holding anything else is not replaced)
MODEL_FILES = (
    run_layout.MODEL_CONFIG,
    run_layout.MODEL_WEIGHTS,
    run_layout.MODEL_INDICES,
    run_layout.TRAINING,
    run_layout.CONTEXT,
    run_layout.MODEL_IMPORTANCE,
    run_layout.CARD,
)
IMPORTANCE_FILE = run_layout.MODEL_IMPORTANCE
_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "smht": nn.Hardtanh,
    "id": nn.Identity,
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class _Linear(nn.Module):
    """Wrapper so that state-dict keys read ``encoder.0.linear.weight`` like the incumbent's."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class GradiendModel(GradiendHubMixin, ComponentViews, nn.Module):
    """Encoder/decoder weights plus the map from input dimensions to base-model parameters."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 1,
        activation_encoder: str = "tanh",
        activation_decoder: str = "id",
        bias_decoder: bool = True,
        torch_dtype: torch.dtype = torch.float32,
        param_map: ParamMap | None = None,
        indices: torch.Tensor | None = None,
        **metadata: Any,
    ):
        super().__init__()
        if indices is not None and len(indices) != input_dim:
            raise ValueError(f"{len(indices)} indices given for input_dim={input_dim}")
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.activation_encoder, self.activation_decoder = activation_encoder, activation_decoder
        self.bias_decoder = bias_decoder
        self.param_map = param_map
        self.indices = None if indices is None else indices.to(torch.long).contiguous()
        self.metadata: dict[str, Any] = dict(metadata)
        # least-squares decoder [input_dim, latent_dim] of the training data (fit_importance)
        self.register_buffer("decoder_fit", None, persistent=False)
        # diagonal Fisher [input_dim] of neutral texts, mean 1 (set_neutral_scale; snr ranking)
        self.register_buffer("neutral_fisher", None, persistent=False)
        self._warned_no_fit = False
        self.encoder = nn.Sequential(
            _Linear(input_dim, latent_dim), _activation(activation_encoder)
        )
        self.decoder = nn.Sequential(
            _Linear(latent_dim, input_dim, bias=bias_decoder), _activation(activation_decoder)
        )
        with torch.no_grad():  # decoder init scaled to the encoder's: U(-max W_e, max W_e)
            m = float(self.encoder[0].linear.weight.abs().max())
            self.decoder[0].linear.weight.uniform_(-m, m)
            if bias_decoder:
                self.decoder[0].linear.bias.uniform_(-m, m)
        self._init_split()  # components (gradiend.model.split); none: nothing changes
        self.to(torch_dtype)

    # ------------------------------------------------------------------ weights
    @property
    def W_e(self) -> torch.Tensor:  # noqa: N802 - the method's notation
        return self.encoder[0].linear.weight

    @property
    def b_e(self) -> torch.Tensor:
        return self.encoder[0].linear.bias

    @property
    def W_d(self) -> torch.Tensor:  # noqa: N802
        return self.decoder[0].linear.weight

    @property
    def b_d(self) -> torch.Tensor | None:
        return self.decoder[0].linear.bias

    # ------------------------------------------------------------------ forward
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code of gradient vectors ``x`` (shape ``[..., input_dim]``), on the GRADIEND's
        device whatever device ``x`` is on."""
        return self.encoder(x.to(self.W_e.device, self.W_e.dtype))

    def decode(self, h: torch.Tensor | float) -> torch.Tensor:
        h = torch.as_tensor(h, dtype=self.W_d.dtype, device=self.W_d.device)
        if h.dim() == 0:
            h = h.expand(self.latent_dim)
        return self.decoder(h)

    def forward(self, x: torch.Tensor, return_encoded: bool = False):
        h = self.encode(x)
        out = self.decoder(h)
        return (out, h) if return_encoded else out

    def forward_encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    @torch.no_grad()
    def flip_sign(self) -> None:
        """Negate the latent axis: W_e, b_e and W_d change sign, b_d does not (same reconstruction
        for odd activations such as tanh)."""
        self.W_e.neg_()
        self.b_e.neg_()
        self.W_d.neg_()
        if self.decoder_fit is not None:
            self.decoder_fit.neg_()

    # ------------------------------------------------------------------ index space
    def global_indices(self) -> torch.Tensor:
        """Base-global index of every input dimension."""
        if self.indices is not None:
            return self.indices
        if self.param_map is None:
            return torch.arange(self.input_dim)
        return self.param_map.all_global_indices()

    def resolve_part(self, part: str | None) -> str:
        """``part`` itself, or the default ranking: ``snr`` when the neutral scale is known,
        else ``decoder-fit``, else ``decoder-weight`` (no fitted decoder, e.g. built by hand)."""
        return importance_mod.resolve_part(self, part)

    def get_weight_importance(self, part: str | None = None) -> torch.Tensor:
        """Importance of every input dimension for ``part`` (see PARTS; default: resolve_part)."""
        return importance_mod.importance(self, part)

    def weight_vector(self, part: str = "encoder-weight") -> torch.Tensor:
        """Signed weights of ``part`` per input dimension (first latent unit)."""
        return importance_mod.weight_vector(self, part)

    @torch.no_grad()
    def fit_importance(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Record the least-squares decoder of ``(source, target)`` training batches for the
        current encoder: ``D = cov(t, h) · var(h)⁻¹`` (per latent unit), the decoder that MSE
        training converges to. Returns False (and records nothing) when the encodings do not
        vary (an encoder that separates nothing has no decoder to fit)."""
        self.decoder_fit = importance_mod.fit_decoder(self, batches)
        return self.decoder_fit is not None

    @torch.no_grad()
    def set_neutral_scale(self, fisher: torch.Tensor | None) -> None:
        """Record the diagonal Fisher ``F`` (mean squared gradient) of neutral texts over the
        input dimensions, for the ``snr`` ranking; ``None`` forgets it."""
        if fisher is None:
            self.neutral_fisher = None
            return
        self.neutral_fisher = importance_mod.normalised_fisher(fisher, self.input_dim).to(
            self.W_e.device
        )

    def _neutral_rms(self) -> torch.Tensor:
        return importance_mod.neutral_rms(self)

    def _bias(self) -> torch.Tensor:
        return importance_mod.bias(self)

    def get_topk_weights(
        self,
        part: str | None = None,
        topk: int | float = 1000,
        global_indices: bool = True,
        region: str = DEFAULT_REGION,
    ) -> torch.Tensor:
        """Top dimensions by importance of ``part`` (default: ``snr`` or ``decoder-fit``, see
        ``resolve_part``), most important first; base-global indices by default.

        ``topk`` is a count (int) or a fraction (float, rounded up) of the dimensions in
        ``region``: ``"rest"`` (default: all but the feature words' embedding rows),
        ``"word_rows"`` or ``"all"`` (``gradiend.model.word_rows``).
        """
        return importance_mod.topk_indices(self, part, topk, global_indices, region)

    def importance_by_module(
        self,
        part: str | None = None,
        topk: int | float = 1000,
        level: str = "param",
        region: str = DEFAULT_REGION,
    ) -> Any:
        """Where the feature lives: share of importance mass and of the top-``topk`` dimensions
        of ``region`` per parameter tensor (``level="param"``: columns param, layer, module,
        dims, mass, mass_share, topk, topk_share) or per module type (``level="module"``), as a
        DataFrame, largest mass first (see ``gradiend.model.localise``)."""
        return by_module(self, part, topk, level, region)

    def importance_by_layer(
        self,
        part: str | None = None,
        topk: int | float = 1000,
        by_module_type: bool = False,
        region: str = DEFAULT_REGION,
    ) -> Any:
        """Share of importance mass and of top-``topk`` dimensions of ``region`` per layer (or
        per layer and module type with ``by_module_type``), as a DataFrame in layer order."""
        return by_layer(self, part, topk, by_module_type, region)

    def get_update_vector(self, feature_factor: float = 1.0, part: str = "decoder") -> torch.Tensor:
        """The vector added to the base parameters: ``decoder(ff)`` or the raw vector of ``part``."""
        with torch.no_grad():
            if part == "decoder":
                return self.decode(float(feature_factor)).float()
            return self.weight_vector(part) if part != "decoder-bias" else self._bias().float()

    # ------------------------------------------------------------------ pruning
    @torch.no_grad()
    def prune(
        self,
        mask: torch.Tensor | None = None,
        topk: int | float | None = None,
        threshold: float | None = None,
        part: str | None = None,
        inplace: bool = True,
        return_mask: bool = False,
    ):
        """Keep the dimensions selected by ``mask``, then ``threshold`` (≥), then ``topk``.

        Returns the pruned model (``self`` when ``inplace``), and the boolean keep-mask over the
        old dimensions when ``return_mask``.
        """
        if self.component_positions:
            raise ValueError("a split GRADIEND cannot be pruned: prune with GradiendSplit.none()")
        keep = torch.ones(self.input_dim, dtype=torch.bool) if mask is None else mask.bool().clone()
        if len(keep) != self.input_dim:
            raise ValueError(f"mask has {len(keep)} entries, the model has {self.input_dim} dims")
        importance = self.get_weight_importance(part).cpu()
        if threshold is not None:
            keep &= importance >= threshold
        if topk is not None:
            idx = keep.nonzero().squeeze(1)
            k = _resolve_k(topk, len(idx))
            top = idx[torch.topk(importance[idx], k).indices]
            keep = torch.zeros_like(keep)
            keep[top] = True
        model = self if inplace else self._empty_copy().to(self.W_e.device)
        model._slice(keep.nonzero().squeeze(1), source=self)
        return (model, keep) if return_mask else model

    def _empty_copy(self) -> GradiendModel:
        return GradiendModel(
            1,
            self.latent_dim,
            self.activation_encoder,
            self.activation_decoder,
            self.bias_decoder,
            self.W_e.dtype,
            self.param_map,
            None,
            **self.metadata,
        )

    def _slice(self, keep_idx: torch.Tensor, source: GradiendModel) -> None:
        gidx = source.global_indices()[keep_idx.cpu()].clone()
        keep_idx = keep_idx.to(source.W_e.device)
        w_e, w_d = source.W_e[:, keep_idx].clone(), source.W_d[keep_idx].clone()
        b_e = source.b_e.clone()
        b_d = source.b_d[keep_idx].clone() if source.b_d is not None else None
        fit = None if source.decoder_fit is None else source.decoder_fit[keep_idx].clone()
        nf = source.neutral_fisher
        nf = None if nf is None else nf[keep_idx.to(nf.device)].clone()
        self.input_dim = len(keep_idx)
        self.indices = gidx
        self.encoder[0].linear = _linear_from(w_e, b_e)
        self.decoder[0].linear = _linear_from(w_d, b_d)
        self.decoder_fit = fit
        self.neutral_fisher = nf  # the kept dimensions' F (not renormalised: ranks stay)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": {
                "input_dim": self.input_dim,
                "latent_dim": self.latent_dim,
                "activation_encoder": self.activation_encoder,
                "activation_decoder": self.activation_decoder,
                "bias_decoder": self.bias_decoder,
                "torch_dtype": str(self.W_e.dtype).replace("torch.", ""),
            },
            "mapping": {
                "mode": "all" if self.indices is None else "indices",
                "param_map": None if self.param_map is None else self.param_map.to_json(),
                "indices_file": None if self.indices is None else run_layout.MODEL_INDICES,
            },
            "importance_file": None if self.decoder_fit is None else IMPORTANCE_FILE,
            "metadata": self.metadata,
        }

    def save_pretrained(self, path: str | Path, extra_files: dict[str, Any] | None = None) -> Path:
        """Write weights, config and (when pruned) indices into ``path`` atomically.

        ``extra_files`` maps file names to JSON-serialisable values written alongside. The model
        card (``README.md``, see ``gradiend.model.hub``) makes the folder ready to upload.
        """
        path = Path(path)
        check_replaceable(path, owned_files(path, extra_files), "GRADIEND model")
        with atomic_dir(path) as tmp:
            tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(tensors, str(tmp / run_layout.MODEL_WEIGHTS))
            if self.indices is not None:
                save_file({"indices": self.indices.cpu()}, str(tmp / run_layout.MODEL_INDICES))
            if self.decoder_fit is not None:
                imp = {"decoder_fit": self.decoder_fit.detach().contiguous().cpu()}
                if self.neutral_fisher is not None:
                    imp["neutral_fisher"] = self.neutral_fisher.detach().contiguous().cpu()
                save_file(imp, str(tmp / IMPORTANCE_FILE))
            names = {
                run_layout.MODEL_CONFIG,
                run_layout.CARD,
                *(f.name for f in tmp.iterdir()),
                *(extra_files or {}),
            }
            write_json(tmp / run_layout.MODEL_CONFIG, {**self.config(), "files": sorted(names)})
            for name, value in (extra_files or {}).items():
                write_json(tmp / name, value)
            card = model_card(self, (extra_files or {}).get(run_layout.TRAINING))
            (tmp / run_layout.CARD).write_text(card, encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
    ) -> GradiendModel:
        """Load a model saved by ``save_pretrained`` (a run folder or its ``model/`` folder) or
        pushed to the hub (``"org/name"``, through the hub cache; ``revision``, ``cache_dir`` and
        ``token`` go to ``huggingface_hub``), onto ``device`` (default: the CPU)."""
        path = run_layout.find_model_dir(resolve_pretrained(path, revision, cache_dir, token))
        cfg = read_json(path / run_layout.MODEL_CONFIG)
        arch, mapping = cfg["architecture"], cfg["mapping"]
        indices = None
        if mapping.get("indices_file"):
            key = "mapping.indices_file"
            indices = read_tensors(path, mapping["indices_file"], key, "indices")["indices"]
        pmap = ParamMap.from_json(mapping["param_map"]) if mapping.get("param_map") else None
        dtype = getattr(torch, arch.get("torch_dtype", "float32"))
        model = cls(
            arch["input_dim"],
            arch["latent_dim"],
            arch["activation_encoder"],
            arch["activation_decoder"],
            arch["bias_decoder"],
            dtype,
            pmap,
            indices,
            **cfg.get("metadata", {}),
        )
        model.load_state_dict(finite_weights(path, run_layout.MODEL_WEIGHTS))
        imp_file = cfg.get("importance_file")
        if imp_file and inside(path, imp_file, "importance_file").exists():
            imp = read_tensors(path, imp_file, "importance_file", "importance values")
            model.decoder_fit = imp["decoder_fit"]
            model.neutral_fisher = imp.get("neutral_fisher")
        model.source_dir = path
        return model if device is None else model.to(device)


def owned_files(path: str | Path, extra_files: dict | None = None) -> set[str]:
    """Names a save into ``path`` may replace: those an earlier GRADIEND save there listed in
    its ``config.json``, plus its card; a folder without a GRADIEND config owns nothing, so a
    user's model or README is never replaced (``extra_files`` does not widen the set)."""
    cfg_path = Path(path) / run_layout.MODEL_CONFIG
    if not is_gradiend_config(cfg_path):
        return set()
    listed = read_json(cfg_path).get("files")
    if not isinstance(listed, list):
        return set(MODEL_FILES)
    # the card beside a GRADIEND config is its own (earlier saves did not list it)
    return {run_layout.CARD, *(str(f) for f in listed)}


def is_gradiend_config(path: str | Path) -> bool:
    """Whether ``path`` is a GRADIEND's ``config.json`` (one ``save_pretrained`` wrote): it has
    a format version and an architecture, which a Hugging Face model's config has not."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        cfg = read_json(path)
    except (OSError, ValueError):
        return False
    return (
        isinstance(cfg, dict)
        and "format_version" in cfg
        and isinstance(cfg.get("architecture"), dict)
    )


def _linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    with torch.no_grad():
        lin.weight = nn.Parameter(weight)
        if bias is not None:
            lin.bias = nn.Parameter(bias)
    return lin


def _resolve_k(topk: int | float, n: int) -> int:
    if isinstance(topk, float):
        if not 0 < topk <= 1:
            raise ValueError(f"a fractional topk must be in (0, 1], got {topk}")
        return max(1, min(n, math.ceil(topk * n)))
    if topk < 1:
        raise ValueError(f"topk must be ≥ 1, got {topk}")
    return min(int(topk), n)

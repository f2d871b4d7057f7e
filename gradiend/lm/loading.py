"""Load the base language model: a hub id, a local folder, a ``.gguf`` file, or a loaded model.

Masked and causal LMs are told apart from the architecture; attention runs in the ``eager``
implementation because forward-mode AD (used for encodings) has no rule for the fused CPU kernel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradiend.data.hub import not_found_error
from gradiend.lm import gguf_cache
from gradiend.lm.checks import (
    cap_max_length,
    check_gguf_header,
    check_model_arg,
    check_model_pair,
    check_tokenizer_fits,
    gguf_load_error,
)
from gradiend.lm.devices import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)


@dataclass
class BaseLM:
    """A loaded base model with its tokenizer, kind (``mlm``/``clm``) and where it came from."""

    model: nn.Module
    tokenizer: Any
    kind: str
    source: str | None = None
    fingerprint: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def detect_kind(model: nn.Module) -> str:
    """``mlm`` for masked LMs, ``clm`` for decoder-only causal LMs, ``seq2seq`` for
    encoder-decoder models (T5, BART, mT5)."""
    name = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False):
        return "seq2seq"
    if "MaskedLM" in name:
        return "mlm"
    if "CausalLM" in name or "LMHead" in name or getattr(model.config, "is_decoder", False):
        return "clm"
    raise ValueError(
        f"cannot tell whether {name} is a masked or a causal LM; load it with "
        "AutoModelForMaskedLM or AutoModelForCausalLM and pass (model, tokenizer)"
    )


def load_base_model(
    model: str | Path | nn.Module | tuple,
    tokenizer: Any = None,
    torch_dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
) -> BaseLM:
    """Load ``model`` (hub id, folder, ``.gguf`` path, loaded model or ``(model, tokenizer)``).

    A loaded model stays where its owner put it. Otherwise it goes to ``device`` (default: CUDA
    when available), or is placed by ``device_map`` (``"auto"`` shards over the GPUs, within
    ``max_memory``) through ``from_pretrained``.
    """
    if isinstance(model, BaseLM):
        return model
    if isinstance(model, tuple):
        check_model_arg(model)
        model, tokenizer = model
    dtype = resolve_dtype(torch_dtype)
    if isinstance(model, nn.Module) or isinstance(tokenizer, nn.Module):
        check_model_pair(model, tokenizer)
        if tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer: pass model=(model, tokenizer)")
        source = getattr(model.config, "_name_or_path", None) or type(model).__name__
        fp = {"model": source, "weights_sha": _weights_hash(model)}
        return _finish(BaseLM(model, tokenizer, detect_kind(model), source, fp), dtype)
    check_model_arg(model)
    placement: dict[str, Any] = {}
    if device_map is not None:
        placement = {"device_map": device_map, "max_memory": max_memory}
    else:
        dev = resolve_device(device)
        placement = {"device_map": str(dev)} if dev.type != "cpu" else {}
    path = str(model)
    if path.endswith(".gguf"):
        lm = _load_gguf(Path(path), dtype)
        if device_map is not None:
            logger.warning("device_map is not supported for .gguf files; using one device")
        return _finish(lm, dtype, resolve_device(device))
    return _finish(_load_hf(path, dtype, trust_remote_code, revision, placement), dtype)


def _finish(lm: BaseLM, dtype: torch.dtype | None, device: torch.device | None = None) -> BaseLM:
    if dtype is not None and any(p.dtype != dtype for p in lm.model.parameters()):
        lm.model.to(dtype)
    if device is not None and lm.device != device:
        lm.model.to(device)
    lm.model.eval()
    for p in lm.model.parameters():
        p.requires_grad_(False)
    _set_eager(lm.model)
    tok = lm.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    check_tokenizer_fits(lm.model, tok, lm.kind)
    cap_max_length(lm.model, tok)
    return lm


def _set_eager(model: nn.Module) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    try:
        if setter is not None:
            setter("eager")
        else:
            model.config._attn_implementation = "eager"
    except (ValueError, AttributeError, NotImplementedError) as err:  # pragma: no cover
        logger.debug("could not switch attention to eager: %s", err)


def _load_hf(
    name: str, dtype, trust_remote_code: bool, revision: str | None, placement: dict
) -> BaseLM:
    # heavy: transformers' auto classes load only when a model is loaded, not on import gradiend
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        config = AutoConfig.from_pretrained(name, **kwargs)
    except OSError as err:  # no such repo, or the hub is offline or unreachable
        if Path(name).exists():
            raise
        raise not_found_error("model", name, err) from err
    archs = " ".join(config.architectures or [])
    if getattr(config, "is_encoder_decoder", False):
        cls, kind = AutoModelForSeq2SeqLM, "seq2seq"
    elif "MaskedLM" in archs or (
        not archs
        and not getattr(config, "is_decoder", False)
        and config.model_type in _masked_types()
    ):
        cls, kind = AutoModelForMaskedLM, "mlm"
    else:
        cls, kind = AutoModelForCausalLM, "clm"
    model = cls.from_pretrained(
        name, attn_implementation="eager", dtype=dtype, **placement, **kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    fp = {"model": name, "revision": revision or _commit(model)}
    if Path(name).is_dir():
        fp["weights_sha"] = _folder_hash(Path(name))
    return BaseLM(model, tokenizer, kind, name, fp)


def _masked_types() -> set[str]:
    # heavy: transformers' auto classes load only when a model is loaded (see _load_hf)
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return set(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def _commit(model: nn.Module) -> str | None:
    return getattr(model.config, "_commit_hash", None)


def _load_gguf(path: Path, dtype: torch.dtype | None = None) -> BaseLM:
    """GGUF checkpoints are de-quantised by transformers to ordinary tensors (float32, or
    ``dtype``)."""
    # heavy: transformers' auto classes load only when a model is loaded (gguf needs the extra)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf_header(path)
    st = os.stat(path)
    fp = {"model": str(path), "file_size": st.st_size, "file_sha": _file_hash(path)}
    cached = gguf_cache.entry(path, fp["file_sha"])
    if cached is not None and gguf_cache.is_complete(cached):
        model = AutoModelForCausalLM.from_pretrained(
            cached, attn_implementation="eager", dtype=dtype, use_safetensors=True
        )
        return BaseLM(model, AutoTokenizer.from_pretrained(cached), "clm", str(path), fp)
    folder, name = str(path.parent), path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, attn_implementation="eager", dtype=dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (struct.error, EOFError, IndexError, KeyError, ValueError) as err:
        raise gguf_load_error(path, err) from err
    if cached is not None and dtype in (None, torch.float32):
        gguf_cache.store(cached, model, tokenizer, path)
    return BaseLM(model, tokenizer, "clm", str(path), fp)


def _file_hash(path: Path, chunk: int = 1 << 22) -> str:
    """Hash of the first and last 4 MiB plus the size: cheap and changes with the file."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    h.update(str(size).encode())
    return h.hexdigest()[:16]


def _folder_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(p.name.encode())
        h.update(_file_hash(p).encode())
    return h.hexdigest()[:16]


def _weights_hash(model: nn.Module) -> str:
    """A content hash of an in-memory model (a few values of every tensor, cheap)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 64)
            h.update(name.encode())
            h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def describe_model(model: Any, revision: str | None = None) -> dict:
    """A cheap fingerprint of what ``model`` names, without loading it (for run caches)."""
    if isinstance(model, tuple):
        model = model[0]
    if isinstance(model, BaseLM):
        return dict(model.fingerprint)
    if isinstance(model, nn.Module):
        return {"model": type(model).__name__, "weights_sha": _weights_hash(model)}
    path = Path(str(model))
    if path.is_file():
        return {"model": str(path.resolve()), "file_sha": _file_hash(path)}
    if path.is_dir():
        return {"model": str(path.resolve()), "weights_sha": _folder_hash(path)}
    return {"model": str(model), "revision": revision}

"""Cheap checks of a base-model argument before loading, and of a loaded model's limits: the
argument's type and order, the path or hub id, the tokenizer's fit, finite weights."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from gradiend import run_layout
from gradiend.data.hub import hub_offline, in_hub_cache, not_found_error

logger = logging.getLogger(__name__)

_GGUF_MAGIC = b"GGUF"
# tokenizers without a max length report a huge sentinel (int(1e30))
_NO_LIMIT = 10**9
# a name the hub could answer: "name" or "org/name"
_HUB_NAME = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")
_KINDS = (
    "a hub id, a model folder, a .gguf file, a loaded model with its tokenizer "
    "(model=(model, tokenizer), or model=model, tokenizer=tokenizer)"
)


def is_tokenizer(obj: Any) -> bool:
    """A tokenizer (transformers' or one shaped like it), told apart from a model."""
    return not isinstance(obj, nn.Module) and callable(getattr(obj, "convert_tokens_to_ids", None))


def _name(obj: Any) -> str:
    return type(obj).__name__


def check_model_arg(model: Any) -> None:
    """``model`` is a name, a folder, a ``.gguf`` file, a loaded model or a ``(model,
    tokenizer)`` pair in that order; a path-like one must exist and be a model folder or a
    ``.gguf`` file, and a missing local folder is reported as such, not as a bad hub id."""
    if isinstance(model, tuple):
        if len(model) != 2:
            raise ValueError("model=(model, tokenizer) must be a pair")
        check_model_pair(*model)
        return
    if is_tokenizer(model):
        raise TypeError(
            f"model= got a tokenizer ({_name(model)}), not a model: pass the model as model= and "
            "its tokenizer as tokenizer= (or model=(model, tokenizer), the model first)"
        )
    if isinstance(model, nn.Module) or _is_loaded_lm(model):
        return
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be {_KINDS}; got a {_name(model)}")
    _check_model_path(str(model), Path(model))


def check_model_pair(model: Any, tokenizer: Any) -> None:
    """A loaded model and its tokenizer, in this order (a swapped pair names the right one)."""
    if is_tokenizer(model) and isinstance(tokenizer, nn.Module):
        raise TypeError(
            f"model and tokenizer are swapped: got ({_name(model)}, {_name(tokenizer)}); pass "
            f"the model first: model=(model, tokenizer), e.g. ({_name(tokenizer)}, "
            f"{_name(model)}), or model=model, tokenizer=tokenizer"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model=(model, tokenizer) needs a loaded model (a torch.nn.Module such as "
            f"AutoModelForMaskedLM.from_pretrained(...)) first; got a {_name(model)}"
        )
    if tokenizer is not None and not is_tokenizer(tokenizer):
        raise TypeError(
            f"the tokenizer of {_name(model)} must be a tokenizer (e.g. "
            f"AutoTokenizer.from_pretrained(...)); got a {_name(tokenizer)}"
        )


def _is_loaded_lm(obj: Any) -> bool:
    """A ``BaseLM`` (``gradiend.lm.loading``, which imports this module)."""
    return all(hasattr(obj, a) for a in ("model", "tokenizer", "kind", "fingerprint"))


def _check_model_path(text: str, path: Path) -> None:
    if text.strip() == "":
        raise ValueError("model is an empty string: pass a hub id, a model folder or a .gguf file")
    if path.suffix.lower() == ".gguf":
        check_gguf_header(path)
        return
    if path.is_file():
        raise ValueError(
            f"model={text!r} is a file, not a model folder: pass the folder holding config.json, "
            "a .gguf file, or a hub id"
        )
    if path.is_dir():
        if not (path / run_layout.HF_CONFIG).is_file():
            raise FileNotFoundError(
                f"model folder {path} has no config.json: pass the folder written by "
                "save_pretrained (the one holding config.json and the weights)"
            )
        return
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        raise FileNotFoundError(
            f"model folder {path} does not exist; check the path (looked at "
            f"{path.expanduser().absolute()}, working folder {Path.cwd()}; a hub id looks like "
            "'org/name' and never starts with '.', '/' or '~')"
        )
    # "org/name" or "name" could be either: offline, only the hub cache can answer
    if hub_offline() and _HUB_NAME.match(text) and not in_hub_cache(text):
        raise not_found_error("model", text)


def check_gguf_header(path: Path) -> None:
    """The file exists and starts like a GGUF file (its full check comes with loading)."""
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist; check the path")
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:4] != _GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF file (it is empty, truncated or of another format): "
            "download it again or pass the model's folder or hub id"
        )


def gguf_load_error(path: Path, err: Exception) -> ValueError:
    """The error for a GGUF file that starts well but cannot be read (usually truncated)."""
    return ValueError(
        f"cannot read the GGUF file {path} ({type(err).__name__}: {err}); it is probably "
        "truncated or damaged (download it again), or of an architecture transformers cannot "
        "load from GGUF (pass the model's folder or hub id)"
    )


def cap_max_length(model: Any, tokenizer: Any) -> None:
    """Give the tokenizer the model's position limit when it has none or a larger one, so long
    rows are truncated safely instead of overrunning the position embeddings."""
    config = getattr(model, "config", None)
    limit = None
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limit = value
            break
    current = getattr(tokenizer, "model_max_length", None)
    if limit is None:
        return
    if current is None or not isinstance(current, int) or current > limit:
        logger.info(
            "tokenizer max length %s exceeds the model's %d positions: using %d",
            current if current is None or current < _NO_LIMIT else "unset",
            limit,
            limit,
        )
        tokenizer.model_max_length = limit


def check_tokenizer_fits(model: Any, tokenizer: Any, kind: str) -> None:
    """The tokenizer's ids index the model's embedding (and output) rows, and a masked LM's
    tokenizer has a mask token: another model's tokenizer fails here, not in a gradient pass."""
    rows, n = vocab_rows(model), len(tokenizer)
    if rows is not None and n > rows:
        raise ValueError(
            f"the tokenizer ({_name(tokenizer)}, {n} tokens) does not fit the model "
            f"({_name(model)}, {rows} embedding rows): token ids {rows}..{n - 1} would index past "
            "its embedding. Is it another model's tokenizer (e.g. a masked model's with a causal "
            "model)? Pass the tokenizer saved with the model (AutoTokenizer.from_pretrained of "
            "the model's folder or id); for tokens you added, call "
            "model.resize_token_embeddings(len(tokenizer)) first"
        )
    if kind == "mlm" and getattr(tokenizer, "mask_token", None) is None:
        raise ValueError(
            f"{_name(model)} is a masked LM, but its tokenizer ({_name(tokenizer)}) has no mask "
            "token (is it a causal model's tokenizer?): pass the tokenizer saved with the masked "
            "model (AutoTokenizer.from_pretrained of its folder or id)"
        )


def vocab_rows(model: Any) -> int | None:
    """Rows of the model's input embedding and output head (the smaller), or ``None``."""
    rows = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError):
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            rows.append(int(weight.shape[0]))
    return min(rows) if rows else None


# --------------------------------------------------------------------------- finite values
BASE_NONFINITE_FIX = (
    "Load an intact checkpoint (a diverged fine-tune, a damaged file or a cast to a dtype too "
    "small for its values gives such weights; try torch_dtype='float32') before computing "
    "gradients."
)
GRADIEND_NONFINITE_FIX = (
    "Retrain the GRADIEND (e.g. with a lower learning_rate) and save it again: its weights are "
    "broken (training diverged or the file was damaged)."
)


def nonfinite_counts(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, int]]:
    """``(name, count)`` of every floating tensor holding NaN or inf: one cheap
    ``isfinite().all()`` per tensor, values counted only for the bad ones."""
    bad = []
    with torch.no_grad():
        for name, t in tensors:
            if not t.is_floating_point() or t.device.type == "meta":
                continue
            if not bool(torch.isfinite(t).all()):
                bad.append((name, int((~torch.isfinite(t)).sum())))
    return bad


def nonfinite_error(what: str, where: Any, bad: list[tuple[str, int]], fix: str) -> ValueError:
    """One wording for NaN/inf weights of a GRADIEND and of a base model: where, how many, which
    tensors, and the fix."""
    shown = ", ".join(f"{name}: {n}" for name, n in bad[:5])
    if len(bad) > 5:
        shown += f", … {len(bad) - 5} more"
    total = sum(n for _, n in bad)
    return ValueError(
        f"the {what} weights in {where} hold NaN or inf: {total} non-finite value(s) in "
        f"{len(bad)} tensor(s) ({shown}). {fix}"
    )


def check_finite_params(named: Iterable[tuple[str, torch.Tensor]], source: Any) -> None:
    """Refuse base-model parameters holding NaN or inf before any gradient is computed (they
    would make every gradient non-finite and fail much later without naming the cause)."""
    bad = nonfinite_counts(named)
    if bad:
        raise nonfinite_error("base model", source, bad, BASE_NONFINITE_FIX)


def cache_dtype_for(
    x: torch.Tensor, dtype: torch.dtype, where: str, can_widen: bool = True
) -> torch.dtype:
    """The dtype to cache gradients ``x`` in: ``dtype``, or float32 when ``x`` overflows a
    16-bit ``dtype`` (a value beyond its largest would be stored as inf). The widening is
    warned; with ``can_widen=False`` it is refused instead."""
    if x.dtype == dtype or not x.is_floating_point() or x.numel() == 0:
        return dtype
    if torch.finfo(dtype).bits > 16 or torch.finfo(dtype).max > torch.finfo(x.dtype).max / 2:
        return dtype  # e.g. bfloat16 has float32's exponent range: no pass over the values
    peak = float(x.detach().abs().max())
    limit = torch.finfo(dtype).max
    if not math.isfinite(peak) or peak <= limit:  # non-finite already: not the cast's doing
        return dtype
    name = str(dtype).replace("torch.", "")
    facts = (
        f"the gradients of {where} reach |g| = {peak:.3g}, beyond {name}'s largest value "
        f"({limit:.6g}), so the {name} gradient cache would store them as inf"
    )
    fix = "set gradient_cache_dtype='bfloat16' (float32's range in 16 bits) or 'float32'"
    if not can_widen:
        raise ValueError(
            f"{facts}; under torch.distributed without use_cache the ranks share one cache "
            f"dtype, which cannot change mid-way: {fix}"
        )
    logger.warning(
        "%s: the cache is kept in float32 from here on (twice the memory). To choose it "
        "yourself, %s",
        facts,
        fix,
    )
    return torch.float32


# --------------------------------------------------------------------------- received files
def read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file. Anything else (a pickle, a ``torch.save`` zip,
    damaged bytes) is refused by name: a pickle runs code when loaded, so nothing is unpickled."""
    try:
        return load_file(str(path))
    except SafetensorError as err:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            kind = "it starts like a Python pickle, e.g. a torch.save file"
        elif head == b"PK\x03\x04":
            kind = "it is a zip archive, the format of torch.save"
        else:
            kind = f"its header cannot be read: {err}"
        raise ValueError(
            f"{path} is not a safetensors file ({kind}): gradiend never unpickles {what} (a "
            "pickle can run any code when it is loaded) and reads them only from safetensors. "
            "Re-save it from a copy you trust with safetensors.torch.save_file(tensors, "
            f"'{path.name}') (GradiendModel.save_pretrained writes safetensors)."
        ) from err

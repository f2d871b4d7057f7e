"""Cheap checks of a base-model argument before loading, and of a loaded model's limits."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gradiend import run_layout

logger = logging.getLogger(__name__)

_GGUF_MAGIC = b"GGUF"
# tokenizers without a max length report a huge sentinel (int(1e30))
_NO_LIMIT = 10**9


def check_model_arg(model: Any) -> None:
    """A path-like ``model`` must exist and be a model folder or a ``.gguf`` file; a missing
    local folder is reported as such, not as a bad hub id."""
    if isinstance(model, tuple):
        if len(model) != 2:
            raise ValueError("model=(model, tokenizer) must be a pair")
        return
    if not isinstance(model, (str, os.PathLike)):
        return
    text, path = str(model), Path(model)
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
            f"model folder {path} does not exist; check the path (a hub id looks like "
            "'org/name' and never starts with '.', '/' or '~')"
        )


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

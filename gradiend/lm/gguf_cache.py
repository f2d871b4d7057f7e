"""An opt-in cache of de-quantised GGUF checkpoints as safetensors folders.

transformers de-quantises a GGUF file on every load (about 15 s for SmolLM2-135M on two CPU
cores); a safetensors folder of the same float32 weights loads in well under a second. A
session that loads one GGUF model many times (the test suite, a notebook re-running the
workflow) sets ``GRADIEND_GGUF_CACHE=<folder>`` and pays the de-quantisation once. Off by
default: the folder is as large as the float32 model (4 bytes a parameter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from torch import nn

from gradiend._io import atomic_dir
from gradiend.run_layout import HF_CONFIG

logger = logging.getLogger(__name__)

ENV = "GRADIEND_GGUF_CACHE"
MARK = "gradiend_gguf_cache.json"


def cache_dir() -> Path | None:
    """The cache root named by ``GRADIEND_GGUF_CACHE``, or ``None`` when caching is off."""
    root = os.environ.get(ENV, "").strip()
    return Path(root).expanduser() if root else None


def entry(path: Path, file_hash: str) -> Path | None:
    """The cache folder for GGUF ``path`` with content hash ``file_hash`` (``None``: off)."""
    root = cache_dir()
    if root is None:
        return None
    # heavy: only on this path, and the version is part of the key
    import transformers

    key = hashlib.sha256(f"{file_hash}|{transformers.__version__}".encode()).hexdigest()[:16]
    return root / f"{path.stem}-{key}"


def is_complete(folder: Path) -> bool:
    """A cache folder is used only when this module wrote it completely (its mark is there)."""
    return (folder / MARK).is_file() and (folder / HF_CONFIG).is_file()


def store(folder: Path, model: nn.Module, tokenizer, source: Path) -> None:
    """Save the de-quantised ``model`` and ``tokenizer`` to ``folder`` atomically.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights move into a model built
    from the same config without its quantization entry. A failed save only logs: the cache
    is an optimisation, the loaded model is already there.
    """
    # heavy: transformers' auto classes load only when a model is saved
    from transformers import AutoModelForCausalLM

    try:
        config = model.config.__class__.from_dict(
            {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
        )
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(model.state_dict())
        with atomic_dir(folder) as tmp:
            plain.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / MARK).write_text(json.dumps({"writer": "gradiend", "source": str(source)}))
        logger.info("cached the de-quantised %s in %s", source.name, folder)
    except (OSError, RuntimeError, ValueError) as err:
        logger.warning("could not cache the de-quantised %s in %s: %s", source.name, folder, err)

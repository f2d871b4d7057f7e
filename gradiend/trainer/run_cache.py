"""Reuse of a saved run: the trainer's cached GRADIEND when its fingerprint matches."""

from __future__ import annotations

import logging

from safetensors import SafetensorError

from gradiend._io import read_json_cache
from gradiend.model.gradiend import GradiendModel
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.trainer.fingerprint import diff_fingerprint

logger = logging.getLogger(__name__)


def try_cache(trainer, fingerprint: dict) -> ModelWithGradiend | None:
    """The saved GRADIEND of the run folder when its fingerprint matches (``use_cache``)."""
    mode = trainer.args.use_cache
    stats = read_json_cache(trainer.layout.training) if mode else None
    if stats is None:
        return None
    if mode in (True, "only_convergent"):
        differ = diff_fingerprint(stats.get("cache_fingerprint"), fingerprint)
        if differ:
            logger.info("cached run in %s not used: %s differ(s)", trainer.model_dir, differ)
            return None
    if mode == "only_convergent" and not stats.get("convergence_info", {}).get("converged"):
        logger.info("cached run in %s not used: it did not converge", trainer.model_dir)
        return None
    try:
        gradiend = GradiendModel.from_pretrained(trainer.model_dir, device=trainer.gradiend_device)
    except (KeyError, OSError, ValueError, SafetensorError) as err:
        logger.warning(
            "cached GRADIEND in %s is unreadable (%s); retraining", trainer.model_dir, err
        )
        return None
    logger.info("using the cached GRADIEND in %s", trainer.model_dir)
    trainer._stats = stats
    trainer._model = trainer._wrap(gradiend)
    return trainer._model

"""The rewrite: the base model changed at a selected decoder point, as a plain HF model.

Folding the GRADIEND's update into the weights is a method of ``ModelWithGradiend``
(``rewrite_from_results``), as peft's ``merge_and_unload`` is of its wrapped model: it needs
only the GRADIEND (``ModelWithGradiend.from_pretrained(run)``), the saved decoder results and,
for a preconditioned point, the run's stored Fisher — never a trainer or its data.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradiend import distributed as dist
from gradiend._io import read_json
from gradiend.lm import fisher as fisher_mod
from gradiend.run_layout import MODEL_CONFIG, RunLayout

if TYPE_CHECKING:
    from gradiend.model.gradiend import GradiendModel
    from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

WEAKEN_SUFFIX = "_weaken"  # the decoder results' key of a weakening direction


def summary_key(cls: str, strengthen: bool) -> str:
    """The decoder results' key of ``cls`` (``<cls>`` or ``<cls>_weaken``)."""
    return cls if strengthen else f"{cls}{WEAKEN_SUFFIX}"


def gradiend_fingerprint(gradiend: GradiendModel) -> str:
    """A cheap content hash of the GRADIEND (strided samples of every tensor): decoder results
    carry it so that they are never applied to another GRADIEND."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(gradiend.state_dict().items()):
            flat = t.detach().reshape(-1)
            h.update(name.encode() + str(tuple(t.shape)).encode())
            h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_results_match(results: Mapping, fingerprint: str) -> None:
    """Decoder results carry the fingerprint of the GRADIEND they were selected for; applying
    them to another GRADIEND would use a step size chosen for a different direction."""
    if not isinstance(results, Mapping):
        raise TypeError(
            f"decoder_results must be the dict returned by evaluate_decoder(), got "
            f"{type(results).__name__}"
        )
    for key, entry in results.items():
        theirs = entry.get("gradiend_fingerprint") if isinstance(entry, Mapping) else None
        if theirs is not None and theirs != fingerprint:
            raise ValueError(
                f"decoder_results[{key!r}] was selected for another GRADIEND (fingerprint "
                f"{theirs}, this one is {fingerprint}): its learning rate does not fit this "
                "model. Call evaluate_decoder() on this trainer and pass its results."
            )


def check_save_dir(path: str | os.PathLike) -> None:
    """A folder for a rewritten Hugging Face model: new, empty, or an earlier model folder."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"output_dir must be a folder path (str or Path), got {path!r}")
    path = Path(path)
    if path.is_file():
        raise FileExistsError(f"output_dir {path} is a file: pass a folder path")
    if path.is_dir() and any(path.iterdir()) and not (path / MODEL_CONFIG).is_file():
        raise FileExistsError(
            f"refusing to save the rewritten model into {path}: the folder holds files that are "
            "not a model's. Pass a new or empty folder."
        )


def check_rewrite_dirs(
    output_dir: str | Path, classes: list[str], many: bool, strengthen: bool
) -> None:
    """The folder (one sub-folder per class when ``many``) a rewrite may be saved in."""
    for cls in classes if many else [None]:
        check_save_dir(Path(output_dir) / (summary_key(cls, strengthen) if cls else ""))


def read_results(layout: RunLayout | None) -> dict:
    """The run's saved decoder results (an error naming the fix when there are none)."""
    if layout is None:
        raise ValueError(
            "no decoder results given and no run folder to read them from: pass "
            "decoder_results= (from evaluate_decoder) or run_dir="
        )
    if not layout.decoder_results.exists():
        raise RuntimeError("no decoder results: call evaluate_decoder() first")
    return read_json(layout.decoder_results)


def rewrite_from_results(
    mwg: ModelWithGradiend,
    results: Mapping | None,
    target_class: str | list[str] | None,
    strengthen: bool,
    output_dir: str | Path | None,
    layout: RunLayout | None,
):
    """The base model rewritten at each class's selected point (a list gives one model per
    class), saved to ``output_dir`` (a sub-folder per class for a list) when given."""
    results = read_results(layout) if results is None else results
    classes = _as_list(target_class) or mwg.target_classes[:1]
    many = isinstance(target_class, list)
    if output_dir is not None:
        check_rewrite_dirs(output_dir, classes, many, strengthen)
    check_results_match(results, gradiend_fingerprint(mwg.gradiend))
    models = []
    for cls in classes:
        key = summary_key(cls, strengthen)
        if key not in results:
            raise KeyError(
                f"the decoder results have no entry {key!r}; run "
                f"evaluate_decoder(target_class={cls!r}, increase_target_probabilities="
                f"{strengthen})"
            )
        model = plain_model(_rewritten(mwg, results[key], layout))
        if output_dir is not None:
            out = Path(output_dir) / key if many else Path(output_dir)
            save = lambda m=model, o=out: save_model(m, mwg.tokenizer, o)  # noqa: E731
            dist.on_main(save, "saving the rewritten model")
        models.append(model)
    return models if many else models[0]


def _rewritten(mwg: ModelWithGradiend, entry: Mapping, layout: RunLayout | None):
    """A copy of the base model at the entry's point (with its preconditioning, if any)."""
    pre = entry.get("precondition")
    scale = None
    if pre:
        if layout is None:
            raise ValueError(
                "this point was selected with precondition='fisher', whose Fisher is stored in "
                "the run folder: pass run_dir="
            )
        fisher = fisher_mod.load_fisher(layout.run_dir, pre["key"])
        scale = fisher_mod.scale_vector(fisher, pre["damping"])
    with mwg.scaled_updates(scale):
        return mwg.rewrite_base_model(
            entry["learning_rate"], entry["feature_factor"], entry.get("part", "decoder")
        )


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """An ordinary HF model: GGUF/quantised loads are rebuilt from their config without
    ``quantization_config`` (they refuse ``save_pretrained``)."""
    config = model.config
    if getattr(model, "hf_quantizer", None) is None and not hasattr(config, "quantization_config"):
        return model
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM  # heavy; rare path

    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    cls = AutoModelForMaskedLM if "MaskedLM" in type(model).__name__ else AutoModelForCausalLM
    plain = cls.from_config(config, dtype=next(model.parameters()).dtype)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def save_model(model: torch.nn.Module, tokenizer: Any, output_dir: str | Path) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    logger.info("rewritten model and tokenizer saved to %s", out)
    return out


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]

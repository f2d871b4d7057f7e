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
import math
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradiend import distributed as dist
from gradiend._io import atomic_dir, check_replaceable, read_json, write_json
from gradiend.lm import fisher as fisher_mod
from gradiend.model.gradiend import is_gradiend_config
from gradiend.run_layout import HF_CONFIG, REWRITE_MANIFEST, RunLayout, safe_name

if TYPE_CHECKING:
    from gradiend.model.gradiend import GradiendModel
    from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

WEAKEN_SUFFIX = "_weaken"  # the decoder results' key of a weakening direction
BALANCED_KEY = "balanced"  # ... of evaluate_decoder(objective="balance")
PREFER_PREFIX = "prefer_"  # ... of objective="prefer:<class>" (prefer_<class>)


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
    """A folder for a rewritten Hugging Face model: new, empty, or an earlier rewrite's (one
    carrying the rewrite manifest); any other folder would lose what it holds."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"output_dir must be a folder path (str or Path), got {path!r}")
    path = Path(path)
    if path.is_file():
        raise FileExistsError(f"output_dir {path} is a file: pass a folder path")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if (path / REWRITE_MANIFEST).is_file():
        check_replaceable(path, rewrite_files(path), "rewritten model")
        return
    raise FileExistsError(_foreign_folder_message(path))


def _foreign_folder_message(path: Path) -> str:
    """Why a non-empty folder without the rewrite manifest is refused, and the fix."""
    start = f"refusing to save the rewritten model into {path}: the folder"
    fix = (
        "Pass another output_dir (a new or empty folder, or an earlier rewrite's), e.g. "
        f"{path.parent / (path.name + '_rewritten')}."
    )
    if is_gradiend_config(path / HF_CONFIG):
        return f"{start} holds a GRADIEND, which the save would destroy. {fix}"
    if (path / HF_CONFIG).is_file():
        return (
            f"{start} holds a model this library did not write (the base model, or one you "
            f"saved; it has no {REWRITE_MANIFEST}), which the save would replace. {fix}"
        )
    return f"{start} holds files that are not a model's. Pass a new or empty folder. {fix}"


def rewrite_files(path: Path) -> set[str]:
    """Names an earlier rewrite into ``path`` wrote (listed in its manifest)."""
    try:
        listed = read_json(path / REWRITE_MANIFEST).get("files") or []
    except (OSError, ValueError, AttributeError):
        listed = []
    return {REWRITE_MANIFEST, *(str(f) for f in listed)}


def check_rewrite_dirs(
    output_dir: str | Path, classes: list[str], many: bool, strengthen: bool
) -> None:
    """The folder (one sub-folder per class when ``many``) a rewrite may be saved in."""
    for cls in classes if many else [None]:
        check_save_dir(Path(output_dir) / (safe_name(summary_key(cls, strengthen)) if cls else ""))


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
                f"the decoder results have no entry {key!r}; run {_producer(cls, strengthen)}"
            )
        model = plain_model(_rewritten(mwg, results[key], layout, cls))
        if output_dir is not None:
            out = Path(output_dir) / safe_name(key) if many else Path(output_dir)
            info = _manifest(layout, cls, strengthen, results[key])
            save = lambda m=model, o=out, i=info: save_model(m, mwg.tokenizer, o, i)  # noqa: E731
            dist.on_main(save, "saving the rewritten model")
        models.append(model)
    return models if many else models[0]


def _rewritten(mwg: ModelWithGradiend, entry: Mapping, layout: RunLayout | None, cls: str):
    """A copy of the base model at the entry's point (with its preconditioning, if any); a
    rewrite with non-finite weights is refused (it would be a broken model)."""
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
        model = mwg.rewrite_base_model(
            entry["learning_rate"], entry["feature_factor"], entry.get("part", "decoder")
        )
    check_finite(model, mwg.param_map, cls, entry["learning_rate"])
    return model


def check_finite(model: torch.nn.Module, param_map: Any, cls: str, lr: float) -> None:
    """Refuse a rewrite whose changed parameters (those the GRADIEND maps) hold NaN or inf."""
    params = dict(model.named_parameters())
    names = param_map.names if param_map is not None else list(params)
    with torch.no_grad():
        bad = [n for n in names if n in params and not bool(torch.isfinite(params[n]).all())]
    if bad or not math.isfinite(float(lr)):
        where = f"parameter {bad[0]}" if bad else "the learning rate"
        raise ValueError(
            f"the rewrite for class {cls!r} at learning rate {lr} gives non-finite weights ("
            f"NaN or inf in {where}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the "
            "GRADIEND or its decoder results are broken. Nothing was saved; retrain the GRADIEND "
            "and rerun evaluate_decoder()."
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


def save_model(
    model: torch.nn.Module, tokenizer: Any, output_dir: str | Path, manifest: dict | None = None
) -> Path:
    """Save model, tokenizer and the rewrite manifest into a temporary sibling folder, then swap
    it into ``output_dir``: a crash mid-save leaves the earlier folder as it was."""
    out = Path(output_dir)
    check_save_dir(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = sorted({REWRITE_MANIFEST, *(p.name for p in tmp.iterdir())})
        write_json(tmp / REWRITE_MANIFEST, {**(manifest or _manifest()), "files": files})
    logger.info("rewritten model and tokenizer saved to %s", out)
    return out


def _manifest(
    layout: RunLayout | None = None,
    cls: str | None = None,
    strengthen: bool = True,
    entry: Mapping | None = None,
) -> dict:
    """What marks a folder as a rewrite's: the writer, its version, the run and the class."""
    try:
        ver = version("gradiend")
    except PackageNotFoundError:
        ver = "unknown"
    return {
        "writer": "gradiend",
        "version": ver,
        "run_dir": None if layout is None else str(layout.run_dir),
        "target_class": cls,
        "increase_target_probabilities": strengthen,
        "learning_rate": None if entry is None else entry.get("learning_rate"),
        "feature_factor": None if entry is None else entry.get("feature_factor"),
    }


def _producer(cls: str, strengthen: bool) -> str:
    """The ``evaluate_decoder`` call whose results hold the entry of ``cls``."""
    if strengthen and cls == BALANCED_KEY:
        return "evaluate_decoder(objective='balance')"
    if strengthen and cls.startswith(PREFER_PREFIX):
        return f"evaluate_decoder(objective='prefer:{cls[len(PREFER_PREFIX) :]}')"
    return (f"evaluate_decoder(target_class={cls!r}, increase_target_probabilities="
            f"{strengthen})")  # fmt: skip


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]

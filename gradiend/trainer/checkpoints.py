"""Periodic checkpoints of a seed's training, and resuming from the last one.

With ``save_strategy="steps"`` every ``save_steps`` optimiser steps the GRADIEND, its optimiser
state and the loop's own state (the batch order still to be drawn, the random generator, the
evaluations so far, the best step and its weights) are written atomically to
``<run>/checkpoints/seed_<s>-<key>/step_<N>/`` (safetensors + JSON: nothing loaded runs code).
A later ``train()`` with the same fingerprint continues from the newest one, and because every
piece of state is restored, it ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gradiend._io import atomic_dir, read_json_cache, write_json
from gradiend.run_layout import CHECKPOINT_PREFIX, CHECKPOINT_STATE, CHECKPOINT_TENSORS
from gradiend.trainer.fingerprint import diff_fingerprint

logger = logging.getLogger(__name__)

SAVE_STRATEGIES = ("no", "steps", "best")


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written and what is kept (``TrainingArguments.checkpoints()``).

    ``"best"`` and ``"no"`` write no periodic checkpoint (the best step's GRADIEND is saved when
    training ends, as always); ``"steps"`` writes one every ``save_steps`` steps. With
    ``save_only_best`` only the newest checkpoint is kept while a seed trains and they are all
    removed when it ends; without it every checkpoint stays. ``delete_models`` removes the
    checkpoints and the per-seed GRADIENDs once ``train()`` finished (the selected GRADIEND
    stays)."""

    save_strategy: str = "best"
    save_steps: int = 5000
    save_only_best: bool = True
    delete_models: bool = False

    @property
    def periodic(self) -> bool:
        return self.save_strategy == "steps"

    def due(self, step: int) -> bool:
        return self.periodic and step % self.save_steps == 0


def check_checkpoint_args(save_strategy: Any, save_steps: Any) -> None:
    """Refuse an unknown strategy or a non-positive interval, naming the accepted values."""
    if save_strategy not in SAVE_STRATEGIES:
        raise ValueError(
            f"save_strategy={save_strategy!r} is not one of {SAVE_STRATEGIES}: 'steps' writes a "
            "checkpoint every save_steps steps (resumable), 'best'/'no' only the final GRADIEND"
        )
    if isinstance(save_steps, bool) or not isinstance(save_steps, int) or save_steps < 1:
        raise ValueError(
            f"save_steps must be an int ≥ 1 (steps between checkpoints), got {save_steps!r}"
        )


@dataclass
class LoopProgress:
    """What the optimisation loop carries from step to step; a checkpoint is this, the weights
    and the optimiser state."""

    order: list[int] = field(default_factory=list)  # batch indices still to draw this epoch
    evals: list[dict] = field(default_factory=list)
    losses: list[dict] = field(default_factory=list)
    best: dict | None = None
    best_step: int = 0
    best_state: dict | None = None
    step: int = 0  # the last finished step
    streak: int = 0  # the collapse monitor's count


def save_checkpoint(
    folder: Path, step: int, model, opt, gen: torch.Generator, progress: LoopProgress, key: dict
) -> Path:
    """Write the checkpoint of ``step`` into ``folder/step_<step>`` atomically; return it."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v.detach().contiguous() for k, v in progress.best_state.items()}
    tensors["generator"] = gen.get_state()
    opt_state = opt.state_dict()
    scalars: dict[str, dict] = {}
    for idx, state in opt_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = value.detach().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    record = {
        "step": step,
        "key": key,
        "order": progress.order,
        "evals": progress.evals,
        "losses": progress.losses,
        "best": progress.best,
        "best_step": progress.best_step,
        "streak": progress.streak,
        "optimizer": {"param_groups": opt_state["param_groups"], "scalars": scalars},
    }
    target = folder / f"{CHECKPOINT_PREFIX}{step}"
    with atomic_dir(target) as tmp:
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp / CHECKPOINT_TENSORS))
        write_json(tmp / CHECKPOINT_STATE, record)
    return target


def latest_checkpoint(folder: Path, key: dict) -> tuple[Path, dict] | None:
    """The newest complete checkpoint in ``folder`` written under ``key`` (else ``None``)."""
    steps = []
    for d in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else []:
        tail = d.name[len(CHECKPOINT_PREFIX) :]
        if tail.isdigit() and (d / CHECKPOINT_TENSORS).is_file():
            steps.append((int(tail), d))
    for _, d in sorted(steps, reverse=True):
        state = read_json_cache(d / CHECKPOINT_STATE)
        if state is None:
            continue
        differ = diff_fingerprint(state.get("key"), key)
        if differ:
            logger.info("checkpoint %s not resumed: %s differ(s)", d, ", ".join(differ[:5]))
            return None
        return d, state
    return None


def restore_checkpoint(
    path: Path, state: dict, model, opt, gen: torch.Generator, progress: LoopProgress
) -> bool:
    """Load a checkpoint into ``model``, ``opt``, ``gen`` and ``progress``; ``False`` (with a
    warning) when its files are unreadable, and training starts over."""
    device = next(model.parameters()).device
    try:
        tensors = load_file(str(path / CHECKPOINT_TENSORS))
        model.load_state_dict(_prefixed(tensors, "model.", device))
        opt.load_state_dict(_optimizer_state(tensors, state["optimizer"], device))
        gen.set_state(tensors["generator"])
    except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as err:
        logger.warning("checkpoint %s is unreadable (%s); training starts over", path, err)
        return False
    progress.order = list(state["order"])
    progress.evals, progress.losses = list(state["evals"]), list(state["losses"])
    progress.best, progress.best_step = state["best"], int(state["best_step"])
    progress.best_state = _prefixed(tensors, "best.", device)
    progress.step, progress.streak = int(state["step"]), int(state["streak"])
    return True


def _prefixed(tensors: dict, prefix: str, device) -> dict:
    return {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict, saved: dict, device) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value if key == "step" else value.to(device)
    for idx, values in saved["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": json.loads(json.dumps(saved["param_groups"]))}


def prune_checkpoints(folder: Path, keep: Path | None) -> None:
    """Remove every checkpoint in ``folder`` but ``keep`` (``None``: the folder itself)."""
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for d in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)

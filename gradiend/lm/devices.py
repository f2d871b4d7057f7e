"""Where things live: the base model's device(s), the GRADIEND's device, host or GPU caches.

One rule for every stage: the base model stays where it was put (``device`` or
``base_model_device_map``); the GRADIEND, its optimiser state and the gradient cache go to one
device (the base model's, or a second GPU), or to pinned host memory when they do not fit there.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def resolve_dtype(dtype: torch.dtype | str | None, what: str = "torch_dtype") -> torch.dtype | None:
    """``"bfloat16"``/``torch.bfloat16``/``None`` → a torch dtype (``None`` stays ``None``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name == "auto":
        return None
    if name not in DTYPES:
        raise ValueError(f"unknown {what} {dtype!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → :func:`default_device`; ``"cuda"`` → ``cuda:<current>``; checks it exists."""
    dev = default_device() if device is None else torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available; use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return dev


def model_devices(model: torch.nn.Module) -> list[torch.device]:
    """Distinct devices of a model's parameters, in parameter order."""
    seen: dict[str, torch.device] = {}
    for p in model.parameters():
        seen.setdefault(str(p.device), p.device)
    return list(seen.values())


def gradiend_device(
    base: torch.nn.Module, explicit: str | torch.device | None = None, same_device: bool = True
) -> torch.device:
    """The GRADIEND's device: ``explicit``, else the base model's (last) device; with several
    GPUs and ``same_device=False`` a GPU the base model does not use, when there is one."""
    if explicit is not None:
        return resolve_device(explicit)
    devices = model_devices(base)
    main = devices[-1] if devices else torch.device("cpu")
    if main.type == "cuda" and not same_device:
        used = {d.index for d in devices if d.type == "cuda"}
        free = [i for i in range(torch.cuda.device_count()) if i not in used]
        if free:
            return torch.device("cuda", free[0])
    return main


def free_bytes(device: torch.device) -> float:
    """Bytes that can still be allocated on ``device`` (``inf`` for the CPU: the caller's cap
    ``gradient_cache_max_gb`` governs host memory)."""
    if device.type != "cuda":
        return float("inf")
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def storage_device(device: torch.device, need: float, what: str, reserve: float = 0.85) -> str:
    """``"device"`` when ``need`` bytes fit on ``device`` (keeping headroom), else ``"host"``;
    logs the choice so a user sees where the cache went."""
    avail = free_bytes(device) * reserve
    if need <= avail:
        logger.info("%s (%.2f GB) on %s", what, need / 1e9, device)
        return "device"
    logger.info(
        "%s (%.2f GB) does not fit on %s (%.2f GB free): kept in pinned host memory",
        what,
        need / 1e9,
        device,
        avail / 1e9,
    )
    return "host"


def to_host(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy, pinned when CUDA is present (fast, asynchronous transfers back)."""
    out = t.detach().to("cpu")
    if torch.cuda.is_available():
        out = out.pin_memory()
    return out

"""Work split over the processes of ``torch.distributed`` (``torchrun``); no-ops in one process.

Every base-model pass of a run is independent of the others, so each rank takes a share of the
work items (gradient batches, encoded batches, scored batches), in the single-process batching,
and the results are re-assembled in the original order: the numbers equal a one-process run.
Rank 0 trains the GRADIEND and writes every artefact; the other ranks write only their gradient
shards. Every collective carries the process group's timeout, so a rank that died makes the
others raise :class:`DistributedError` instead of hanging.

When ``torch.distributed`` is not initialised (or has one process) every helper is a no-op:
``rank() == 0``, ``world_size() == 1``, ``shard(x) == x``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 1800.0
_state = {"local": False, "timeout_s": DEFAULT_TIMEOUT_S}


class DistributedError(RuntimeError):
    """A collective failed or timed out: another rank died, failed or is stuck."""


# --------------------------------------------------------------------------- who am I
def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_distributed() -> bool:
    """True when several ranks share the work (and not inside :func:`local`)."""
    return _initialised() and not _state["local"]


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, or any process when the work is not split: the one that writes artefacts."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK`` of torchrun; 0 without one)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for_host() -> str:
    """NCCL when this process can use a GPU, else gloo."""
    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "gloo"


def rank_device() -> torch.device | None:
    """This rank's GPU (``cuda:LOCAL_RANK``) under a launcher with GPUs; ``None`` otherwise
    (the usual device choice applies). Holds inside :func:`local` too: each rank keeps its GPU."""
    if not _initialised() or not torch.cuda.is_available():
        return None
    n = torch.cuda.device_count()
    return torch.device("cuda", local_rank() % n) if n else None


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Initialise the process group from torchrun's variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) when they describe several processes and none is
    initialised yet. Returns whether the work is split. The backend follows the device."""
    _state["timeout_s"] = float(timeout_s)
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return _initialised()
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in env or "MASTER_ADDR" not in env:
        return False
    backend = backend_for_host()
    if backend == "nccl":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend, timeout=timedelta(seconds=float(timeout_s)))
    logger.info(
        "torch.distributed: rank %d of %d (%s backend, timeout %.0f s)",
        dist.get_rank(),
        dist.get_world_size(),
        backend,
        timeout_s,
    )
    return _initialised()


@contextmanager
def local() -> Iterator[None]:
    """Inside, this process works alone (no collectives, it writes its own artefacts): the
    mode of :func:`run_suite`, where whole runs are spread over the ranks."""
    before = _state["local"]
    _state["local"] = True
    try:
        yield
    finally:
        _state["local"] = before


# --------------------------------------------------------------------------- splitting
def shard(seq: Sequence[T]) -> list[T]:
    """This rank's items: round robin (item ``i`` on rank ``i % world``)."""
    return list(seq[rank() :: world_size()])


def owner(i: int) -> int:
    """The rank that owns item ``i`` under :func:`shard`."""
    return i % world_size()


# --------------------------------------------------------------------------- collectives
@contextmanager
def _collective(what: str) -> Iterator[None]:
    try:
        yield
    except RuntimeError as err:  # DistBackendError and gloo's timeouts are RuntimeErrors
        if isinstance(err, DistributedError):
            raise
        raise DistributedError(
            f"rank {rank()} of {world_size()}: {what} failed ({err}). Another rank died, "
            f"failed or took longer than distributed_timeout_s={_state['timeout_s']:.0f} s; "
            "see its log. A rerun with use_cache=True resumes from the gradient shards "
            "already written."
        ) from err


def _group_device() -> torch.device:
    """Where the object collectives stage their bytes (NCCL needs the rank's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(what: str = "barrier") -> None:
    """Wait for every rank (gloo: a monitored barrier that names a missing rank)."""
    if not is_distributed():
        return
    timeout = timedelta(seconds=_state["timeout_s"])
    with _collective(what):
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
        else:
            dist.barrier(device_ids=[torch.cuda.current_device()])


def all_gather(obj: T, what: str = "all_gather") -> list[T]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (any picklable object)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    with _collective(what):
        dist.all_gather_object(out, obj)
    return out


def gather(obj: T, what: str = "gather") -> list[T] | None:
    """``[obj of every rank]`` on rank 0, ``None`` elsewhere (big payloads: only rank 0 keeps
    them)."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    with _collective(what):
        dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: T, what: str = "broadcast") -> T:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj if is_main() else None]
    with _collective(what):
        dist.broadcast_object_list(box, src=0, device=_group_device())
    return box[0]


def all_reduce_sum_(tensor: torch.Tensor, what: str = "all_reduce") -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (CPU tensors go through the GPU under NCCL)."""
    if not is_distributed():
        return tensor
    nccl = dist.get_backend() == "nccl"
    stage_device = nccl and tensor.device.type != "cuda"
    stage_dtype = not nccl and tensor.dtype in (torch.bfloat16, torch.float16)
    with _collective(what):
        if stage_device or stage_dtype:
            staged = tensor.to(_group_device(), torch.float32 if stage_dtype else tensor.dtype)
            dist.all_reduce(staged)
            tensor.copy_(staged.to(tensor.device, tensor.dtype))
        else:
            dist.all_reduce(tensor)
    return tensor


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def everywhere(fn: Callable[[], R], what: str) -> R:
    """Run ``fn`` on every rank, then check that every rank succeeded: a failing rank re-raises
    its error, the others raise :class:`DistributedError` naming it (no one waits for a rank
    that already gave up)."""
    if not is_distributed():
        return fn()
    out, error = None, None
    try:
        out = fn()
    except Exception as err:  # noqa: BLE001 - reported to the other ranks, then re-raised
        error = err
    status = all_gather(None if error is None else _describe(error), f"{what} (status)")
    if error is not None:
        raise error
    failed = [(r, s) for r, s in enumerate(status) if s is not None]
    if failed:
        r, msg = failed[0]
        raise DistributedError(f"{what} failed on rank {r}: {msg}")
    return out  # type: ignore[return-value]


def on_main(fn: Callable[[], R], what: str) -> R | None:
    """Run ``fn`` on rank 0 only (the others wait); its error is raised on every rank.
    Returns ``fn()`` on rank 0 and ``None`` elsewhere."""
    if not is_distributed():
        return fn()
    out, error = None, None
    if is_main():
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - reported to the other ranks, then re-raised
            error = err
    msg = broadcast(None if error is None else _describe(error), f"waiting for rank 0: {what}")
    if error is not None:
        raise error
    if msg is not None:
        raise DistributedError(f"{what} failed on rank 0: {msg}")
    return out


def gather_in_order(mine: dict[int, T], n: int, what: str, everyone: bool = True) -> list[T]:
    """Items ``0..n-1`` computed by their owners (``mine``: this rank's ``{index: value}``),
    in the original order; on every rank, or (``everyone=False``) on rank 0 only (``[]``
    elsewhere)."""
    if not is_distributed():
        return [mine[i] for i in range(n)]
    parts = all_gather(mine, what) if everyone else gather(mine, what)
    if parts is None:
        return []
    merged: dict[int, T] = {}
    for p in parts:
        merged.update(p)
    missing = [i for i in range(n) if i not in merged]
    if missing:
        raise DistributedError(f"{what}: items {missing[:5]} were computed by no rank")
    return [merged[i] for i in range(n)]


def gather_tensor_rounds(
    n: int, compute: Callable[[int], torch.Tensor], shape: tuple[int, ...], dtype, what: str
) -> Iterator[tuple[int, torch.Tensor]]:
    """Items ``0..n-1`` (tensors of one ``shape``, cast to ``dtype``), item ``i`` computed by
    rank ``i % world``, sent as tensors (no pickling; on the GPU under NCCL) one item per rank
    and round, so rank 0 never holds every rank's share at once. Rank 0 yields ``(i, tensor)``
    in order (on the group's device); the others yield nothing. A rank whose ``compute``
    raises re-raises it; the others raise :class:`DistributedError` naming it."""
    if not is_distributed():
        for i in range(n):
            yield i, compute(i).to(dtype)
        return
    device, world = _group_device(), world_size()
    for start in range(0, n, world):
        i, error = start + rank(), None
        x = torch.zeros(shape, dtype=dtype, device=device)
        if i < n:
            try:
                x = compute(i).to(device, dtype).reshape(shape)
            except Exception as err:  # noqa: BLE001 - reported to the other ranks, then re-raised
                error = err
        flag = torch.tensor([0.0 if error is None else 1.0], device=device)
        all_reduce_sum_(flag, f"{what} (status)")
        if float(flag) > 0:
            status = all_gather(None if error is None else _describe(error), f"{what} (status)")
            if error is not None:
                raise error
            r, msg = next((r, m) for r, m in enumerate(status) if m is not None)
            raise DistributedError(f"{what} failed on rank {r}: {msg}")
        bufs = [torch.empty(shape, dtype=dtype, device=device) for _ in range(world)]
        with _collective(what):
            dist.gather(x, bufs if is_main() else None, dst=0)
        if is_main():
            for r in range(min(world, n - start)):
                yield start + r, bufs[r]


# --------------------------------------------------------------------------- suites of runs
def run_suite(
    runs: Sequence[T],
    run: Callable[[T], R],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[R]:
    """``[run(r) for r in runs]``, spread over the ranks when there are at least as many runs.

    With ``len(runs) >= world_size`` run ``i`` goes to rank ``i % world`` and runs there as in
    one process (inside :func:`local`: no collectives, it writes its own run folder); the
    results are then gathered to every rank. With fewer runs than ranks every run uses all
    ranks in turn (each one's work split as usual). ``run``'s result must pickle (return a
    summary, not a trainer). A run that raises is reported after every other run finished.
    """
    init_from_env(timeout_s)
    if not is_distributed() or len(runs) < world_size():
        return [run(r) for r in runs]
    mine: dict[int, Any] = {}
    for i in range(rank(), len(runs), world_size()):
        try:
            with local():
                mine[i] = ("ok", run(runs[i]))
        except Exception as err:  # noqa: BLE001 - the other runs go on; reported below
            logger.exception("run %d (%r) failed on rank %d", i, runs[i], rank())
            mine[i] = ("error", _describe(err))
    done = gather_in_order(mine, len(runs), "gathering the suite's results")
    failed = [(i, msg) for i, (state, msg) in enumerate(done) if state == "error"]
    if failed:
        listed = "; ".join(f"run {i} ({runs[i]!r}) on rank {owner(i)}: {m}" for i, m in failed)
        raise RuntimeError(f"{len(failed)} of {len(runs)} run(s) failed: {listed}")
    return [value for _, value in done]

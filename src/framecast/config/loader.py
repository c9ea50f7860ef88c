"""Load YAML configs, apply ``a.b=c`` overrides, validate with clear messages."""

from __future__ import annotations

import copy
import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from framecast.config.schema import RIVER_ONLY, Config, ModelConfig, TrainingConfig
from framecast.errors import ConfigError
from framecast.utils import atomic_write_text


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"training.lr=1e-3"`` → (["training", "lr"], 0.001). Values are parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY.SUB=VALUE, e.g. training.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: value {raw!r} is not valid YAML ({_yaml_error_line(exc)})"
        ) from exc
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads "1e-3" as a string; users mean a number
    return key.split("."), value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted overrides set (intermediate mappings created)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: {part!r} holds {child!r}, not a section with sub-keys"
                )
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}); save it as UTF-8"
        ) from exc
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (SafeLoader + duplicate check)
    except _DuplicateKey as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_error_line(exc)}") from exc
    except RecursionError:
        raise ConfigError(
            f"config file {path} is nested too deeply for a config (thousands of levels of "
            "[ or {); a config is a few levels of mappings"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    return raw


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML's last-one-wins would
    silently drop the first value (e.g. two ``lr:`` lines, only one of them used)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            # Only the mapping's own scalar keys: a merge (<<: *anchor) may be overridden.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(
                    f"key {key!r} is given twice in one mapping (lines {seen[key]} and {line}); "
                    "keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line: where (line and column, 1-based) and what PyYAML found wrong; the full
    multi-line report stays on the chained exception (shown with ``--debug``)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is None:
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" if problem else where


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read ``path``, apply ``overrides`` and validate; raise ConfigError."""
    return validate_config(apply_overrides(read_yaml(path), overrides or []), str(path))


def validate_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw nested dict into a :class:`Config`; messages name key, value and what is allowed."""
    data = dict(data)
    model_raw = data.pop("model", None)
    if not isinstance(model_raw, dict):
        kinds = ", ".join(sorted(ModelConfig.registry)) or "(none registered)"
        raise ConfigError(f"{source}: missing 'model' section with 'model.kind' (one of: {kinds})")
    kind = model_raw.get("kind")
    if kind not in ModelConfig.registry:
        kinds = ", ".join(sorted(ModelConfig.registry))
        raise ConfigError(f"{source}: key 'model.kind' has value {kind!r}; allowed: {kinds}")
    model_cls = ModelConfig.registry[kind]
    try:
        model = model_cls.model_validate(model_raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, model_cls, prefix=("model",))) from None
    try:
        config = Config.model_validate({**data, "model": model})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, Config)) from None
    reconcile_image_channels(config, source)
    refuse_keys_of_other_kinds(config, source)
    return config


# Training keys that only river's objective reads (marked RIVER_ONLY where the schema defines
# them): another kind would train as if they were not there, so a value other than the
# default is refused rather than silently dropped.
RIVER_TRAINING_KEYS = tuple(
    name
    for name, field in TrainingConfig.model_fields.items()
    if field.json_schema_extra == RIVER_ONLY
)


def refuse_keys_of_other_kinds(config: Config, source: str = "config") -> None:
    """Raise :class:`ConfigError` when a non-river config sets a river-only training key
    (:data:`RIVER_TRAINING_KEYS`) to anything but its default."""
    if config.model.kind == "river":
        return
    training = config.training
    fields = type(training).model_fields
    ignored = [
        f"training.{key}={getattr(training, key)!r}"
        for key in RIVER_TRAINING_KEYS
        if getattr(training, key) != fields[key].default
    ]
    if ignored:
        raise ConfigError(
            f"{source}: {', '.join(ignored)} only applies to model.kind river, and this "
            f"config's model.kind is {config.model.kind!r}: remove the key(s)"
        )


def reconcile_image_channels(config: Config, source: str = "config") -> None:
    """Make a frame model's ``model.image_channels`` follow ``data.channels``.

    Left out of the config, it becomes ``data.channels`` (so ``data.channels: 1`` alone
    makes a greyscale model); set explicitly to another number, the config is refused
    with a :class:`ConfigError` naming both keys and values. Kinds without
    ``image_channels`` (river, motion) and ``data.channels: auto`` (resolved when a run
    starts, then this is called again) are left alone.
    """
    model = config.model
    channels = config.data.channels
    if "image_channels" not in type(model).model_fields or channels == "auto":
        return
    if "image_channels" not in model.model_fields_set:
        model.image_channels = channels
    elif model.image_channels != channels:
        raise ConfigError(
            f"{source}: model.image_channels={model.image_channels} disagrees with "
            f"data.channels={channels}: the {model.kind} model must take the frames the data "
            f"gives; set model.image_channels={channels} or leave it out (it follows "
            "data.channels)"
        )


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML atomically."""
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def _format_errors(
    exc: ValidationError, source: str, root: type[BaseModel], prefix: tuple[str, ...] = ()
) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(prefix + loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"unknown key {key!r}{hint}")
        else:
            value = err.get("input")
            lines.append(f"key {key!r} has value {value!r}: {err['msg']}")
    return f"{source}: " + "; ".join(lines)


def _allowed_keys(root: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """Field names of the (nested) section at ``loc``, for 'allowed keys' hints."""
    cls: Any = root
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _first_model(field.annotation)
        if cls is None:
            return []
    return sorted(getattr(cls, "model_fields", {}))


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None

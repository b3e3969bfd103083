"""Strict YAML -> dataclasses: recipes with ``base:``, dotted overrides, did-you-mean.

Generic machinery that knows no task: which class a mapping becomes is the caller's choice
(:mod:`umt.config.registry` picks it from ``task``). Unknown keys and values of the wrong type are
refused with the key named; a key a task renamed is refused with its new name.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from umt.errors import InputError
from umt.textfile import read_text

# The C parser when libyaml is there (the CLI's --help reads every recipe's task); same results.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(InputError):
    """A config key or value is not valid; the message names the key."""


def suggest(key: str, options: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the option closest to ``key``, or ``""``."""
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- type checking
def _coerce(value: Any, tp: Any, key: str, renamed: Mapping[str, str] | None) -> Any:
    """Return ``value`` as type ``tp`` or raise ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, renamed)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not one of {list(choices)}"
                f"{suggest(str(value), map(str, choices))}"
            )
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]", renamed) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, renamed)
    raise ConfigError(f"{key}: unsupported type {tp}")


def unknown_key(
    key: str, options: Iterable[str], renamed: Mapping[str, str] | None = None
) -> ConfigError:
    """The error for dotted ``key``: renamed (its new name), else unknown (the closest option)."""
    if renamed and key in renamed:
        return ConfigError(f"config key '{key}' was renamed to '{renamed[key]}'")
    return ConfigError(f"unknown config key '{key}'{suggest(key.rsplit('.', 1)[-1], options)}")


def build(cls: type, data: Any, prefix: str = "", renamed: Mapping[str, str] | None = None) -> Any:
    """Dataclass ``cls`` from a mapping, every value checked against its type; unknown keys are
    refused (``renamed``: old dotted key -> new one, for the message)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise unknown_key(full, fields, renamed)
        kwargs[key] = _coerce(value, hints[key], full, renamed)
    return cls(**kwargs)


# --------------------------------------------------------------------------- recipes
def list_recipes() -> list[str]:
    """Names of the packaged recipes (``umt/configs/*.yaml``)."""
    folder = resources.files("umt") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_recipe(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A YAML recipe (path or packaged name) as a raw mapping, ``base:`` inheritance resolved
    (``seen``: the recipes already on the way, to refuse a loop)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {name_or_path}")
        text = read_text(path)
    else:
        res = resources.files("umt") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown recipe '{name_or_path}'{suggest(name_or_path, list_recipes())}; "
                f"packaged recipes: {', '.join(list_recipes())}"
            )
        text = res.read_text()
    try:
        data = yaml.load(text, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{name_or_path}: not valid YAML{at} ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a YAML mapping")
    data.setdefault("recipe", path.stem if path.suffix in (".yaml", ".yml") else name_or_path)
    base = data.pop("base", None)
    if base is not None:
        if base in seen:
            raise ConfigError(f"recipe inheritance loops through '{base}'")
        data = merge(read_recipe(base, (*seen, base)), data)
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested mappings merged key by key (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"section.key": value}`` (a config's ``to_dict()``, a raw one)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def rename_keys(
    data: dict[str, Any],
    renamed: Mapping[str, str],
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """A copy of raw mapping ``data`` with each old dotted key of ``renamed`` moved to its new
    one (where the old key is set and the new one is not); ``convert``: old dotted key -> the
    function that gives its value the new key's form."""
    out = copy.deepcopy(data)
    for old, new in renamed.items():
        *parents, leaf = old.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node.pop(leaf)
        if convert and old in convert:
            value = convert[old](value)
        *parents, leaf = new.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, value)
    return out


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], "3e-4" parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(
    data: dict[str, Any],
    overrides: Sequence[str],
    root_cls: type,
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of raw mapping ``data`` with dotted overrides applied, each key checked to exist in
    dataclass ``root_cls`` (``renamed``: old dotted key -> new one, for the message)."""
    data = merge({}, data)
    for text in overrides:
        parts, value = parse_override(text)
        if parts == ["task"] and value != data.get("task", "pretrain"):
            raise ConfigError("task: set by the recipe (use the command of that task)")
        node: dict[str, Any] = data
        cls: Any = root_cls
        for i, part in enumerate(parts):
            names = {f.name for f in dataclasses.fields(cls)}
            where = ".".join(parts[: i + 1])
            if part not in names:
                raise unknown_key(where, names, renamed)
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = value
            else:
                if not dataclasses.is_dataclass(tp):
                    raise ConfigError(f"config key '{where}' has no sub-keys")
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                cls = tp
    return data

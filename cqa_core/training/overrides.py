"""Presets and ``--set key=value`` overrides for :class:`~cqa_core.config.TrainConfig`.

A preset is a Python file that defines ``config``: either a ``TrainConfig`` or a function
returning one (``configs/default_cpu.py``). Overrides name a field, nested fields with dots
(``model.stem=light``, ``loss.margin=0.4``) or one of the short aliases in :data:`ALIASES`
(``data_root=...``). Values are read with ``ast.literal_eval`` (``1e-3``, ``(7, 10)``, ``None``,
``True``); a bare word such as ``runs/x`` is taken as a string where the field holds strings.
Every value is type-checked against the dataclass field before the config is rebuilt.
"""

from __future__ import annotations

import ast
import dataclasses
import runpy
import types
import typing
from pathlib import Path
from typing import Any

from cqa_core.config import TrainConfig

ALIASES = {
    "data_root": "data.root",
    "data_format": "data.format",
    "num_workers": "data.num_workers",
    "stem": "model.stem",
    "branches": "model.branches",
    "head": "loss.head",
}


def load_preset(path: str | Path) -> TrainConfig:
    """Run a preset file and return its ``config`` (a TrainConfig or a function making one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config preset not found: {path}")
    namespace = runpy.run_path(str(path))
    config = namespace.get("config")
    if callable(config) and not isinstance(config, TrainConfig):
        config = config()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path} must define `config = TrainConfig(...)` or a function returning one")
    return config


def valid_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every settable key of a config dataclass, nested fields as ``a.b``."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += valid_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type annotation ``hint`` (the subset configs use)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _parse(raw: str, hint: Any) -> Any:
    if hint is bool and raw.lower() in _BOOLS:
        return _BOOLS[raw.lower()]  # progress=false, as shells and YAML write it
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word: a string
    if not _matches(value, hint) and _matches(raw, hint):
        value = raw  # e.g. out_dir=123 for a str field
    if not _matches(value, hint):
        raise ValueError(f"value {raw!r} does not fit type {hint}")
    if isinstance(value, list) and typing.get_origin(hint) is not list:
        value = tuple(value)
    if hint is float or (typing.get_origin(hint) in (typing.Union, types.UnionType) and float in typing.get_args(hint)):
        value = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return value


def _replace(obj: Any, path: list[str], raw: str, full_key: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    name = path[0]
    if name not in hints:
        raise KeyError(name)
    if len(path) > 1:
        return dataclasses.replace(obj, **{name: _replace(getattr(obj, name), path[1:], raw, full_key)})
    if dataclasses.is_dataclass(hints[name]):
        raise KeyError(name)
    try:
        value = _parse(raw, hints[name])
    except ValueError as exc:
        raise ValueError(f"--set {full_key}: {exc}") from None
    return dataclasses.replace(obj, **{name: value})


def apply_overrides(config: TrainConfig, items: list[str] | None) -> TrainConfig:
    """Apply ``key=value`` strings to a config; unknown keys raise a ValueError listing the valid ones."""
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        path = ALIASES.get(key, key).split(".")
        try:
            config = _replace(config, path, raw.strip(), key)
        except KeyError:
            keys = ", ".join(valid_keys())
            aliases = ", ".join(f"{a} (= {t})" for a, t in ALIASES.items())
            raise ValueError(f"unknown config key {key!r}. Valid keys: {keys}. Aliases: {aliases}") from None
    return config

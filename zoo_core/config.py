"""Config dataclasses: one source of truth for defaults, help, validation,
CLI options and what ``config.json`` records.

A task, architecture or trainer declares its options as a dataclass whose
fields use :func:`option`::

    @dataclass
    class LSTMConfig:
        hidden_size: int = option(128, help="Units per layer.", min=1)
        dropout: float = option(0.0, help="Dropout between layers.", min=0.0, max=1.0, max_exclusive=True)

        def validate(self):  # optional cross-field checks
            if self.num_layers == 1 and self.dropout > 0:
                raise ConfigError("dropout", "needs num_layers >= 2", "set --num-layers 2 or --dropout 0")

This module imports no torch: ``zoo --help`` and ``zoo list`` read configs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

_MISSING = dataclasses.MISSING


class ZooError(Exception):
    """An error the user can fix; the CLI prints it as one line and exits non-zero."""

    exit_code = 1


class ConfigError(ZooError, ValueError):
    """A config value is invalid. Names the field, the problem and the fix."""

    exit_code = 2

    def __init__(self, field: str, problem: str, fix: str | None = None):
        self.field, self.problem, self.fix = field, problem, fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


def option(default: Any = _MISSING, *, help: str = "", choices: typing.Sequence | None = None,
           min: float | None = None, max: float | None = None,
           min_exclusive: bool = False, max_exclusive: bool = False, cli: bool = True) -> Any:
    """A config field with help text and range/choice constraints checked by :func:`build_config`."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "min": min, "max": max,
            "min_exclusive": min_exclusive, "max_exclusive": max_exclusive, "cli": cli}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: type           # the scalar type: int, float, str or bool
    optional: bool       # None allowed
    default: Any
    help: str
    choices: tuple | None
    meta: dict

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _scalar(tp) -> tuple[type, bool]:
    """Split ``int | None`` into (int, True)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return _scalar(args[0])[0], True
        raise TypeError(f"unsupported config type {tp!r}")
    if tp in (int, float, str, bool):
        return tp, False
    raise TypeError(f"unsupported config type {tp!r}: use int, float, str, bool or X | None")


def fields(cls) -> list[FieldInfo]:
    """The options of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp, optional = _scalar(hints[f.name])
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)
        meta = dict(f.metadata) if f.metadata else {}
        out.append(FieldInfo(f.name, tp, optional, default, meta.get("help", ""), meta.get("choices"), meta))
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(info: FieldInfo, value: Any) -> Any:
    """Turn ``value`` (from the CLI, TOML or JSON) into the field's type, or raise ConfigError."""
    tp = info.type
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and info.optional):
        if info.optional:
            return None
        raise ConfigError(info.name, "must be set, got none", f"pass {info.flag} {tp.__name__.upper()}")
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]
    bad = ConfigError(info.name, f"expected {expected}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if isinstance(value, bool):
        raise bad
    if tp is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise bad from None
                if f.is_integer():
                    return int(f)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):
            raise ConfigError(info.name, f"must be finite, got {value!r}")
        return out
    if not isinstance(value, str):
        raise bad
    return value


def check(info: FieldInfo, value: Any) -> None:
    """Range and choice constraints of one field."""
    if value is None:
        return
    m = info.meta
    if info.choices and value not in info.choices:
        raise ConfigError(info.name, f"must be one of {', '.join(map(str, info.choices))}, got {value!r}",
                          _did_you_mean(str(value), [str(c) for c in info.choices]))
    lo, hi = m.get("min"), m.get("max")
    if lo is not None and (value < lo or (m.get("min_exclusive") and value == lo)):
        op = ">" if m.get("min_exclusive") else ">="
        raise ConfigError(info.name, f"must be {op} {lo}, got {value!r}")
    if hi is not None and (value > hi or (m.get("max_exclusive") and value == hi)):
        op = "<" if m.get("max_exclusive") else "<="
        raise ConfigError(info.name, f"must be {op} {hi}, got {value!r}")


def _did_you_mean(name: str, known: typing.Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else None


def build_config(cls, values: dict[str, Any] | None = None, *, section: str = ""):
    """Build and validate ``cls`` from ``values``; unknown keys and bad values raise ConfigError."""
    values = dict(values or {})
    infos = {i.name: i for i in fields(cls)}
    for key in values:
        if key not in infos:
            where = f" for {section}" if section else ""
            raise ConfigError(repr(key) if not key.isprintable() else key, f"unknown option{where}",
                              _did_you_mean(key, infos) or f"known: {', '.join(infos)}")
    kwargs = {}
    for name, info in infos.items():
        if name in values:
            kwargs[name] = coerce(info, values[name])
            check(info, kwargs[name])
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)

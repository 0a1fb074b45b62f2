"""Names -> plugin classes, with duplicate detection and suggestions for unknown names."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

from zoo_core.api import Architecture, Task, Trainer
from zoo_core.config import ZooError, fields

KINDS = {"task": Task, "architecture": Architecture, "trainer": Trainer}


class UnknownName(ZooError):
    exit_code = 2


class PluginConflict(ZooError):
    pass


class RegistrationError(ZooError):
    pass


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    cls: type
    plugin: str          # plugin (entry point or module) name
    distribution: str    # distribution that provides it ("" for plugins registered in-process)
    version: str

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}".strip() if self.distribution else self.plugin


class Registry:
    def __init__(self):
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}

    def register(self, kind: str, cls: type, *, plugin: str, distribution: str = "", version: str = "") -> None:
        base = KINDS[kind]
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise RegistrationError(f"plugin {plugin}: {cls!r} is not a zoo {base.__name__} subclass")
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise RegistrationError(f"plugin {plugin}: {kind} {cls.__name__} does not implement {', '.join(missing)}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"plugin {plugin}: {kind} {cls.__name__} has no name")
        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise RegistrationError(f"plugin {plugin}: {kind} {name!r} needs a Config dataclass")
        try:
            fields(config)
        except TypeError as e:
            raise RegistrationError(f"plugin {plugin}: {kind} {name!r} config: {e}") from None
        existing = self._entries[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginConflict(
                f"{kind} {name!r} is registered by two plugins: {existing.provider} and "
                f"{Entry(kind, name, cls, plugin, distribution, version).provider}; uninstall one of them")
        self._entries[kind][name] = Entry(kind, name, cls, plugin, distribution, version)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            known = self.names(kind)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}?" if close else (
                f"installed: {', '.join(known)}" if known else "no plugin provides any; install one, e.g. pip install zoo-recurrent")
            raise UnknownName(f"unknown {kind} {name!r}; {hint} (see `zoo list`)") from None

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).cls

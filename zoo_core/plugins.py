"""Plugin loading: one lazy function over the ``zoo`` entry-point group.

``ZOO_LOAD_PLUGINS=a,b`` loads only those distributions (or entry-point
names); set but empty, it loads none. A plugin that fails to import or whose
hook raises is recorded in :data:`failures` and skipped, unless
``ZOO_STRICT_PLUGINS=1``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import sys
from typing import Any

import pluggy

from zoo_core import hookspecs
from zoo_core.config import ZooError
from zoo_core.registry import KINDS, PluginConflict, Registry

GROUP = "zoo"


@dataclasses.dataclass
class Failure:
    plugin: str
    distribution: str
    error: str


@dataclasses.dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: list[str]


class PluginError(ZooError):
    pass


pm = pluggy.PluginManager("zoo")
pm.add_hookspecs(hookspecs)
_registry: Registry | None = None
_dists: dict[str, tuple[str, str]] = {}   # plugin name -> (distribution, version)
failures: list[Failure] = []
_extra: list[tuple[str, Any]] = []          # plugins registered in-process (tests, embedding apps)


def _strict() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "") not in ("", "0")


def _fail(plugin: str, dist: str, exc: BaseException) -> None:
    if _strict():
        raise PluginError(f"plugin {plugin} ({dist or 'in-process'}) failed: {type(exc).__name__}: {exc}") from exc
    failures.append(Failure(plugin, dist, f"{type(exc).__name__}: {exc}"))


def _allowed() -> set[str] | None:
    raw = os.environ.get("ZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def load_plugins() -> None:
    """Import every installed plugin once and register it with pluggy."""
    global _registry
    if _registry is not None:
        return
    _registry = Registry()  # set first: a plugin importing zoo_core re-entering here sees it loaded
    from zoo_core import __version__, trainer  # the core's own plugin: the default trainer

    if not pm.has_plugin("zoo-core"):
        pm.register(trainer, name="zoo-core")
    _dists["zoo-core"] = ("zoo-core", __version__)
    allowed = _allowed()
    for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else ""
        version = ep.dist.version if ep.dist else ""
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin is reported, never fatal (unless strict)
            _fail(ep.name, dist, exc)
            continue
        _dists[ep.name] = (dist, version)
    for name, obj in _extra:
        if not pm.has_plugin(name):
            pm.register(obj, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _registry = None
        raise PluginError(f"plugin {exc.plugin_name!r}: {exc}") from None
    _collect(_registry)


def _collect(registry: Registry) -> None:
    for kind, hook in (("task", "register_tasks"), ("architecture", "register_architectures"),
                       ("trainer", "register_trainers")):
        for impl in getattr(pm.hook, hook).get_hookimpls():
            dist, version = _dists.get(impl.plugin_name, ("", ""))

            def register(cls, _kind=kind, _impl=impl, _dist=dist, _version=version):
                registry.register(_kind, cls, plugin=_impl.plugin_name, distribution=_dist, version=_version)

            try:
                impl.function(**{a: register for a in impl.argnames})
            except PluginConflict:
                raise
            except Exception as exc:
                _fail(impl.plugin_name, dist, exc)


def registry() -> Registry:
    load_plugins()
    assert _registry is not None
    return _registry


def register_plugin(obj: Any, name: str) -> None:
    """Register an in-process plugin (a module or object with hookimpls), e.g. in a test fixture."""
    _extra.append((name, obj))
    reset()


def unregister_plugin(name: str) -> None:
    _extra[:] = [(n, o) for n, o in _extra if n != name]
    reset()


def reset() -> None:
    """Forget loaded plugins so the next :func:`registry` call loads them again."""
    global _registry
    for name, _ in list(pm.list_name_plugin()):
        pm.unregister(name=name)
    _registry = None
    _dists.clear()
    failures.clear()


def plugin_infos() -> list[PluginInfo]:
    load_plugins()
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = _dists.get(name, ("", ""))
        out.append(PluginInfo(name, dist, version, hooks))
    return out


def distribution_of(plugin_name: str) -> tuple[str, str]:
    load_plugins()
    return _dists.get(plugin_name, ("", ""))


def add_commands(cli: Any) -> None:
    """Let plugins add CLI commands; a failing hook is reported like a failing import."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(**{a: cli for a in impl.argnames})
        except Exception as exc:
            _fail(impl.plugin_name, _dists.get(impl.plugin_name, ("", ""))[0], exc)


def torch_imported() -> bool:
    return "torch" in sys.modules


__all__ = ["load_plugins", "registry", "register_plugin", "unregister_plugin", "reset", "plugin_infos",
           "failures", "KINDS"]

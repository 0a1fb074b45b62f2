"""Plugin loading: one lazy function over the ``zoo`` entry-point group.

Every distribution that declares ``[project.entry-points.zoo]`` is a plugin;
its entry point names a module (or object) of ``@hookimpl`` functions. Loading
one plugin is: import it, check the plugin API range it declares
(``zoo_plugin_api = ">=1,<2"``) against :data:`zoo_core.PLUGIN_API`, check
that every ``@hookimpl`` names a real hook, register it with pluggy, then call
its ``register_*`` hooks into a scratch registry and keep what they register
only if every hook returned.

``ZOO_LOAD_PLUGINS=a,b`` loads only those distributions (or entry-point
names); set but empty, it loads none (the core's default trainer is always
there). A plugin that fails any step is recorded in :data:`failures` and
skipped, never fatal, unless ``ZOO_STRICT_PLUGINS=1``. Two plugins claiming one
name is always an error naming both.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata as md
import os
import re
from typing import Any

import pluggy

from zoo_core import hookspecs
from zoo_core.api import PLUGIN_API
from zoo_core.config import ZooError
from zoo_core.registry import KINDS, PluginConflict, Registry  # PluginConflict: re-exported

GROUP = "zoo"
HOOKS = sorted(n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "zoo_spec"))
# hook -> kind of class it registers (the other hooks, e.g. register_commands, are called elsewhere)
REGISTER_HOOKS = {"register_tasks": "task", "register_architectures": "architecture", "register_trainers": "trainer"}


@dataclasses.dataclass
class Failure:
    plugin: str
    distribution: str
    error: str
    version: str = ""
    hook: str = ""       # the hook that raised or is misspelled, if any


@dataclasses.dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: list[str]
    api: str = ""                                    # the plugin API range it declares ("" if none)
    provides: dict[str, list[str]] = dataclasses.field(default_factory=dict)


class PluginError(ZooError):
    pass


pm = pluggy.PluginManager("zoo")
pm.add_hookspecs(hookspecs)
_registry: Registry | None = None
_dists: dict[str, tuple[str, str]] = {}   # plugin name -> (distribution, version)
_apis: dict[str, str] = {}                # plugin name -> declared zoo_plugin_api
failures: list[Failure] = []
_extra: list[tuple[str, Any]] = []          # plugins registered in-process (tests, embedding apps)


def _strict() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "") not in ("", "0")


def _who(plugin: str, dist: str, version: str = "") -> str:
    return f"{plugin} ({dist} {version})".replace(" )", ")") if dist else f"{plugin} (in-process)"


def _fail(plugin: str, dist: str, exc: BaseException, *, version: str = "", hook: str = "") -> None:
    error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc)
    if hook and hook not in error:
        error = f"hook {hook}: {error}"
    if _strict():
        raise PluginError(f"plugin {_who(plugin, dist, version)} failed: {error} "
                          f"(ZOO_STRICT_PLUGINS is set; unset it to skip broken plugins)") from exc
    failures.append(Failure(plugin, dist, error, version, hook))


def canonical(name: str) -> str:
    """A distribution name as pip compares them: ``Zoo_Addition`` -> ``zoo-addition``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed() -> set[str] | None:
    raw = os.environ.get("ZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {canonical(p.strip()) for p in raw.split(",") if p.strip()}


def check_api(obj: Any, who: str = "plugin") -> str:
    """The plugin API range ``obj`` declares (``""`` if none); raises PluginError if it excludes ours."""
    declared = getattr(obj, "zoo_plugin_api", None)
    if declared is None:
        return ""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    try:
        spec = SpecifierSet(str(declared))
    except InvalidSpecifier:
        raise PluginError(f"{who}: zoo_plugin_api = {declared!r} is not a version range; "
                          f"write e.g. zoo_plugin_api = \">=1,<2\"") from None
    ours = Version(PLUGIN_API)
    if ours not in spec:
        from zoo_core import __version__

        newer = any(s.operator in (">", ">=", "==", "~=") and Version(s.version.rstrip(".*")) > ours for s in spec)
        fix = "upgrade zoo: pip install -U zoo-core" if newer else "upgrade the plugin: zoo plugins install -U NAME"
        raise PluginError(f"{who} supports zoo plugin API {declared}, but this zoo (zoo-core {__version__}) "
                          f"provides plugin API {PLUGIN_API}; {fix}")
    return str(declared)


def check_hook_names(obj: Any, who: str = "plugin") -> None:
    """Every ``@hookimpl`` of ``obj`` names a zoo hook; a misspelling names the plugin and the hook."""
    for attr in dir(obj):
        opts = pm.parse_hookimpl_opts(obj, attr)
        if opts is None:
            continue
        hook = opts.get("specname") or attr
        if hook not in HOOKS:
            close = difflib.get_close_matches(hook, HOOKS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"zoo hooks are {', '.join(HOOKS)}"
            raise PluginError(f"{who}: @hookimpl {hook!r} is not a zoo hook; {hint}")


def _admit(name: str, obj: Any, dist: str, version: str) -> bool:
    """API check, hook-name check and pluggy registration of one plugin; False (recorded) if it fails."""
    who = f"plugin {_who(name, dist, version)}"
    try:
        _apis[name] = check_api(obj, who)
        check_hook_names(obj, who)
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:  # e.g. an argument the hook does not have
        _fail(name, dist, PluginError(f"{who}: " + "; ".join(str(exc).splitlines())), version=version)
        return False
    except Exception as exc:
        _fail(name, dist, exc, version=version)
        return False
    _dists[name] = (dist, version)
    return True


def load_plugins() -> None:
    """Import every installed plugin once and register it with pluggy."""
    global _registry
    if _registry is not None:
        return
    _registry = Registry()  # set first: a plugin importing zoo_core re-entering here sees it loaded
    try:
        _load(_registry)
    except BaseException:
        reset()  # strict mode or a conflict: leave nothing half-loaded behind
        raise


def _load(registry: Registry) -> None:
    from zoo_core import __version__, trainer  # the core's own plugin: the default trainer

    if not pm.has_plugin("zoo-core"):
        pm.register(trainer, name="zoo-core")
    _dists["zoo-core"] = ("zoo-core", __version__)
    allowed = _allowed()
    for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else ""
        version = ep.dist.version if ep.dist else ""
        if allowed is not None and canonical(ep.name) not in allowed and canonical(dist) not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin is reported, never fatal (unless strict)
            _fail(ep.name, dist, exc, version=version)
            continue
        _admit(ep.name, module, dist, version)
    for name, obj in _extra:
        if not pm.has_plugin(name):
            _admit(name, obj, "", "")
    _collect(registry)


def _collect(registry: Registry) -> None:
    """Call each plugin's register_* hooks; keep its classes only if all of its hooks returned."""
    for name, plugin in list(pm.list_name_plugin()):
        dist, version = _dists.get(name, ("", ""))
        scratch = Registry()  # validates each class as the plugin registers it, so a bad one fails its hook
        hook = ""
        try:
            for hook, kind in REGISTER_HOOKS.items():
                for impl in getattr(pm.hook, hook).get_hookimpls():
                    if impl.plugin is plugin:
                        def register(cls, _kind=kind):
                            scratch.register(_kind, cls, plugin=name, distribution=dist, version=version)

                        impl.function(**{a: register for a in impl.argnames})
        except Exception as exc:
            _fail(name, dist, exc, version=version, hook=hook)
            if name != "zoo-core":
                pm.unregister(name=name)
            continue
        for kind in KINDS:
            for entry in scratch.entries(kind):
                registry.register(kind, entry.cls, plugin=name, distribution=dist, version=version)  # may conflict


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
    _apis.clear()
    failures.clear()


def plugin_infos() -> list[PluginInfo]:
    """The loaded plugins: distribution, version, hooks implemented, API range, what they register."""
    reg = registry()
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = _dists.get(name, ("", ""))
        provides = {k: [e.name for e in reg.entries(k) if e.plugin == name] for k in KINDS}
        out.append(PluginInfo(name, dist, version, hooks, _apis.get(name, PLUGIN_API if name == "zoo-core" else ""),
                              {k: v for k, v in provides.items() if v}))
    return out


def add_commands(cli: Any) -> None:
    """Let plugins add CLI commands; a failing hook is reported like a failing import."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(**{a: cli for a in impl.argnames})
        except Exception as exc:
            dist, version = _dists.get(impl.plugin_name, ("", ""))
            _fail(impl.plugin_name, dist, exc, version=version, hook="register_commands")


__all__ = ["load_plugins", "registry", "register_plugin", "unregister_plugin", "reset", "plugin_infos",
           "failures", "check_api", "check_hook_names", "canonical", "HOOKS", "PLUGIN_API", "KINDS"]

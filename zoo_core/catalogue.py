"""``registry.toml``: the catalogue of known plugins and pretrained checkpoints, shipped with the core."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from zoo_core.config import ZooError

PATH = Path(__file__).with_name("registry.toml")


class CatalogueError(ZooError):
    pass


def load(path: Path | None = None) -> dict[str, Any]:
    path = Path(path) if path is not None else PATH  # read PATH at call time so tests can point elsewhere
    if not path.exists():
        return {"plugins": [], "pretrained": []}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"{path}: invalid TOML ({e})") from None
    return {"plugins": data.get("plugins", []), "pretrained": data.get("pretrained", [])}


def distribution_for(kind: str, name: str) -> str | None:
    """The catalogued distribution that provides task/architecture ``name``, if any."""
    for plugin in load()["plugins"]:
        if name in plugin.get("provides", {}).get(kind + "s", []):
            return plugin["name"]
    return None


_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLUGIN_KEYS = {"name": str, "requirement": str, "provides": dict, "first_party": bool}
_PRETRAINED_KEYS = {"name": str, "task": str, "architecture": str, "source": str, "revision": str,
                    "sha256": dict, "metrics": dict, "recipe": str, "license": str}


def validate(data: dict[str, Any]) -> list[str]:
    """Problems with a loaded catalogue against the schema documented at the top of registry.toml."""
    problems = []
    names = set()
    for i, plugin in enumerate(data.get("plugins", [])):
        where = f"plugins[{i}] ({plugin.get('name', '?')})"
        problems += _check_keys(plugin, _PLUGIN_KEYS, where)
        provides = plugin.get("provides", {})
        if isinstance(provides, dict):
            for key, value in provides.items():
                if key not in ("tasks", "architectures", "trainers") or not isinstance(value, list):
                    problems.append(f"{where}: provides.{key} must be tasks|architectures|trainers = [names]")
        if plugin.get("name") in names:
            problems.append(f"{where}: duplicate name")
        names.add(plugin.get("name"))
    dists = {p.get("name") for p in data.get("plugins", [])}
    names = set()
    for i, entry in enumerate(data.get("pretrained", [])):
        where = f"pretrained[{i}] ({entry.get('name', '?')})"
        problems += _check_keys(entry, _PRETRAINED_KEYS, where)
        if entry.get("name") in names:
            problems.append(f"{where}: duplicate name")
        names.add(entry.get("name"))
        source = entry.get("source", "")
        if source.startswith("hf://"):
            repo, _, sha = source[5:].partition("@")
            if repo.count("/") != 1 or not _SHA1.fullmatch(sha) or entry.get("revision") != sha:
                problems.append(f"{where}: hf source must be hf://OWNER/REPO@SHA (40 hex) with revision = SHA")
        elif source.startswith("package://"):
            dist, _, name = source[10:].partition("/")
            if dist not in dists or not name:
                problems.append(f"{where}: package source must be package://DIST/NAME with DIST in [[plugins]]")
        else:
            problems.append(f"{where}: source must start with hf:// or package://")
        pins = entry.get("sha256", {})
        if isinstance(pins, dict):
            if "config.json" not in pins or "model.safetensors" not in pins:
                problems.append(f"{where}: sha256 must pin config.json and model.safetensors")
            problems += [f"{where}: sha256 of {k} is not 64 hex digits" for k, v in pins.items()
                         if not (isinstance(v, str) and _SHA256.fullmatch(v))]
        metrics = entry.get("metrics", {})
        if isinstance(metrics, dict) and not all(isinstance(v, (int, float)) for v in metrics.values()):
            problems.append(f"{where}: metrics values must be numbers")
        if not str(entry.get("recipe", "")).startswith("zoo train "):
            problems.append(f"{where}: recipe must be the `zoo train ...` command that produced it")
    return problems


def _check_keys(item: dict, keys: dict[str, type], where: str) -> list[str]:
    out = [f"{where}: missing {k}" for k in keys if k not in item]
    out += [f"{where}: {k} must be {t.__name__}" for k, t in keys.items() if k in item and not isinstance(item[k], t)]
    out += [f"{where}: unknown key {k}" for k in item if k not in keys]
    return out

"""``registry.toml``: the catalogue of known plugins and pretrained checkpoints, shipped with the core."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from zoo_core.config import ZooError

PATH = Path(__file__).with_name("registry.toml")


class CatalogueError(ZooError):
    pass


def load(path: Path = PATH) -> dict[str, Any]:
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

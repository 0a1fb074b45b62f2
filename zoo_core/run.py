"""A run: one task x one architecture x one trainer, their resolved configs and a directory.

:func:`resolve` turns names and overrides into validated configs (before any
work starts); :func:`build` makes the task and model; :func:`load` rebuilds
both from a run directory's ``config.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from zoo_core import __version__
from zoo_core.checkpoint import CONFIG, FORMAT_VERSION, WEIGHTS, CheckpointError, load_weights, read_config
from zoo_core.config import ConfigError, build_config, fields, to_dict
from zoo_core.plugins import registry
from zoo_core.registry import Entry, UnknownName


@dataclasses.dataclass
class Run:
    task_entry: Entry
    arch_entry: Entry
    trainer_entry: Entry
    task_config: Any
    arch_config: Any
    trainer_config: Any
    directory: Path | None = None
    command: str = ""
    init: str | None = None          # weights to start from (a run directory)
    resume: bool = False
    task: Any = None                 # built lazily
    model: Any = None

    @property
    def arch(self):
        return self.arch_entry.cls()

    def to_json(self) -> dict[str, Any]:
        def part(entry: Entry, cfg) -> dict[str, Any]:
            return {"name": entry.name, "distribution": entry.distribution, "version": entry.version,
                    "config": to_dict(cfg)}

        return {"format": "zoo", "format_version": FORMAT_VERSION, "zoo_version": __version__,
                "task": part(self.task_entry, self.task_config),
                "architecture": part(self.arch_entry, self.arch_config),
                "trainer": part(self.trainer_entry, self.trainer_config),
                "command": self.command}


def trainer_defaults(task_cls, trainer_cls) -> dict[str, Any]:
    """The trainer's defaults with the task's recommended overrides (``Task.trainer_defaults``)."""
    defaults = {f.name: f.default for f in fields(trainer_cls.Config)}
    defaults.update(getattr(task_cls, "trainer_defaults", {}) or {})
    return defaults


def resolve(task: str, arch: str, *, task_values: dict | None = None, arch_values: dict | None = None,
            trainer_values: dict | None = None, trainer: str = "default") -> Run:
    """Validate every config before anything is built. Raises UnknownName or ConfigError."""
    reg = registry()
    t, a, tr = reg.entry("task", task), reg.entry("architecture", arch), reg.entry("trainer", trainer)
    task_cfg = build_config(t.cls.Config, task_values, section=f"task {task}")
    arch_cfg = build_config(a.cls.Config, arch_values, section=f"architecture {arch}")
    merged = {k: v for k, v in trainer_defaults(t.cls, tr.cls).items()
              if k in getattr(t.cls, "trainer_defaults", {})}
    merged.update(trainer_values or {})
    trainer_cfg = build_config(tr.cls.Config, merged, section=f"trainer {trainer}")
    return Run(t, a, tr, task_cfg, arch_cfg, trainer_cfg)


def build(run: Run) -> Run:
    """Instantiate the task and its model (data is loaded by the trainer)."""
    run.task = run.task_entry.cls(run.task_config)
    return run


def build_model(run: Run) -> Any:
    """The task's model around the architecture's backbone; initialisation is a function of the seed."""
    import torch

    torch.manual_seed(getattr(run.trainer_config, "seed", 0))
    run.model = run.task.build_model(run.arch, run.arch_config)
    return run.model


def from_config(data: dict[str, Any], where: str = "config.json") -> Run:
    """A Run from a ``config.json`` dict; a missing plugin is named by its distribution."""
    reg = registry()
    entries = {}
    for key, kind in (("task", "task"), ("architecture", "architecture"), ("trainer", "trainer")):
        part = data.get(key) or {}
        name = part.get("name", "default" if key == "trainer" else None) if isinstance(part, dict) else None
        if not isinstance(name, str) or not isinstance(part.get("config", {}), dict):
            raise CheckpointError(f"{where}: {key!r} needs a 'name' string and a 'config' table; "
                                  f"the file is corrupted")
        try:
            entries[key] = reg.entry(kind, name)
        except UnknownName:
            dist = part.get("distribution")
            if dist:
                import importlib.metadata as md

                try:
                    have = md.version(dist)
                except md.PackageNotFoundError:
                    raise CheckpointError(f"{where}: needs {kind} {name!r} from {dist}, which is not installed; "
                                          f"run: pip install {dist}") from None
                raise CheckpointError(f"{where}: needs {kind} {name!r} from {dist} {part.get('version') or ''}, "
                                      f"but the installed {dist} {have} has no such {kind} (or its plugin failed "
                                      f"to load; see `zoo plugins`)".replace(" ,", ",")) from None
            raise CheckpointError(f"{where}: unknown {kind} {name!r} (see `zoo list`)") from None
    try:
        cfgs = {k: build_config(entries[k].cls.Config, (data.get(k) or {}).get("config", {}), section=f"{k}")
                for k in entries}
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return Run(entries["task"], entries["architecture"], entries["trainer"], cfgs["task"],
               cfgs["architecture"], cfgs["trainer"], command=data.get("command", ""))


def load(path: str | os.PathLike, device: str = "cpu") -> Run:
    """Rebuild task and model for inference (eval, predict, ...) from a run directory, a pretrained
    name from registry.toml or ``REPO_ID[@REVISION]`` on the Hub (see :func:`zoo_core.hub.resolve`)."""
    if not Path(path).is_dir():
        from zoo_core.hub import resolve

        path = resolve(str(path))
    path = Path(path)
    run = from_config(read_config(path), where=str(path / CONFIG))
    run.directory = path
    build(run)
    run.task.load_artifacts(str(path))
    build_model(run)
    load_weights(run.model, path / WEIGHTS, device=device)
    run.model.to(device).eval()
    return run

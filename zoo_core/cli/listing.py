"""``zoo list`` and ``zoo info``: what is installed (no torch unless counting parameters)."""

from __future__ import annotations

import dataclasses
import json

import click

from zoo_core import plugins
from zoo_core.config import ZooError, fields
from zoo_core.registry import UnknownName


def _catalogue() -> dict:
    from zoo_core import catalogue

    return catalogue.load()


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_cmd(as_json):
    """Tasks, architectures, the task x architecture matrix and pretrained models."""
    reg = plugins.registry()
    tasks = [{"name": e.name, "distribution": e.distribution, "version": e.version,
              "description": e.cls.description} for e in reg.entries("task")]
    archs = [{"name": e.name, "distribution": e.distribution, "version": e.version,
              "description": e.cls.description} for e in reg.entries("architecture")]
    cat = _catalogue()
    installed = {p.distribution for p in plugins.plugin_infos()}
    plugin_rows = [{"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": p.hooks,
                    "installed": True} for p in plugins.plugin_infos()]
    plugin_rows += [{"name": d["name"], "distribution": d["name"], "requirement": d.get("requirement", d["name"]),
                     "provides": d.get("provides", {}), "installed": False}
                    for d in cat.get("plugins", []) if d["name"] not in installed]
    data = {"tasks": tasks, "architectures": archs,
            "matrix": {t["name"]: [a["name"] for a in archs] for t in tasks},
            "pretrained": cat.get("pretrained", []), "plugins": plugin_rows,
            "failed": [f.__dict__ for f in plugins.failures]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("Tasks:")
    for t in tasks:
        click.echo(f"  {t['name']:<14} {t['distribution']} {t['version']}  {t['description']}")
    click.echo("Architectures:")
    for a in archs:
        click.echo(f"  {a['name']:<14} {a['distribution']} {a['version']}  {a['description']}")
    if tasks and archs:
        names = [a["name"] for a in archs]
        width = max(len(n) for n in names) + 2
        click.echo("Matrix (every installed architecture trains on every installed task):")
        click.echo("  " + " " * 14 + "".join(f"{n:<{width}}" for n in names))
        for t in tasks:
            click.echo(f"  {t['name']:<14}" + "".join(f"{'yes':<{width}}" for _ in names))
    if data["pretrained"]:
        click.echo("Pretrained:")
        for p in data["pretrained"]:
            click.echo(f"  {p['name']:<20} {p.get('task', '')} x {p.get('architecture', '')}  {p.get('source', '')}")
    missing = [p for p in plugin_rows if not p["installed"]]
    if missing:
        click.echo("Known plugins, not installed:")
        for p in missing:
            click.echo(f"  {p['name']:<20} pip install {p['requirement']}")
    for f in plugins.failures:
        click.echo(f"Plugin {f.plugin} ({f.distribution}) failed to load: {f.error}", err=True)


def _options_table(cls, defaults: dict | None = None) -> list[str]:
    rows = []
    for info in fields(cls):
        default = (defaults or {}).get(info.name, info.default)
        kind = info.type.__name__ + (" | none" if info.optional else "")
        if info.choices:
            kind = "|".join(map(str, info.choices))
        rows.append(f"  {info.flag:<22} {kind:<24} default {default!r:<10} {info.help}")
    return rows


@click.command()
@click.argument("names", nargs=-1, required=True)
def info(names):
    """Options of a task or architecture; with TASK ARCH, also the parameter count."""
    reg = plugins.registry()
    if len(names) > 2:
        raise click.UsageError("give one name, or a task and an architecture")
    if len(names) == 2:  # validate both before printing anything
        reg.entry("task", names[0])
        reg.entry("architecture", names[1])
    found = []
    for name in names:
        for kind in ("task", "architecture", "trainer"):
            if name in reg.names(kind):
                found.append(reg.entry(kind, name))
    if not found and len(names) == 1 and _run_info(names[0]):
        return
    if not found:
        import difflib

        known = [n for kind in ("task", "architecture", "trainer") for n in reg.names(kind)]
        close = difflib.get_close_matches(names[-1], known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known)}"
        raise UnknownName(f"{names[-1]!r} is not a task, architecture, run directory or pretrained model; "
                          f"{hint} (see `zoo list`)")
    for e in found:
        click.echo(f"{e.kind} {e.name} ({e.provider}): {e.cls.description}")
        click.echo("\n".join(_options_table(e.cls.Config)))
        if e.kind == "task" and getattr(e.cls, "trainer_defaults", None):
            click.echo("  trainer defaults for this task: " +
                       ", ".join(f"{k}={v!r}" for k, v in e.cls.trainer_defaults.items()))
    if len(names) == 2:
        t, a = reg.entry("task", names[0]), reg.entry("architecture", names[1])
        from zoo_core import run as runs

        run = runs.build(runs.resolve(t.name, a.name))
        try:
            model = runs.build_model(run)
        except Exception:
            try:
                run.task.load_data()  # some tasks size their model from data (vocabularies)
            except ZooError as e:
                click.echo(f"parameters: depend on the data ({e}); `zoo train` prints the count, "
                           f"and `zoo info RUN` gives it for a trained run")
                return
            model = runs.build_model(run)
        n = sum(p.numel() for p in model.parameters())
        click.echo(f"parameters: {n:,} ({t.name} x {a.name}, default configs)")



def _run_info(ref: str) -> bool:
    """`zoo info RUN`: a run directory, pretrained name or REPO_ID[@REV]; False if ``ref`` is none of them."""
    from zoo_core import hub
    from zoo_core import run as runs

    try:
        folder = hub.resolve(ref)
    except ZooError:
        if "/" in ref or ref in {p["name"] for p in _catalogue().get("pretrained", [])}:
            raise  # it was meant as a run or repo: its own error says what is wrong
        return False
    run = runs.load(folder)
    click.echo(f"{ref}: {run.task_entry.name} x {run.arch_entry.name} in {folder}")
    for label, entry, cfg in (("task", run.task_entry, run.task_config), ("architecture", run.arch_entry, run.arch_config),
                              ("trainer", run.trainer_entry, run.trainer_config)):
        values = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(cfg).items())
        click.echo(f"  {label} {entry.name} ({entry.provider}): {values}")
    n = sum(p.numel() for p in run.model.parameters())
    click.echo(f"  parameters: {n:,}")
    if run.command:
        click.echo(f"  command: {run.command}")
    return True

"""``zoo plugins [list|install|uninstall]``: what is installed, and pip run in zoo's own environment.

``install`` and ``uninstall`` run ``sys.executable -m pip`` (the interpreter
running zoo, not whatever ``pip`` is first on PATH). A name in the catalogue
(``registry.toml``) may be given by its distribution name or short alias
(``recurrent`` for ``zoo-recurrent``) and installs the catalogued requirement.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click

from zoo_core import plugins
from zoo_core.config import ZooError

CORE = "zoo-core"


def _catalogue() -> list[dict]:
    from zoo_core import catalogue

    return catalogue.load()["plugins"]


def _lookup(name: str) -> dict | None:
    """The catalogue entry for a distribution name or its short alias (``lm`` -> ``zoo-lm``)."""
    key = plugins.canonical(name)
    for entry in _catalogue():
        dist = plugins.canonical(entry["name"])
        if key in (dist, dist.removeprefix("zoo-")):
            return entry
    return None


def requirement_for(name: str) -> str:
    """What ``pip install`` gets for ``name``: the catalogued requirement, or ``name`` itself."""
    entry = _lookup(name)
    return entry.get("requirement", entry["name"]) if entry else name


def _distribution_for(name: str) -> str:
    """What ``pip uninstall`` gets: a catalogued alias, an entry-point name or a distribution name."""
    entry = _lookup(name)
    if entry:
        return entry["name"]
    import importlib.metadata as md

    for ep in md.entry_points(group=plugins.GROUP):
        if ep.name == name and ep.dist is not None:
            return ep.dist.name
    return name


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    click.echo("$ " + " ".join(cmd), err=True)
    try:
        code = subprocess.run(cmd).returncode
    except OSError as e:  # pragma: no cover - the interpreter itself vanished
        raise ZooError(f"could not run pip: {e}") from None
    if code:
        raise ZooError(f"pip exited with status {code} (command: {' '.join(cmd)}); nothing else was changed"
                       + ("; this environment has no pip: run python -m ensurepip" if not _has_pip() else ""))


def _has_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec("pip") is not None


def _rows() -> tuple[list[dict], list[dict]]:
    rows = [{"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": p.hooks,
             "api": p.api, "provides": p.provides} for p in plugins.plugin_infos()]
    return rows, [f.__dict__ for f in plugins.failures]


def _installed_in_fresh_process() -> dict:
    """``zoo plugins list --json`` in a new interpreter: what was just installed is only visible there."""
    code = "from zoo_core.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "plugins", "list", "--json"], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"plugins": [], "failed": [], "error": (out.stderr or out.stdout).strip()}


def _echo_list(rows: list[dict], failed: list[dict]) -> None:
    for r in rows:
        prov = "; ".join(f"{k}s: {', '.join(v)}" for k, v in r["provides"].items()) or "nothing registered"
        api = f"  api {r['api']}" if r["api"] else "  api undeclared"
        click.echo(f"{r['distribution'] or r['name']} {r['version']}".rstrip() + f"  [{r['name']}]{api}")
        click.echo(f"    hooks: {', '.join(r['hooks']) or 'none'}")
        click.echo(f"    provides: {prov}")
    for f in failed:
        click.echo(f"FAILED {f['plugin']} ({f['distribution'] or 'in-process'} {f.get('version', '')}".rstrip()
                   + f"): {f['error']}")


@click.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (same as `zoo plugins list --json`).")
@click.pass_context
def plugins_group(ctx, as_json):
    """Installed plugins; install and uninstall them.

    \b
      zoo plugins                      installed plugins, their hooks, what they provide, failures
      zoo plugins install recurrent    a catalogued plugin by short name (see `zoo list`)
      zoo plugins install -e ./my-plugin
      zoo plugins uninstall zoo-recurrent -y

    ZOO_LOAD_PLUGINS=a,b loads only those plugins (empty: none); ZOO_STRICT_PLUGINS=1 makes a broken
    plugin an error instead of a skipped, reported one.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, as_json=as_json)


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: plugins and failed.")
def list_cmd(as_json):
    """Each plugin distribution: version, plugin API range, hooks, tasks/architectures/trainers; failures."""
    rows, failed = _rows()
    if as_json:
        click.echo(json.dumps({"plugin_api": plugins.PLUGIN_API, "plugins": rows, "failed": failed}, indent=2))
        return
    _echo_list(rows, failed)


@plugins_group.command("install")
@click.argument("names", nargs=-1)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade to the newest version.")
@click.option("-e", "--editable", "editable", multiple=True, metavar="PATH",
              help="Install a local plugin checkout in editable mode (repeatable).")
def install_cmd(names, upgrade, editable):
    """Install plugins with pip into the environment zoo runs in."""
    if not names and not editable:
        raise click.UsageError("give a plugin name or -e PATH (known plugins: see `zoo list`)")
    reqs = []
    for name in names:
        req = requirement_for(name)
        if req != name:
            click.echo(f"{name}: catalogued as {req}", err=True)
        elif not any(c in name for c in "/\\") and not name.endswith((".whl", ".tar.gz", ".zip")):
            click.echo(f"{name}: not in the zoo catalogue; installing it from the package index as given "
                       "(a plugin runs with your permissions: install only what you trust)", err=True)
        reqs.append(req)
    before = {plugins.canonical(r["distribution"]): r["version"] for r in _rows()[0]}
    args = ["install", *(["--upgrade"] if upgrade else []), *reqs]
    for path in editable:
        args += ["-e", path]
    _pip(args)
    after = _installed_in_fresh_process()
    if "error" in after:
        raise ZooError(f"installed, but zoo no longer starts: {after['error']}")
    changed = [r for r in after["plugins"] if before.get(plugins.canonical(r["distribution"])) != r["version"]]
    if changed:
        click.echo("Installed:")
        _echo_list(changed, [])
    else:
        click.echo("No new zoo plugin: what pip installed declares no [project.entry-points.zoo], "
                   "or it was already installed (see `zoo plugins`).")
    if after["failed"]:
        _echo_list([], after["failed"])
        raise ZooError("a plugin failed to load (above); `zoo plugins uninstall NAME` removes it")


@plugins_group.command("uninstall")
@click.argument("names", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_cmd(names, yes):
    """Uninstall plugin distributions with pip from the environment zoo runs in."""
    dists = [_distribution_for(n) for n in names]
    if CORE in map(plugins.canonical, dists):
        raise ZooError("zoo-core is zoo itself, not a plugin; uninstall it with pip if you mean to")
    _pip(["uninstall", *(["-y"] if yes else []), *dists])

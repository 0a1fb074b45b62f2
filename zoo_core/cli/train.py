"""``zoo train TASK ARCH [--option value ...]``: every config field is an option.

Options are generated from the task, architecture and trainer config
dataclasses once TASK and ARCH are known (so ``zoo train addition lstm --help``
lists them). A name two configs share gets a prefixed flag instead
(``--task-dropout``, ``--arch-dropout``). Everything is validated before any
data is loaded or model built.
"""

from __future__ import annotations

import os
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from zoo_core import plugins
from zoo_core.config import ConfigError, FieldInfo, ZooError, check, coerce, fields

SECTIONS = ("task", "architecture", "trainer")
_PREFIX = {"task": "task", "architecture": "arch", "trainer": "trainer"}


class _FieldType(click.ParamType):
    """Converts with the config's own coercion and range checks, so CLI and TOML errors read alike."""

    def __init__(self, info: FieldInfo):
        self.info = info
        self.name = info.type.__name__

    def convert(self, value, param, ctx):
        try:
            out = coerce(self.info, value)
            check(self.info, out)
            return out
        except ConfigError as e:
            self.fail(e.problem + (f" ({e.fix})" if e.fix else ""), param, ctx)


def config_options(classes: dict[str, type], defaults: dict[str, dict]) -> list[tuple[str, str, click.Option]]:
    """(section, field name, click option) for every field; shared names get a section prefix."""
    infos = {s: fields(c) for s, c in classes.items()}
    counts: dict[str, int] = {}
    for s in infos:
        for i in infos[s]:
            counts[i.name] = counts.get(i.name, 0) + 1
    out = []
    for section, items in infos.items():
        for info in items:
            if not info.meta.get("cli", True):
                continue
            stem = info.name.replace("_", "-")
            if counts[info.name] > 1:
                stem = f"{_PREFIX[section]}-{stem}"
            default = defaults.get(section, {}).get(info.name, info.default)
            help_ = f"{info.help} [default: {default!r}]"
            dest = f"{section}__{info.name}"
            if info.type is bool:
                opt = click.Option([f"--{stem}/--no-{stem}", dest], default=None, help=help_)
            elif info.choices:
                opt = click.Option([f"--{stem}", dest], type=click.Choice([str(c) for c in info.choices]),
                                   default=None, help=help_)
            else:
                opt = click.Option([f"--{stem}", dest], type=_FieldType(info), default=None, help=help_,
                                   metavar=info.type.__name__.upper())
            out.append((section, info.name, opt))
    return out


def _peek(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _positionals(args: list[str]) -> list[str]:
    out = []
    for a in args:
        if a.startswith("-"):
            break
        out.append(a)
    return out


class TrainCommand(click.Command):
    """Adds the config options of the named task/architecture before parsing."""

    def parse_args(self, ctx, args):
        names = _positionals(args)
        resume = _peek(args, "--resume")
        task = arch = None
        if len(names) >= 2:
            task, arch = names[0], names[1]
        elif resume:
            from zoo_core.checkpoint import read_config

            try:
                data = read_config(resume)
            except ZooError as e:
                raise click.UsageError(str(e)) from None
            task, arch = data["task"]["name"], data["architecture"]["name"]
        self.params = [p for p in self.params if not getattr(p, "_zoo_config", False)]  # reused across calls
        if task and arch:
            try:
                reg = plugins.registry()
                t, a = reg.entry("task", task), reg.entry("architecture", arch)
                tr = reg.entry("trainer", _peek(args, "--trainer") or "default")
            except ZooError as e:
                raise click.UsageError(str(e)) from None
            from zoo_core.run import trainer_defaults

            classes = {"task": t.cls.Config, "architecture": a.cls.Config, "trainer": tr.cls.Config}
            defaults = {"trainer": trainer_defaults(t.cls, tr.cls)}
            for _, _, opt in config_options(classes, defaults):
                opt._zoo_config = True
                self.params.append(opt)
        return super().parse_args(ctx, args)


def _read_toml(path: str) -> dict[str, dict[str, Any]]:
    """``[task]``, ``[architecture]`` (or ``[arch]``) and ``[trainer]`` tables of option values."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config", f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"{path}: invalid TOML ({e})", "fix the file's syntax") from None
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in data.items():
        section = {"arch": "architecture"}.get(key, key)
        if section not in SECTIONS or not isinstance(value, dict):
            raise ConfigError("config", f"{path}: unknown table or key {key!r}",
                              "use [task], [architecture] and [trainer] tables")
        out[section].update(value)
    return out


@click.command(cls=TrainCommand, context_settings={"max_content_width": 110})
@click.argument("task", required=False)
@click.argument("arch", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of option values; flags override it.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/TASK-ARCH].")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in this directory.")
@click.option("--init", "init", metavar="NAME|REPO|DIR",
              help="Start from these weights (fine-tuning): a run directory, a pretrained name or REPO_ID[@REV].")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO_ID", help="Push the best checkpoint to REPO_ID at the end.")
@click.option("--trainer", default="default", show_default=True, help="Trainer plugin.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def train(ctx, task, arch, config_file, out, resume, init, push_to_hub, trainer, quiet, **options):
    """Train ARCH on TASK. `zoo train TASK ARCH --help` lists every option."""
    from zoo_core import run as runs

    given: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for dest, value in options.items():
        # by source, not value: an explicit "--max-steps none" is given
        if ctx.get_parameter_source(dest) == click.core.ParameterSource.COMMANDLINE:
            section, name = dest.split("__", 1)
            given[section][name] = value
    # `zoo ...` or `python -m zoo_core.cli ...` (zoo sweep, torchrun): record what was typed
    launched = sys.argv and (Path(sys.argv[0]).name == "zoo"
                             or Path(sys.argv[0]).parts[-3:] == ("zoo_core", "cli", "__main__.py"))
    command = shlex.join(["zoo", *sys.argv[1:]]) if launched else ""

    if push_to_hub:  # fail before training, not after
        from zoo_core import hub

        hub.parse_ref(push_to_hub)
        hub.require_token()
    if resume:
        for flag, value in (("--out", out), ("--init", init), ("--config", config_file)):
            if value:  # refused rather than silently ignored
                raise click.UsageError(f"{flag} cannot be combined with --resume (the run keeps its directory, "
                                       f"weights and config; pass changed trainer options as flags)")
        _resume(resume, task, arch, given, quiet)
        return _push(resume, push_to_hub)
    if not task or not arch:
        raise click.UsageError("TASK and ARCH are required (see `zoo list`), or --resume DIR")
    values = _read_toml(config_file) if config_file else {s: {} for s in SECTIONS}
    for s in SECTIONS:
        values[s].update(given[s])
    run = runs.resolve(task, arch, task_values=values["task"], arch_values=values["architecture"],
                       trainer_values=values["trainer"], trainer=trainer)
    run.command = command or shlex.join(["zoo", "train", task, arch, *ctx.args])
    run.directory = _new_run_dir(out, task, arch)
    if init:
        from zoo_core import hub

        run.init = str(hub.resolve(init))
    _train(run, quiet)
    _push(run.directory, push_to_hub)


def _push(directory, repo_id: str | None) -> None:
    if repo_id and _rank() == 0:
        from zoo_core import hub

        info = hub.push(directory, repo_id)
        click.echo(f"pushed {directory} -> {repo_id}@{info.oid}")


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 checks and writes the run directory."""
    return int(os.environ.get("RANK", "0"))


def _new_run_dir(out: str | None, task: str, arch: str) -> Path:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not out:
            raise ConfigError("out", "under torchrun every process must be told the run directory",
                              "pass --out DIR")
        return Path(out)  # rank 0 may already have written into it
    if out:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise ConfigError("out", f"{path} already holds files",
                              f"continue it with `zoo train --resume {path}` or choose another --out")
        return path
    base = Path("runs") / f"{task}-{arch}"
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _resume(directory: str, task, arch, given, quiet) -> None:
    from zoo_core import run as runs
    from zoo_core.checkpoint import read_config, resume_dir
    from zoo_core.config import build_config, to_dict

    data = read_config(directory)
    if task and (task, arch) != (data["task"]["name"], data["architecture"]["name"]):
        raise ConfigError("resume", f"{directory} is a {data['task']['name']} x {data['architecture']['name']} run, "
                          f"not {task} x {arch}", f"run `zoo train --resume {directory}` alone")
    for section in ("task", "architecture"):
        if given[section]:
            name = next(iter(given[section]))
            raise ConfigError(name, "cannot change a task or architecture option when resuming",
                              "start a new run, or use --init to fine-tune from this one")
    if resume_dir(directory) is None:
        raise ConfigError("resume", f"{directory} has no resume state", "start a new run with --out")
    run = runs.from_config(data, where=f"{directory}/config.json")
    trainer_values = {**to_dict(run.trainer_config), **given["trainer"]}
    run.trainer_config = build_config(run.trainer_entry.cls.Config, trainer_values, section="trainer")
    run.directory, run.resume = Path(directory), True
    _train(run, quiet)


def _first_batch(run) -> None:
    """Ask for one training batch before anything is written: a batch size or window the data
    cannot fill is then a one-line error that leaves no half-made run directory behind."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    next(iter(run.task.batches("train", run.trainer_config.batch_size, rank=_rank(), world_size=world)), None)


def _train(run, quiet: bool) -> None:
    from zoo_core import run as runs
    from zoo_core.checkpoint import write_json

    runs.build(run)
    run.task.load_data(str(run.directory))
    runs.build_model(run)
    _first_batch(run)
    run.directory.mkdir(parents=True, exist_ok=True)
    if not run.resume and _rank() == 0:
        write_json(run.directory / "config.json", run.to_json())
        run.task.save_artifacts(str(run.directory))
    trainer = run.trainer_entry.cls()
    n_params = sum(p.numel() for p in run.model.parameters())
    if not quiet and _rank() == 0:
        click.echo(f"{'resuming' if run.resume else 'training'} {run.task_entry.name} x {run.arch_entry.name} "
                   f"({n_params:,} parameters) -> {run.directory}", err=True)
    if quiet:
        run.trainer_config.log_every = 10**9
    result = trainer.fit(run)
    if _rank() != 0:
        return
    click.echo(f"saved {run.directory}: model.safetensors, config.json, metrics.jsonl, README.md, plots/")
    for split in ("validation", "test"):
        metrics = result.get(split) or {}
        if metrics:
            click.echo(f"{split}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    click.echo(f"best step {result.get('best_step')} of {result.get('steps')}, {result.get('time', 0):.1f} s")

"""``zoo sweep`` (a grid of ``zoo train`` runs) and ``zoo compare`` (their table and figures).

Options a sweep does not know are handed to every run (``zoo sweep addition --arch rnn,lstm
--max-steps 300``), as is everything after ``--``; the logic is in :mod:`zoo_core.study`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from zoo_core.config import ZooError


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command(context_settings={"ignore_unknown_options": True, "max_content_width": 110})
@click.argument("task", required=False)
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--study", "study_name", metavar="NAME", help="A named study (see --list-studies); other options "
                                                              "override its settings.")
@click.option("--list-studies", is_flag=True, help="Print the named studies and their commands, then exit.")
@click.option("--full", is_flag=True, help="With --study: the full-size settings (for a GPU) instead of the "
                                           "CPU-scaled ones.")
@click.option("--arch", "archs", multiple=True, metavar="A,B,...", help="Architectures.")
@click.option("--optimizer", "optimizers", multiple=True, metavar="O,P,...",
              help="Optimizers: sgd, adam, adamw, sgd-decay, each optionally NAME:key=value:... "
                   "(e.g. sgd:lr=1) [default: adam].")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="A `zoo train` option and its values (seq_len=5,10 or seq-len=5,10); repeatable.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per point, with seeds 0..N-1.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs trained at the same time.")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep folder [default: runs/sweep-TASK or "
                                                                "runs/study-NAME].")
@click.option("--dry-run", is_flag=True, help="Print the commands, run nothing.")
@click.option("--compare/--no-compare", "then_compare", default=True, show_default=True,
              help="Run `zoo compare` on the sweep folder at the end.")
def sweep(task, train_args, study_name, list_studies, full, archs, optimizers, grid, repeat, jobs, out, dry_run,
          then_compare):
    """Train every combination of --arch x --optimizer x --grid on TASK.

    \b
    Each run is `zoo train TASK ARCH ...` in its own directory under --out, with
    its command in config.json and sweep.json. Running the same sweep again
    skips finished runs and resumes interrupted ones (`zoo train --resume`).
    Other options go to every run, and so does everything after `--`:

    \b
      zoo sweep addition --arch rnn,lstm --grid seq_len=5,10 --max-steps 300
      zoo sweep --study adding              # the coursework study, table and figures
      zoo sweep --study ptb --full -- --data ~/data/ptb
    """
    from zoo_core import study as st

    if list_studies:
        for name, s in st.studies().items():
            click.echo(f"{name:10} {s.description}\n{'':10} zoo sweep --study {name}   "
                       f"(task {s.task}; {', '.join(s.archs)})")
        return
    if task and task.startswith("-"):   # `zoo sweep --study adding --max-steps 100`: no TASK given
        task, train_args = None, (task, *train_args)
    extra: list[str] = []
    arch_args: dict = {}
    then: tuple[str, ...] = ()
    grid_values = st.parse_grid(list(grid))
    if study_name:
        s = st.get_study(study_name)
        if task and task != s.task:
            raise click.UsageError(f"study {study_name} is on task {s.task}, not {task}")
        task = s.task
        _require_task(task, study_name)
        extra = list(s.full_args if full else s.args)
        arch_args = s.full_arch_args if full else {}
        then = s.then
        archs = archs or (",".join(s.archs),)
        optimizers = optimizers or (s.full_optimizers if full and s.full_optimizers else s.optimizers)
        grid_values = {**s.grid, **grid_values}
    elif full:
        raise click.UsageError("--full needs --study")
    if not task:
        raise click.UsageError("TASK is required (see `zoo list`), or --study NAME (see --list-studies)")
    if not archs:
        raise click.UsageError("--arch is required, e.g. --arch rnn,gru,lstm,transformer")
    extra += list(train_args)
    runs = st.plan(_split(archs), _split(optimizers) or ["adam"], grid_values, repeat, extra, arch_args)
    out_dir = Path(out or (f"runs/study-{study_name}" if study_name else f"runs/sweep-{task}"))
    if dry_run:
        for r in runs:
            state = st.run_state(out_dir / r.name)
            click.echo(f"# {state}\nzoo train {shlex.join([task, r.arch, *r.args, '--out', str(out_dir / r.name)])}")
        return
    command = shlex.join(["zoo", *sys.argv[1:]]) if Path(sys.argv[0]).name == "zoo" else ""
    click.echo(f"{len(runs)} runs -> {out_dir}", err=True)
    outcome = st.run_sweep(task, runs, out_dir, jobs=jobs, then=then,
                           manifest={"study": study_name, "full": full, "command": command},
                           echo=lambda m: click.echo(m, err=True))
    click.echo(", ".join(f"{len(v)} {k}" for k, v in outcome.items()), err=True)
    if then_compare:
        written = st.compare([out_dir], out_dir / "compare")
        click.echo(f"compare: {out_dir / 'compare' / 'results.md'} and {len(written) - 2} figures")
    if outcome["failed"]:
        raise ZooError(f"{len(outcome['failed'])} run(s) failed: {', '.join(outcome['failed'])}; logs in "
                       f"{out_dir / 'logs'}; run the same command again to retry them")


def _require_task(task: str, study_name: str) -> None:
    from zoo_core.plugins import registry

    if task not in registry().names("task"):
        raise ZooError(f"study {study_name} needs the {task!r} task, which is not installed (see `zoo list`)")


@click.command("compare")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", help="Metric for the table and the best-run marks [default: the task's].")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for results.md, results.csv and the PNGs [default: DIR/compare for one DIR, else "
                   "./compare].")
def compare(paths, metric, out):
    """Table (Markdown, CSV) and figures for runs or sweep folders.

    \b
    results.md/.csv   one numbered row per run, sorted by architecture then
                      optimizer, best per architecture in bold, hyperparameters
                      and exact commands
    curves-*.png      train/validation curves against step (or epoch) and time,
                      per optimizer and per architecture
    METRIC-vs-*.png   the metric against each varying task option (seq_len, ...)
    analysis-*.png    runs' analysis/*.csv overlaid (`zoo analyze`)
    """
    from zoo_core import study as st

    out_dir = Path(out) if out else (Path(paths[0]) / "compare" if len(paths) == 1 else Path("compare"))
    written = st.compare(list(paths), out_dir, metric)
    for p in written:
        click.echo(str(p))

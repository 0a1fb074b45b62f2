"""``zoo translate`` (added through the ``register_commands`` hook; no torch at import)."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_core import ZooError


@click.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("text", required=False)
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="Translate this file, one sentence "
                                                                              "per line.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), help="Write the translations here "
                                                                               "(default: print them).")
@click.option("--beam", type=click.IntRange(min=1), default=1, show_default=True, help="Beam size (1: greedy).")
@click.option("--length-penalty", type=click.FloatRange(min=0.0), default=None,
              help="Beam ranking: log-probability / ((5 + length) / 6) ** this [default: the run's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def translate(run_dir, text, input_path, output_path, beam, length_penalty, batch_size, device):
    """Translate TEXT (or --input FILE) with the translation model RUN: a run directory, a
    pretrained name or REPO_ID[@REV]."""
    if (text is None) == (input_path is None):
        raise click.UsageError("give either TEXT or --input FILE")
    lines = [text]
    if input_path:
        path = Path(input_path)
        if not path.is_file():
            raise click.BadParameter(f"{path}: no such file", param_hint="--input")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise click.BadParameter(f"{path}: not UTF-8 text (undecodable byte at offset {e.start})",
                                     param_hint="--input") from None
    from zoo_core import run as runs
    from zoo_core.train_loop import resolve_device
    from zoo_translation.decode import translate as run_translate

    run = runs.load(run_dir, device=str(resolve_device(device)))
    if run.task_entry.name != "translation":
        raise ZooError(f"{run_dir} is a {run.task_entry.name} run; `zoo translate` needs a translation run")
    keep = [i for i, line in enumerate(lines) if line.strip()]   # empty lines stay empty
    out = [""] * len(lines)
    for i, t in zip(keep, run_translate(run.task, run.model, [lines[i] for i in keep], beam=beam,
                                        batch_size=batch_size, length_penalty=length_penalty)):
        out[i] = t
    if output_path:
        from zoo_core.checkpoint import atomic_write

        atomic_write(Path(output_path), "".join(line + "\n" for line in out))
        click.echo(f"wrote {len(out)} translations to {output_path}", err=True)
    else:
        for line in out:
            click.echo(line)

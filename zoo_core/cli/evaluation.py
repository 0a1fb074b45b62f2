"""``zoo eval`` and ``zoo predict``: use a trained run."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.argument("run_dir", metavar="RUN")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(run_dir, split, batch_size, device, as_json):
    """Evaluate RUN on a split: a run directory, a pretrained name (`zoo list`) or REPO_ID[@REV]."""
    from zoo_core import run as runs
    from zoo_core.train_loop import resolve_device

    run = runs.load(run_dir, device=str(resolve_device(device)))
    if split not in run.task.splits:
        raise click.BadParameter(f"{split!r} is not a split of task {run.task_entry.name} "
                                 f"({', '.join(run.task.splits)})", param_hint="--split")
    run.task.load_data(None)
    metrics = run.task.evaluate(run.model, split, batch_size)
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            click.echo(f"{k}: {v:.6g}")


@click.command(context_settings={"ignore_unknown_options": True})  # inputs may start with "-1"
@click.argument("run_dir", metavar="RUN")
@click.argument("text")
def predict(run_dir, text):
    """Run RUN's model on one input TEXT: RUN is a run directory, a pretrained name or REPO_ID[@REV]."""
    from zoo_core import run as runs

    run = runs.load(run_dir)
    click.echo(run.task.predict(run.model, text))

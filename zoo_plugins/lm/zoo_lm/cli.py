"""``zoo generate`` and ``zoo analyze`` (added through the ``register_commands`` hook; no torch at import)."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_core import ZooError


def _load(run_dir: str, device: str):
    from zoo_core import run as runs
    from zoo_core.train_loop import resolve_device

    run = runs.load(run_dir, device=str(resolve_device(device)))
    if run.task_entry.name != "lm":
        raise ZooError(f"{run_dir} is a {run.task_entry.name} run; this command needs an lm run")
    return run


_device = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)


@click.command()
@click.argument("run_dir")
@click.option("--prompt", default="", help="Text to continue (default: start of a line).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Divides the logits; 0 is greedy.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Sample among the K most likely tokens.")
@click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=None,
              help="Sample from the smallest set of tokens with probability >= P (nucleus).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--context", type=click.IntRange(min=0), default=None,
              help="Attention models: positions seen at most (default: the training bptt; 0: all).")
@_device
def generate(run_dir, prompt, max_tokens, temperature, top_k, top_p, seed, context, device):
    """Sample text from the language model in RUN_DIR."""
    from zoo_lm.generate import generate_text, join

    run = _load(run_dir, device)
    text = generate_text(run.task, run.model, prompt, max_tokens=max_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, seed=seed, context=-1 if context is None else context)
    click.echo(join(run.task, prompt, text))


@click.command()
@click.argument("run_dir")
@click.option("--per-step-loss", is_flag=True, help="Mean validation loss at each position of the BPTT window.")
@click.option("--grad-norms", is_flag=True, help="Norm of d(last position's loss)/d(input at each earlier position).")
@click.option("--split", default="validation", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--max-batches", type=click.IntRange(min=1), default=None,
              help="Windows to use (default: all for the loss, 10 for gradients).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder [default: RUN_DIR/analysis].")
@_device
def analyze(run_dir, per_step_loss, grad_norms, split, batch_size, max_batches, out, device):
    """Per-position loss and gradient-norm figures (CSV and PNG) for the language model in RUN_DIR."""
    if not (per_step_loss or grad_norms):
        raise click.UsageError("choose --per-step-loss and/or --grad-norms")
    from zoo_lm import analyze as an

    run = _load(run_dir, device)
    if split not in run.task.splits:
        raise click.BadParameter(f"{split!r} is not one of {', '.join(run.task.splits)}", param_hint="--split")
    run.task.load_data(None)
    out = Path(out) if out else Path(run_dir) / "analysis"
    name = f"{run.task_entry.name} x {run.arch_entry.name}"
    if per_step_loss:
        rows = an.per_step_loss(run.task, run.model, split, batch_size, max_batches)
        if not rows:
            raise ZooError(f"{split}: no full window of bptt {run.task.config.bptt}; lower --batch-size")
        an.write_csv(out / "per_step_loss.csv", ["position", "loss", "count"], rows)
        an.plot(out / "per_step_loss.png", [r[0] for r in rows], [r[1] for r in rows],
                xlabel="position in BPTT window", ylabel=f"mean {split} loss (nats)", title=name)
        click.echo(f"wrote {out / 'per_step_loss.csv'} and .png")
    if grad_norms:
        rows = an.grad_norms(run.task, run.model, split, batch_size, max_batches or 10)
        if not rows:
            raise ZooError(f"{split}: no full window of bptt {run.task.config.bptt}; lower --batch-size")
        an.write_csv(out / "grad_norms.csv", ["position", "distance", "grad_norm"], rows)
        an.plot(out / "grad_norms.png", [r[1] for r in rows], [max(r[2], 1e-30) for r in rows],
                xlabel="distance back from the last position", ylabel="||d loss_last / d input_t||",
                title=name, log_y=True)
        click.echo(f"wrote {out / 'grad_norms.csv'} and .png")

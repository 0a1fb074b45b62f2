"""``zoo push`` and ``zoo pull``: share a run on the Hugging Face Hub, fetch a pretrained model."""

from __future__ import annotations

import json

import click

_endpoint = click.option("--endpoint", metavar="URL", help="Hub endpoint [default: $HF_ENDPOINT or huggingface.co].")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("--branch", metavar="B", help="Commit to branch B (created from main if needed).")
@click.option("--commit-message", "-m", metavar="M", help="Commit message.")
@_endpoint
def push(run_dir, repo_id, private, branch, commit_message, endpoint):
    """Upload RUN_DIR to REPO_ID in one commit: config.json, model.safetensors, tokenizer, model card.

    Resume and optimizer state stay local. The token comes from HF_TOKEN or `hf auth login`.
    """
    from zoo_core import hub

    info = hub.push(run_dir, repo_id, private=private, branch=branch, commit_message=commit_message,
                    endpoint=endpoint)
    click.echo(f"pushed {run_dir} -> {repo_id}@{info.oid}")
    click.echo(f"use it with: zoo pull {repo_id}@{info.oid}")


@click.command()
@click.argument("ref", metavar="NAME|REPO_ID[@REVISION]")
@_endpoint
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def pull(ref, endpoint, as_json):
    """Download a pretrained model into the Hugging Face cache, verify it and check that it loads.

    NAME is a pretrained entry of `zoo list`; a commit sha as REVISION pins the exact files.
    """
    from zoo_core import hub

    folder, run = hub.pull(ref, endpoint=endpoint)
    n = sum(p.numel() for p in run.model.parameters())
    out = {"ref": ref, "path": str(folder), "task": run.task_entry.name, "architecture": run.arch_entry.name,
           "parameters": n}
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"{ref}: {run.task_entry.name} x {run.arch_entry.name} ({n:,} parameters) in {folder}")

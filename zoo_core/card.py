"""The run's ``README.md``: a Hugging Face model card with metrics and the exact command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo_core.checkpoint import atomic_write


def _yaml_scalar(v: Any) -> str:
    return json.dumps(v)  # JSON scalars are valid YAML


def write_card(run_dir: str | Path, run, result: dict[str, Any]) -> None:
    task, arch = run.task_entry.name, run.arch_entry.name
    test = result.get("test") or {}
    valid = result.get("validation") or {}
    lines = ["---", "library_name: zoo", "tags:", "- zoo", f"- {task}", f"- {arch}"]
    datasets = getattr(run.task, "dataset_names", lambda: [])()
    if datasets:
        lines += ["datasets:"] + [f"- {d}" for d in datasets]
    if test or valid:
        lines += ["model-index:", f"- name: {Path(run_dir).name}", "  results:", "  - task:",
                  f"      type: {task}", f"      name: {task}", "    dataset:",
                  f"      type: {(datasets or [task])[0]}", f"      name: {(datasets or [task])[0]}", "    metrics:"]
        for split, metrics in (("test", test), ("validation", valid)):
            for k, v in metrics.items():
                lines += [f"    - type: {k}", f"      value: {_yaml_scalar(round(v, 6))}", f"      name: {split} {k}"]
    lines += ["---", "", f"# {task} x {arch}", "",
              f"A `{arch}` backbone trained on the zoo `{task}` task "
              f"(best validation {run.task.metric} at step {result.get('best_step')} of {result.get('steps')}, "
              f"{result.get('time', 0):.0f} s).", "", "| split | metric | value |", "|---|---|---|"]
    for split, metrics in (("validation", valid), ("test", test)):
        for k, v in metrics.items():
            lines.append(f"| {split} | {k} | {v:.6g} |")
    lines += ["", "## How it was trained", "", "```", run.command or f"zoo train {task} {arch}", "```", "",
              "## Use", "", "```", f"pip install {run.task_entry.distribution or 'zoo-core'} "
              f"{run.arch_entry.distribution or ''}".rstrip(), f"zoo eval {Path(run_dir).name} --split test --json",
              "```", ""]
    atomic_write(Path(run_dir) / "README.md", "\n".join(lines))


def _install_line(config: dict[str, Any]) -> str:
    dists = ["zoo-core"] + [d for d in ((config.get(k) or {}).get("distribution") for k in ("task", "architecture"))
                            if d and d != "zoo-core"]
    return "pip install " + " ".join(dict.fromkeys(dists))


def hub_card(text: str | None, config: dict[str, Any], repo_id: str) -> str:
    """The card as published: the run's README.md with a usage section naming ``repo_id``.

    A run without a card (training stopped before the final evaluation) gets a minimal one.
    """
    task, arch = config["task"]["name"], config["architecture"]["name"]
    if not text:
        text = "\n".join(["---", "library_name: zoo", "tags:", "- zoo", f"- {task}", f"- {arch}", "---", "",
                          f"# {task} x {arch}", "", "## How it was trained", "", "```",
                          config.get("command") or f"zoo train {task} {arch}", "```", ""])
    body = text.split("\n## Use\n", 1)[0].rstrip("\n")
    use = ["", "## Use", "", "With zoo (safetensors weights; nothing is unpickled, no remote code runs):", "",
           "```", _install_line(config), f"zoo pull {repo_id}", f"zoo eval {repo_id} --split test --json",
           f'zoo predict {repo_id} "INPUT"', "```", "", "From Python:", "", "```python",
           "from zoo_core import run", "", f'r = run.load("{repo_id}")  # downloads, verifies, rebuilds',
           'print(r.task.predict(r.model, "INPUT"))', "```", ""]
    return body + "\n" + "\n".join(use)

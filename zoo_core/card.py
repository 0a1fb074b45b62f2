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
                  f"      type: {task}", f"      name: {task}", "    metrics:"]
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

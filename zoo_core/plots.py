"""PNG learning curves from ``metrics.jsonl``: each metric against steps and against wall-clock time."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: str | Path) -> list[Path]:
    """One figure per metric (loss, accuracy, ...), two panels: vs step and vs seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(run_dir) if not r.get("final")]
    names = sorted({k for r in records for split in ("train", "validation") for k in r.get(split, {})})
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for name in names:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for ax, xkey, xlabel in ((axes[0], "step", "optimizer step"), (axes[1], "time", "wall-clock time (s)")):
            for split in ("train", "validation"):
                pts = [(r[xkey], r[split][name]) for r in records if name in r.get(split, {})]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o", markersize=3, label=split)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(name)
            if name in ("perplexity",):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"{name} — {Path(run_dir).name}")
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written

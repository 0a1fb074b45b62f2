"""Sweeps and comparisons: a grid of ``zoo train`` runs, then one table and a set of figures.

A sweep is a folder of ordinary run directories plus ``sweep.json`` (what was
asked and each run's exact command). Every run is a real ``zoo train`` in a
subprocess, so runs are isolated and a re-run of the sweep can tell finished
runs (a ``"final": true`` record in ``metrics.jsonl``) from interrupted ones
(``resume/state.json``, continued with ``zoo train --resume``).

:func:`compare` reads run directories only (``config.json``, ``metrics.jsonl``,
any ``analysis/*.csv``), so it works on hand-made runs as well as sweeps.
No torch is imported here.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from zoo_core.config import ZooError

# Optimizer names a sweep understands; "NAME:key=value:..." adds trainer options (``sgd:lr=1:momentum=0.9``).
OPTIMIZERS: dict[str, list[str]] = {
    "sgd": ["--optimizer", "sgd"],
    "adam": ["--optimizer", "adam"],
    "adamw": ["--optimizer", "adamw"],
    "sgd-decay": ["--optimizer", "sgd", "--schedule", "decay_per_epoch", "--lr-decay", "2", "--decay-start", "1"],
}

# Metrics where larger is better when the task's own metric is not the one asked for.
_MAX_METRICS = ("accuracy", "acc", "bleu", "f1", "exact_match", "score")


# ---- named studies ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Study:
    description: str
    task: str
    archs: tuple[str, ...]
    optimizers: tuple[str, ...]
    grid: dict[str, tuple[str, ...]]
    args: tuple[str, ...]                    # scaled to finish on a CPU
    full_args: tuple[str, ...]               # the coursework's size, for a GPU (``--full``)
    full_arch_args: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    then: tuple[str, ...] = ()               # a zoo command run on each finished run: zoo THEN[0] RUN THEN[1:]
    full_optimizers: tuple[str, ...] = ()    # optimizers for ``--full`` when they differ


def _data(name: str) -> str:
    return str(Path(os.environ.get("ZOO_DATA", "data")) / name)


def studies() -> dict[str, Study]:
    """The coursework's studies; data paths are under ``$ZOO_DATA`` (default ``./data``)."""
    ptb_base = ("--data", _data("ptb"), "--hidden-size", "128", "--num-layers", "2", "--bptt", "35",
                "--batch-size", "20")
    ptb_small = ptb_base + ("--max-epochs", "1", "--eval-every", "200")
    ptb_full = ("--data", _data("ptb"), "--bptt", "35", "--batch-size", "20", "--max-epochs", "40",
                "--dropout", "0.35", "--embed-dropout", "0.35", "--output-dropout", "0.35")
    ptb_arch = {"rnn": ("--hidden-size", "1500", "--num-layers", "2"),
                "gru": ("--hidden-size", "1500", "--num-layers", "2"),
                "lstm": ("--hidden-size", "1500", "--num-layers", "2"),
                "transformer": ("--hidden-size", "512", "--num-layers", "6", "--num-heads", "16")}
    return {
        "adding": Study(
            "Adding task: every architecture at lengths 5, 10, 30 and 100 (accuracy against length).",
            "addition", ("rnn", "gru", "lstm", "transformer"), ("adam",), {"seq_len": ("5", "10", "30", "100")},
            ("--hidden-size", "128", "--num-layers", "2", "--max-steps", "1000", "--eval-every", "50", "--target", "0.99"),
            ("--hidden-size", "128", "--num-layers", "2", "--max-steps", "5000", "--eval-every", "100")),
        "ptb": Study(
            "PTB word LM: RNN/GRU/Transformer x SGD, SGD with per-epoch decay, Adam (perplexity curves).",
            "lm", ("rnn", "gru", "transformer"),
            # one epoch on a CPU: the decaying SGD halves its lr every 300 steps instead of every epoch
            ("sgd:lr=20", "sgd-decay:lr=20:schedule=step:decay_every=300", "adam:lr=0.001"), {},
            ptb_small, ptb_full, ptb_arch, full_optimizers=("sgd:lr=20", "sgd-decay:lr=20", "adam:lr=0.001")),
        "multi30k": Study(
            "Multi30k German-English: LSTM encoder-decoder with and without the source reversed.",
            "translation", ("lstm",), ("adam",), {"reverse_source": ("false", "true")},
            ("--data", _data("multi30k/raw"), "--attention", "none", "--hidden-size", "256", "--num-layers", "2",
             "--max-epochs", "2"),
            ("--data", _data("multi30k/raw"), "--attention", "none", "--hidden-size", "512", "--num-layers", "2",
             "--embed-size", "256", "--dropout", "0.5", "--embed-dropout", "0.5", "--max-epochs", "10")),
        "gradients": Study(
            "Per-step validation loss and gradient norms d(last loss)/d(input_t) across architectures (PTB).",
            "lm", ("rnn", "gru", "lstm", "transformer"), ("adam:lr=0.001",), {},
            ptb_base + ("--max-epochs", "1"), ptb_full, ptb_arch, then=("analyze", "--per-step-loss", "--grad-norms")),
    }


def get_study(name: str) -> Study:
    known = studies()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ZooError(f"unknown study {name!r}; {hint}known: {', '.join(known)}")
    return known[name]


# ---- planning -----------------------------------------------------------------------------------

@dataclasses.dataclass
class PlannedRun:
    name: str                   # directory name inside the sweep folder
    arch: str
    optimizer: str              # the optimizer spec as given, used as its label
    grid: dict[str, str]
    seed: int | None
    args: list[str]             # zoo train options after TASK ARCH (without --out)


def parse_grid(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``["seq_len=5,10", "lr=1e-3"]`` -> ``{"seq_len": ("5", "10"), "lr": ("1e-3",)}``."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not values:
            raise ZooError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. seq_len=5,10)")
        grid[key] = tuple(v.strip() for v in values.split(",") if v.strip())
    return grid


def option_args(key: str, value: str) -> list[str]:
    """A ``zoo train`` flag for one config value; true/false become ``--key``/``--no-key``."""
    flag = key.replace("_", "-")
    if value.lower() in ("true", "false"):
        return [f"--{flag}" if value.lower() == "true" else f"--no-{flag}"]
    return [f"--{flag}", value]


def optimizer_args(spec: str) -> list[str]:
    name, *overrides = spec.split(":")
    if name not in OPTIMIZERS:
        raise ZooError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)} "
                       "(add trainer options as NAME:key=value, e.g. sgd:lr=1)")
    out = list(OPTIMIZERS[name])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZooError(f"optimizer {spec!r}: expected NAME:key=value")
        out += option_args(key.replace("-", "_"), value)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def plan(archs, optimizers, grid: dict[str, tuple[str, ...]], repeat: int = 1,
         extra: tuple[str, ...] | list[str] = (), arch_args: dict[str, tuple[str, ...]] | None = None
         ) -> list[PlannedRun]:
    """The cross product archs x optimizers x grid x seeds, each with its ``zoo train`` options.

    Options are ordered study/extra, then optimizer, then grid, then seed; click keeps the last
    value of a repeated option, so a sweep axis always wins over a shared option.
    """
    runs = []
    keys = list(grid)
    for arch, opt, values, rep in itertools.product(archs, optimizers or ("adam",),
                                                    itertools.product(*grid.values()), range(repeat)):
        point = dict(zip(keys, values))
        args = [*(arch_args or {}).get(arch, ()), *extra, *optimizer_args(opt)]
        for k, v in point.items():
            args += option_args(k, v)
        seed = rep if repeat > 1 else None
        if seed is not None:
            args += ["--seed", str(seed)]
        name = "-".join([arch, _slug(opt), *(f"{k}={_slug(v)}" for k, v in point.items()),
                         *([f"seed{seed}"] if seed is not None else [])])
        runs.append(PlannedRun(name, arch, opt, point, seed, args))
    return runs


# ---- running ------------------------------------------------------------------------------------

def read_records(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:   # a line cut by a kill
            pass
    return out


def run_state(run_dir: Path) -> str:
    """``done`` (has a final record), ``resume`` (has resume state) or ``new``."""
    if any(r.get("final") for r in read_records(run_dir)):
        return "done"
    if (Path(run_dir) / "resume" / "state.json").exists():
        return "resume"
    return "new"


def zoo_argv(*args: str) -> list[str]:
    """The current interpreter running the ``zoo`` CLI (the same environment, whatever PATH says)."""
    return [sys.executable, "-m", "zoo_core.cli", *args]


def run_sweep(task: str, runs: list[PlannedRun], out: Path, *, jobs: int = 1, then: tuple[str, ...] = (),
              manifest: dict[str, Any] | None = None, echo=print) -> dict[str, list[str]]:
    """Train every planned run not finished yet (``jobs`` at a time); returns names by outcome."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    _write_manifest(out, task, runs, manifest or {})
    outcome: dict[str, list[str]] = {"skipped": [], "trained": [], "resumed": [], "failed": []}
    lock = threading.Lock()
    env = _thread_env(jobs)

    def one(i: int, r: PlannedRun) -> None:
        d = out / r.name
        state = run_state(d)
        if state == "done":
            key, argv = "skipped", None
        elif state == "resume":
            key, argv = "resumed", ["train", "--resume", str(d), "--quiet"]
        else:
            if d.exists():   # started but died before its first checkpoint: nothing to keep
                shutil.rmtree(d)
            key, argv = "trained", ["train", task, r.arch, *r.args, "--out", str(d), "--quiet"]
        tag = f"[{i + 1}/{len(runs)}] {r.name}"
        log = out / "logs" / f"{r.name}.log"
        if argv:
            with lock:
                echo(f"{tag}: {'resuming' if key == 'resumed' else 'training'}: zoo {shlex.join(argv)}")
            if not _call(argv, log, env):
                with lock:
                    outcome["failed"].append(r.name)
                    echo(f"{tag}: FAILED: {_last_line(log)} (log: {log})")
                return
        ok_marker = out / "logs" / f"{r.name}.then.ok"
        if then and not ok_marker.exists():
            if not _call([then[0], str(d), *then[1:]], log, env):
                with lock:
                    outcome["failed"].append(r.name)
                    echo(f"{tag}: `zoo {then[0]}` FAILED: {_last_line(log)} (log: {log})")
                return
            ok_marker.touch()
        with lock:
            outcome[key].append(r.name)
            if key == "skipped":
                echo(f"{tag}: finished before, skipped")
            else:
                final = next((x for x in read_records(d) if x.get("final")), {})
                echo(f"{tag}: done " + " ".join(f"{s}:{k}={v:.4g}" for s in ("validation", "test")
                                                for k, v in (final.get(s) or {}).items()))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for f in [pool.submit(one, i, r) for i, r in enumerate(runs)]:
            f.result()
    return outcome


def _thread_env(jobs: int) -> dict[str, str] | None:
    """With several runs at once, each gets its share of the cores: torch would otherwise start one
    thread per core in every run, and oversubscribed cores run slower than one run at a time.
    A thread count the user set (``OMP_NUM_THREADS``) is kept."""
    if jobs <= 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // jobs))}


def _call(argv: list[str], log: Path, env: dict[str, str] | None = None) -> bool:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ zoo {shlex.join(argv)}\n")
        f.flush()
        return subprocess.run(zoo_argv(*argv), stdout=f, stderr=subprocess.STDOUT, env=env).returncode == 0


def _last_line(log: Path) -> str:
    lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


def _write_manifest(out: Path, task: str, runs: list[PlannedRun], extra: dict[str, Any]) -> None:
    """``sweep.json``: the request and every run's command; runs of earlier invocations are kept."""
    path = out / "sweep.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entries = {r["name"]: r for r in old.get("runs", [])}
    for r in runs:
        entries[r.name] = {"name": r.name, "arch": r.arch, "optimizer": r.optimizer, "grid": r.grid,
                           "seed": r.seed,
                           "command": shlex.join(["zoo", "train", task, r.arch, *r.args, "--out", str(out / r.name)])}
    data = {**old, **extra, "task": task, "runs": list(entries.values())}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# ---- comparing ----------------------------------------------------------------------------------

@dataclasses.dataclass
class RunResult:
    path: Path
    task: str
    arch: str
    optimizer: str
    grid: dict[str, str]
    hyper: dict[str, Any]       # "section.name" -> value, every config field
    command: str
    records: list[dict]         # evaluation records (no final)
    final: dict | None

    def value(self, split: str, metric: str) -> float | None:
        source = self.final or (self.records[-1] if self.records else {})
        v = (source.get(split) or {}).get(metric)
        return float(v) if v is not None else None


def collect(paths: list[str | Path]) -> list[RunResult]:
    """Runs under each path: a run directory, or a folder of them (a sweep) at any depth."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ZooError(f"{p}: no such directory")
        dirs = [p] if (p / "config.json").exists() else sorted(c.parent for c in p.rglob("config.json"))
        if not dirs:
            raise ZooError(f"{p}: no run directories (config.json) in it")
        found += [d for d in dirs if d not in found]
    return [_load_run(d) for d in found]


def _manifest_entry(run_dir: Path) -> dict:
    path = run_dir.parent / "sweep.json"
    if path.exists():
        for r in json.loads(path.read_text(encoding="utf-8")).get("runs", []):
            if r.get("name") == run_dir.name:
                return r
    return {}


def _load_run(d: Path) -> RunResult:
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    hyper = {f"{s}.{k}": v for s in ("task", "architecture", "trainer")
             for k, v in sorted(((config.get(s) or {}).get("config") or {}).items())}
    trainer = (config.get("trainer") or {}).get("config") or {}
    entry = _manifest_entry(d)
    optimizer = entry.get("optimizer") or trainer.get("optimizer", "?") + (
        f"+{trainer['schedule']}" if trainer.get("schedule", "none") != "none" else "")
    records = read_records(d)
    return RunResult(d, config["task"]["name"], config["architecture"]["name"], optimizer, entry.get("grid") or {},
                     hyper, config.get("command") or entry.get("command", ""),
                     [r for r in records if not r.get("final")], next((r for r in records if r.get("final")), None))


def task_metric(task: str) -> tuple[str, str]:
    """The task's model-selection metric and its direction, from the plugin (no torch needed)."""
    try:
        from zoo_core.plugins import registry

        cls = registry().entry("task", task).cls
        return cls.metric, cls.mode
    except Exception:   # task not installed: compare still works from the files
        return "loss", "min"


def _mode(metric: str, task: str) -> str:
    name, mode = task_metric(task)
    if metric == name:
        return mode
    return "max" if any(m in metric for m in _MAX_METRICS) else "min"


def _num(v: Any) -> Any:
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


def _varying(runs: list[RunResult]) -> list[str]:
    """Config keys whose value differs between runs that have them (minus what arch/optimizer name)."""
    keys = sorted({k for r in runs for k in r.hyper})
    out = []
    for k in keys:
        values = {json.dumps(r.hyper[k]) for r in runs if k in r.hyper}
        if len(values) > 1 and k not in ("trainer.optimizer",):
            out.append(k)
    return out


def _short(keys: list[str]) -> dict[str, str]:
    names = [k.split(".", 1)[1] for k in keys]
    return {k: (n if names.count(n) == 1 else k) for k, n in zip(keys, names)}


def _sort_key(r: RunResult, varying: list[str]):
    return (r.arch, r.optimizer, *(_num(r.hyper.get(k)) for k in varying), str(r.path))


def compare(paths: list[str | Path], out: Path, metric: str | None = None) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and the figures into ``out``; returns the files written."""
    runs = collect(paths)
    tasks = sorted({r.task for r in runs})
    metric = metric or task_metric(tasks[0])[0]
    mode = _mode(metric, tasks[0])
    varying = _varying(runs)
    runs.sort(key=lambda r: _sort_key(r, varying))
    out.mkdir(parents=True, exist_ok=True)
    written = _tables(runs, out, metric, mode, varying)
    written += plot_curves(runs, out, varying)
    written += plot_against(runs, out, metric, varying)
    written += plot_analysis(runs, out)
    return written


def _best_per_arch(runs: list[RunResult], metric: str, mode: str) -> set[int]:
    best: dict[str, tuple[float, int]] = {}
    for i, r in enumerate(runs):
        v = r.value("validation", metric)
        if v is None or v != v:
            continue
        score = v if mode == "max" else -v
        if r.arch not in best or score > best[r.arch][0]:
            best[r.arch] = (score, i)
    return {i for _, i in best.values()}


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _tables(runs, out: Path, metric: str, mode: str, varying: list[str]) -> list[Path]:
    best = _best_per_arch(runs, metric, mode)
    short = _short(varying)
    head = ["#", "architecture", "optimizer", *(short[k] for k in varying), "steps", "time (s)",
            f"validation {metric}", f"test {metric}", "status"]
    rows = []
    for i, r in enumerate(runs):
        last = r.records[-1] if r.records else {}
        rows.append([str(i + 1), r.arch, r.optimizer, *(_fmt(r.hyper.get(k)) for k in varying),
                     str(last.get("step", "")), _fmt(float(last["time"])) if "time" in last else "",
                     _fmt(r.value("validation", metric)), _fmt(r.value("test", metric)),
                     "finished" if r.final else "unfinished"])
    md = io.StringIO()
    md.write(f"Sorted by architecture, then optimizer; **bold**: the best validation {metric} of each "
             f"architecture ({'higher' if mode == 'max' else 'lower'} is better). Values are those of the best "
             f"checkpoint (the final record); an unfinished run shows its last evaluation.\n\n")
    md.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    metric_cols = (len(head) - 3, len(head) - 2)
    for i, row in enumerate(rows):
        cells = [f"**{c}**" if i in best and j in metric_cols and c else c for j, c in enumerate(row)]
        md.write("| " + " | ".join(cells) + " |\n")
    constant = {k: runs[0].hyper[k] for k in runs[0].hyper
                if k not in varying and all(r.hyper.get(k) == runs[0].hyper[k] for r in runs)}
    if constant:
        same = ", ".join(f"`{k}={_fmt(v) or 'none'}`" for k, v in constant.items())
        md.write(f"\nSame in every run: {same}\n")
    md.write("\nCommands:\n\n")
    for i, r in enumerate(runs):
        md.write(f"{i + 1}. `{r.command or '(not recorded)'}`\n")
    (out / "results.md").write_text(md.getvalue(), encoding="utf-8")

    keys = sorted({k for r in runs for k in r.hyper})
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*head, "best_of_architecture", "run_dir", *keys, "command"])
        for i, (r, row) in enumerate(zip(runs, rows)):
            w.writerow([*row, "yes" if i in best else "", str(r.path), *(r.hyper.get(k, "") for k in keys), r.command])
    return [out / "results.md", out / "results.csv"]


# ---- figures ------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _point_label(r: RunResult, varying: list[str]) -> str:
    short = _short(varying)
    return ", ".join(f"{short[k]}={_fmt(r.hyper.get(k))}" for k in varying) or "all runs"


def _x_axis(runs: list[RunResult]) -> tuple[str, str]:
    if all(r.hyper.get("trainer.eval_every") == 0 for r in runs):
        return "epoch", "epoch"
    batch = {r.hyper.get("trainer.batch_size") for r in runs}
    return "step", "optimizer step" + (f" (batch {batch.pop()})" if len(batch) == 1 else "")


def _set_by_optimizer(runs: list[RunResult], key: str) -> bool:
    """A trainer option that the optimizer spec fixes (``sgd-decay:lr=20:decay_every=300``): one value
    per optimizer label. It is part of the line's label, not a reason for another row of panels."""
    if not key.startswith("trainer."):
        return False
    seen: dict[str, str] = {}
    for r in runs:
        value = json.dumps(r.hyper.get(key))
        if seen.setdefault(r.optimizer, value) != value:
            return False
    return True


def plot_curves(runs: list[RunResult], out: Path, varying: list[str]) -> list[Path]:
    """Train (dashed) and validation (solid) curves against step/epoch and wall-clock time:
    one figure per optimizer (a line per architecture) and per architecture (a line per optimizer),
    for every metric, with a row of panels per value of the other varying options."""
    plt = _plt()
    point_keys = [k for k in varying if not k.startswith("architecture.") and k != "trainer.seed"
                  and not _set_by_optimizer(runs, k)]
    metrics = sorted({m for r in runs for rec in r.records for s in ("train", "validation") for m in rec.get(s, {})})
    written = []
    for by, line in (("optimizer", "arch"), ("arch", "optimizer")):
        for group in sorted({getattr(r, by) for r in runs}):
            members = [r for r in runs if getattr(r, by) == group]
            order = {_point_label(r, point_keys): tuple(_num(r.hyper.get(k)) for k in point_keys) for r in members}
            points = sorted(order, key=order.get)   # numerically: seq_len 5 before 10
            lines = sorted({getattr(r, line) for r in members})
            colors = {name: f"C{i % 10}" for i, name in enumerate(lines)}
            xkey, xlabel = _x_axis(members)
            for metric in metrics:
                fig, axes = plt.subplots(len(points), 2, figsize=(11, 3.4 * len(points) + 0.6),
                                         squeeze=False, constrained_layout=True)
                for row, point in enumerate(points):
                    for col, (key, label) in enumerate(((xkey, xlabel), ("time", "wall-clock time (s)"))):
                        ax = axes[row][col]
                        labelled = set()
                        for r in members:
                            if _point_label(r, point_keys) != point:
                                continue
                            name = getattr(r, line)
                            for split, style in (("validation", "-"), ("train", "--")):
                                pts = [(rec[key], rec[split][metric]) for rec in r.records
                                       if metric in (rec.get(split) or {}) and key in rec]
                                if not pts:
                                    continue
                                xs, ys = zip(*pts)
                                tag = f"{name} {split}"
                                ax.plot(xs, ys, style, color=colors[name], marker="o", markersize=2.5,
                                        label=None if tag in labelled else tag)
                                labelled.add(tag)
                        ax.set_xlabel(label)
                        ax.set_ylabel(_metric_label(metric))
                        if metric == "perplexity":
                            ax.set_yscale("log")
                        ax.grid(alpha=0.3)
                        if labelled:
                            ax.legend(fontsize=7)
                        if len(points) > 1 or point != "all runs":
                            ax.set_title(point, fontsize=9)
                fig.suptitle(f"{metric}: {by} {group}, one line per {'architecture' if line == 'arch' else line} "
                             f"(solid validation, dashed train)")
                path = out / f"curves-{by}-{_slug(group)}-{metric}.png"
                fig.savefig(path, dpi=90)
                plt.close(fig)
                written.append(path)
    return written


def _metric_label(metric: str) -> str:
    return {"loss": "loss (nats per prediction)", "perplexity": "perplexity (log scale)",
            "accuracy": "accuracy (fraction correct)", "bpc": "bits per character"}.get(metric, metric)


def plot_against(runs: list[RunResult], out: Path, metric: str, varying: list[str]) -> list[Path]:
    """The metric of the best checkpoint against each varying numeric task option (e.g. accuracy
    against sequence length for the adding task): a line per architecture and optimizer."""
    plt = _plt()
    written = []
    for key in varying:
        if not key.startswith("task.") or not all(_num(r.hyper.get(key))[0] == 0 for r in runs):
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
        for i, (arch, opt) in enumerate(sorted({(r.arch, r.optimizer) for r in runs})):
            for split, style in (("test", "-"), ("validation", ":")):
                pts = sorted((float(r.hyper[key]), r.value(split, metric)) for r in runs
                             if (r.arch, r.optimizer) == (arch, opt) and r.value(split, metric) is not None)
                if pts:
                    ax.plot(*zip(*pts), style, color=f"C{i % 10}", marker="o", label=f"{arch} {opt} {split}")
        name = key.split(".", 1)[1]
        axis = {"seq_len": "sequence length (tokens)"}.get(name, name.replace("_", " "))
        values = sorted({float(r.hyper[key]) for r in runs})
        if values[0] > 0 and values[-1] / values[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(values, [_fmt(v if not float(v).is_integer() else int(v)) for v in values])
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{_metric_label(metric)}, best checkpoint")
        if metric == "perplexity":
            ax.set_yscale("log")
        ax.set_title(f"{metric} against {axis}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = out / f"{metric}-vs-{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


# Axis labels and titles for what `zoo analyze` writes; other CSVs are labelled by their column names.
_ANALYSIS_LABELS = {
    "per_step_loss": ("position t in the BPTT window", "mean validation loss at t (nats)",
                      "validation loss against position in the window"),
    "grad_norms": ("position t in the BPTT window (the last is the loss's)", "||d loss_last / d input_t||",
                   "gradient of the last position's loss with respect to each input"),
}


def plot_analysis(runs: list[RunResult], out: Path) -> list[Path]:
    """Overlay every run's ``analysis/NAME.csv`` (as ``zoo analyze`` writes): x is the first column,
    y the column whose name appears in NAME (``per_step_loss`` -> ``loss``, ``grad_norms`` -> ``grad_norm``)."""
    plt = _plt()
    names = sorted({p.stem for r in runs for p in (r.path / "analysis").glob("*.csv")})
    written = []
    for stem in names:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
        xname = yname = None
        ys_all = []
        for i, r in enumerate(runs):
            path = r.path / "analysis" / f"{stem}.csv"
            if not path.exists():
                continue
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            if not rows:
                continue
            cols = list(rows[0])
            ycol = next((c for c in cols[1:] if c in stem), cols[-1])
            xname, yname = cols[0], ycol
            xs, ys = [float(x[cols[0]]) for x in rows], [float(x[ycol]) for x in rows]
            ys_all += ys
            ax.plot(xs, ys, marker=".", label=f"{r.arch} {r.optimizer} ({r.path.name})", color=f"C{i % 10}")
        positive = [y for y in ys_all if y > 0]
        if positive and len(positive) == len(ys_all) and max(positive) / min(positive) > 100:
            ax.set_yscale("log")
        xlabel, ylabel, title = _ANALYSIS_LABELS.get(stem, ((xname or "").replace("_", " "),
                                                            (yname or "").replace("_", " "), stem.replace("_", " ")))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = out / f"analysis-{stem}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written

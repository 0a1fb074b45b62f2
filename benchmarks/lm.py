"""Language-model recipes: quality, training throughput, generation speed, peak memory.

    python benchmarks/lm.py --list
    python benchmarks/lm.py ptb-small-lstm                    # the full recipe
    python benchmarks/lm.py ptb-small-lstm --max-steps 50     # a smoke run of the same command
    python benchmarks/lm.py ptb-small-lstm --out runs/bench-ptb-small-lstm --reuse   # report on a finished run

For a recipe it prints and runs the exact ``zoo train lm ARCH ...`` command (the real CLI, in a
subprocess), or with ``--reuse`` takes the finished run already in ``--out``, then reports from the
run directory:

- validation/test perplexity (or bits per char) of the best checkpoint, and the wall-clock time;
- training tokens/s of zoo's real trainer (the run's own config, built as ``zoo train`` builds it,
  run through the DefaultTrainer's ``fit`` in a temporary directory; the clock reads when ``fit``
  calls ``task.step`` for warm-up step W and for step W + N, so the N timed steps are whole loop
  iterations and evaluation, checkpoints, card and plots fall outside; they are reported apart)
  against a plain PyTorch loop on the *same model and data* in the style of PyTorch's
  ``examples/word_language_model`` (``loss.item()`` every batch);
- generation tokens/s for 500 tokens with the carried state / key-value cache against re-running
  the prefix for every token, and the speed-up;
- peak resident memory of the training process and of this one (and CUDA peak when on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("ZOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
PTB, WT2, SHAKESPEARE = DATA / "ptb", DATA / "wikitext-2", DATA / "tinyshakespeare" / "input.txt"

# name -> (architecture, options, what it reproduces)
RECIPES: dict[str, tuple[str, list[str], str]] = {
    # Zaremba et al. 2014 with their TF code's settings (ptb_word_lm.py, whose table these val/test
    # figures come from). That code sums the loss over the time steps and averages it over the batch,
    # so its gradient is bptt times ours (a per-token mean): its lr 1 and clip 5 at 20 steps are lr 20
    # and clip 0.25 here (lr 1 / clip 5 on a mean loss trains ~20x too slowly).
    # One deviation: tied input/output embeddings (Press & Wolf 2017), which only help.
    "ptb-small-lstm": ("lstm", [
        "--data", str(PTB), "--hidden-size", "200", "--num-layers", "2", "--bptt", "20", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "20", "--clip-grad-norm", "0.25", "--schedule", "decay_per_epoch",
        "--lr-decay", "2", "--decay-start", "4", "--max-epochs", "13", "--init-range", "0.1", "--tie-weights"],
        "Zaremba et al. 2014 small: 2x200, no dropout, 13 epochs (TF code: val 121.4 / test 115.9), tied weights"),
    # Zaremba medium: the same scaling gives lr 35 / clip 5/35 at bptt 35; we use PyTorch's
    # examples/word_language_model values, lr 20 and clip 0.25, instead. lr decay 1/0.8 = 1.25 per
    # epoch from epoch 6 (0-based), as their MediumConfig.
    "ptb-medium-lstm": ("lstm", [
        "--data", str(PTB), "--hidden-size", "650", "--num-layers", "2", "--dropout", "0.5",
        "--embed-dropout", "0.5", "--output-dropout", "0.5", "--bptt", "35", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "20", "--clip-grad-norm", "0.25", "--schedule", "decay_per_epoch",
        "--lr-decay", "1.25", "--decay-start", "6", "--max-epochs", "39", "--init-range", "0.05"],
        "Zaremba et al. 2014 medium: 2x650, dropout 0.5, 39 epochs (TF code: val 86.2 / test 82.1)"),
    "ptb-gru": ("gru", [
        "--data", str(PTB), "--hidden-size", "650", "--num-layers", "2", "--dropout", "0.5",
        "--embed-dropout", "0.5", "--output-dropout", "0.5", "--tie-weights", "--bptt", "35", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "20", "--clip-grad-norm", "0.25", "--schedule", "decay_per_epoch",
        "--lr-decay", "4", "--decay-start", "15", "--max-epochs", "40"],
        "PyTorch examples/word_language_model with --model GRU --tied (coursework best GRU val 103)"),
    "ptb-transformer": ("transformer", [
        "--data", str(PTB), "--hidden-size", "256", "--num-layers", "4", "--num-heads", "4", "--dropout", "0.2",
        "--embed-dropout", "0.2", "--output-dropout", "0.2", "--tie-weights", "--bptt", "70", "--batch-size", "32",
        "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.1", "--warmup-steps", "500",
        "--schedule", "cosine", "--max-steps", "20000", "--max-epochs", "none", "--eval-every", "1000",
        "--clip-grad-norm", "0.5", "--init-range", "0.02"],   # GPT-2's init: tied logits start near uniform
        "4x256 pre-norm GPT-style decoder (coursework Transformer val 119)"),
    "shakespeare-char-transformer": ("transformer", [
        "--data", str(SHAKESPEARE), "--level", "char", "--hidden-size", "384", "--num-layers", "6",
        "--num-heads", "6", "--dropout", "0.2", "--positions", "learned", "--max-len", "256", "--tie-weights",
        "--bptt", "256", "--batch-size", "64", "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.1",
        "--warmup-steps", "100", "--schedule", "cosine", "--min-lr", "1e-4", "--max-steps", "5000",
        "--max-epochs", "none", "--eval-every", "250", "--clip-grad-norm", "1", "--init-range", "0.02"],
        "nanoGPT baby GPT (6x384, block 256, batch 64, 5000 iters; val loss 1.4697 on an A100)"),
    "shakespeare-char-lstm": ("lstm", [
        "--data", str(SHAKESPEARE), "--level", "char", "--hidden-size", "512", "--num-layers", "2",
        "--dropout", "0.2", "--output-dropout", "0.2", "--bptt", "128", "--batch-size", "64",
        "--optimizer", "adam", "--lr", "2e-3", "--schedule", "cosine", "--min-lr", "1e-4", "--max-steps", "5000",
        "--max-epochs", "none", "--eval-every", "250", "--clip-grad-norm", "1"],
        "char-rnn style 2x512 LSTM on tiny shakespeare (goal val loss <= 1.50)"),
    "wikitext2-lstm-tied": ("lstm", [
        "--data", str(WT2), "--hidden-size", "650", "--num-layers", "2", "--dropout", "0.5",
        "--embed-dropout", "0.5", "--output-dropout", "0.5", "--tie-weights", "--bptt", "35", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "20", "--clip-grad-norm", "0.25", "--schedule", "decay_per_epoch",
        "--lr-decay", "4", "--decay-start", "20", "--max-epochs", "40"],
        "PyTorch examples/word_language_model --tied --emsize 650 --nhid 650 --dropout 0.5 on WikiText-2"),
}


def _zoo() -> str:
    exe = Path(sys.executable).with_name("zoo")
    return str(exe) if exe.exists() else "zoo"


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024   # Linux reports KiB


def zoo_train(task: str, arch: str, options: list[str], out: Path, extra: list[str]) -> float:
    """Print and run ``zoo train TASK ARCH OPTIONS --out OUT EXTRA`` (the real CLI, in a subprocess);
    its wall-clock seconds, or exit with the tail of its output when it fails."""
    cmd = ["zoo", "train", task, arch, *options, "--out", str(out), *extra]
    print("command:", shlex.join(cmd), flush=True)
    started = time.perf_counter()
    proc = subprocess.run([_zoo(), *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        print(proc.stdout[-3000:])
        raise SystemExit(f"training failed ({proc.returncode})")
    return time.perf_counter() - started


def train(recipe: str, out: Path, extra: list[str]) -> dict:
    arch, options, _ = RECIPES[recipe]
    wall = zoo_train("lm", arch, options, out, extra)
    final = finished(out)
    if final is None:
        raise SystemExit(f"{out}: training exited 0 but wrote no final record to metrics.jsonl")
    return {"wall_s": wall, "validation": final.get("validation"), "test": final.get("test"),
            "train_peak_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN)}


def finished(run_dir: Path) -> dict | None:
    """The final record of a finished run (``"final": true`` with test metrics), else None."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    final = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("final") and record.get("test"):
            final = record
    return final


def _options(command: list[str]) -> dict[str, str | None]:
    """``--flag value`` / ``--flag`` pairs of a command line."""
    out, i = {}, 0
    while i < len(command):
        if command[i].startswith("--"):
            takes = i + 1 < len(command) and not command[i + 1].startswith("--")
            out[command[i]] = command[i + 1] if takes else None
            i += 2 if takes else 1
        else:
            i += 1
    return out


def reuse(recipe: str, out: Path) -> dict:
    """Report on the finished run in ``out`` instead of training; says how it differs from the recipe."""
    from zoo_core.checkpoint import read_config

    final = finished(out)
    if final is None:
        raise SystemExit(f"--reuse: {out} holds no finished run (no final record with test metrics in "
                         f"metrics.jsonl); wait for it to finish (an interrupted one continues with "
                         f"`zoo train --resume {out}`) or choose another --out")
    config = read_config(out)
    command = config.get("command") or "(not recorded)"
    print("reusing", out, "trained by:", command, flush=True)
    arch, options, _ = RECIPES[recipe]
    if config["architecture"]["name"] != arch or config["task"]["name"] != "lm":
        raise SystemExit(f"--reuse: {out} is a {config['task']['name']} x {config['architecture']['name']} run, "
                         f"not the recipe's lm x {arch}")
    ignore = {"--out", "--data", "--device", "--log-every", "--quiet", "--max-steps"}
    want = {k: v for k, v in _options(options).items() if k not in ignore}
    got = {k: v for k, v in _options(shlex.split(command)).items() if k not in ignore}
    differ = sorted(k for k in want.keys() | got.keys() if want.get(k, "<unset>") != got.get(k, "<unset>"))
    data = config["task"]["config"].get("data")
    if data and Path(data).resolve() != Path(_options(options)["--data"]).resolve():
        differ.append(f"--data ({data})")
    if differ:
        print("warning: the run's options differ from the recipe's:", ", ".join(differ))
    cut = _options(shlex.split(command)).get("--max-steps")
    if cut and cut != _options(options).get("--max-steps"):
        print(f"note: a smoke run, cut short by --max-steps {cut}")
    return {"wall_s": final.get("time"), "validation": final.get("validation"), "test": final.get("test"),
            "train_peak_rss_mb": None}


def _load_for_training(run_dir: Path, device, directory: Path | None = None):
    """The run of ``run_dir``'s config.json built as ``zoo train`` builds it: task, data, fresh model (seeded)."""
    from zoo_core import run as runs
    from zoo_core.checkpoint import read_config

    run = runs.from_config(read_config(run_dir))
    run.trainer_config.device = device.type
    run.directory = directory
    runs.build(run)
    run.task.load_data(str(directory) if directory else None)
    runs.build_model(run)
    return run, run.model.to(device).train()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def zoo_throughput(run_dir: Path, steps: int, warmup: int, device, count=lambda batch: batch["y"].numel()) -> dict:
    """Tokens/s of the real trainer: the DefaultTrainer's ``fit`` on the run's config for warmup + steps + 1
    steps in a temporary directory, timed between its calls of ``task.step`` number ``warmup`` and
    ``warmup + steps`` (whole loop iterations: batch, step, backward, clip, optimizer, stats, logging)."""
    import contextlib
    import io
    import tempfile

    from zoo_core.checkpoint import write_json

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        directory = Path(tmp) / "run"
        run, _ = _load_for_training(run_dir, device, directory)
        cfg = run.trainer_config
        cfg.max_steps, cfg.max_epochs = warmup + steps + 1, None
        cfg.eval_every = cfg.max_steps   # validation once, after the last step (not at an epoch end)
        directory.mkdir(parents=True)
        write_json(directory / "config.json", run.to_json())   # as zoo_core.cli.train._train does
        run.task.save_artifacts(str(directory))

        task, real_step = run.task, run.task.step
        calls, stamps, tokens = [0], {}, [0]

        def timed_step(model, batch, state=None):
            i = calls[0]
            calls[0] += 1
            if i in (warmup, warmup + steps):
                _sync(device)
                stamps[i] = time.perf_counter()
            if warmup <= i < warmup + steps:
                tokens[0] += int(count(batch))
            return real_step(model, batch, state)

        task.step = timed_step   # an instance attribute: fit calls run.task.step
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):   # fit's progress lines
            result = run.trainer_entry.cls().fit(run)
        total = time.perf_counter() - started
    if len(stamps) < 2:
        raise SystemExit(f"throughput: fit stopped after {calls[0]} steps, before the {warmup + steps} needed")
    timed = stamps[warmup + steps] - stamps[warmup]
    return {"tokens_per_s": tokens[0] / timed, "timed_s": timed, "fit_s": total, "steps": result["steps"]}


def plain_throughput(run_dir: Path, steps: int, warmup: int, device) -> dict:
    """PyTorch's examples/word_language_model loop on the same model (same seed), windows and optimizer."""
    import torch

    from zoo_core.nn import detach_state
    from zoo_core.train_loop import make_optimizer

    run, model = _load_for_training(run_dir, device)
    cfg, task = run.trainer_config, run.task
    amp = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    torch.manual_seed(cfg.seed)
    optimizer = make_optimizer(cfg, model.parameters())
    hidden, total, tokens, i = None, 0.0, 0, 0
    while i < warmup + steps:
        for batch in task.batches("train", cfg.batch_size):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            if i == warmup + steps:
                break
            x, y = batch["x"].to(device), batch["y"].to(device)
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, hidden = model(x, hidden if model.stateful else None)
            hidden = detach_state(hidden) if model.stateful else None
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            if cfg.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            total += loss.item()
            tokens += y.numel() if i >= warmup else 0
            i += 1
        hidden = None   # a new pass over the data starts from a fresh state
    _sync(device)
    return {"tokens_per_s": tokens / (time.perf_counter() - t0)}


def throughput(run_dir: Path, steps: int, device, warmup: int = 3) -> dict:
    """Tokens/s of zoo's trainer vs a plain PyTorch loop, same model, same windows, fresh weights."""
    zoo = zoo_throughput(run_dir, steps, warmup, device)
    plain = plain_throughput(run_dir, steps, warmup, device)
    return {"zoo_tokens_per_s": zoo["tokens_per_s"], "plain_tokens_per_s": plain["tokens_per_s"],
            "ratio": zoo["tokens_per_s"] / plain["tokens_per_s"], "steps": steps, "warmup": warmup,
            "fit_s": zoo["fit_s"], "timed_s": zoo["timed_s"], "fit_steps": zoo["steps"]}


def generation(run_dir: Path, n: int, device) -> dict:
    import torch

    from zoo_core import run as runs
    from zoo_lm.generate import sample, start_ids

    run = runs.load(run_dir, device=str(device))
    model, task = run.model, run.task
    learned = getattr(run.arch_config, "positions", None) == "learned"
    context = None if model.stateful or not learned else run.arch_config.max_len   # the position table's size
    prompt = start_ids(task)
    out = {"tokens": n, "context": context}
    for name, cached in (("cached", True), ("rerun", False)):
        sample(model, prompt, 5, cached=cached, context=context)   # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ids = sample(model, prompt, n, seed=0, cached=cached, context=context)
        out[f"{name}_tokens_per_s"] = n / (time.perf_counter() - t0)
        out[f"{name}_ids"] = ids
    out["same_tokens"] = out.pop("cached_ids") == out.pop("rerun_ids")
    out["speedup"] = out["cached_tokens_per_s"] / out["rerun_tokens_per_s"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", nargs="?", choices=sorted(RECIPES))
    p.add_argument("--list", action="store_true", help="List the recipes and their commands.")
    p.add_argument("--out", help="Run directory [default: runs/bench-RECIPE-<time>].")
    p.add_argument("--reuse", action="store_true",
                   help="If --out already holds a finished run, report from it instead of training.")
    p.add_argument("--max-steps", type=int, help="Cut the recipe short (smoke run): adds --max-steps N.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--throughput-steps", type=int, default=30, help="Timed training steps (0: skip).")
    p.add_argument("--gen-tokens", type=int, default=500, help="Tokens to generate (0: skip).")
    args = p.parse_args(argv)
    if args.list or not args.recipe:
        for name, (arch, options, what) in RECIPES.items():
            print(f"{name}: {what}\n  zoo train lm {arch} {shlex.join(options)}")
        return
    if args.reuse and not args.out:
        p.error("--reuse needs --out RUN_DIR")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from zoo_core.train_loop import resolve_device

    device = resolve_device(args.device)
    out = Path(args.out or f"runs/bench-{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    extra = ["--device", args.device]
    if args.max_steps:
        extra += ["--max-steps", str(args.max_steps)]
    print(f"recipe {args.recipe}: {RECIPES[args.recipe][2]}")
    if args.reuse and out.exists() and any(out.iterdir()):
        result = reuse(args.recipe, out)
    else:
        result = train(args.recipe, out, extra)
    from zoo_core.checkpoint import read_config

    level = "bits_per_char" if read_config(out)["task"]["config"]["level"] == "char" else "perplexity"
    for split in ("validation", "test"):
        m = result[split] or {}
        print(f"{split}: {level} {m.get(level, float('nan')):.4f} (loss {m.get('loss', float('nan')):.4f})")
    wall = f"{result['wall_s']:.1f} s" if result["wall_s"] is not None else "unknown"
    if result["train_peak_rss_mb"] is None:
        print(f"training time (fit, from metrics.jsonl): {wall}")
    else:
        print(f"training wall time: {wall}; peak RSS of the training process {result['train_peak_rss_mb']:.0f} MiB")
    if args.throughput_steps:
        tp = throughput(out, args.throughput_steps, device)
        print(f"train tokens/s: zoo {tp['zoo_tokens_per_s']:.0f}, plain PyTorch loop {tp['plain_tokens_per_s']:.0f} "
              f"(zoo/plain {tp['ratio']:.2f}x; {tp['steps']} steps after {tp['warmup']} warm-up)")
        print(f"  zoo: DefaultTrainer.fit for {tp['fit_steps']} steps took {tp['fit_s']:.1f} s, of which the "
              f"{tp['steps']} timed steps {tp['timed_s']:.2f} s; the rest is set-up, warm-up, the first and last "
              f"checkpoint, validation + test evaluation, card and plots")
    if args.gen_tokens:
        gen = generation(out, args.gen_tokens, device)
        print(f"generate {gen['tokens']} tokens: cached {gen['cached_tokens_per_s']:.0f} tokens/s, re-running the "
              f"prefix {gen['rerun_tokens_per_s']:.0f} tokens/s, speed-up {gen['speedup']:.1f}x "
              f"(context {gen['context'] or 'unlimited'}, same tokens: {gen['same_tokens']})")
    print(f"peak RSS of this process {_rss_mb():.0f} MiB"
          + (f"; CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()

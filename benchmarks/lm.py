"""Language-model recipes: quality, training throughput, generation speed, peak memory.

    python benchmarks/lm.py --list
    python benchmarks/lm.py ptb-small-lstm                    # the full recipe
    python benchmarks/lm.py ptb-small-lstm --max-steps 50     # a smoke run of the same command

For a recipe it prints and runs the exact ``zoo train lm ARCH ...`` command (the real CLI, in a
subprocess), then reports from the run directory:

- validation/test perplexity (or bits per char) of the best checkpoint, and the wall-clock time;
- training tokens/s of zoo's loop body (``zoo_core.train_loop.fit``: task.step, backward, clip,
  optimizer step, stats kept on the device) against a plain PyTorch loop on the *same model and
  data* in the style of PyTorch's ``examples/word_language_model`` (``loss.item()`` every batch);
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
    "ptb-small-lstm": ("lstm", [
        "--data", str(PTB), "--hidden-size", "200", "--num-layers", "2", "--bptt", "20", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "1", "--clip-grad-norm", "5", "--schedule", "decay_per_epoch",
        "--lr-decay", "2", "--decay-start", "4", "--max-epochs", "13", "--init-range", "0.1"],
        "Zaremba et al. 2014 small: 2x200, no dropout, 13 epochs (val 121.4 / test 115.9)"),
    "ptb-medium-lstm": ("lstm", [
        "--data", str(PTB), "--hidden-size", "650", "--num-layers", "2", "--dropout", "0.5",
        "--embed-dropout", "0.5", "--output-dropout", "0.5", "--bptt", "35", "--batch-size", "20",
        "--optimizer", "sgd", "--lr", "1", "--clip-grad-norm", "5", "--schedule", "decay_per_epoch",
        "--lr-decay", "1.2", "--decay-start", "6", "--max-epochs", "39", "--init-range", "0.05"],
        "Zaremba et al. 2014 medium: 2x650, dropout 0.5, 39 epochs (val 86.2 / test 82.1)"),
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
        "--clip-grad-norm", "0.5"],
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


def train(recipe: str, out: Path, extra: list[str]) -> dict:
    arch, options, _ = RECIPES[recipe]
    cmd = ["zoo", "train", "lm", arch, *options, "--out", str(out), *extra]
    print("command:", shlex.join(cmd), flush=True)
    started = time.perf_counter()
    proc = subprocess.run([_zoo(), *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        print(proc.stdout[-3000:])
        raise SystemExit(f"training failed ({proc.returncode})")
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()][-1]
    return {"wall_s": wall, "validation": final.get("validation"), "test": final.get("test"),
            "train_peak_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN)}


def _load_for_training(run_dir: Path, device):
    from zoo_core import run as runs
    from zoo_core.checkpoint import read_config

    run = runs.from_config(read_config(run_dir))
    runs.build(run)
    run.task.load_data(None)
    runs.build_model(run)
    return run, run.model.to(device).train()


def throughput(run_dir: Path, steps: int, device) -> dict:
    """Tokens/s of zoo's loop body vs a plain PyTorch loop, same model, same windows, fresh weights."""
    import torch

    from zoo_core.nn import detach_state, to_device
    from zoo_core.train_loop import lr_at, make_optimizer

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    run, model = _load_for_training(run_dir, device)
    cfg, task = run.trainer_config, run.task
    amp = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    batches = list(zip(range(steps + 3), task.batches("train", cfg.batch_size)))
    n_tokens = sum(b["y"].numel() for _, b in batches[3:])

    # zoo: the body of zoo_core.train_loop.fit
    optimizer = make_optimizer(cfg, model.parameters())
    sums, carry = {}, None
    for i, batch in batches:
        if i == 3:
            sync()
            t0 = time.perf_counter()
        batch = to_device(batch, device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, i, 0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            result = task.step(model, batch, carry)
        carry = detach_state(result.state)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        if cfg.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        for k, v in result.stats.items():
            sums[k] = sums.get(k, 0) + v.detach().double()
    sync()
    zoo_s = time.perf_counter() - t0

    # plain loop (examples/word_language_model): same model, loss.item() each batch
    run, model = _load_for_training(run_dir, device)
    optimizer = make_optimizer(cfg, model.parameters())
    hidden, total = None, 0.0
    for i, batch in batches:
        if i == 3:
            sync()
            t0 = time.perf_counter()
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
    sync()
    plain_s = time.perf_counter() - t0
    return {"zoo_tokens_per_s": n_tokens / zoo_s, "plain_tokens_per_s": n_tokens / plain_s,
            "ratio": plain_s / zoo_s, "steps": steps}


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
    p.add_argument("--max-steps", type=int, help="Cut the recipe short (smoke run): adds --max-steps N.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--throughput-steps", type=int, default=30)
    p.add_argument("--gen-tokens", type=int, default=500)
    args = p.parse_args(argv)
    if args.list or not args.recipe:
        for name, (arch, options, what) in RECIPES.items():
            print(f"{name}: {what}\n  zoo train lm {arch} {shlex.join(options)}")
        return
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from zoo_core.train_loop import resolve_device

    device = resolve_device(args.device)
    out = Path(args.out or f"runs/bench-{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    extra = ["--device", args.device]
    if args.max_steps:
        extra += ["--max-steps", str(args.max_steps)]
    print(f"recipe {args.recipe}: {RECIPES[args.recipe][2]}")
    result = train(args.recipe, out, extra)
    level = "bits_per_char" if "char" in RECIPES[args.recipe][1] else "perplexity"
    for split in ("validation", "test"):
        m = result[split] or {}
        print(f"{split}: {level} {m.get(level, float('nan')):.4f} (loss {m.get('loss', float('nan')):.4f})")
    print(f"training wall time: {result['wall_s']:.1f} s; peak RSS of the training process "
          f"{result['train_peak_rss_mb']:.0f} MiB")
    tp = throughput(out, args.throughput_steps, device)
    print(f"train tokens/s: zoo {tp['zoo_tokens_per_s']:.0f}, plain PyTorch loop {tp['plain_tokens_per_s']:.0f} "
          f"(zoo/plain {tp['ratio']:.2f}x, {tp['steps']} steps after 3 warm-up)")
    gen = generation(out, args.gen_tokens, device)
    print(f"generate {gen['tokens']} tokens: cached {gen['cached_tokens_per_s']:.0f} tokens/s, re-running the "
          f"prefix {gen['rerun_tokens_per_s']:.0f} tokens/s, speed-up {gen['speedup']:.1f}x "
          f"(context {gen['context'] or 'unlimited'}, same tokens: {gen['same_tokens']})")
    print(f"peak RSS of this process {_rss_mb():.0f} MiB"
          + (f"; CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()

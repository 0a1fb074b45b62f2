"""Translation recipes on Multi30k de-en: BLEU, training throughput, decoding speed, peak memory.

    python benchmarks/translation.py --list
    python benchmarks/translation.py multi30k-gru-attention               # train, then measure
    python benchmarks/translation.py multi30k-gru-attention --max-steps 30 # a smoke run of the same command
    python benchmarks/translation.py multi30k-gru-attention --reuse --out runs/DIR   # measure a finished run

For a recipe it prints and runs the exact ``zoo train translation ARCH ...`` command (the real
CLI, in a subprocess), then reports from the run directory:

- test_2016 BLEU and chrF (sacreBLEU) of the best checkpoint, greedy and beam 5, and the signature;
- training target tokens/s of the real trainer (``DefaultTrainer.fit`` on the run's config, timed
  between two of its ``task.step`` calls, as ``benchmarks/lm.py`` does);
- decoding speed in sentences/s on the test set, greedy and beam 5 (batch 128);
- peak resident memory of the training process and of this one (and CUDA peak on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import time
from pathlib import Path

from lm import DATA, _rss_mb, zoo_throughput, zoo_train   # benchmarks/lm.py: the shared measurements

MULTI30K = DATA / "multi30k" / "raw"

# name -> (architecture, options, what it reproduces). Adam 1e-3, clip 1, batch 128 and 10 epochs
# are the task's defaults (bentrevett/pytorch-seq2seq's setup).
RECIPES: dict[str, tuple[str, list[str], str]] = {
    "multi30k-lstm": ("lstm", [
        "--data", str(MULTI30K), "--hidden-size", "512", "--num-layers", "2", "--embed-size", "256",
        "--dropout", "0.5", "--embed-dropout", "0.5", "--attention", "none", "--reverse-source"],
        "Sutskever et al. 2014: 2-layer LSTM, no attention, reversed source (pytorch-seq2seq 1: 13.76 BLEU)"),
    "multi30k-gru-attention": ("gru", [
        "--data", str(MULTI30K), "--hidden-size", "256", "--num-layers", "1", "--bidirectional",
        "--embed-size", "256", "--embed-dropout", "0.3", "--output-dropout", "0.3", "--attention", "bahdanau"],
        "bidirectional GRU encoder, GRU decoder with additive attention (pytorch-seq2seq 3: 28.30 BLEU)"),
    "multi30k-transformer": ("transformer", [
        "--data", str(MULTI30K), "--hidden-size", "256", "--num-layers", "3", "--num-heads", "8",
        "--ffn-size", "512", "--dropout", "0.1", "--lr", "5e-4", "--label-smoothing", "0.1"],
        "3+3 layers, d 256, 8 heads, ffn 512 (pytorch-seq2seq 6: 36.52 BLEU)"),
}


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def train_throughput(run_dir: Path, steps: int, device) -> dict:
    """Target tokens/s of the real trainer (``benchmarks/lm.py``'s measurement: DefaultTrainer.fit on
    the run's config, timed between two of its task.step calls), counting non-padding target tokens."""
    return zoo_throughput(run_dir, steps, 3, device, count=lambda batch: (batch["tgt"][:, 1:] != 0).sum())


def decoding(run, beam: int, device) -> dict:
    import torch

    from zoo_translation import data
    from zoo_translation.decode import score, signature, translate_ids

    sources = list(run.task.splits_data["test"]["src_ids"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    hyps = translate_ids(run.task, run.model, sources, beam=beam, batch_size=128)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    metrics = score(run.task, hyps, data.references(run.task, "test"))
    return {"beam": beam, "sentences_per_s": len(sources) / seconds, "seconds": seconds, **metrics,
            "signature": signature(run.task)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", nargs="?", choices=sorted(RECIPES))
    p.add_argument("--list", action="store_true", help="List the recipes and their commands.")
    p.add_argument("--out", help="Run directory [default: runs/bench-RECIPE].")
    p.add_argument("--reuse", action="store_true", help="Measure the finished run in --out without training.")
    p.add_argument("--max-steps", type=int, help="Cut the recipe short (smoke run): adds --max-steps N.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--throughput-steps", type=int, default=20)
    args, extra = p.parse_known_args(argv)
    if args.list or not args.recipe:
        for name, (arch, options, what) in RECIPES.items():
            print(f"{name}: {what}\n  zoo train translation {arch} {shlex.join(options)}")
        return
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from zoo_core import run as runs
    from zoo_core.train_loop import resolve_device

    device = resolve_device(args.device)
    out = Path(args.out or f"runs/bench-{args.recipe}")
    print(f"recipe {args.recipe}: {RECIPES[args.recipe][2]}")
    if args.reuse:
        if not (out / "metrics.jsonl").is_file() or not _records(out)[-1].get("final"):
            raise SystemExit(f"{out}: no finished run to reuse; run without --reuse to train it")
        print(f"reusing {out}")
        wall = None
    else:
        extra = ["--device", args.device, *extra] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        arch, options, _ = RECIPES[args.recipe]
        wall = zoo_train("translation", arch, options, out, extra)
    records = _records(out)
    final, last = records[-1], [r for r in records if not r.get("final")][-1]
    print(f"training: {last['step']} steps, {last['epoch']} epochs, "
          + (f"{wall:.0f} s wall, " if wall else "") + f"log time {final.get('time', float('nan')):.0f} s; "
          f"best checkpoint (validation BLEU) at step {final['step']}")
    if wall:
        print(f"peak RSS of the training process {_rss_mb(resource.RUSAGE_CHILDREN):.0f} MiB")
    run = runs.load(out, device=str(device))
    run.task.load_data(None)
    tp = train_throughput(out, args.throughput_steps, device)
    print(f"train: {tp['tokens_per_s']:.0f} target tokens/s (DefaultTrainer.fit, {args.throughput_steps} steps "
          f"after 3 warm-up, {tp['timed_s']:.1f} s)")
    print(f"validation (best): {json.dumps({k: round(v, 3) for k, v in (final.get('validation') or {}).items()})}")
    for beam in (1, 5):
        d = decoding(run, beam, device)
        label = "greedy" if beam == 1 else f"beam {beam}"
        print(f"test_2016 {label}: BLEU {d['bleu']:.2f}, chrF {d['chrf']:.2f}; decoding {d['sentences_per_s']:.1f} "
              f"sentences/s ({d['seconds']:.1f} s for 1000)")
    print(f"sacreBLEU signature: {d['signature']}")
    print(f"peak RSS of this process {_rss_mb():.0f} MiB"
          + (f"; CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()

"""The coursework's adding-task experiment: every architecture at several sequence lengths.

Each run is a real `zoo train addition ARCH` (printed before it runs) with the
same hidden size (128) and depth (2), stopping when validation accuracy reaches
the target or the step budget ends. Prints a table of steps and seconds to the
target (or the best accuracy reached) and writes a comparison plot.

    python benchmarks/addition.py                      # all four architectures x lengths 5 10 30 100
    python benchmarks/addition.py --archs lstm --lengths 30 --max-steps 1000
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_one(arch: str, length: int, args) -> dict:
    out = Path(args.out) / f"{arch}-len{length}"
    cmd = ["zoo", "train", "addition", arch, "--seq-len", str(length), "--hidden-size", "128", "--num-layers", "2",
           "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every), "--target", str(args.target),
           "--seed", str(args.seed), "--out", str(out), "--quiet"]
    print("$ " + shlex.join(cmd), flush=True)
    log = out / "metrics.jsonl"
    wall = None
    if log.exists() and '"final": true' in log.read_text():
        print("  (finished earlier: reusing its metrics)", flush=True)  # so an interrupted benchmark continues
    else:
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return {"arch": arch, "length": length, "error": proc.stderr.strip().splitlines()[-1:]}
    records = [json.loads(line) for line in log.read_text().splitlines()]
    evals = [r for r in records if not r.get("final")]
    hit = next((r for r in evals if r["validation"]["accuracy"] >= args.target), None)
    best = max(evals, key=lambda r: r["validation"]["accuracy"])
    final = records[-1]
    return {"arch": arch, "length": length, "reached": hit is not None,
            "steps": hit["step"] if hit else best["step"], "seconds": hit["time"] if hit else best["time"],
            "best_valid": best["validation"]["accuracy"], "test": final["test"]["accuracy"],
            "curve": [(r["step"], r["validation"]["accuracy"]) for r in evals], "wall": wall}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    archs = sorted({r["arch"] for r in results})
    for arch in archs:
        rows = sorted((r for r in results if r["arch"] == arch and "error" not in r), key=lambda r: r["length"])
        axes[0].plot([r["length"] for r in rows], [r["test"] for r in rows], marker="o", label=arch)
        longest = rows[-1] if rows else None
        if longest:
            steps, acc = zip(*longest["curve"])
            axes[1].plot(steps, acc, marker=".", label=f"{arch} (length {longest['length']})")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("sequence length")
    axes[0].set_ylabel("test accuracy (best checkpoint)")
    axes[0].set_title("Adding task: accuracy against sequence length")
    axes[1].set_xlabel("optimizer step (batch 128)")
    axes[1].set_ylabel("validation accuracy")
    axes[1].set_title("Learning curves at the longest length")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="rnn,gru,lstm,transformer")
    p.add_argument("--lengths", default="5,10,30,100")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench-addition")
    args = p.parse_args()
    results = [run_one(a, int(n), args) for a in args.archs.split(",") for n in args.lengths.split(",")]
    print(f"\n| arch | length | reached {args.target:.0%} | steps | seconds | best valid acc | test acc |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['arch']} | {r['length']} | error: {r['error']} |||||")
            continue
        print(f"| {r['arch']} | {r['length']} | {'yes' if r['reached'] else 'no'} | {r['steps']} | "
              f"{r['seconds']:.0f} | {r['best_valid']:.4f} | {r['test']:.4f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, Path(args.out) / "addition.png")
    print(f"\nplot: {Path(args.out) / 'addition.png'}")


if __name__ == "__main__":
    main()

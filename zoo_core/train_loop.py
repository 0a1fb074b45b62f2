"""The default training loop (see :class:`zoo_core.trainer.DefaultTrainer`).

No host synchronisation per step: losses, metric counts and the first step
with a non-finite loss accumulate on the device and are read every
``log_every`` steps and before every checkpoint, so no checkpoint ever holds
weights from after a non-finite loss. Data order, initialisation and dropout
are functions of the seed, and resume restores the RNG and the carried
recurrent state, so a resumed run equals an uninterrupted one (bitwise on CPU).

Ctrl-C or SIGTERM finishes the current step, saves the resume state and exits
(:class:`Interrupted`); a second one stops at once, keeping the last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zoo_core import card, checkpoint, plots
from zoo_core.config import ZooError
from zoo_core.nn import detach_state, to_device


class TrainingStopped(ZooError):
    pass


class Interrupted(ZooError):
    exit_code = 130


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def lr_at(cfg, step: int, epoch: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) in ``epoch``; a pure function, so resume needs no scheduler state."""
    lr = cfg.lr
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        lr /= cfg.lr_decay ** (step // cfg.decay_every)
    elif cfg.schedule == "decay_per_epoch":
        lr /= cfg.lr_decay ** max(0, epoch - cfg.decay_start + 1)
    elif cfg.schedule == "cosine" and cfg.max_steps:
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        lr = cfg.min_lr + 0.5 * (lr - cfg.min_lr) * (1 + math.cos(math.pi * t))
    return lr


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _Distributed:
    """DistributedDataParallel when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""

    def __init__(self, device: torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.active = self.world_size > 1
        if self.active and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def ranks_agree(self, model: torch.nn.Module) -> bool:
        """Every rank holds the same weights (DDP keeps replicas in sync; this checks it really did)."""
        flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
        checksum = torch.stack([flat.sum(), flat.abs().sum(), (flat * torch.arange(len(flat), device=flat.device)
                                                             .remainder(97)).sum()]).double()
        gathered = [torch.zeros_like(checksum) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, checksum)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _Progress:
    """A tqdm bar on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, total: int | None, initial: int, enabled: bool):
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, step: int, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(text, refresh=True)
        else:
            print(f"step {step}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _better(task, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if task.mode == "max" else new < best


def fit(run) -> dict[str, Any]:
    cfg = run.trainer_config
    task = run.task
    out = Path(run.directory)
    device = resolve_device(cfg.device)
    dist = _Distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    model = run.model.to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    amp = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    log_path = out / "metrics.jsonl"

    state = {"step": 0, "epoch": 0, "batch": 0, "best": None, "best_step": None, "bad_evals": 0, "elapsed": 0.0}
    resumed_carry, resumed_sums = None, {}
    if run.resume:
        state = checkpoint.load_resume(out, model, optimizer, device=str(device))
        resumed_carry = state.pop("carry", None)
        resumed_sums = state.pop("train_sums", None) or {}
        _truncate_log(log_path, state["step"])
    elif dist.main and run.init:
        checkpoint.load_weights(model, Path(run.init) / checkpoint.WEIGHTS, device=str(device))
    wrapped = dist.wrap(model, device)

    stop = {"signal": None}

    def on_signal(signum, frame):  # finish the current step, then checkpoint and exit
        if stop["signal"] is not None:  # asked twice: stop now, the last checkpoint stays
            raise KeyboardInterrupt
        stop["signal"] = signum

    old_handlers = {}
    if dist.main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread (embedded use): signals keep their meaning
                pass

    progress = _Progress(cfg.max_steps, state["step"], dist.main)
    # training stats summed since the last evaluation; saved on resume so the next record is unchanged
    sums: dict[str, torch.Tensor] = {k: torch.tensor(v, dtype=torch.float64, device=device)
                                     for k, v in resumed_sums.items()}
    started = time.perf_counter() - state["elapsed"]

    def elapsed() -> float:
        return time.perf_counter() - started

    def log(record: dict[str, Any]) -> None:
        if dist.main:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    # 0-based index of the first step whose loss was not finite (-1: none), kept on the device so
    # that checking it costs no host sync per step; read by check_finite() before any checkpoint.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    saved = {"step": state["step"] if run.resume else None}
    carry = None

    def check_finite() -> None:
        bad = int(first_bad)
        if bad >= 0:
            kept = (f"kept the checkpoint from step {saved['step']} in {out}; continue from it with "
                    f"`zoo train --resume {out} --on-nan skip` or a lower --lr" if saved["step"] is not None
                    else "no checkpoint was saved; lower --lr, raise clipping, or pass --on-nan skip")
            raise TrainingStopped(f"non-finite loss at step {bad + 1}; stopped; {kept}")

    def save_resume() -> None:
        if dist.main:
            keep = carry if state["batch"] else None  # an epoch starts with no carried state
            train_sums = {k: float(v) for k, v in sums.items()}  # exact: doubles round-trip through JSON
            checkpoint.save_resume(out, model, optimizer, {**state, "elapsed": elapsed(), "train_sums": train_sums},
                                   carry=keep)
            saved["step"] = state["step"]

    def evaluate_and_checkpoint() -> bool:
        """Validation, best checkpoint, resume state; returns True when early stopping triggers."""
        check_finite()
        train = task.summarize({k: float(v) for k, v in sums.items()}) if sums else {}
        sums.clear()
        state["last_eval"] = state["step"]
        valid = task.evaluate(model, "validation", eval_bs)
        record = {"step": state["step"], "epoch": state["epoch"], "time": round(elapsed(), 3),
                  "lr": optimizer.param_groups[0]["lr"], "train": train, "validation": valid}
        log(record)
        value = valid.get(task.metric)
        improved = value is not None and math.isfinite(value) and _better(task, value, state["best"])
        if improved:
            state.update(best=value, best_step=state["step"], best_validation=valid, bad_evals=0)
            if dist.main:
                checkpoint.save_weights(model, out / checkpoint.WEIGHTS)
        else:
            state["bad_evals"] += 1
        save_resume()
        progress.update(state["step"], f"valid {_fmt(valid)}" + (" *" if improved else ""))
        reached = cfg.target is not None and value is not None and (
            value >= cfg.target if task.mode == "max" else value <= cfg.target)
        return bool(reached or (cfg.early_stopping and state["bad_evals"] >= cfg.early_stopping))

    def done() -> bool:
        return (cfg.max_steps is not None and state["step"] >= cfg.max_steps) or (
            cfg.max_epochs is not None and state["epoch"] >= cfg.max_epochs)

    model.train()
    stopped_early = False
    try:
        if not run.resume:
            save_resume()  # from the first step on, the run directory holds a complete checkpoint
        while not done() and not stopped_early:
            carry, resumed_carry = resumed_carry, None  # recurrent state is reset at each epoch start
            batches = task.batches("train", cfg.batch_size, epoch=state["epoch"], seed=cfg.seed,
                                   start=state["batch"], rank=dist.rank, world_size=dist.world_size)
            for batch in batches:
                batch = to_device(batch, device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(cfg, state["step"], state["epoch"])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    result = task.step(wrapped, batch, carry)
                carry = detach_state(result.state)
                optimizer.zero_grad(set_to_none=True)
                result.loss.backward()
                if cfg.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                finite = torch.isfinite(result.loss.detach())
                if cfg.on_nan == "skip":
                    # one host sync per step, paid only by those who ask for skipping
                    if not finite:
                        state["step"] += 1
                        state["batch"] += 1
                        continue
                else:
                    first_bad = torch.where((first_bad < 0) & ~finite, state["step"], first_bad)
                optimizer.step()
                for k, v in result.stats.items():
                    sums[k] = sums.get(k, 0) + v.detach().double()
                state["step"] += 1
                state["batch"] += 1
                if state["step"] % cfg.log_every == 0 or stop["signal"]:
                    check_finite()
                    progress.update(state["step"], _fmt(task.summarize({k: float(v) for k, v in sums.items()}))
                                    + f" lr {optimizer.param_groups[0]['lr']:.3g}")
                # evaluate before honouring a signal: an evaluation due at this step belongs to it, and a
                # resumed run would skip it (its log would then differ from an uninterrupted run's)
                if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                    stopped_early = evaluate_and_checkpoint()
                if stop["signal"]:
                    save_resume()
                    progress.close()
                    name = signal.Signals(stop["signal"]).name
                    raise Interrupted(f"{name} at step {state['step']}; checkpoint saved; continue with: "
                                      f"zoo train --resume {out}")
                if done() or stopped_early:
                    break
            else:
                state["epoch"] += 1
                state["batch"] = 0
                if not cfg.eval_every or done():
                    stopped_early = evaluate_and_checkpoint()
        if state.get("last_eval") != state["step"]:
            stopped_early = evaluate_and_checkpoint() or stopped_early
    except KeyboardInterrupt:
        # mid-step or mid-save: the weights in memory may be half-updated, so nothing is written
        progress.close()
        kept = (f"kept the checkpoint from step {saved['step']}; continue with: zoo train --resume {out}"
                if saved["step"] is not None else "no checkpoint was saved")
        raise Interrupted(f"stopped at once near step {state['step']}; {kept}") from None
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    progress.close()

    # The final report uses the best checkpoint, as users will.
    result: dict[str, Any] = {"best_step": state["best_step"], "validation_best": state["best"],
                              "stopped_early": stopped_early, "steps": state["step"], "time": round(elapsed(), 3)}
    if dist.active:
        result["distributed"] = {"world_size": dist.world_size, "ranks_agree": dist.ranks_agree(model)}
    if dist.main and (out / checkpoint.WEIGHTS).exists():
        checkpoint.load_weights(model, out / checkpoint.WEIGHTS, device=str(device))
        test = task.evaluate(model, "test", eval_bs) if "test" in task.splits else {}
        valid = state["best_validation"]  # measured when the best checkpoint was saved: same weights, same data
        log({"step": state["best_step"], "epoch": state["epoch"], "time": round(elapsed(), 3), "final": True,
             "validation": valid, "test": test, **({"distributed": result["distributed"]} if dist.active else {})})
        result.update(validation=valid, test=test)
        card.write_card(out, run, result)
        plots.plot_run(out)
    dist.close()
    return result


def _truncate_log(path: Path, step: int) -> None:
    """Drop records written after the resume point so the log reads as one uninterrupted run."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill during the append
            continue
        if isinstance(record, dict) and (record.get("step") or 0) <= step and not record.get("final"):
            keep.append(line)
    checkpoint.atomic_write(path, "".join(line + "\n" for line in keep))

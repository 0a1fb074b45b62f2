"""``zoo analyze``: loss by position within the BPTT window, and gradient norms back through time.

Both work for any backbone. The gradient figure differentiates the loss at the last position of a
window with respect to the backbone's *input* at every earlier position (the embedded token, the
one per-position hidden state every architecture has): for a recurrent net this decays with the
distance (vanishing gradients); for attention it does not have to.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo_core.nn import detach_state
from zoo_lm.data import _windows, columns
from zoo_lm.model import eval_columns


def _data(task, split: str, batch_size: int) -> torch.Tensor:
    stream = task.streams[split]
    return columns(stream, eval_columns(split, batch_size, len(stream), task.config.bptt))


@torch.no_grad()
def per_step_loss(task, model, split: str = "validation", batch_size: int = 20,
                  max_batches: int | None = None) -> list[tuple[int, float, int]]:
    """(position in window, mean loss, count) over the full windows of ``split``, state carried."""
    device = next(model.parameters()).device
    bptt = task.config.bptt
    model.eval()
    sums = torch.zeros(bptt, dtype=torch.float64, device=device)
    count, state = 0, None
    for k, batch in enumerate(_windows(_data(task, split, batch_size), bptt)):
        if max_batches is not None and k >= max_batches:
            break
        x, y = batch["x"].to(device), batch["y"].to(device)
        logits, state = model(x, state if model.stateful else None)
        if x.shape[1] != bptt:   # the short last window would skew the late positions
            continue
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")   # [B, T]
        sums += loss.sum(0).double()
        count += x.shape[0]
    if count == 0:
        return []
    return [(t, float(v) / count, count) for t, v in enumerate(sums.tolist())]


def grad_norms(task, model, split: str = "validation", batch_size: int = 20,
               max_batches: int | None = 10) -> list[tuple[int, int, float]]:
    """(position, distance from the last position, mean ||d loss_last / d input_position||) over windows."""
    device = next(model.parameters()).device
    bptt = task.config.bptt
    model.eval()
    sums = torch.zeros(bptt, dtype=torch.float64, device=device)
    windows, state = 0, None
    # cuDNN's RNN backward refuses eval mode; the native kernels do not.
    with torch.backends.cudnn.flags(enabled=False):
        for batch in _windows(_data(task, split, batch_size), bptt):
            if max_batches is not None and windows >= max_batches:
                break
            x, y = batch["x"].to(device), batch["y"].to(device)
            if x.shape[1] != bptt:
                break
            with torch.enable_grad():
                e = model.embed_tokens(x).detach().requires_grad_(True)
                logits, new_state = model.forward_embedded(e, state if model.stateful else None)
                loss = F.cross_entropy(logits[:, -1].float(), y[:, -1], reduction="sum")
                (grad,) = torch.autograd.grad(loss, e)
            sums += grad.norm(dim=-1).mean(0).double()
            state = detach_state(new_state)
            windows += 1
    if windows == 0:
        return []
    return [(t, bptt - 1 - t, float(v) / windows) for t, v in enumerate(sums.tolist())]


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def plot(path: Path, xs, ys, *, xlabel: str, ylabel: str, title: str, log_y: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(xs, ys, marker="o", markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)

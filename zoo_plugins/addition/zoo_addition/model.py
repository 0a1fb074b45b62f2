"""Embedding -> any backbone (encoder role) -> pooled output -> 19-way classifier."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core import StepOutput
from zoo_addition import CLASSES, VOCAB


class AdditionModel(nn.Module):
    def __init__(self, backbone: nn.Module, embed_size: int, pooling: str):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embed_size)
        self.backbone = backbone
        self.head = nn.Linear(backbone.d_model, CLASSES)
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.backbone(self.embed(x))          # [B, T, d_model]
        h = y[:, -1] if self.pooling == "last" else y.mean(dim=1)
        return self.head(h)                         # [B, 19] logits


def step(model, batch) -> StepOutput:
    logits = model(batch["x"])
    loss = F.cross_entropy(logits.float(), batch["y"])
    n = batch["y"].numel()
    stats = {"loss_sum": loss.detach() * n, "correct": (logits.argmax(-1) == batch["y"]).sum(),
             "count": torch.tensor(n, device=loss.device)}
    return StepOutput(loss, stats)


@functools.lru_cache(maxsize=1)
def accuracy_metric():
    """The accuracy ``evaluate`` module shipped inside this package (nothing is fetched)."""
    import evaluate

    return evaluate.load(str(Path(__file__).parent / "metrics" / "accuracy" / "accuracy.py"), keep_in_memory=True)


@torch.no_grad()
def evaluate(task, model, split: str, batch_size: int) -> dict[str, float]:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, refs, loss_sum = [], [], torch.zeros((), dtype=torch.float64, device=device)
    for batch in task.batches(split, batch_size):
        x, y = batch["x"].to(device), batch["y"].to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        preds.append(logits.argmax(-1).cpu())
        refs.append(y.cpu())
    model.train(was_training)
    preds_t, refs_t = torch.cat(preds), torch.cat(refs)
    acc = accuracy_metric().compute(predictions=preds_t.tolist(), references=refs_t.tolist())["accuracy"]
    return {"loss": float(loss_sum) / len(refs_t), "accuracy": float(acc)}


@torch.no_grad()
def predict(model, tokens: list[int]) -> str:
    device = next(model.parameters()).device
    logits = model(torch.tensor([tokens], device=device))
    return str(int(logits.argmax(-1)))

"""Embedding -> any backbone (decoder role, causal) -> softmax layer over the vocabulary.

Shapes: B batch (columns of the stream), T window length, E embed_size, D backbone.d_model, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core import StepOutput


class LanguageModel(nn.Module):
    """``forward(ids [B, T], state) -> (logits [B, T, V], state)``.

    With ``tie_weights`` the output layer is the embedding matrix (Press & Wolf 2017, Inan et al.
    2017). It maps from E, so when the backbone width D differs a bias-free ``proj`` D -> E comes
    first; without tying the output layer maps from D directly.
    ``stateful`` says whether ``state`` should be carried from one window to the next (recurrent
    backbones); an attention backbone's state is its key/value cache, used only for generation.
    """

    def __init__(self, backbone: nn.Module, vocab_size: int, embed_size: int, *, tie_weights: bool = False,
                 embed_dropout: float = 0.0, output_dropout: float = 0.0, init_range: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.embed_drop = nn.Dropout(embed_dropout)
        self.backbone = backbone
        self.out_drop = nn.Dropout(output_dropout)
        d = backbone.d_model
        self.proj = nn.Linear(d, embed_size, bias=False) if tie_weights and d != embed_size else None
        self.decoder = nn.Linear(embed_size if tie_weights else d, vocab_size)
        nn.init.uniform_(self.embed.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embed.weight
        else:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)
        self.stateful = bool(getattr(backbone, "stateful", False))

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed_drop(self.embed(ids))

    def forward_embedded(self, x: torch.Tensor, state: Any = None, last_only: bool = False
                         ) -> tuple[torch.Tensor, Any]:
        y, state = self.backbone(x, state=state)
        if last_only:   # sampling needs the next token's logits only: skip the softmax layer elsewhere
            y = y[:, -1:]
        y = self.out_drop(y)
        if self.proj is not None:
            y = self.proj(y)
        return self.decoder(y), state

    def forward(self, ids: torch.Tensor, state: Any = None, last_only: bool = False) -> tuple[torch.Tensor, Any]:
        return self.forward_embedded(self.embed_tokens(ids), state, last_only)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)   # DistributedDataParallel


def step(model: nn.Module, batch: dict[str, torch.Tensor], state: Any = None) -> StepOutput:
    stateful = _unwrap(model).stateful
    logits, state = model(batch["x"], state if stateful else None)
    y = batch["y"]
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    n = y.numel()
    stats = {"loss_sum": loss.detach() * n, "count": torch.tensor(float(n), device=loss.device)}
    return StepOutput(loss, stats, state if stateful else None)


def eval_columns(split: str, batch_size: int, n_tokens: int, bptt: int) -> int:
    """Columns for evaluation: 1 for test (one continuous sequence, the PTB convention); otherwise
    ``batch_size`` capped so every column still holds a full window."""
    if split == "test":
        return 1
    return max(1, min(batch_size, (n_tokens - 1) // (bptt + 1)))


def eval_window(model: nn.Module, bptt: int, rows: int) -> int:
    """Window length for evaluation. With a carried state a recurrent model's losses do not depend on
    where the stream is cut, so it reads long windows (few calls; test at batch 1 is ~50x faster),
    keeping the logits under ~2^25 floats. An attention model keeps the training window (its context)."""
    if not model.stateful:
        return bptt
    return max(bptt, min(2048, (1 << 25) // (rows * model.decoder.out_features)))


@torch.no_grad()
def evaluate(task, model: nn.Module, split: str, batch_size: int) -> dict[str, float]:
    """Mean loss over every next-token prediction of the split, state carried across windows."""
    from zoo_lm import metrics_from_loss
    from zoo_lm.data import _windows, columns

    net = _unwrap(model)
    device = next(net.parameters()).device
    stream = task.streams[split]
    bptt = task.config.bptt
    data = columns(stream, eval_columns(split, batch_size, len(stream), bptt))
    window = eval_window(net, bptt, data.shape[0])
    was_training = net.training
    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count, state = 0, None
    for batch in _windows(data, window):
        x, y = batch["x"].to(device), batch["y"].to(device)
        logits, state = net(x, state if net.stateful else None)
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        count += y.numel()
    net.train(was_training)
    return metrics_from_loss(float(loss_sum) / max(count, 1), task.config.level)

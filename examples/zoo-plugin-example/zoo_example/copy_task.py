"""The copy task's data, model and decoding (torch side).

A sequence is ``x SEP x``: ``length`` random symbols, a separator, then the
same symbols again. A causal decoder reads it shifted by one (next-token
prediction); the loss counts only the copied half, which the model can only
get right by remembering the first half.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core import StepOutput

_SPLIT = {"train": 0, "validation": 1, "test": 2}


def make_sequences(n: int, length: int, symbols: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 2 * length + 1] token ids: x, SEP (= symbols), x."""
    x = torch.randint(0, symbols, (n, length), generator=generator)
    sep = torch.full((n, 1), symbols)
    return torch.cat([x, sep, x], dim=1)


def _generator(*seeds: int) -> torch.Generator:
    g = torch.Generator()
    # a hash of all the seeds, stable across processes; 32 bits because torch's CPU generator
    # (mt19937) only uses the low 32 bits of its seed
    g.manual_seed(int.from_bytes(hashlib.sha256(repr(seeds).encode()).digest()[:4], "little"))
    return g


def make_splits(cfg) -> dict[str, torch.Tensor]:
    sizes = {"train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size}
    return {s: make_sequences(n, cfg.length, cfg.symbols, _generator(cfg.data_seed, _SPLIT[s]))
            for s, n in sizes.items()}


def batches(seqs: torch.Tensor, split: str, batch_size: int, *, epoch, seed, start, rank, world_size):
    if split == "train":  # shuffled from (seed, epoch), trimmed so every rank gets as many full batches
        order = torch.randperm(len(seqs), generator=_generator(seed, epoch))
        order = order[: len(order) - len(order) % (batch_size * world_size)][rank::world_size]
        n_batches = len(order) // batch_size
    else:
        order = torch.arange(len(seqs))
        n_batches = -(-len(seqs) // batch_size)
    for b in range(start, n_batches):
        yield {"seq": seqs[order[b * batch_size:(b + 1) * batch_size]]}


class CopyModel(nn.Module):
    """Embedding -> any backbone (decoder role) -> a head over the symbols (never the separator)."""

    def __init__(self, backbone: nn.Module, embed_size: int, symbols: int):
        super().__init__()
        self.embed = nn.Embedding(symbols + 1, embed_size)
        self.backbone = backbone
        self.head = nn.Linear(backbone.d_model, symbols)

    def forward(self, tokens: torch.Tensor, state=None):
        """``tokens``: [B, T] -> logits [B, T, symbols] and the backbone's state (to continue decoding)."""
        y, state = self.backbone(self.embed(tokens), state=state)
        return self.head(y), state


def step(model, batch, length: int) -> StepOutput:
    seq = batch["seq"]
    logits, _ = model(seq[:, :-1])
    logits, target = logits[:, -length:].float(), seq[:, -length:]   # the copied half: [B, L, S], [B, L]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    right = logits.argmax(-1) == target
    n = target.numel()
    stats = {"loss_sum": loss.detach() * n, "correct": right.sum(), "count": torch.tensor(n, device=loss.device),
             "sequences_correct": right.all(dim=1).sum(), "sequences": torch.tensor(len(seq), device=loss.device)}
    return StepOutput(loss, stats)


@torch.no_grad()
def generate(model, tokens: list[int]) -> list[int]:
    """Greedy decoding: read ``tokens SEP`` in one call, then one symbol per step, carrying the state."""
    device = next(model.parameters()).device
    symbols = model.head.out_features
    logits, state = model(torch.tensor([tokens + [symbols]], device=device))
    out = []
    for _ in range(len(tokens)):
        nxt = logits[:, -1].argmax(-1)          # [1]
        out.append(int(nxt))
        logits, state = model(nxt[:, None], state=state)
    return out

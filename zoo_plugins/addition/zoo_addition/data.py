"""Generated examples: deterministic from seeds, cheap enough to regenerate per batch (fresh_data)."""

from __future__ import annotations

import torch

from zoo_addition import MARKER

_SPLIT_OFFSET = {"train": 0, "validation": 1, "test": 2}


def make_examples(n: int, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``: [n, seq_len] token ids; ``y``: [n] sums in 0..18."""
    x = torch.randint(0, 10, (n, seq_len), generator=generator)
    pos = torch.randint(0, seq_len - 2, (n,), generator=generator)  # marker in [0, seq_len-3]
    rows = torch.arange(n)
    y = x[rows, pos + 1] + x[:, -1]
    x[rows, pos] = MARKER
    return x, y


def _gen(*seeds: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(hash(seeds) & 0x7FFF_FFFF_FFFF)  # tuple hashes of ints are stable across processes
    return g


def make_splits(cfg) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    sizes = {"train": 0 if cfg.fresh_data else cfg.train_size, "validation": cfg.validation_size,
             "test": cfg.test_size}
    return {s: make_examples(n, cfg.seq_len, _gen(cfg.data_seed, _SPLIT_OFFSET[s])) for s, n in sizes.items()}


def batches(task, split, batch_size, *, epoch, seed, start, rank, world_size):
    cfg = task.config
    if split == "train" and cfg.fresh_data:
        # as many batches per "epoch" as the fixed set would give, each drawn anew from its own seed
        per_epoch = max(1, cfg.train_size // (batch_size * world_size))
        for b in range(start, per_epoch):
            yield dict(zip(("x", "y"), make_examples(batch_size, cfg.seq_len,
                                                     _gen(cfg.data_seed, 3, seed, epoch, b, rank))))
        return
    x, y = task.data[split]
    if split == "train":
        order = torch.randperm(len(x), generator=_gen(seed, epoch))
        order = order[: len(order) - len(order) % (batch_size * world_size)]  # equal full batches on every rank
        order = order[rank::world_size]
        n_batches = len(order) // batch_size
    else:
        order = torch.arange(len(x))
        n_batches = -(-len(x) // batch_size)
    for b in range(start, n_batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield {"x": x[idx], "y": y[idx]}

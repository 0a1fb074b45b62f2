"""A diagonal linear state-space backbone: per channel, ``h_t = a * h_{t-1} + sqrt(1 - a^2) * (B x_t)``.

Each layer is ``y = x + W_out gelu(h)`` with ``h`` that recurrence over
``LayerNorm(x)``. The decay ``a = exp(-exp(nu))`` stays in (0, 1), so the
recurrence is stable at any length; the ``sqrt(1 - a^2)`` input scale keeps the
state's variance near the input's (as in the LRU, Orvieto et al. 2023). The
update is linear and elementwise, so training could use a parallel scan; this
example loops over time for clarity, and that loop is exactly the one-step
decoder, which is why stepping equals the full call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core.nn import Backbone


class DiagonalSSMLayer(nn.Module):
    def __init__(self, width: int, decay_min: float, decay_max: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inp = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        # decays spread uniformly over [decay_min, decay_max]: some channels remember long, some short
        a = torch.empty(width).uniform_(decay_min, decay_max)
        self.nu = nn.Parameter(torch.log(-torch.log(a)))

    def forward(self, x: torch.Tensor, h: torch.Tensor, keep: torch.Tensor | None):
        """``x``: [B, T, W]; ``h``: [B, W] initial state; ``keep``: [B, T] bool or None.
        Returns ([B, T, W], final state [B, W])."""
        a = torch.exp(-torch.exp(self.nu))                        # [W], in (0, 1)
        u = self.inp(self.norm(x)) * torch.sqrt(1 - a * a)       # [B, T, W]
        a = a.expand_as(u)
        if keep is not None:  # padding holds the state: the final state is the one at the last real position
            k = keep.unsqueeze(-1)
            a, u = torch.where(k, a, torch.ones_like(a)), torch.where(k, u, torch.zeros_like(u))
        hs = []
        for t in range(x.shape[1]):
            h = a[:, t] * h + u[:, t]
            hs.append(h)
        return x + self.out(F.gelu(torch.stack(hs, dim=1))), h


class DiagonalSSMBackbone(Backbone):
    """Causal in both roles (an encoder reads left to right too); ``memory`` is accepted and ignored:
    as with the recurrent architectures, an encoder's final state is the decoder's context."""

    stateful = True

    def __init__(self, d_in: int, role: str, width: int, num_layers: int, decay_min: float, decay_max: float):
        super().__init__()
        self.role, self.d_model = role, width
        self.proj = nn.Linear(d_in, width) if d_in != width else nn.Identity()
        self.layers = nn.ModuleList(DiagonalSSMLayer(width, decay_min, decay_max) for _ in range(num_layers))

    def forward(self, x, *, state=None, mask=None, memory=None, memory_mask=None):
        """``state``: [num_layers, B, width] (zeros when None); returns it after the last (real) position."""
        y = self.proj(x)
        if state is None:
            state = y.new_zeros(len(self.layers), y.shape[0], self.d_model)
        finals = []
        for layer, h in zip(self.layers, state):
            y, h = layer(y, h, mask)
            finals.append(h)
        return y, torch.stack(finals)

    def reorder_state(self, state, index):
        """Beam search: the state of batch rows ``index``; the batch is dim 1 of [num_layers, B, width]."""
        return state.index_select(1, index)


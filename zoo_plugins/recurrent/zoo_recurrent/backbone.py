"""RecurrentBackbone: RNN, GRU or LSTM, fused (torch) or reference (the cell equations written out).

Both implementations hold the same parameters under the same names
(``rnn.weight_ih_l0``, ``rnn.bias_hh_l1_reverse``, ...), so a state_dict moves
between them and the reference path checks the fused one.

Shapes: B batch, T time, H hidden_size, L num_layers, D directions (1 or 2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo_core.api import ROLES
from zoo_core.nn import Backbone, select_rows

GATES = {"rnn": 1, "gru": 3, "lstm": 4}   # blocks stacked in weight_ih/weight_hh, in torch's order
FUSED = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class ReferenceRecurrent(nn.Module):
    """nn.RNN / nn.GRU / nn.LSTM (batch_first) from PyTorch's documented equations, same parameter names.

    ``forward(x [B,T,in], hx, mask [B,T] | None) -> (y [B,T,D*H], hn)``, with
    ``hx``/``hn`` laid out like torch: ``h`` or ``(h, c)``, each ``[L*D, B, H]``
    indexed ``layer * D + direction``. Where ``mask`` is False the state is
    held, so each row ends at its last real token; ``y`` is zero there, as
    ``pad_packed_sequence`` gives.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool, nonlinearity: str = "tanh"):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers, self.dropout = cell, hidden_size, num_layers, dropout
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        self.nonlinearity = nonlinearity
        self.activation = torch.tanh if nonlinearity == "tanh" else torch.relu
        gh = GATES[cell] * hidden_size
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * len(self.suffixes)
            for sfx in self.suffixes:
                self.register_parameter(f"weight_ih_l{layer}{sfx}", nn.Parameter(torch.empty(gh, n_in)))
                self.register_parameter(f"weight_hh_l{layer}{sfx}", nn.Parameter(torch.empty(gh, hidden_size)))
                self.register_parameter(f"bias_ih_l{layer}{sfx}", nn.Parameter(torch.empty(gh)))
                self.register_parameter(f"bias_hh_l{layer}{sfx}", nn.Parameter(torch.empty(gh)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)   # torch's init, so both impls start alike in distribution
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def step(self, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        """One cell update from the input and hidden projections ``gi``, ``gh`` ([B, gates*H])."""
        if self.cell == "rnn":
            return self.activation(gi + gh), None
        if self.cell == "gru":
            i_r, i_z, i_n = gi.chunk(3, -1)
            h_r, h_z, h_n = gh.chunk(3, -1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)   # r gates (W_hn h + b_hn), bias included, as torch does
            return (1 - z) * n + z * h, None
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor, hx: Any = None, mask: torch.Tensor | None = None):
        B, T, _ = x.shape
        D, H = len(self.suffixes), self.hidden_size
        if hx is None:
            zeros = x.new_zeros(self.num_layers * D, B, H)
            hx = (zeros, zeros) if self.cell == "lstm" else zeros
        h0, c0 = hx if self.cell == "lstm" else (hx, None)
        hn, cn = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            outs = []
            for d, sfx in enumerate(self.suffixes):
                k = layer * D + d
                # input projections of all steps at once: [B, T, gates*H]
                gi = F.linear(x, getattr(self, f"weight_ih_l{layer}{sfx}"), getattr(self, f"bias_ih_l{layer}{sfx}"))
                w_hh, b_hh = getattr(self, f"weight_hh_l{layer}{sfx}"), getattr(self, f"bias_hh_l{layer}{sfx}")
                h, c = h0[k], (c0[k] if c0 is not None else None)
                ys: list[torch.Tensor | None] = [None] * T   # filled in time order, whichever the direction
                for t in (range(T - 1, -1, -1) if sfx else range(T)):
                    h_new, c_new = self.step(gi[:, t], F.linear(h, w_hh, b_hh), h, c)
                    if mask is None:
                        h, c = h_new, c_new
                    else:   # padded steps hold the state: backward runs start at the last real token
                        m = mask[:, t, None]
                        h = torch.where(m, h_new, h)
                        c = torch.where(m, c_new, c) if c is not None else None
                    ys[t] = h
                outs.append(torch.stack(ys, 1))
                hn.append(h)
                cn.append(c)
            x = torch.cat(outs, -1)   # [B, T, D*H], the next layer's input
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0.0)
        h = torch.stack(hn)
        return x, ((h, torch.stack(cn)) if self.cell == "lstm" else h)


class RecurrentBackbone(Backbone):
    """A stacked RNN/GRU/LSTM; ``y`` is ``[B, T, d_model]``, ``state`` is ``h`` or ``(h, c)``, each ``[L*D, B, H]``.

    - ``mask`` ([B, T], True at real tokens, padding at the end): each row's
      final state is taken at its last real token, so a padded row gives the
      same results as the row alone.
    - A bidirectional encoder returns its final state *bridged* to ``[L, B, H]``,
      the shape a unidirectional decoder of the same config takes:
      ``h = tanh(W_h [h_fwd; h_bwd] + b_h)`` per layer (and ``c = W_c [c_fwd; c_bwd] + b_c``
      for an LSTM, not squashed, as a cell state is unbounded). This is the
      learned decoder initialisation of Bahdanau et al. (2015), which uses the
      backward state; concatenating both keeps the left-to-right summary too.
      Its initial ``state``, if given, keeps torch's layout ``[L*2, B, H]``.
    - ``memory``/``memory_mask`` are accepted and ignored: attention over the
      encoder outputs belongs to the translation task's head, not the backbone.
    """

    stateful = True

    def __init__(self, cell: str, d_in: int, *, role: str, hidden_size: int, num_layers: int, dropout: float = 0.0,
                 bidirectional: bool = False, impl: str = "fused", nonlinearity: str = "tanh"):
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if bidirectional and role == "decoder":
            raise ValueError("a decoder cannot be bidirectional")
        self.cell, self.role, self.impl = cell, role, impl
        self.d_model = hidden_size * (2 if bidirectional else 1)
        if impl == "fused":
            extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
            self.rnn = FUSED[cell](d_in, hidden_size, num_layers, batch_first=True, dropout=dropout,
                                   bidirectional=bidirectional, **extra)
        else:
            self.rnn = ReferenceRecurrent(cell, d_in, hidden_size, num_layers, dropout, bidirectional, nonlinearity)
        self.bridge_h = nn.Linear(2 * hidden_size, hidden_size) if bidirectional else None
        self.bridge_c = nn.Linear(2 * hidden_size, hidden_size) if bidirectional and cell == "lstm" else None

    def forward(self, x: torch.Tensor, *, state: Any = None, mask: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Any]:
        if mask is not None and bool(mask.all()):
            mask = None   # nothing padded: skip packing / masked updates
        if self.impl == "reference":
            y, state = self.rnn(x, state, mask)
        elif mask is None:
            y, state = self.rnn(x, state)
        else:
            lengths = mask.sum(1).cpu()   # pack_padded_sequence wants lengths on the CPU
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, state = self.rnn(packed, state)   # torch restores the batch order of the state
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        if self.bridge_h is not None:
            state = self._bridge(state)
        return y, state

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        """``h`` (and ``c``) are ``[layers, batch, hidden]``: the batch is dim 1."""
        return select_rows(state, index, dim=1)

    def _bridge(self, state: Any) -> Any:
        """``[L*2, B, H]`` (per layer: forward, backward) -> ``[L, B, H]``."""
        def join(s: torch.Tensor) -> torch.Tensor:   # [L*2, B, H] -> [L, B, 2H]
            L2, B, H = s.shape
            return s.view(L2 // 2, 2, B, H).permute(0, 2, 1, 3).reshape(L2 // 2, B, 2 * H)

        if self.cell == "lstm":
            h, c = state
            return torch.tanh(self.bridge_h(join(h))), self.bridge_c(join(c))
        return torch.tanh(self.bridge_h(join(state)))

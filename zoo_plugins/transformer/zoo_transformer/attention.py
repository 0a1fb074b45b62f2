"""Multi-head attention with torch.nn.MultiheadAttention's parameter layout.

Parameters are named and shaped like ``nn.MultiheadAttention(E, H, batch_first=True)``
(``in_proj_weight`` [3E, E] stacking W_q, W_k, W_v; ``in_proj_bias`` [3E];
``out_proj.weight`` [E, E], ``out_proj.bias`` [E]), so state dicts load either way.

Unlike torch, masks follow the zoo convention: ``key_mask`` is True at *real* keys.
The projection and the attention step are separate methods so a decoder can
cache projected keys/values and attend new queries to them.

A batch row with no real key at all (an empty sequence or source) would make
the softmax 0/0 = NaN. Instead such a row attends to every key, and its output
is then set to zero: attention over nothing adds nothing to the residual stream.
Padded *queries* of a non-empty row need no care: they attend to the real keys
(their outputs are unspecified by the Backbone contract, but finite).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("sdpa", "reference")


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, impl: str = "sdpa"):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide embed_dim {embed_dim}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.impl = dropout, impl
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        # torch's defaults; the backbone re-initialises GPT-2 style.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _project(self, x: torch.Tensor, first: int, count: int) -> tuple[torch.Tensor, ...]:
        """``count`` of (q, k, v) starting at ``first``, in one matmul: [B, T, E] -> count x [B, H, T, D]."""
        rows = slice(first * self.embed_dim, (first + count) * self.embed_dim)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])  # [B, T, count*E]
        b, t, _ = x.shape
        return y.view(b, t, count, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention inputs: [B, T, E] -> q, k, v, each [B, H, T, D]."""
        return self._project(x, 0, 3)

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        return self._project(x, 0, 1)[0]

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._project(x, 1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
               key_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Queries ``q`` [B, H, T, D] over keys/values ``k``, ``v`` [B, H, S, D] -> [B, T, E].

        ``key_mask``: [B, S] bool, True at real keys. ``causal``: the queries are the
        last T of the S key positions (S - T of them already cached), and each sees
        keys up to its own position.
        """
        b, _, t, _ = q.shape
        s = k.shape[2]
        if t == 1:
            causal = False   # one query, the newest position: every key is in its past
        allowed = None  # bool, True where a query may attend; broadcasts to [B, H, T, S]
        empty = None
        if key_mask is not None:
            empty = ~key_mask.any(dim=-1)                              # [B]
            allowed = (key_mask | empty[:, None])[:, None, None, :]    # [B, 1, 1, S]
        # With no cache and no other mask the fused kernels apply causality themselves.
        fast_causal = causal and self.impl == "sdpa" and t == s and allowed is None
        if causal and not fast_causal:
            triangle = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)  # [T, S]
            allowed = triangle if allowed is None else allowed & triangle
        p = self.dropout if self.training else 0.0

        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p, is_causal=fast_causal)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5  # [B, H, T, S]
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            out = F.dropout(scores.softmax(dim=-1), p, self.training) @ v  # [B, H, T, D]

        out = self.out_proj(out.transpose(1, 2).reshape(b, t, self.embed_dim))  # [B, T, E]
        if empty is not None:
            out = out.masked_fill(empty[:, None, None], 0.0)
        return out

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, *,
                key_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Self-attention over ``query`` [B, T, E], or attention to ``key`` [B, S, E] (keys = values).

        Equals ``nn.MultiheadAttention(batch_first=True)(query, key, key, key_padding_mask=~key_mask,
        attn_mask=<causal>)[0]`` with the same weights.
        """
        if key is None:
            q, k, v = self.project_qkv(query)
        else:
            q, (k, v) = self.project_q(query), self.project_kv(key)
        return self.attend(q, k, v, key_mask=key_mask, causal=causal)

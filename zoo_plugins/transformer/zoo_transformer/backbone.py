"""TransformerBackbone: input projection, positions, N layers, final LayerNorm (pre-norm).

Encoder: bidirectional self-attention; ``mask`` [B, T] marks real tokens.
Decoder: causal self-attention, then cross-attention to ``memory`` when given, and a
key/value cache as ``state`` so generation costs O(prefix) per new token.

The (projected) inputs are layer-normalised before positions are added, so
the backbone trains the same whatever scale a task's embeddings start at:
tokens then have RMS 1 and positions a comparable one (sinusoids have RMS
1/sqrt(2) per feature; the learned table starts at that scale). Without it,
GPT-2-sized embeddings (std 0.02) next to unit sinusoids are drowned at init
(adding task, T=30, d=128, 2 layers: 92% test accuracy after 1000 Adam steps
without the norm, 96% after 400 with it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from zoo_core.api import ROLES
from zoo_core.nn import Backbone, select_rows

from zoo_transformer.attention import MultiheadAttention

INIT_STD = 0.02  # GPT-2


def sinusoidal_positions(start: int, length: int, width: int, *, device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor:
    """Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/width)), PE[p, 2i+1] = cos(same) for p in [start, start+length).

    Computed on the fly, so there is no length limit; in float32 (float64 for float64 models)
    because low-precision angles of large positions are meaningless. Returns [length, width].
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    pos = torch.arange(start, start + length, device=device, dtype=work)[:, None]               # [T, 1]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=work) * (-math.log(1e4) / width))
    angle = pos * freq                                                                          # [T, ceil(E/2)]
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[:, :width].to(dtype)


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each a residual branch.

    Pre-norm: ``x + dropout(f(LN(x)))``; post-norm: ``LN(x + dropout(f(x)))``.
    """

    def __init__(self, config: Any, cross: bool):
        super().__init__()
        width = config.hidden_size

        def attention() -> MultiheadAttention:
            return MultiheadAttention(width, config.num_heads, config.dropout, config.attention)

        self.norm_first = config.norm_first
        self.self_attn, self.self_norm = attention(), nn.LayerNorm(width)
        self.cross_attn = attention() if cross else None
        self.cross_norm = nn.LayerNorm(width) if cross else None
        activation = nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.ffn = nn.Sequential(nn.Linear(width, config.ffn_width), activation, nn.Linear(config.ffn_width, width))
        self.ffn_norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(config.dropout)

    def residual_projections(self) -> list[nn.Linear]:
        """The linear maps that write into the residual stream (scaled down at init)."""
        attns = [self.self_attn] + ([self.cross_attn] if self.cross_attn is not None else [])
        return [a.out_proj for a in attns] + [self.ffn[-1]]

    def _branch_input(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(x) if self.norm_first else x

    def _add_branch(self, x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return x + self.drop(y) if self.norm_first else norm(x + self.drop(y))

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None, causal: bool,
                past_kv: tuple[torch.Tensor, torch.Tensor] | None,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None, memory_mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` [B, T, E] -> ([B, T, E], self-attention K/V [B, H, S_past + T, D] for the cache).

        ``past_kv``: cached K/V of earlier positions. ``memory_kv``: projected memory K/V
        [B, H, S_src, D], or None to skip cross-attention.
        """
        q, k, v = self.self_attn.project_qkv(self._branch_input(x, self.self_norm))
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        y = self.self_attn.attend(q, k, v, key_mask=key_mask, causal=causal)
        x = self._add_branch(x, y, self.self_norm)
        if memory_kv is not None:
            q = self.cross_attn.project_q(self._branch_input(x, self.cross_norm))
            y = self.cross_attn.attend(q, *memory_kv, key_mask=memory_mask)
            x = self._add_branch(x, y, self.cross_norm)
        x = self._add_branch(x, self.ffn(self._branch_input(x, self.ffn_norm)), self.ffn_norm)
        return x, (k, v)


class TransformerBackbone(Backbone):
    """See the module docstring. ``d_memory``: width of decoder ``memory`` (default ``hidden_size``).

    Decoder ``state`` is a dict: ``offset`` (positions processed so far), ``self_kv``
    (per layer (K, V) [B, H, offset, D]) and ``cross`` (per layer memory (K, V) and
    ``memory_mask``, projected on the first call and reused, so later calls may omit
    ``memory``; None without memory). The decoder ignores ``mask``: padding sits at
    the end of each row and causal attention already keeps real positions from it.
    """

    stateful = False

    def __init__(self, config: Any, d_in: int, role: str, d_memory: int | None = None):
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        width = config.hidden_size
        self.d_model, self.role, self.config = width, role, config
        self.decoder = role == "decoder"
        self.d_memory = d_memory or width
        self.input_proj = nn.Linear(d_in, width) if d_in != width else nn.Identity()
        self.input_norm = nn.LayerNorm(width)
        self.memory_proj = nn.Linear(self.d_memory, width) if self.decoder and self.d_memory != width else nn.Identity()
        self.pos_emb = nn.Embedding(config.max_len, width) if config.positions == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config, cross=self.decoder) for _ in range(config.num_layers))
        # Pre-norm leaves the residual stream un-normalised; post-norm's last LN already normalised it.
        self.final_norm = nn.LayerNorm(width) if config.norm_first else nn.Identity()
        self._init_weights(d_in)

    def _init_weights(self, d_in: int) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            if isinstance(module, MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, std=INIT_STD)
                nn.init.zeros_(module.in_proj_bias)
        # GPT-2: branch outputs shrink with the number of branches so the residual stream's variance
        # at init does not grow with depth.
        branches = [p for layer in self.layers for p in layer.residual_projections()]
        for proj in branches:
            nn.init.normal_(proj.weight, std=INIT_STD / math.sqrt(len(branches)))
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=2 ** -0.5)
        # Width changes keep the input's scale (variance-preserving).
        for proj, fan_in in ((self.input_proj, d_in), (self.memory_proj, self.d_memory)):
            if isinstance(proj, nn.Linear):
                nn.init.normal_(proj.weight, std=fan_in ** -0.5)

    def _positions(self, offset: int, length: int, like: torch.Tensor) -> torch.Tensor:
        """Position encodings for positions [offset, offset + length): [length, E]."""
        if self.pos_emb is None:
            return sinusoidal_positions(offset, length, self.d_model, device=like.device, dtype=like.dtype)
        if offset + length > self.config.max_len:
            raise ValueError(f"position {offset + length - 1} is beyond the learned position table "
                             f"(max_len {self.config.max_len}); raise --max-len or use --positions sinusoidal")
        return self.pos_emb(torch.arange(offset, offset + length, device=like.device))

    def _project_memory(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Memory [B, S, d_memory] -> per layer cross-attention (K, V), each [B, H, S, D]."""
        if memory.shape[-1] != self.d_memory:
            raise ValueError(f"memory width {memory.shape[-1]} != d_memory {self.d_memory}; "
                             f"build the decoder with d_memory={memory.shape[-1]}")
        memory = self.memory_proj(memory)
        return [layer.cross_attn.project_kv(memory) for layer in self.layers]

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        """Every tensor of the cache (K/V, memory K/V and mask) has the batch first; ``offset`` is shared."""
        return select_rows(state, index, dim=0)

    def forward(self, x: torch.Tensor, *, state: Any = None, mask: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Any]:
        """``x`` [B, T, d_in] -> ([B, T, hidden_size], decoder cache or None)."""
        if not self.decoder and (memory is not None or state is not None):
            raise ValueError("a transformer encoder takes no memory and no state")
        offset = state["offset"] if state else 0
        h = self.input_norm(self.input_proj(x))
        h = self.drop(h + self._positions(offset, x.shape[1], h))

        cross = state["cross"] if state else None
        if cross is None and memory is not None:
            cross = (self._project_memory(memory), memory_mask)
        memory_kv, memory_mask = cross if cross is not None else (None, None)

        self_kv = []
        for i, layer in enumerate(self.layers):
            h, kv = layer(h, key_mask=None if self.decoder else mask, causal=self.decoder,
                          past_kv=state["self_kv"][i] if state else None,
                          memory_kv=memory_kv[i] if memory_kv is not None else None, memory_mask=memory_mask)
            self_kv.append(kv)
        y = self.final_norm(h)
        if not self.decoder:
            return y, None
        return y, {"offset": offset + x.shape[1], "self_kv": self_kv, "cross": cross}

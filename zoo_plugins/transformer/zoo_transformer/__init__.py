"""zoo-transformer: the Transformer architecture (Vaswani et al. 2017, GPT-2 style pre-norm by default).

This module imports no torch (``zoo list`` imports every plugin); :meth:`Transformer.build`
imports the torch side, :mod:`zoo_transformer.backbone`, when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo_core import Architecture, ConfigError, hookimpl, option

zoo_plugin_api = ">=1,<2"  # the zoo plugin API versions this plugin supports (zoo_core.PLUGIN_API)

__all__ = ["Transformer", "TransformerConfig"]


@dataclass
class TransformerConfig:
    hidden_size: int = option(128, help="Model width d_model (same flag for every architecture).", min=1)
    num_layers: int = option(2, help="Number of transformer layers.", min=1)
    num_heads: int = option(4, help="Attention heads; must divide hidden_size.", min=1)
    ffn_size: int | None = option(None, help="Feed-forward inner width (default 4 * hidden_size).", min=1)
    dropout: float = option(0.1, help="Dropout on inputs, attention weights and residual branches.",
                            min=0.0, max=1.0, max_exclusive=True)
    positions: str = option("sinusoidal", help="Position encoding added to the inputs.",
                            choices=("sinusoidal", "learned"))
    max_len: int = option(1024, help="Size of the learned position table (sinusoidal has no limit).", min=1)
    norm_first: bool = option(True, help="Pre-norm (LayerNorm before each sublayer); false for post-norm.")
    activation: str = option("gelu", help="Feed-forward activation.", choices=("gelu", "relu"))
    attention: str = option("sdpa", help="sdpa: torch fused kernels; reference: explicit softmax(QK^T/sqrt(d))V.",
                            choices=("sdpa", "reference"))

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            divisors = [d for d in range(1, self.hidden_size + 1) if self.hidden_size % d == 0]
            below = max(d for d in divisors if d < self.num_heads)
            above = [d for d in divisors if d > self.num_heads][:1]
            raise ConfigError("num_heads", f"{self.num_heads} does not divide hidden_size {self.hidden_size}",
                              "use a divisor of hidden_size, e.g. --num-heads "
                              + " or ".join(str(d) for d in [below, *above]))

    @property
    def ffn_width(self) -> int:
        return self.ffn_size if self.ffn_size is not None else 4 * self.hidden_size


class Transformer(Architecture):
    name = "transformer"
    Config = TransformerConfig
    smoke_config = {"hidden_size": 16, "num_heads": 2}  # small enough for the conformance checks
    description = "Transformer: multi-head self-attention (causal with a KV cache as decoder) and cross-attention."

    def build(self, config: TransformerConfig, d_in: int, role: str, d_memory: int | None = None):
        """``d_memory``: width of the decoder's ``memory`` when it differs from ``hidden_size``
        (the core's ``build`` does not pass it yet; it defaults to ``hidden_size``)."""
        from zoo_transformer.backbone import TransformerBackbone

        return TransformerBackbone(config, d_in, role, d_memory=d_memory)


@hookimpl
def register_architectures(register):
    register(Transformer)

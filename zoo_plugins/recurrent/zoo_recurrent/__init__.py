"""Recurrent architectures for the zoo: ``rnn``, ``gru`` and ``lstm``.

This module imports no torch (``zoo list`` imports every plugin); the
backbone module is imported inside :meth:`RecurrentArchitecture.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zoo_core import Architecture, ConfigError, hookimpl, option

zoo_plugin_api = ">=1,<2"  # the zoo plugin API versions this plugin supports (zoo_core.PLUGIN_API)

IMPLS = ("fused", "reference")


@dataclass
class RecurrentConfig:
    hidden_size: int = option(128, help="Units per layer and direction.", min=1)
    num_layers: int = option(2, help="Stacked recurrent layers.", min=1)
    dropout: float = option(0.0, help="Dropout on the outputs of every layer but the last, as in torch.",
                            min=0.0, max=1.0, max_exclusive=True)
    bidirectional: bool = option(False, help="Encoder only: also read right to left; the final state is "
                                             "bridged to a unidirectional decoder's shape.")
    impl: str = option("fused", help="fused: torch's nn.RNN/GRU/LSTM (cuDNN on GPU); reference: the cell "
                                     "equations written out, with the same parameters.", choices=IMPLS)

    def validate(self):
        if self.dropout > 0 and self.num_layers == 1:
            raise ConfigError("dropout", "applies between layers, so it has no effect with num_layers 1",
                              "set --num-layers 2 or more, or --dropout 0")


@dataclass
class RNNConfig(RecurrentConfig):
    nonlinearity: str = option("tanh", help="Activation of the vanilla RNN cell.", choices=("tanh", "relu"))


class RecurrentArchitecture(Architecture):
    """Shared ``build`` for the three cells; subclasses name the cell."""

    cell: ClassVar[str]
    Config = RecurrentConfig
    smoke_config: ClassVar[dict] = {"hidden_size": 16}  # small enough for the conformance checks

    def build(self, config, d_in: int, role: str, *, d_memory: int | None = None):  # memory: see backbone docs
        if config.bidirectional and role == "decoder":
            raise ConfigError("bidirectional", "a decoder must read left to right only",
                              "set --bidirectional false for the decoder (an encoder may stay bidirectional)")
        from zoo_recurrent.backbone import RecurrentBackbone

        return RecurrentBackbone(self.cell, d_in, role=role, hidden_size=config.hidden_size,
                                 num_layers=config.num_layers, dropout=config.dropout,
                                 bidirectional=config.bidirectional, impl=config.impl,
                                 nonlinearity=getattr(config, "nonlinearity", "tanh"))


class RNN(RecurrentArchitecture):
    name = "rnn"
    cell = "rnn"
    Config = RNNConfig
    description = "Elman RNN (tanh or relu), stacked, optionally bidirectional."


class GRU(RecurrentArchitecture):
    name = "gru"
    cell = "gru"
    description = "Gated recurrent unit (Cho et al. 2014), stacked, optionally bidirectional."


class LSTM(RecurrentArchitecture):
    name = "lstm"
    cell = "lstm"
    description = "Long short-term memory (Hochreiter & Schmidhuber 1997), stacked, optionally bidirectional."


@hookimpl
def register_architectures(register):
    for cls in (RNN, GRU, LSTM):
        register(cls)

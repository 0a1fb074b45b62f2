"""Coursework: set a GRU's gates by hand so that it computes something simpler.

PyTorch's GRU, with its weights stacked in gate blocks (r, z, n)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

With the weight rows of a gate zeroed, the gate is ``sigmoid(bias)`` whatever
the input, and a bias of +-30 saturates it (``sigmoid(30) = 1 - 1e-13``, exactly
1 in float32):

- r = 1, z = 0: ``h' = tanh(W_in x + b_in + W_hn h + b_hn)``, a tanh RNN (:func:`gru_as_rnn`);
- z = 1: ``h' = h``, the state is held whatever the input (:func:`gru_hold_state`).

Both take a :class:`~zoo_recurrent.backbone.RecurrentBackbone`, a bare
``nn.RNN``/``nn.GRU`` or a dict of their parameters, and work on every layer
and direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

_RECURRENT_PARAM = re.compile(r"(weight|bias)_(ih|hh)_l\d+(_reverse)?")


def _params(module_or_params: Any) -> dict[str, torch.Tensor]:
    """The recurrent parameters keyed by torch's names (``weight_ih_l0``, ...), whatever the prefix."""
    items = (module_or_params.items() if isinstance(module_or_params, Mapping)
             else module_or_params.named_parameters())
    out = {}
    for name, p in items:
        short = name.rsplit(".", 1)[-1]   # "rnn.weight_ih_l0" -> "weight_ih_l0"
        if _RECURRENT_PARAM.fullmatch(short):
            out[short] = p
    return out


@torch.no_grad()
def gru_as_rnn(rnn: Any, gru: Any, *, gate_bias: float = 30.0) -> Any:
    """Overwrite ``gru``'s parameters so that it computes the tanh RNN ``rnn`` (same sizes); returns ``gru``.

    The reset gate is saturated open (r = 1) so ``W_hn h + b_hn`` enters the
    candidate whole, and the update gate closed (z = 0) so ``h'`` is the
    candidate: the candidate's blocks take the RNN's weights.
    """
    module = getattr(rnn, "rnn", rnn)   # a backbone keeps its recurrent module in .rnn
    if getattr(module, "nonlinearity", "tanh") != "tanh":
        raise ValueError("a GRU's candidate is tanh: only a tanh RNN can be copied into it")
    src, dst = _params(rnn), _params(gru)
    if set(src) != set(dst):
        raise ValueError(f"the RNN and GRU differ in layers or directions: {sorted(src)} vs {sorted(dst)}")
    for name, p in dst.items():
        r, z, n = p.chunk(3, 0)   # views into p, one per gate
        if n.shape != src[name].shape:
            raise ValueError(f"{name}: GRU block {tuple(n.shape)} but RNN {tuple(src[name].shape)}; "
                             "use the same input and hidden sizes")
        n.copy_(src[name])
        r.zero_()
        z.zero_()
        if name.startswith("bias_ih"):   # the gates' whole bias sits in b_i*, b_h* stays zero
            r.fill_(gate_bias)
            z.fill_(-gate_bias)
    return gru


@torch.no_grad()
def gru_hold_state(gru: Any, *, gate_bias: float = 30.0) -> Any:
    """Saturate ``gru``'s update gate closed (z = 1) so it keeps its initial state over any input; returns ``gru``."""
    for name, p in _params(gru).items():
        z = p.chunk(3, 0)[1]
        z.fill_(gate_bias if name.startswith("bias_ih") else 0.0)
    return gru

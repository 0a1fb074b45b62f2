"""The torch side of the contract: Backbone, plus the small modules tasks share."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn


class Backbone(nn.Module, abc.ABC):
    """A sequence mixer over embedded inputs.

    ``forward(x, *, state=None, mask=None, memory=None, memory_mask=None) -> (y, state)``

    - ``x``: ``[batch, time, d_in]`` float; ``y``: ``[batch, time, d_model]``.
    - ``mask``: ``[batch, time]`` bool, True at real positions (encoder padding).
      Padding sits at the end of each row. Outputs at padded positions are unspecified.
    - ``memory``: ``[batch, src_time, d_memory]`` (decoder cross-attention), with
      ``memory_mask`` ``[batch, src_time]`` bool, True at real source positions.
    - ``state``: opaque. Recurrent backbones return their final hidden state and
      accept it as the initial one (BPTT carry, Sutskever context; an encoder's
      state is already shaped for a decoder of the same architecture and config).
      Decoders with attention return a key/value cache. For a decoder, calling
      forward one step at a time, feeding back the state, equals the full call.
    """

    d_model: int            # output feature size
    role: str               # "encoder" or "decoder"
    stateful: bool = False  # True: state carries context across BPTT windows (recurrent)

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, *, state: Any = None, mask: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Any]:
        ...

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        """The state of batch rows ``index`` (int64 ``[n]``, rows may repeat), for beam search:
        copying the state to each beam and following the beams that survive a step.

        Only the backbone knows where the batch sits in its state; a decoder without this
        still trains and decodes greedily, but beam search refuses it. (Plugin API 1.1.)
        """
        if state is None:
            return None
        raise NotImplementedError(f"{type(self).__name__} does not implement Backbone.reorder_state, "
                                  f"so beam search cannot use it; decode greedily (beam 1)")


def detach_state(state: Any) -> Any:
    """Cut the graph through a (nested) state between BPTT windows."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def select_rows(state: Any, index: torch.Tensor, dim: int = 0) -> Any:
    """``index_select`` along ``dim`` on every tensor of a (nested) state; other values are kept."""
    if isinstance(state, torch.Tensor):
        return state.index_select(dim, index.to(state.device))
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(s, index, dim) for s in state)
    if isinstance(state, dict):
        return {k: select_rows(v, index, dim) for k, v in state.items()}
    return state


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a (nested) batch of tensors to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch

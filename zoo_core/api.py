"""The interfaces plugins implement: Architecture, Task and Trainer.

This module imports no torch, so plugins can declare and register their
classes cheaply (``zoo list`` loads every plugin); torch is imported inside
the methods that build or run models. The torch-side contract (Backbone)
lives in :mod:`zoo_core.nn`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from zoo_core.nn import Backbone

ROLES = ("encoder", "decoder")

# The plugin API: the interfaces in this module, zoo_core.nn.Backbone, the hooks and the config
# dataclasses. A plugin module declares the range it supports, e.g. ``zoo_plugin_api = ">=1,<2"``.
# Bump the minor version for additions, the major version for changes that break plugins.
PLUGIN_API = "1.1"   # 1.1: Backbone.reorder_state (beam search)


class Architecture(abc.ABC):
    """Builds a sequence-mixing backbone; owns nothing else (no embeddings, no heads).

    Subclasses set ``name``, ``Config`` (a dataclass of :func:`zoo_core.option`
    fields) and ``description``, and implement :meth:`build`.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def build(self, config: Any, d_in: int, role: str, *, d_memory: int | None = None) -> "Backbone":
        """A Backbone over ``[batch, time, d_in]`` inputs.

        ``role`` is ``"encoder"`` (non-causal, may be bidirectional, accepts a
        padding ``mask``) or ``"decoder"`` (causal; may attend to ``memory`` of
        width ``d_memory``; stepping one position at a time with the returned
        state equals the full call). Size heads from the built backbone's
        ``d_model``: a bidirectional encoder is twice ``width(config)``.
        """

    def width(self, config: Any) -> int:
        """The natural feature size of this architecture (tasks default their embedding size to it)."""
        return int(config.hidden_size)


class StepOutput(NamedTuple):
    loss: "torch.Tensor"               # scalar to minimise (a mean)
    stats: dict[str, "torch.Tensor"]   # summable counts: stats of two batches add up
    state: Any = None                  # carried to the next batch of the same pass (BPTT); None otherwise


class Task(abc.ABC):
    """Owns data, objective, metrics and inference; wraps any backbone with embeddings and heads.

    The trainer drives a task through four methods: :meth:`load_data` once,
    :meth:`build_model` once, then :meth:`batches` and :meth:`step` in the
    loop, and :meth:`evaluate` on held-out splits.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    description: ClassVar[str] = ""
    metric: ClassVar[str] = "loss"   # validation metric that picks the best checkpoint
    mode: ClassVar[str] = "min"      # "min" or "max" for ``metric``
    splits: ClassVar[tuple[str, ...]] = ("train", "validation", "test")

    def __init__(self, config: Any):
        self.config = config

    @abc.abstractmethod
    def load_data(self, run_dir: str | None = None) -> None:
        """Load or generate the splits and fit vocabularies/tokenizers on the training split.

        Called before training (``run_dir`` is where artefacts such as
        ``tokenizer.json`` are written) and never when a checkpoint is only
        used for inference, which calls :meth:`load_artifacts` instead.
        """

    @abc.abstractmethod
    def build_model(self, arch: Architecture, arch_config: Any) -> "torch.nn.Module":
        """Embeddings + backbone(s) built by ``arch.build`` + heads, as one module."""

    @abc.abstractmethod
    def batches(self, split: str, batch_size: int, *, epoch: int = 0, seed: int = 0, start: int = 0,
                rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        """One pass over ``split``, deterministic from ``(seed, epoch)``, skipping the first ``start``
        batches (for resume); with ``world_size > 1`` each rank gets its own shard of equal length."""

    @abc.abstractmethod
    def step(self, model: "torch.nn.Module", batch: Any, state: Any = None) -> StepOutput:
        """Forward one batch through ``model(...)`` (called once, so DDP sees it).

        ``stats`` must include ``loss_sum`` and ``count`` (the loss summed over
        ``count`` units); :meth:`summarize` turns summed stats into metrics.
        """

    # ---- optional, with defaults -------------------------------------------------------

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics from summed stats. Default: ``loss`` and, if present, ``accuracy``."""
        count = max(totals.get("count", 0.0), 1.0)
        out = {"loss": totals.get("loss_sum", 0.0) / count}
        if "correct" in totals:
            out["accuracy"] = totals["correct"] / count
        return out

    def evaluate(self, model: "torch.nn.Module", split: str, batch_size: int) -> dict[str, float]:
        """Metrics over a whole split (no gradients). Default: sum ``step`` stats, then summarize."""
        import torch

        from zoo_core.nn import to_device

        totals: dict[str, torch.Tensor] = {}
        state = None
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch in self.batches(split, batch_size):
                out = self.step(model, to_device(batch, device), state)
                state = out.state
                for k, v in out.stats.items():
                    totals[k] = totals.get(k, 0) + v.detach().double()
        model.train(was_training)
        return self.summarize({k: float(v) for k, v in totals.items()})

    def save_artifacts(self, run_dir: str) -> None:
        """Write vocabularies/tokenizers next to the checkpoint (default: nothing)."""

    def load_artifacts(self, run_dir: str) -> None:
        """Read what :meth:`save_artifacts` wrote, for inference from a checkpoint."""

    def predict(self, model: "torch.nn.Module", text: str) -> str:
        """``zoo predict``: one input as text to one answer as text."""
        raise NotImplementedError(f"task {self.name!r} has no `zoo predict`")


class Trainer(abc.ABC):
    """Fits a task's model. The default trainer is :class:`zoo_core.trainer.DefaultTrainer`."""

    name: ClassVar[str]
    Config: ClassVar[type]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def fit(self, run: Any) -> dict[str, Any]:
        """Train ``run`` (a :class:`zoo_core.run.Run`: task, model, configs, directory); return final metrics."""

"""An example zoo plugin: the ``diag-ssm`` architecture and the ``copy`` task.

This module is what the ``zoo`` entry point names. It imports no torch, so
``zoo list`` stays fast: the torch code lives in :mod:`zoo_example.ssm` and
:mod:`zoo_example.copy_task` and is imported when a model is built or data made.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo_core import Architecture, ConfigError, Task, ZooError, hookimpl, option

zoo_plugin_api = ">=1.1,<2"  # the zoo plugin API versions this plugin supports (1.1: reorder_state)


# ---- architecture: diagonal linear state-space recurrence ------------------------------------

@dataclass
class DiagonalSSMConfig:
    hidden_size: int = option(64, help="State and model width (one decay per channel).", min=1)
    num_layers: int = option(2, help="Stacked SSM layers, each with a residual connection.", min=1)
    decay_min: float = option(0.5, help="Smallest initial per-channel decay a (memory ~ 1/(1-a) steps).",
                              min=0.0, max=1.0, min_exclusive=True, max_exclusive=True)
    decay_max: float = option(0.99, help="Largest initial per-channel decay a.",
                              min=0.0, max=1.0, min_exclusive=True, max_exclusive=True)

    def validate(self):
        if self.decay_min > self.decay_max:
            raise ConfigError("decay_min", f"{self.decay_min} is above decay_max {self.decay_max}",
                              "set --decay-min below --decay-max")


class DiagonalSSM(Architecture):
    name = "diag-ssm"
    Config = DiagonalSSMConfig
    description = "Diagonal linear state-space recurrence h = a*h + b(x) (S4D/LRU core), stepped like an RNN."
    smoke_config = {"hidden_size": 16}  # small sizes for the conformance kit

    def build(self, config, d_in, role, *, d_memory=None):  # no cross-attention: memory is ignored
        from zoo_example.ssm import DiagonalSSMBackbone

        return DiagonalSSMBackbone(d_in, role, config.hidden_size, config.num_layers,
                                   config.decay_min, config.decay_max)


# ---- task: copy a sequence after a separator -------------------------------------------------

@dataclass
class CopyConfig:
    length: int = option(8, help="Symbols to remember and copy.", min=1)
    symbols: int = option(8, help="Alphabet size (symbols 0..symbols-1; one more token separates).", min=2)
    train_size: int = option(20_000, help="Training sequences.", min=1)
    validation_size: int = option(500, help="Validation sequences.", min=1)
    test_size: int = option(500, help="Test sequences.", min=1)
    data_seed: int = option(0, help="Seed of the generated data.", min=0)
    embed_size: int | None = option(None, help="Token embedding size (none: the architecture's width).", min=1)


class Copy(Task):
    name = "copy"
    Config = CopyConfig
    description = "Copy task: read symbols, a separator, then replay them (causal decoder, greedy decoding)."
    metric, mode = "sequence_accuracy", "max"
    trainer_defaults = {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "max_steps": 2000, "eval_every": 200}
    smoke_inputs = ["1 0 3"]  # `zoo predict` inputs for the conformance kit

    @staticmethod
    def smoke_config(directory):
        return {"length": 3, "symbols": 4, "train_size": 64, "validation_size": 16, "test_size": 16}

    def load_data(self, run_dir=None):
        from zoo_example import copy_task

        self.data = copy_task.make_splits(self.config)

    def build_model(self, arch, arch_config):
        from zoo_example.copy_task import CopyModel

        embed = self.config.embed_size or arch.width(arch_config)
        return CopyModel(arch.build(arch_config, embed, "decoder"), embed, self.config.symbols)

    def batches(self, split, batch_size, *, epoch=0, seed=0, start=0, rank=0, world_size=1):
        from zoo_example import copy_task

        return copy_task.batches(self.data[split], split, batch_size, epoch=epoch, seed=seed, start=start,
                                 rank=rank, world_size=world_size)

    def step(self, model, batch, state=None):
        from zoo_example.copy_task import step

        return step(model, batch, self.config.length)

    def summarize(self, totals):
        out = super().summarize(totals)  # loss and (per-symbol) accuracy
        out["sequence_accuracy"] = totals.get("sequences_correct", 0.0) / max(totals.get("sequences", 0.0), 1.0)
        return out

    def predict(self, model, text):
        from zoo_example.copy_task import generate

        return " ".join(map(str, generate(model, self.parse(text))))

    def parse(self, text: str) -> list[int]:
        n = self.config.symbols
        try:
            tokens = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            tokens = []
        if not tokens or not all(0 <= t < n for t in tokens):
            raise ZooError(f"copy input: give symbols 0..{n - 1} separated by spaces, e.g. \"1 0 3\"; got {text!r}")
        return tokens


@hookimpl
def register_architectures(register):
    register(DiagonalSSM)


@hookimpl
def register_tasks(register):
    register(Copy)


__all__ = ["Copy", "CopyConfig", "DiagonalSSM", "DiagonalSSMConfig"]

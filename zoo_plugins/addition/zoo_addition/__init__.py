"""The adding task (coursework classic): remember one marked digit across a long sequence.

A sequence of ``seq_len`` random digits 0-9 has one marker (``-1`` in text,
token 10) at a random position in ``[0, seq_len-3]``. The label is the digit
right after the marker plus the final digit: one of 19 classes (0..18). A
recurrent net must carry the marked digit over up to ``seq_len-2`` steps.

No torch at import time: ``zoo list`` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo_core import ConfigError, Task, ZooError, hookimpl, option

zoo_plugin_api = ">=1,<2"  # the zoo plugin API versions this plugin supports (zoo_core.PLUGIN_API)

MARKER = 10        # token id of the marker; its text form is -1
VOCAB = 11         # digits 0-9 and the marker
CLASSES = 19       # sums 0..18


@dataclass
class AdditionConfig:
    seq_len: int = option(30, help="Sequence length, marker included.", min=3)
    train_size: int = option(50_000, help="Training examples (ignored with fresh_data).", min=1)
    validation_size: int = option(1_000, help="Validation examples.", min=1)
    test_size: int = option(1_000, help="Test examples.", min=1)
    fresh_data: bool = option(False, help="Draw new training examples every step instead of a fixed set.")
    data_seed: int = option(0, help="Seed of the generated data (the trainer's seed sets order and init).", min=0)
    embed_size: int | None = option(None, help="Digit embedding size (none: the architecture's width).", min=1)
    pooling: str = option("last", help="Summarise the sequence by the last output or the mean.",
                          choices=("last", "mean"))


class Addition(Task):
    name = "addition"
    Config = AdditionConfig
    description = "Adding task: sum of the marked digit and the last digit (19 classes)."
    metric, mode = "accuracy", "max"
    trainer_defaults = {"optimizer": "adam", "lr": 3e-3, "batch_size": 128, "max_steps": 1000,
                        "eval_every": 100, "clip_grad_norm": 1.0}

    smoke_inputs = ["1 2 -1 5 7 3", "-1 4 0"]  # checked by the conformance kit through `predict`

    @staticmethod
    def smoke_config(directory):
        """A tiny instance for the conformance checks (``zoo_core.testing``)."""
        return {"seq_len": 6, "train_size": 64, "validation_size": 16, "test_size": 16}

    def load_data(self, run_dir=None):
        from zoo_addition import data

        self.data = data.make_splits(self.config)

    def build_model(self, arch, arch_config):
        from zoo_addition.model import AdditionModel

        embed = self.config.embed_size or arch.width(arch_config)
        return AdditionModel(arch.build(arch_config, embed, "encoder"), embed, self.config.pooling)

    def batches(self, split, batch_size, *, epoch=0, seed=0, start=0, rank=0, world_size=1):
        from zoo_addition import data

        return data.batches(self, split, batch_size, epoch=epoch, seed=seed, start=start, rank=rank,
                            world_size=world_size)

    def step(self, model, batch, state=None):
        from zoo_addition.model import step

        return step(model, batch)

    def evaluate(self, model, split, batch_size):
        from zoo_addition.model import evaluate

        return evaluate(self, model, split, batch_size)

    def predict(self, model, text):
        from zoo_addition.model import predict

        return predict(model, parse(text))


def parse(text: str) -> list[int]:
    """``"1 2 -1 5 7 3"`` -> token ids, or a one-line error saying what is wrong and how to fix it."""
    example = 'e.g. "1 2 -1 5 7 3" (digits 0-9, one -1 marker at least two places before the end)'
    parts = text.replace(",", " ").split()
    tokens = []
    for p in parts:
        if p == "-1":
            tokens.append(MARKER)
        elif p.isdigit() and len(p) == 1:
            tokens.append(int(p))
        else:
            raise ZooError(f"addition input: {p!r} is not a digit 0-9 or the marker -1; {example}")
    if len(tokens) < 3:
        raise ZooError(f"addition input: needs at least 3 tokens, got {len(tokens)}; {example}")
    markers = [i for i, t in enumerate(tokens) if t == MARKER]
    if len(markers) != 1:
        raise ZooError(f"addition input: needs exactly one marker -1, got {len(markers)}; {example}")
    if markers[0] > len(tokens) - 3:
        raise ZooError(f"addition input: the marker is at position {markers[0]}, too late for a sequence of "
                       f"{len(tokens)} (at most {len(tokens) - 3}); {example}")
    return tokens


@hookimpl
def register_tasks(register):
    register(Addition)


__all__ = ["Addition", "AdditionConfig", "ConfigError", "parse"]

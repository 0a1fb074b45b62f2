"""The default trainer's config and registration (no torch here; the loop is in train_loop)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo_core.api import Trainer
from zoo_core.config import ConfigError, option
from zoo_core.hookspecs import hookimpl


@dataclass
class TrainerConfig:
    optimizer: str = option("adam", help="Optimizer.", choices=("sgd", "adam", "adamw"))
    lr: float = option(1e-3, help="Peak learning rate.", min=0.0, min_exclusive=True)
    momentum: float = option(0.0, help="SGD momentum.", min=0.0, max=1.0, max_exclusive=True)
    weight_decay: float = option(0.0, help="Weight decay (decoupled for adamw).", min=0.0)
    schedule: str = option("none", help="Learning-rate schedule (after warmup).",
                           choices=("none", "step", "cosine", "decay_per_epoch"))
    warmup_steps: int = option(0, help="Linear warmup steps.", min=0)
    lr_decay: float = option(1.0, help="Divide the lr by this every decay_every steps (step) or each epoch "
                                       "from decay_start (decay_per_epoch).", min=1.0)
    decay_every: int = option(1000, help="Steps between decays for schedule=step.", min=1)
    decay_start: int = option(1, help="First epoch (0-based) whose lr is decayed, for decay_per_epoch.", min=0)
    min_lr: float = option(0.0, help="Final lr of the cosine schedule.", min=0.0)
    clip_grad_norm: float = option(1.0, help="Clip the global gradient norm to this (0: off).", min=0.0)
    batch_size: int = option(64, help="Examples (or streams) per batch, per process.", min=1)
    eval_batch_size: int | None = option(None, help="Batch size for evaluation (default: batch_size).", min=1)
    max_steps: int | None = option(1000, help="Stop after this many optimizer steps (none: no limit).", min=1)
    max_epochs: int | None = option(None, help="Stop after this many epochs (none: no limit).", min=1)
    eval_every: int = option(100, help="Evaluate on validation every N steps (0: at each epoch end).", min=0)
    log_every: int = option(50, help="Report training metrics every N steps.", min=1)
    early_stopping: int = option(0, help="Stop after N evaluations without improvement (0: off).", min=0)
    target: float | None = option(None, help="Stop once the validation metric reaches this value (none: off).")
    seed: int = option(0, help="Seed for initialisation, data order and dropout.", min=0)
    device: str = option("auto", help="Where to train.", choices=("auto", "cpu", "cuda"))
    precision: str = option("auto", help="auto: bf16 autocast on CUDA, fp32 on CPU.", choices=("auto", "fp32", "bf16"))
    on_nan: str = option("stop", help="On a non-finite loss: stop (keeping the last good checkpoint) or skip the batch.",
                         choices=("stop", "skip"))

    def validate(self) -> None:
        if self.max_steps is None and self.max_epochs is None:
            raise ConfigError("max_steps", "max_steps and max_epochs are both none, training would never end",
                              "set --max-steps N or --max-epochs N")
        if self.device == "cuda":
            import importlib.util

            if importlib.util.find_spec("torch") is not None:
                import torch

                if not torch.cuda.is_available():
                    raise ConfigError("device", "cuda requested but no CUDA device is available",
                                      "use --device cpu or --device auto")


class DefaultTrainer(Trainer):
    """A plain PyTorch loop: optimizer + schedule, clipping, eval, best/last checkpoints, resume, DDP."""

    name = "default"
    Config = TrainerConfig
    description = "Plain PyTorch loop with checkpoints, resume, early stopping and DDP under torchrun."

    def fit(self, run):
        from zoo_core.train_loop import fit

        return fit(run)


@hookimpl
def register_trainers(register):
    register(DefaultTrainer)

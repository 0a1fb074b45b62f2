"""The default trainer's schedules and stopping rules."""

import json
import math

import pytest
from click.testing import CliRunner

from zoo_core.cli import cli
from zoo_core.config import ConfigError, build_config
from zoo_core.trainer import TrainerConfig
from zoo_core.train_loop import lr_at

TINY = ["--seq-len", "6", "--train-size", "128", "--validation-size", "32", "--test-size", "32",
        "--hidden-size", "16", "--batch-size", "16"]


def cfg(**values):
    return build_config(TrainerConfig, values)


def test_warmup_then_cosine_to_min_lr():
    c = cfg(lr=1.0, schedule="cosine", warmup_steps=10, max_steps=110, min_lr=0.1)
    assert lr_at(c, 0, 0) == pytest.approx(0.1)
    assert lr_at(c, 9, 0) == pytest.approx(1.0)
    assert lr_at(c, 60, 0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(c, 110, 0) == pytest.approx(0.1)


def test_decay_per_epoch_divides_from_decay_start():
    c = cfg(optimizer="sgd", lr=20.0, schedule="decay_per_epoch", lr_decay=1.15, decay_start=1)
    assert [round(lr_at(c, 0, e), 6) for e in range(3)] == [20.0, round(20 / 1.15, 6), round(20 / 1.15 ** 2, 6)]
    zaremba = cfg(optimizer="sgd", lr=1.0, schedule="decay_per_epoch", lr_decay=2.0, decay_start=4)
    assert [lr_at(zaremba, 0, e) for e in (0, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.25]


def test_step_schedule():
    c = cfg(lr=1.0, schedule="step", lr_decay=10.0, decay_every=100)
    assert (lr_at(c, 99, 0), lr_at(c, 100, 0), lr_at(c, 250, 0)) == (1.0, 0.1, pytest.approx(0.01))


def test_cuda_is_refused_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        assert cfg(device="cuda").device == "cuda"
    else:
        with pytest.raises(ConfigError, match="device"):
            cfg(device="cuda")


def _evals(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if not json.loads(line).get("final")]


def test_target_stops_training_once_reached(tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["train", "addition", "lstm", *TINY, "--max-steps", "50", "--eval-every", "5",
                                      "--target", "0.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in _evals(out)] == [5]


def test_early_stopping_after_patience(tmp_path):
    out = tmp_path / "r"
    # lr so small nothing improves after the first evaluation
    result = CliRunner().invoke(cli, ["train", "addition", "lstm", *TINY, "--max-steps", "100", "--eval-every", "2",
                                      "--lr", "1e-12", "--early-stopping", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    steps = [r["step"] for r in _evals(out)]
    assert steps[-1] < 100 and len(steps) >= 3

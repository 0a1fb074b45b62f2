"""An interrupted run resumed with --resume equals the uninterrupted run, bitwise on CPU."""

import json

from click.testing import CliRunner

from zoo_core.cli import cli

ARGS = ["--seq-len", "8", "--train-size", "96", "--validation-size", "32", "--test-size", "32",
        "--hidden-size", "16", "--batch-size", "16", "--eval-every", "5", "--dropout", "0.3", "--num-layers", "2"]


def _records(path):
    out = []
    for line in (path / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("time")
        out.append(r)
    return out


def test_resume_equals_uninterrupted(tmp_path):
    run = CliRunner()
    straight, split = tmp_path / "straight", tmp_path / "split"
    # 20 steps cross an epoch boundary (6 batches per epoch) and use dropout: RNG and data order must be restored
    assert run.invoke(cli, ["train", "addition", "lstm", *ARGS, "--max-steps", "20", "--out", str(straight)]).exit_code == 0
    assert run.invoke(cli, ["train", "addition", "lstm", *ARGS, "--max-steps", "10", "--out", str(split)]).exit_code == 0
    result = run.invoke(cli, ["train", "--resume", str(split), "--max-steps", "20"])
    assert result.exit_code == 0, result.output
    for name in ("resume/model.safetensors", "model.safetensors"):
        assert (straight / name).read_bytes() == (split / name).read_bytes(), name
    assert _records(straight) == _records(split)


def test_resume_refuses_architecture_changes(tmp_path):
    out = tmp_path / "r"
    CliRunner().invoke(cli, ["train", "addition", "lstm", *ARGS, "--max-steps", "2", "--out", str(out)])
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), "--hidden-size", "32"])
    assert result.exit_code == 2 and "hidden_size" in result.output


def test_signal_exactly_at_an_evaluation_step_keeps_the_log_identical(tmp_path, monkeypatch):
    """A signal landing on an evaluation step must not skip that evaluation (the resumed log would differ)."""
    import os
    import signal

    from zoo_core import train_loop

    run = CliRunner()
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run.invoke(cli, ["train", "addition", "lstm", *ARGS, "--max-steps", "20", "--out", str(straight)]).exit_code == 0
    real_lr_at = train_loop.lr_at

    def lr_at(cfg, step, epoch):  # called once per step; step 9 is the 10th, an evaluation step
        if step == 9:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_lr_at(cfg, step, epoch)

    monkeypatch.setattr(train_loop, "lr_at", lr_at)
    result = run.invoke(cli, ["train", "addition", "lstm", *ARGS, "--max-steps", "20", "--out", str(split)])
    assert result.exit_code == 130 and "SIGTERM at step 10" in result.output
    monkeypatch.setattr(train_loop, "lr_at", real_lr_at)
    assert run.invoke(cli, ["train", "--resume", str(split)]).exit_code == 0
    assert _records(straight) == _records(split)
    assert (straight / "model.safetensors").read_bytes() == (split / "model.safetensors").read_bytes()

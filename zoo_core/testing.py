"""Conformance checks for plugin authors: run them in your own test suite.

::

    from zoo_core import testing

    def test_my_architecture():
        testing.check_architecture("ssm")            # backbone contract, both roles

    @pytest.mark.parametrize("task", testing.task_names())
    def test_my_architecture_on_every_task(task, tmp_path):
        testing.check_pair(task, "ssm", tmp_path)     # train steps, save/load, determinism

A task can provide ``Task.smoke_config(directory) -> dict``: option values for
a tiny self-contained instance (writing any files it needs into
``directory``); architectures can provide ``Architecture.smoke_config`` (a
dict) to make the checks cheap.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from zoo_core import checkpoint, plugins
from zoo_core import run as runs
from zoo_core.config import build_config


def task_names() -> list[str]:
    return plugins.registry().names("task")


def architecture_names() -> list[str]:
    return plugins.registry().names("architecture")


def _arch(name: str):
    entry = plugins.registry().entry("architecture", name)
    arch = entry.cls()
    cfg = build_config(entry.cls.Config, getattr(entry.cls, "smoke_config", {}) or {})
    return arch, cfg


def check_architecture(name: str, *, d_in: int = 12, batch: int = 3, time: int = 7, atol: float = 1e-5) -> None:
    """The Backbone contract for both roles: shapes, state, step-vs-full, padding, gradients."""
    from zoo_core.nn import Backbone

    arch, cfg = _arch(name)
    torch.manual_seed(0)
    x = torch.randn(batch, time, d_in)
    for role in ("encoder", "decoder"):
        net = arch.build(cfg, d_in, role)
        assert isinstance(net, Backbone), f"{name}.build must return a zoo_core.nn.Backbone"
        assert net.role == role
        net.eval()
        y, state = net(x)
        assert y.shape == (batch, time, net.d_model), f"{name} {role}: output {tuple(y.shape)}"
        assert torch.isfinite(y).all()
        if net.stateful:
            assert state is not None, f"{name} {role}: a stateful backbone must return its state"
            y2, _ = net(x, state=state)  # accepted back as an initial state
            assert y2.shape == y.shape
        # gradients reach every parameter
        net.train()
        out, _ = net(x)
        out.float().pow(2).mean().backward()
        dead = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
        assert not dead, f"{name} {role}: no gradient reaches {dead}"
    # the decoder stepped one position at a time equals the full causal call
    dec = arch.build(cfg, d_in, "decoder").eval()
    with torch.no_grad():
        full, _ = dec(x)
        state, steps = None, []
        for t in range(time):
            y_t, state = dec(x[:, t:t + 1], state=state)
            steps.append(y_t)
        stepped = torch.cat(steps, dim=1)
    assert torch.allclose(full, stepped, atol=atol, rtol=1e-4), (
        f"{name}: step-by-step decoding differs from the full call by {(full - stepped).abs().max():.3g}")
    # the encoder ignores padding: a padded row's real positions equal the row alone
    enc = arch.build(cfg, d_in, "encoder").eval()
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[0, time - 3:] = False
    with torch.no_grad():
        padded, _ = enc(x, mask=mask)
        alone, _ = enc(x[:1, : time - 3])
    assert torch.allclose(padded[:1, : time - 3], alone, atol=atol, rtol=1e-4), (
        f"{name} encoder: padding changes real positions by {(padded[:1, :time - 3] - alone).abs().max():.3g}")


def make_run(task: str, arch: str, directory: Path, trainer: dict[str, Any] | None = None) -> Any:
    """A built run (task with data, model) of tiny size in ``directory``."""
    reg = plugins.registry()
    task_cls = reg.get("task", task)
    smoke = getattr(task_cls, "smoke_config", None)
    task_values = smoke(directory) if smoke else {}
    arch_values = getattr(reg.get("architecture", arch), "smoke_config", {}) or {}
    trainer_values = {"batch_size": 8, "max_steps": 4, "eval_every": 2, "log_every": 1, "device": "cpu",
                      **(trainer or {})}
    run = runs.resolve(task, arch, task_values=task_values, arch_values=arch_values, trainer_values=trainer_values)
    run.directory = Path(directory) / f"{task}-{arch}"
    run.command = f"zoo train {task} {arch} (zoo_core.testing)"
    runs.build(run)
    run.task.load_data(str(run.directory))
    runs.build_model(run)
    return run


def _fit(run) -> dict[str, Any]:
    from zoo_core.checkpoint import write_json

    run.directory.mkdir(parents=True, exist_ok=True)
    write_json(run.directory / checkpoint.CONFIG, run.to_json())
    run.task.save_artifacts(str(run.directory))
    return run.trainer_entry.cls().fit(run)


def check_pair(task: str, arch: str, directory: Path) -> None:
    """A task x architecture pair: training steps, a loaded checkpoint equals the saved one, and
    seeded runs are deterministic."""
    directory = Path(directory)
    first = make_run(task, arch, directory / "a")
    initial = copy.deepcopy(first.model.state_dict())
    result = _fit(first)
    assert result["steps"] == first.trainer_config.max_steps
    changed = any(not torch.equal(initial[k], v) for k, v in first.model.state_dict().items())
    assert changed, f"{task} x {arch}: training did not change any weight"
    for split in ("validation", "test"):
        if split in first.task.splits:
            assert result[split] and all(v == v for v in result[split].values()), f"{split} metrics: {result[split]}"
    # reload from disk: same weights, same metrics
    loaded = runs.load(first.directory)
    best = first.model.state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, best[k]), f"{task} x {arch}: {k} differs after save/load"
    loaded.task.load_data(None)
    split = "validation"
    bs = first.trainer_config.batch_size
    assert loaded.task.evaluate(loaded.model, split, bs) == first.task.evaluate(first.model, split, bs)
    # same seed, same result
    second = make_run(task, arch, directory / "b")
    _fit(second)
    for k, v in second.model.state_dict().items():
        assert torch.equal(v, best[k]), f"{task} x {arch}: seeded runs differ at {k}"

"""The conformance kit: checks a plugin author runs in their own test suite.

With pytest, subclass a contract and name what your plugin provides; every
check runs against every installed task (or architecture)::

    from zoo_core import testing

    class TestMySSM(testing.ArchitectureContract):
        architecture = "ssm"

    class TestMyCopyTask(testing.TaskContract):
        task = "copy"

    def test_plugin_module():
        import my_plugin
        testing.check_plugin(my_plugin)          # API range, hook names, registration

Without pytest, call the functions: :func:`check_architecture`,
:func:`check_task`, :func:`check_pair`, :func:`check_learns`,
:func:`check_plugin`. Each raises AssertionError with a message saying what
broke.

To keep the checks cheap, a task provides ``Task.smoke_config(directory) ->
dict`` (option values for a tiny instance, writing any files it needs into
``directory``) and, if it has ``zoo predict``, ``Task.smoke_inputs`` (a list
of example inputs as text); an architecture provides
``Architecture.smoke_config`` (a dict of small option values).
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from zoo_core import checkpoint, plugins
from zoo_core import run as runs
from zoo_core.api import Task
from zoo_core.config import build_config


class KitWarning(UserWarning):
    """A check the kit could not run because the plugin gives it nothing to run on."""


def task_names() -> list[str]:
    return plugins.registry().names("task")


def architecture_names() -> list[str]:
    return plugins.registry().names("architecture")


def _arch(name: str):
    entry = plugins.registry().entry("architecture", name)
    arch = entry.cls()
    cfg = build_config(entry.cls.Config, getattr(entry.cls, "smoke_config", {}) or {})
    return arch, cfg


def _equal(a: Any, b: Any) -> bool:
    """Exact equality of nested tensors / containers / plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


# ---- plugin module ---------------------------------------------------------------------------

def check_plugin(module: Any) -> dict[str, list[str]]:
    """A plugin module as the loader sees it: a declared, compatible API range; every ``@hookimpl``
    names a zoo hook with the hook's arguments; its register_* hooks register valid classes.
    Returns ``{kind: [names]}`` of what it registers."""
    import pluggy

    from zoo_core.registry import Registry

    who = f"plugin {getattr(module, '__name__', module)!r}"
    assert getattr(module, "zoo_plugin_api", None), (
        f"{who}: declare the plugin API versions it supports, e.g. zoo_plugin_api = \">=1,<2\"")
    plugins.check_api(module, who)
    plugins.check_hook_names(module, who)
    pm = pluggy.PluginManager("zoo")
    pm.add_hookspecs(plugins.hookspecs)
    pm.register(module)  # raises PluginValidationError for arguments the hook does not have
    pm.check_pending()
    scratch = Registry()
    for hook, kind in plugins.REGISTER_HOOKS.items():
        getattr(pm.hook, hook)(register=lambda cls, _k=kind: scratch.register(_k, cls, plugin=who))
    provided = {k: scratch.names(k) for k in plugins.KINDS if scratch.names(k)}
    assert provided or hasattr(module, "register_commands"), f"{who} registers nothing"
    return provided


# ---- architecture --------------------------------------------------------------------------

def check_architecture(name: str, *, d_in: int = 12, batch: int = 3, time: int = 7, atol: float = 1e-5) -> None:
    """The Backbone contract for both roles: shapes, state, step-vs-full, padding, gradients,
    seeded construction."""
    from zoo_core.nn import Backbone

    arch, cfg = _arch(name)
    torch.manual_seed(0)
    x = torch.randn(batch, time, d_in)
    d_mem = d_in + 2  # a memory width unlike the input's, as an encoder of another size gives
    memory = torch.randn(batch, 5, d_mem)
    memory_mask = torch.ones(batch, 5, dtype=torch.bool)
    memory_mask[0, 3:] = False
    with_memory = {"memory": memory, "memory_mask": memory_mask}
    for role in ("encoder", "decoder"):
        net = arch.build(cfg, d_in, role, d_memory=d_mem)
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
        # gradients reach every parameter (a decoder's cross-attention only with memory)
        net.train()
        out, _ = net(x, **(with_memory if role == "decoder" else {}))
        out.float().pow(2).mean().backward()
        dead = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
        assert not dead, f"{name} {role}: no gradient reaches {dead}"
        # the same seed builds the same weights
        torch.manual_seed(1)
        a = arch.build(cfg, d_in, role).state_dict()
        torch.manual_seed(1)
        b = arch.build(cfg, d_in, role).state_dict()
        assert _equal(a, b), f"{name} {role}: two builds under one seed differ (use torch's RNG only)"
    # the decoder stepped one position at a time equals the full causal call, with and without memory
    dec = arch.build(cfg, d_in, "decoder", d_memory=d_mem).eval()
    for extra in ({}, with_memory):
        with torch.no_grad():
            full, _ = dec(x, **extra)
            state, steps = None, []
            for t in range(time):
                y_t, state = dec(x[:, t:t + 1], state=state, **extra)
                steps.append(y_t)
            stepped = torch.cat(steps, dim=1)
        assert torch.allclose(full, stepped, atol=atol, rtol=1e-4), (
            f"{name}: step-by-step decoding{' with memory' if extra else ''} differs from the full call "
            f"by {(full - stepped).abs().max():.3g}")
    # beam search: reordering the state mid-sequence equals running the reordered rows from the start
    if type(dec).reorder_state is not Backbone.reorder_state:
        index = torch.tensor([batch - 1, 0, 0] + list(range(1, batch - 1)))
        k = time // 2
        for extra in ({}, with_memory):
            picked = {key: v[index] for key, v in extra.items()}
            with torch.no_grad():
                expected, _ = dec(x[index], **picked)
                _, state = dec(x[:, :k], **extra)
                state = dec.reorder_state(state, index)
                rest, _ = dec(x[index, k:], state=state, **picked)
            assert torch.allclose(expected[:, k:], rest, atol=atol, rtol=1e-4), (
                f"{name}: decoding on after reorder_state differs from the reordered rows' own run "
                f"by {(expected[:, k:] - rest).abs().max():.3g}")
    else:
        warnings.warn(KitWarning(f"{name}: the decoder has no reorder_state, so beam search cannot use it"),
                      stacklevel=2)
    with torch.no_grad():
        full, _ = dec(x)
    # ...and is causal: changing the future leaves the past alone
    changed = x.clone()
    changed[:, time // 2:] += 1.0
    with torch.no_grad():
        past, _ = dec(changed)
    k = time // 2
    assert torch.allclose(past[:, :k], full[:, :k], atol=atol, rtol=1e-4), f"{name} decoder: not causal"
    # the encoder ignores padding: a padded row's real positions equal the row alone
    enc = arch.build(cfg, d_in, "encoder").eval()
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[0, time - 3:] = False
    with torch.no_grad():
        padded, _ = enc(x, mask=mask)
        alone, _ = enc(x[:1, : time - 3])
    assert torch.allclose(padded[:1, : time - 3], alone, atol=atol, rtol=1e-4), (
        f"{name} encoder: padding changes real positions by {(padded[:1, :time - 3] - alone).abs().max():.3g}")


# ---- runs ----------------------------------------------------------------------------------

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


def check_learns(task: str, arch: str, directory: Path, *, steps: int = 30, lr: float = 1e-2) -> None:
    """A few optimizer steps on one training batch lower its loss (the model can learn at all)."""
    run = make_run(task, arch, Path(directory))
    model, t = run.model.train(), run.task
    batch = next(iter(t.batches("train", 16, seed=0)))
    torch.manual_seed(0)  # dropout masks
    with torch.no_grad():
        before = float(t.step(model, batch).loss)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        t.step(model, batch).loss.backward()
        opt.step()
    torch.manual_seed(0)
    with torch.no_grad():
        after = float(t.step(model, batch).loss)
    assert math.isfinite(after) and after < before, (
        f"{task} x {arch}: {steps} Adam steps (lr {lr}) on one batch did not lower its loss: "
        f"{before:.4f} -> {after:.4f}")


# ---- task ----------------------------------------------------------------------------------

def check_task(name: str, directory: Path, arch: str | None = None) -> None:
    """A task's data, metrics and inference paths with one architecture (default: the first
    installed): deterministic batches that honour ``start`` and shard evenly over ranks, a finite
    ``step``, ``evaluate`` reporting ``Task.metric``, artefacts that round-trip, ``predict``."""
    reg = plugins.registry()
    cls = reg.get("task", name)
    assert cls.mode in ("min", "max"), f"task {name}: mode must be 'min' or 'max', got {cls.mode!r}"
    arch = arch or architecture_names()[0]
    run = make_run(name, arch, Path(directory))
    task, model = run.task, run.model.eval()
    # data: one pass per split, deterministic from (seed, epoch), resumable, sharded evenly
    for split in task.splits:
        first = list(task.batches(split, 4, seed=3, epoch=1))
        assert first, f"task {name}: split {split!r} yields no batches"
        assert _equal(first, list(task.batches(split, 4, seed=3, epoch=1))), (
            f"task {name}: two passes over {split!r} with the same seed and epoch differ")
        assert _equal(first[1:], list(task.batches(split, 4, seed=3, epoch=1, start=1))), (
            f"task {name}: batches(start=1) must skip exactly the first batch of {split!r} (resume)")
    heads = {split: next(iter(task.batches(split, 4, seed=3, epoch=1))) for split in task.splits}
    same = [(a, b) for i, a in enumerate(task.splits) for b in task.splits[i + 1:] if _equal(heads[a], heads[b])]
    if same:  # e.g. generators seeded alike: the model would be tested on its training data
        warnings.warn(KitWarning(f"task {name}: splits {same} start with the same batch; are they the same data?"),
                      stacklevel=2)
    shards = [list(task.batches("train", 4, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) > 0, (
        f"task {name}: ranks got {len(shards[0])} and {len(shards[1])} training batches; each rank needs as many")
    # step and metrics
    batch = next(iter(task.batches("train", 4, seed=0)))
    with torch.no_grad():
        out = task.step(model, batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"task {name}: step loss must be a finite scalar"
    assert {"loss_sum", "count"} <= set(out.stats), (
        f"task {name}: step stats need loss_sum and count, got {sorted(out.stats)}")
    metrics = task.evaluate(model, "validation", 4)
    assert cls.metric in metrics, f"task {name}: evaluate gives {sorted(metrics)}, not its metric {cls.metric!r}"
    assert all(math.isfinite(v) for v in metrics.values()), f"task {name}: metrics {metrics}"
    assert task.evaluate(model, "validation", 4) == metrics, f"task {name}: evaluate is not deterministic"
    # artefacts and inference, as `zoo predict` does it: a fresh task from the run directory alone
    run.directory.mkdir(parents=True, exist_ok=True)
    task.save_artifacts(str(run.directory))
    checkpoint.save_weights(model, run.directory / checkpoint.WEIGHTS)
    fresh = cls(run.task_config)
    fresh.load_artifacts(str(run.directory))
    torch.manual_seed(12345)  # a different init, overwritten by the weights
    reloaded = fresh.build_model(run.arch, run.arch_config)
    checkpoint.load_weights(reloaded, run.directory / checkpoint.WEIGHTS)
    reloaded.eval()
    assert _equal(reloaded.state_dict(), model.state_dict()), f"task {name}: safetensors round trip is not exact"
    with torch.no_grad():
        assert torch.equal(fresh.step(reloaded, batch).loss, out.loss), f"task {name}: reloaded model differs"
    inputs = list(getattr(cls, "smoke_inputs", None) or [])
    if inputs:
        for text in inputs:
            answer = task.predict(model, text)
            assert isinstance(answer, str), f"task {name}: predict must return text, got {type(answer).__name__}"
            assert fresh.predict(reloaded, text) == answer, f"task {name}: predict differs after reload for {text!r}"
    elif cls.predict is not Task.predict:
        warnings.warn(KitWarning(f"task {name} has `zoo predict` but no smoke_inputs, so the kit cannot check it; "
                                 f"add e.g. smoke_inputs = [\"...\"] to the task class"), stacklevel=2)


# ---- pytest contracts ----------------------------------------------------------------------

class ArchitectureContract:
    """Subclass as ``class TestX(ArchitectureContract): architecture = "x"`` (pytest collects it):
    the backbone contract, learning on the addition task, and every installed task with it."""

    architecture: str
    learns_on: str = "addition"

    def pytest_generate_tests(self, metafunc):
        if "task" in metafunc.fixturenames:
            metafunc.parametrize("task", task_names())

    def test_backbone_contract(self):
        check_architecture(self.architecture)

    def test_learns(self, tmp_path):
        assert self.learns_on in task_names(), (
            f"the kit checks that {self.architecture} learns on task {self.learns_on!r}, which is not installed; "
            f"pip install zoo-{self.learns_on} (or set learns_on)")
        check_learns(self.learns_on, self.architecture, tmp_path)

    def test_with_every_task(self, task, tmp_path):
        check_pair(task, self.architecture, tmp_path)


class TaskContract:
    """Subclass as ``class TestX(TaskContract): task = "x"`` (pytest collects it): data, metrics and
    inference paths, and every installed architecture on it (training, save/load, determinism, learning)."""

    task: str

    def pytest_generate_tests(self, metafunc):
        if "arch" in metafunc.fixturenames:
            metafunc.parametrize("arch", architecture_names())

    def test_task_paths(self, arch, tmp_path):
        check_task(self.task, tmp_path, arch)

    def test_with_every_architecture(self, arch, tmp_path):
        check_pair(self.task, arch, tmp_path)

    def test_learns(self, arch, tmp_path):
        check_learns(self.task, arch, tmp_path)


__all__ = ["ArchitectureContract", "KitWarning", "TaskContract", "architecture_names", "check_architecture",
           "check_learns", "check_pair", "check_plugin", "check_task", "make_run", "task_names"]

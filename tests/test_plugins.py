"""Plugin loading and ``zoo plugins``: fake distributions on sys.path, found through real entry points.

Each fake is a folder with ``NAME.dist-info/{METADATA,entry_points.txt}`` and a
module, exactly what pip leaves behind, so importlib.metadata finds it like an
installed plugin. ``ZOO_LOAD_PLUGINS`` limits each test to its fakes (and
``zoo-addition`` where a real plugin helps).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from zoo_core import PLUGIN_API, plugins
from zoo_core.cli import cli
from zoo_core.cli import plugins as plugins_cli

HEADER = "from dataclasses import dataclass\nfrom zoo_core import Architecture, Task, Trainer, hookimpl, option\n"

TASK = '''
@dataclass
class TaskConfig:
    size: int = option(3, help="Size.")

class FakeTask(Task):
    name = "fake-task-{n}"
    Config = TaskConfig
    def load_data(self, run_dir=None): pass
    def build_model(self, arch, arch_config): pass
    def batches(self, split, batch_size, **kw): return iter(())
    def step(self, model, batch, state=None): pass
'''

ARCH = '''
@dataclass
class ArchConfig:
    hidden_size: int = option(4, help="Width.")

class FakeArch(Architecture):
    name = "fake-arch-{n}"
    Config = ArchConfig
    def build(self, config, d_in, role): raise NotImplementedError
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``site(dist, module_source)`` installs a fake plugin distribution; loading is reset around the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    names = []

    def install(dist: str, source: str, version: str = "0.3.0") -> str:
        module = dist.replace("-", "_")
        (root / f"{module}.py").write_text(HEADER + textwrap.dedent(source))
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[zoo]\n{module} = {module}\n")
        names.append(dist)
        monkeypatch.setenv("ZOO_LOAD_PLUGINS", ",".join(names))
        plugins.reset()
        return module

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    plugins.reset()
    yield install
    plugins.reset()
    for dist in names:
        sys.modules.pop(dist.replace("-", "_"), None)


def good(n: str) -> str:
    return TASK.format(n=n) + ARCH.format(n=n) + '''
zoo_plugin_api = ">=1,<2"

@hookimpl
def register_tasks(register):
    register(FakeTask)

@hookimpl
def register_architectures(register):
    register(FakeArch)
'''


def failure_of(dist: str) -> plugins.Failure:
    plugins.load_plugins()
    found = [f for f in plugins.failures if f.distribution == dist]
    assert found, f"no failure recorded for {dist}: {plugins.failures}"
    return found[0]


# ---- each hook ---------------------------------------------------------------------------------

def test_hook_register_tasks(site):
    site("zoo-fake-a", TASK.format(n="a") + "\n@hookimpl\ndef register_tasks(register):\n    register(FakeTask)\n")
    entry = plugins.registry().entry("task", "fake-task-a")
    assert (entry.plugin, entry.distribution, entry.version) == ("zoo_fake_a", "zoo-fake-a", "0.3.0")


def test_hook_register_architectures(site):
    site("zoo-fake-a", ARCH.format(n="a") + "\n@hookimpl\ndef register_architectures(register):\n"
                                           "    register(FakeArch)\n")
    assert plugins.registry().entry("architecture", "fake-arch-a").distribution == "zoo-fake-a"


def test_hook_register_trainers(site):
    site("zoo-fake-a", '''
        @dataclass
        class Cfg:
            steps: int = option(1, help="Steps.")

        class Quick(Trainer):
            name = "quick"
            Config = Cfg
            def fit(self, run): return {"steps": 0}

        @hookimpl
        def register_trainers(register):
            register(Quick)
    ''')
    reg = plugins.registry()
    assert reg.names("trainer") == ["default", "quick"]  # the core's trainer is a plugin like any other


def test_hook_register_commands(site):
    site("zoo-fake-a", '''
        import click

        @click.command("hello")
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

        @hookimpl
        def register_commands(cli):
            cli.add_command(hello)
    ''')
    group = click.Group("zoo")
    plugins.add_commands(group)
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"


def test_failing_register_commands_is_reported(site):
    site("zoo-fake-a", "\n@hookimpl\ndef register_commands(cli):\n    raise RuntimeError('no cli for you')\n")
    plugins.add_commands(click.Group("zoo"))
    f = failure_of("zoo-fake-a")
    assert f.hook == "register_commands" and "no cli for you" in f.error


# ---- failures are reported and skipped, unless strict ------------------------------------------

def test_plugin_that_fails_to_import_is_skipped(site):
    site("zoo-fake-a", good("a"))
    site("zoo-fake-b", "raise ImportError('needs libfoo')\n")
    reg = plugins.registry()
    assert "fake-task-a" in reg.names("task")
    f = failure_of("zoo-fake-b")
    assert f.error == "ImportError: needs libfoo" and f.version == "0.3.0"


def test_hook_that_raises_skips_the_whole_plugin(site):
    site("zoo-fake-a", TASK.format(n="a") + '''
@hookimpl
def register_tasks(register):
    register(FakeTask)

@hookimpl
def register_architectures(register):
    raise RuntimeError("boom")
''')
    reg = plugins.registry()
    assert "fake-task-a" not in reg.names("task")  # registered before the raise, dropped with the plugin
    f = failure_of("zoo-fake-a")
    assert f.hook == "register_architectures" and "RuntimeError: boom" in f.error
    assert "zoo_fake_a" not in [p.name for p in plugins.plugin_infos()]


def test_invalid_class_fails_its_plugin(site):
    site("zoo-fake-a", "\n@hookimpl\ndef register_tasks(register):\n    register(object)\n")
    assert "is not a zoo Task subclass" in failure_of("zoo-fake-a").error


def test_strict_mode_makes_a_broken_plugin_fatal(site, monkeypatch):
    site("zoo-fake-b", "raise ImportError('needs libfoo')\n")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match=r"zoo_fake_b \(zoo-fake-b 0.3.0\).*needs libfoo"):
        plugins.registry()
    monkeypatch.delenv("ZOO_STRICT_PLUGINS")
    assert plugins.registry().names("trainer") == ["default"]  # nothing half-loaded was left behind


def test_misspelled_hook_names_the_plugin_and_the_hook(site):
    site("zoo-fake-a", TASK.format(n="a") + "\n@hookimpl\ndef register_task(register):\n    register(FakeTask)\n")
    error = failure_of("zoo-fake-a").error
    assert "zoo_fake_a" in error and "'register_task' is not a zoo hook" in error
    assert "did you mean register_tasks?" in error


def test_hook_argument_that_does_not_exist_names_the_hook(site):
    site("zoo-fake-a", "\n@hookimpl\ndef register_tasks(registr):\n    pass\n")
    error = failure_of("zoo-fake-a").error
    assert "register_tasks" in error and "registr" in error and "\n" not in error


def test_misspelled_hook_is_fatal_in_strict_mode(site, monkeypatch):
    site("zoo-fake-a", "\n@hookimpl\ndef register_architecture(register):\n    pass\n")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match="register_architecture"):
        plugins.registry()


def test_a_conflict_names_both_plugins(site):
    site("zoo-fake-a", good("x"))
    site("zoo-fake-b", good("x"))
    with pytest.raises(plugins.PluginConflict, match="zoo-fake-a 0.3.0 and zoo-fake-b 0.3.0"):
        plugins.registry()


# ---- plugin API range ------------------------------------------------------------------------

def test_incompatible_plugin_is_skipped_with_both_versions(site):
    site("zoo-fake-a", good("a").replace('">=1,<2"', '">=2,<3"'))
    assert "fake-task-a" not in plugins.registry().names("task")
    error = failure_of("zoo-fake-a").error
    assert "supports zoo plugin API >=2,<3" in error and f"provides plugin API {PLUGIN_API}" in error
    assert "pip install -U zoo-core" in error  # the plugin is newer than zoo: upgrade zoo


def test_plugin_too_old_is_told_to_upgrade_itself(site):
    site("zoo-fake-a", good("a").replace('">=1,<2"', '"<1"'))
    assert "upgrade the plugin" in failure_of("zoo-fake-a").error


def test_unparseable_api_range(site):
    site("zoo-fake-a", good("a").replace('">=1,<2"', '"version one"'))
    assert "is not a version range" in failure_of("zoo-fake-a").error


def test_compatible_and_undeclared_plugins_load(site):
    site("zoo-fake-a", good("a"))
    site("zoo-fake-b", good("b").replace('zoo_plugin_api = ">=1,<2"', ""))
    infos = {p.distribution: p for p in plugins.plugin_infos()}
    assert infos["zoo-fake-a"].api == ">=1,<2" and infos["zoo-fake-b"].api == ""
    assert not plugins.failures


# ---- ZOO_LOAD_PLUGINS ------------------------------------------------------------------------

def test_load_plugins_allow_list(site, monkeypatch):
    site("zoo-fake-a", good("a"))
    site("zoo-fake-b", good("b"))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "Zoo_Fake_B")  # distribution names compare as pip compares them
    plugins.reset()
    assert plugins.registry().names("task") == ["fake-task-b"]
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "zoo_fake_a")  # or the entry-point name
    plugins.reset()
    assert plugins.registry().names("task") == ["fake-task-a"]
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")
    plugins.reset()
    assert [p.name for p in plugins.plugin_infos()] == ["zoo-core"]  # none, but the core's trainer


def test_first_party_plugins_declare_the_api():
    import zoo_addition
    import zoo_recurrent

    for module in (zoo_addition, zoo_recurrent):
        assert plugins.check_api(module) == ">=1,<2"


# ---- zoo plugins -----------------------------------------------------------------------------

def test_zoo_plugins_lists_hooks_provides_and_failures(site):
    site("zoo-fake-a", good("a"))
    site("zoo-fake-b", "raise ImportError('needs libfoo')\n")
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "zoo-fake-a 0.3.0  [zoo_fake_a]  api >=1,<2" in out.output
    assert "hooks: register_architectures, register_tasks" in out.output
    assert "provides: tasks: fake-task-a; architectures: fake-arch-a" in out.output
    assert "FAILED zoo_fake_b (zoo-fake-b 0.3.0): ImportError: needs libfoo" in out.output


def test_zoo_plugins_list_json(site):
    site("zoo-fake-a", good("a"))
    data = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).output)
    row = next(p for p in data["plugins"] if p["distribution"] == "zoo-fake-a")
    assert row == {"name": "zoo_fake_a", "distribution": "zoo-fake-a", "version": "0.3.0",
                   "hooks": ["register_architectures", "register_tasks"], "api": ">=1,<2",
                   "provides": {"task": ["fake-task-a"], "architecture": ["fake-arch-a"]}}
    assert data["plugin_api"] == PLUGIN_API and data["failed"] == []


@pytest.fixture
def pip_calls(monkeypatch):
    """Record the commands ``zoo plugins install/uninstall`` run instead of running them."""
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if "plugins" in cmd:  # the post-install listing in a fresh interpreter
            return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"plugins": [], "failed": []}), stderr="")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(plugins_cli.subprocess, "run", run)
    return calls


def test_install_runs_pip_of_this_interpreter_with_catalogued_names(pip_calls):
    out = CliRunner().invoke(cli, ["plugins", "install", "recurrent", "zoo-transformer", "zoo-other", "-U",
                                   "-e", "some/path"])
    assert out.exit_code == 0, out.output
    assert pip_calls[0] == [sys.executable, "-m", "pip", "install", "--upgrade", "zoo-recurrent>=0.1",
                            "zoo-transformer>=0.1", "zoo-other", "-e", "some/path"]
    assert "not in the zoo catalogue" in out.output  # zoo-other: a warning, not a refusal


def test_install_reports_pip_failure(monkeypatch):
    monkeypatch.setattr(plugins_cli.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    out = CliRunner().invoke(cli, ["plugins", "install", "recurrent"])
    assert out.exit_code == 1 and "pip exited with status 1" in out.output


def test_install_needs_something():
    out = CliRunner().invoke(cli, ["plugins", "install"])
    assert out.exit_code == 2 and "-e PATH" in out.output


def test_uninstall_maps_names_to_distributions(pip_calls):
    out = CliRunner().invoke(cli, ["plugins", "uninstall", "recurrent", "addition", "zoo-x", "-y"])
    assert out.exit_code == 0, out.output
    assert pip_calls == [[sys.executable, "-m", "pip", "uninstall", "-y", "zoo-recurrent", "zoo-addition", "zoo-x"]]


def test_uninstall_refuses_zoo_itself(pip_calls):
    out = CliRunner().invoke(cli, ["plugins", "uninstall", "zoo_core", "-y"])
    assert out.exit_code == 1 and "zoo itself" in out.output and not pip_calls

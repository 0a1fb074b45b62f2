"""The datasette meta-tests: every hook is documented, in its docstring and in the guide, and tested."""

import ast
import inspect
from pathlib import Path

import pytest

from zoo_core import hookspecs, plugins

ROOT = Path(__file__).resolve().parents[1]
HOOKS = plugins.HOOKS


def test_there_are_hooks():
    assert HOOKS == ["register_architectures", "register_commands", "register_tasks", "register_trainers"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and len(doc) > 20, f"hookspec {hook} needs a docstring saying what to pass to it"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_plugin_guide(hook):
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### {hook}(" in guide, f"docs/plugins.md has no '### {hook}(...)' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tests |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
    assert f"test_hook_{hook}" in tests, f"add a test named test_hook_{hook}"


def test_every_hook_argument_is_register_or_cli():
    """Hooks hand plugins a callback (the llm design): the core validates what they register."""
    for hook in HOOKS:
        args = list(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert args in (["register"], ["cli"]), f"{hook}{args}"

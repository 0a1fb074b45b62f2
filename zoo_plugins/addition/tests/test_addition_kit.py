"""zoo-addition through the conformance kit (zoo_core.testing), as a third-party task would be."""

import zoo_addition
from zoo_core import testing


def test_plugin_module():
    assert testing.check_plugin(zoo_addition) == {"task": ["addition"]}


def test_task_paths(tmp_path):
    testing.check_task("addition", tmp_path, "lstm")  # every architecture: tests/test_contract.py

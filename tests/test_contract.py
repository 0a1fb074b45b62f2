"""The registry is the test suite: every installed architecture, and every task x architecture pair."""

import pytest

from zoo_core import testing

ARCHS = testing.architecture_names()
TASKS = testing.task_names()


def test_first_party_plugins_are_installed():
    assert {"rnn", "gru", "lstm", "transformer"} <= set(ARCHS)
    assert "addition" in TASKS


@pytest.mark.parametrize("arch", ARCHS)
def test_backbone_contract(arch):
    testing.check_architecture(arch)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_task_x_architecture(task, arch, tmp_path):
    testing.check_pair(task, arch, tmp_path)

"""zoo-recurrent through the conformance kit (zoo_core.testing), as a third-party architecture would be."""

import pytest
import zoo_recurrent
from zoo_core import testing


def test_plugin_module():
    assert testing.check_plugin(zoo_recurrent) == {"architecture": ["gru", "lstm", "rnn"]}


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_learns_addition(arch, tmp_path):
    testing.check_learns("addition", arch, tmp_path)  # the contract and every task: tests/test_contract.py

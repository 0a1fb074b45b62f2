"""The example plugin's tests: the zoo conformance kit does the heavy lifting.

Run with the plugin installed (``pip install -e .[test]``): ``pytest``.
"""

import subprocess
import sys

import pytest

from zoo_core import ConfigError, ZooError, testing
from zoo_core.config import build_config

import zoo_example


def test_plugin_module():
    """Declared API range, real hook names, valid classes: what the loader will check."""
    assert testing.check_plugin(zoo_example) == {"task": ["copy"], "architecture": ["diag-ssm"]}


def test_import_does_not_import_torch():
    code = "import zoo_example, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


class TestDiagonalSSM(testing.ArchitectureContract):
    """Backbone contract, learning on addition, and a tiny run with every installed task."""

    architecture = "diag-ssm"


class TestCopy(testing.TaskContract):
    """Data, metrics and inference paths, and a tiny run with every installed architecture."""

    task = "copy"


def test_decay_range_is_validated():
    with pytest.raises(ConfigError) as e:
        build_config(zoo_example.DiagonalSSMConfig, {"decay_min": 0.9, "decay_max": 0.5})
    assert e.value.field == "decay_min"


def test_bad_predict_input_says_what_to_type():
    task = zoo_example.Copy(build_config(zoo_example.CopyConfig, {"symbols": 4}))
    with pytest.raises(ZooError, match="symbols 0..3"):
        task.parse("1 7")

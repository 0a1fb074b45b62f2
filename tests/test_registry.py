"""The registry owns names: duplicates name both plugins, unknown names get suggestions, incomplete classes are refused."""

from dataclasses import dataclass

import pytest

from zoo_core import Architecture, Task, option
from zoo_core.registry import PluginConflict, RegistrationError, Registry, UnknownName


@dataclass
class Cfg:
    hidden_size: int = option(4, help="Width.")


class Good(Architecture):
    name = "good"
    Config = Cfg

    def build(self, config, d_in, role):
        raise NotImplementedError


class Twin(Good):
    pass


class Incomplete(Task):
    name = "incomplete"
    Config = Cfg


def test_unknown_name_suggests_close_matches():
    reg = Registry()
    reg.register("architecture", Good, plugin="p", distribution="zoo-p", version="1")
    with pytest.raises(UnknownName) as e:
        reg.entry("architecture", "goood")
    assert "did you mean good" in str(e.value)
    assert e.value.exit_code == 2


def test_duplicate_names_both_distributions():
    reg = Registry()
    reg.register("architecture", Good, plugin="p", distribution="zoo-first", version="1.0")
    with pytest.raises(PluginConflict) as e:
        reg.register("architecture", Twin, plugin="q", distribution="zoo-second", version="2.0")
    assert "zoo-first 1.0" in str(e.value) and "zoo-second 2.0" in str(e.value)


def test_missing_abstract_method_is_refused_at_registration():
    with pytest.raises(RegistrationError, match="does not implement"):
        Registry().register("task", Incomplete, plugin="p")


def test_non_subclass_is_refused():
    with pytest.raises(RegistrationError, match="not a zoo Task"):
        Registry().register("task", Good, plugin="p")

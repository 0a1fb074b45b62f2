"""registry.toml: its schema, the checkpoints it lists, and what `zoo list` / `zoo pull` make of it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo_core import catalogue, hub
from zoo_core import run as runs
from zoo_core.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DATA = catalogue.load()
SHIPPED = [p for p in DATA["pretrained"] if p["source"].startswith("package://")]


def test_schema_is_valid():
    assert catalogue.validate(DATA) == []


def test_root_registry_is_the_shipped_one():
    assert (ROOT / "registry.toml").resolve() == catalogue.PATH.resolve()


def test_validate_reports_problems():
    bad = {"plugins": [{"name": "zoo-x", "requirement": "zoo-x", "provides": {"models": []}, "first_party": "yes"}],
           "pretrained": [{"name": "a", "task": "t", "architecture": "a", "source": "hf://o/r@main",
                           "revision": "main", "sha256": {"config.json": "xyz"}, "metrics": {"acc": "high"},
                           "recipe": "python train.py", "license": "mit", "extra": 1}]}
    problems = "\n".join(catalogue.validate(bad))
    for text in ("first_party must be bool", "provides.models", "hf source must be", "must pin config.json",
                 "not 64 hex", "metrics values", "recipe must be", "unknown key extra"):
        assert text in problems


def test_first_party_plugins_exist_in_the_repo():
    names = {tomllib.loads(p.read_text())["project"]["name"] for p in ROOT.glob("zoo_plugins/*/pyproject.toml")}
    for plugin in DATA["plugins"]:
        if plugin["first_party"]:
            assert plugin["name"] in names


def test_shipped_checkpoints_are_package_data():
    pyproject = tomllib.loads((ROOT / "zoo_plugins/addition/pyproject.toml").read_text())
    assert "pretrained/*/*" in pyproject["tool"]["setuptools"]["package-data"]["zoo_addition"]


@pytest.mark.parametrize("entry", SHIPPED, ids=[p["name"] for p in SHIPPED])
def test_shipped_checkpoint_verifies_loads_and_scores_as_recorded(entry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # shipped weights need no network
    folder = hub.resolve(entry["name"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(entry["sha256"])
    run = runs.load(entry["name"])
    assert (run.task_entry.name, run.arch_entry.name) == (entry["task"], entry["architecture"])
    assert json.loads((folder / "config.json").read_text())["task"]["config"]["seq_len"] == 30
    run.task.load_data(None)
    accuracy = run.task.evaluate(run.model, "test", 500)["accuracy"]
    assert accuracy == pytest.approx(entry["metrics"]["test_accuracy"], abs=1e-4)


def test_list_shows_pretrained_and_known_plugins():
    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["name"] for p in data["pretrained"]] == [p["name"] for p in DATA["pretrained"]]
    text = CliRunner().invoke(cli, ["list"]).stdout
    for p in DATA["pretrained"]:
        assert p["name"] in text


@pytest.mark.skipif(not any(p["name"] == "addition-lstm" for p in SHIPPED), reason="addition-lstm not shipped")
def test_pull_and_predict_shipped_model_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    result = runner.invoke(cli, ["pull", "addition-lstm"])
    assert result.exit_code == 0 and "addition x lstm" in result.stdout, result.output
    result = runner.invoke(cli, ["predict", "addition-lstm", "1 -1 5 3 4"])
    assert result.exit_code == 0 and result.stdout.strip() == "9", result.output


def test_missing_shipping_distribution_names_it(monkeypatch):
    monkeypatch.setattr(catalogue, "load", lambda path=None: {**DATA, "pretrained": [
        {"name": "lm-tiny", "source": "package://zoo-language-modeling/lm-tiny", "sha256": {}}]})
    with pytest.raises(hub.HubError, match="ships with zoo-language-modeling.*pip install zoo-language-modeling"):
        hub.resolve("lm-tiny")

"""The CLI as a user drives it: listing, training, eval, predict, bad input, TOML configs."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo_core.cli import cli

TINY = ["--seq-len", "6", "--train-size", "256", "--validation-size", "64", "--test-size", "64",
        "--hidden-size", "16", "--batch-size", "16", "--max-steps", "30", "--eval-every", "10"]


def zoo(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_and_list_do_not_import_torch():
    code = ("import sys; from zoo_core.cli import cli\n"
            "for args in (['--help'], ['list'], ['list', '--json'], ['train', '--help']):\n"
            "    try: cli.main(args, standalone_mode=False)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_list_json_has_the_contract_keys():
    result = zoo("list", "--json")
    data = json.loads(result.output)
    assert {"tasks", "architectures", "pretrained", "plugins"} <= set(data)
    archs = {a["name"]: a for a in data["architectures"]}
    assert archs["lstm"]["distribution"] == "zoo-recurrent" and archs["lstm"]["version"]
    assert "addition" in {t["name"] for t in data["tasks"]}


def test_list_shows_matrix():
    out = zoo("list").output
    assert "Matrix" in out and "addition" in out and "transformer" in out


def test_info_shows_options_and_parameter_count():
    out = zoo("info", "lstm").output
    assert "--hidden-size" in out and "default 128" in out
    out = zoo("info", "addition", "lstm").output
    assert "parameters:" in out


@pytest.mark.parametrize("args, words", [
    (["train", "additon", "lstm"], "did you mean addition"),
    (["train", "addition", "lstmm"], "did you mean lstm"),
    (["train", "addition", "lstm", "--hiden-size", "3"], "--hidden-size'"),
    (["train", "addition", "lstm", "--hidden-size", "0"], ">= 1"),
    (["train", "addition", "lstm", "--hidden-size", "big"], "integer"),
    (["train", "addition", "lstm", "--dropout", "1.5"], "dropout"),
    (["train", "addition", "lstm", "--optimizer", "adagrad"], "adagrad"),
    (["train", "addition", "lstm", "--seq-len", "2"], ">= 3"),
    (["train", "addition", "transformer", "--num-heads", "3"], "num_heads"),
    (["train", "addition", "lstm", "--max-steps", "none"], "max_epochs"),
])
def test_bad_input_is_refused_before_training(tmp_path, args, words):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert not out.exists(), "nothing may be written for refused input"


def test_train_eval_predict(tmp_path):
    out = tmp_path / "run"
    result = zoo("train", "addition", "lstm", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "README.md", "plots/loss.png",
                 "plots/accuracy.png", "resume/state.json"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["config"]["seq_len"] == 6
    assert config["architecture"]["distribution"] == "zoo-recurrent"
    assert config["trainer"]["config"]["max_steps"] == 30
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if not r.get("final")] == [10, 20, 30]
    assert all({"epoch", "time", "lr", "train", "validation"} <= set(r) for r in records if not r.get("final"))
    assert "test" in records[-1]
    card = (out / "README.md").read_text()
    assert "library_name: zoo" in card and "zoo train addition lstm" in card

    metrics = json.loads(zoo("eval", str(out), "--split", "test", "--json").output)
    assert set(metrics) == {"loss", "accuracy"} and 0 <= metrics["accuracy"] <= 1
    assert metrics == pytest.approx(records[-1]["test"], rel=1e-6)  # batch size changes summation order

    answer = zoo("predict", str(out), "1 2 -1 5 7 3").output.strip()
    assert answer.isdigit() and 0 <= int(answer) <= 18


@pytest.mark.parametrize("text, words", [
    ("1 2 5 7 3", "exactly one marker"),
    ("1 -1 2 -1 7 3", "exactly one marker"),
    ("1 2 x -1 7 3", "'x' is not a digit"),
    ("1 2 3 -1 3", "too late"),
    ("-1 3", "at least 3"),
])
def test_predict_rejects_malformed_input(tmp_path, text, words):
    out = tmp_path / "run"
    zoo("train", "addition", "lstm", *TINY, "--max-steps", "2", "--out", str(out))
    result = CliRunner().invoke(cli, ["predict", str(out), text])
    assert result.exit_code != 0
    assert words in result.output and len(result.output.strip().splitlines()) == 1


def test_toml_config_and_flag_override(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[task]\nseq_len = 7\ntrain_size = 64\n[architecture]\nhidden_size = 12\n'
                    '[trainer]\nmax_steps = 4\nlr = 0.01\nbatch_size = 16\n')
    out = tmp_path / "run"
    result = zoo("train", "addition", "gru", "--config", str(conf), "--lr", "0.02", "--out", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["config"]["seq_len"] == 7
    assert config["architecture"]["config"]["hidden_size"] == 12
    assert config["trainer"]["config"]["lr"] == 0.02 and config["trainer"]["config"]["max_steps"] == 4


@pytest.mark.parametrize("text, words", [
    ("[task\nseq_len = 7", "invalid TOML"),
    ("[task]\nseq_length = 7", "did you mean seq_len"),
    ("[model]\nx = 1", "unknown table"),
])
def test_bad_toml_is_refused(tmp_path, text, words):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    result = CliRunner().invoke(cli, ["train", "addition", "gru", "--config", str(conf), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and words in result.output


def test_existing_run_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = CliRunner().invoke(cli, ["train", "addition", "lstm", *TINY, "--out", str(out)])
    assert result.exit_code == 2 and "--resume" in result.output
    assert (out / "keep.txt").read_text() == "precious"


def test_info_takes_a_run_or_pretrained_name(tmp_path):
    out = zoo("info", "addition-lstm").output
    assert "addition x lstm" in out and "parameters: 268,051" in out and "command: zoo train addition lstm" in out


@pytest.mark.parametrize("args, words", [
    (["info", "lstmm"], "did you mean lstm"),
    (["info", "addition", "lstmm"], "did you mean lstm"),
])
def test_info_unknown_names_are_refused_whole(args, words):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and words in result.output
    assert "--seq-len" not in result.output  # nothing half-printed

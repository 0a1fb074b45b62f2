"""Property-based: random input to the config parser, the CLI, checkpoint readers and the data readers
gives success or a clean one-line ZooError, never a traceback."""

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo_core import checkpoint, run as runs
from zoo_core.cli import cli
from zoo_core.cli import train as train_cli
from zoo_core.config import ConfigError, ZooError, build_config, fields
from zoo_core.plugins import registry

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["none", "1e3", "-0", "inf", "nan", " 7 ", "true", "0x10"]))
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2))


def _config_classes():
    reg = registry()
    return [entry.cls.Config for kind in ("task", "architecture", "trainer") for entry in reg.entries(kind)]


@FUZZ
@given(data=st.data())
def test_build_config_gives_config_or_config_error(data):
    cls = data.draw(st.sampled_from(_config_classes()))
    names = [f.name for f in fields(cls)]
    # any key, newlines included: an unprintable unknown key is quoted, so the error stays on one line
    keys = st.one_of(st.sampled_from(names), st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
    raw = data.draw(st.dictionaries(keys, values, max_size=4))
    try:
        build_config(cls, raw, section="fuzz")
    except ConfigError as e:
        assert "\n" not in str(e)


toml_text = st.one_of(
    st.binary(max_size=80),
    st.lists(st.sampled_from(["[task]", "[trainer]", "[architecture]", "[arch]", "[model]", "lr = 0.1",
                              "lr = -1", "batch_size = 0", "batch_size = 'x'", "seq_len = 1e400", "x = [1,",
                              "dropout = 1.5", "hidden_size = {a = 1}", "max_steps = 'none'", "= 3", "[[task]]",
                              "seq_len = 7", "on_nan = 'skip'", "\x00", "lr = nan"]),
             max_size=6).map(lambda lines: "\n".join(lines).encode()),
)


@FUZZ
@given(text=toml_text)
def test_toml_configs_are_resolved_or_refused(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_bytes(text)
        try:
            values = train_cli._read_toml(str(path))
            runs.resolve("addition", "lstm", task_values=values["task"], arch_values=values["architecture"],
                         trainer_values=values["trainer"])
        except ZooError as e:
            assert "\n" not in str(e)


OPTIONS = ["--hidden-size", "--batch-size", "--lr", "--dropout", "--max-steps", "--max-epochs", "--eval-every",
           "--seq-len", "--optimizer", "--on-nan", "--num-layers", "--clip-grad-norm", "--device", "--seed",
           "--resume", "--out", "--config", "--no-such-option", "--quiet", "--bidirectional"]
ARG_VALUES = ["0", "-1", "1", "3", "0.5", "1.5", "nan", "none", "adam", "skip", "", "x", "--lr", "1e9", "cpu"]


@FUZZ
@given(args=st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(ARG_VALUES), st.text(max_size=5)),
                     max_size=6),
       names=st.sampled_from([["addition", "lstm"], ["addition", "transformer"], ["additon", "gru"], []]))
def test_train_command_line_is_refused_or_accepted_cleanly(monkeypatch, args, names):
    started = []
    monkeypatch.setattr(train_cli, "_train", lambda run, quiet: started.append(run))  # no training
    with tempfile.TemporaryDirectory() as d, monkeypatch.context() as m:
        m.chdir(d)
        result = CliRunner().invoke(cli, ["train", *names, *args], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert len(result.output.strip().splitlines()) == 1, result.output


json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)


@FUZZ
@given(data=st.data())
def test_config_json_is_loaded_or_refused(data):
    good = {"format": "zoo", "format_version": 1,
            "task": {"name": "addition", "distribution": "zoo-addition", "config": {}},
            "architecture": {"name": "lstm", "distribution": "zoo-recurrent", "config": {}},
            "trainer": {"name": "default", "config": {}}}
    doc = data.draw(st.one_of(json_values, st.just(good)))
    if isinstance(doc, dict) and data.draw(st.booleans()):  # mutate a valid config
        doc = json.loads(json.dumps(good))
        section = data.draw(st.sampled_from(["task", "architecture", "trainer", None]))
        key = data.draw(st.sampled_from(["name", "config", "distribution", "format_version"]))
        target = doc[section] if section else doc
        target[key] = data.draw(json_values)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.json").write_text(json.dumps(doc, allow_nan=True))
        try:
            runs.from_config(checkpoint.read_config(d))
        except ZooError as e:
            assert "\n" not in str(e)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import torch

    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    checkpoint.save_weights(torch.nn.Linear(4, 3), path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_weights_are_loaded_or_refused(weights_file, data):
    import torch

    blob = bytearray(weights_file)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "header"]))
        if kind == "flip" and blob:
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[data.draw(st.integers(0, len(blob))):]
        elif kind == "extend":
            blob += data.draw(st.binary(max_size=16))
        elif blob:
            i = data.draw(st.integers(0, min(len(blob) - 1, 120)))
            blob[i] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        path.write_bytes(bytes(blob))
        try:
            checkpoint.load_weights(torch.nn.Linear(4, 3), path)
        except checkpoint.CheckpointError as e:
            assert "\n" not in str(e) and str(path) in str(e)


corpus_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(["the cat", "\n", " ", "<unk>", "<eos>", "\r\n", "\t", "é", "\x00", "😀", "\ufeff"]),
             max_size=40).map(lambda parts: "".join(parts).encode("utf-8")),
)


@FUZZ
@given(files=st.fixed_dictionaries({"train.txt": corpus_bytes, "valid.txt": corpus_bytes, "test.txt": corpus_bytes}),
       level=st.sampled_from(["word", "char", "bpe"]), bptt=st.integers(1, 4))
def test_lm_data_reader_loads_or_refuses(files, level, bptt):
    pytest.importorskip("zoo_lm")
    with tempfile.TemporaryDirectory() as d:
        for name, content in files.items():
            Path(d, name).write_bytes(content)
        try:
            run = runs.resolve("lm", "lstm", task_values={"data": d, "level": level, "bptt": bptt,
                                                          "vocab_size": 300 if level == "bpe" else None},
                               arch_values={"hidden_size": 4}, trainer_values={"batch_size": 2})
            runs.build(run)
            run.task.load_data(None)
            for split in ("train", "validation"):
                next(iter(run.task.batches(split, 1)), None)
        except ZooError as e:
            assert "\n" not in str(e)

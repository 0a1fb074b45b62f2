"""Faults and hostile input: signals, kill -9, crashes while saving, full disks, non-finite losses,
corrupted or incompatible checkpoints, bad CLI input. Every refusal is one line, never a traceback."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from zoo_core import checkpoint
from zoo_core.checkpoint import CheckpointError
from zoo_core.cli import cli

TINY = ["--seq-len", "6", "--train-size", "64", "--validation-size", "32", "--test-size", "32",
        "--hidden-size", "8", "--batch-size", "16", "--eval-every", "5", "--dropout", "0.2", "--num-layers", "2"]


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, code=None):
    """A refusal: the given exit code, one line of output, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0 if code is None else result.exit_code == code, (result.exit_code, result.output)
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    return text


def records(run_dir):
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("time")
        out.append(r)
    return out


def same_run(a, b):
    for name in ("resume/model.safetensors", "resume/optimizer.safetensors", "model.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert records(a) == records(b)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = zoo("train", "addition", "lstm", *TINY, "--max-steps", "10", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _start(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "zoo_core.cli", "train", "addition", "lstm", *TINY, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path, proc, timeout=60.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


# ---- signals and kill -9 ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_resume_equals_uninterrupted(tmp_path, sig):
    split = tmp_path / "split"
    proc = _start(split, "--max-steps", "100000", "--log-every", "1")
    _wait_for(split / "model.safetensors", proc)  # the first evaluation's checkpoint
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"{sig.name} at step" in err and "--resume" in err
    stopped = json.loads((split / "resume/state.json").read_text())["step"]
    final = stopped + 7  # crosses an evaluation (every 5) and an epoch end (4 batches)
    assert zoo("train", "--resume", split, "--max-steps", final, "--quiet").exit_code == 0
    straight = tmp_path / "straight"
    assert zoo("train", "addition", "lstm", *TINY, "--max-steps", final, "--out", straight, "--quiet").exit_code == 0
    same_run(straight, split)


def test_kill9_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "--max-steps", "100000", "--eval-every", "1")  # saving nearly all the time
    _wait_for(out / "model.safetensors", proc)
    time.sleep(random.uniform(0.0, 0.3))
    proc.kill()
    proc.communicate()
    assert checkpoint.resume_dir(out) is not None
    assert zoo("eval", out).exit_code == 0
    step = json.loads((checkpoint.resume_dir(out) / "state.json").read_text())["step"]
    result = zoo("train", "--resume", out, "--max-steps", step + 2, "--quiet")
    assert result.exit_code == 0, result.output


class _Crash(BaseException):
    """A process dying at this instant: nothing after it runs, files stay as they are."""


def _tiny_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return model, opt


def test_crash_at_any_point_of_a_save_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    """Die at every file operation of save_resume in turn: one complete checkpoint always remains,
    and the next save recovers."""
    model, opt = _tiny_state()
    checkpoint.save_resume(tmp_path, model, opt, {"step": 1, "epoch": 0, "batch": 1})
    real = {"replace": os.replace, "rmtree": shutil.rmtree, "fsync": os.fsync, "mkdir": Path.mkdir}
    crash_at, n_points = 1, None
    while n_points is None:
        calls = [0]

        def hook(name):
            def wrapped(*a, **k):
                calls[0] += 1
                if calls[0] == crash_at:
                    raise _Crash
                return real[name](*a, **k)
            return wrapped

        with monkeypatch.context() as m:
            m.setattr(os, "replace", hook("replace"))
            m.setattr(shutil, "rmtree", hook("rmtree"))
            m.setattr(os, "fsync", hook("fsync"))
            m.setattr(Path, "mkdir", hook("mkdir"))
            try:
                checkpoint.save_resume(tmp_path, model, opt, {"step": 2, "epoch": 0, "batch": 2})
                n_points = crash_at
            except _Crash:
                pass
        folder = checkpoint.resume_dir(tmp_path)
        assert folder is not None, f"no checkpoint after a crash at operation {crash_at}"
        state = checkpoint.load_resume(tmp_path, *_tiny_state())
        assert state["step"] in (1, 2)
        # the next save (a resumed run) recovers whatever the crash left
        checkpoint.save_resume(tmp_path, model, opt, {"step": 1, "epoch": 0, "batch": 1})
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["resume"]
        crash_at += 1
    assert n_points > 5


def test_torn_metrics_line_does_not_break_resume(trained, tmp_path):
    run = _copy(trained, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "epo')  # a kill -9 in the middle of an append
    assert zoo("train", "--resume", run, "--max-steps", 12, "--quiet").exit_code == 0
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())


# ---- full disk, permissions ---------------------------------------------------------------------


@pytest.mark.parametrize("target, err", [("fsync", errno.ENOSPC), ("replace", errno.EACCES), ("mkstemp", errno.EROFS)])
def test_write_errors_are_one_line_and_keep_the_previous_file(tmp_path, monkeypatch, target, err):
    model, opt = _tiny_state()
    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(model, path)
    checkpoint.save_resume(tmp_path, model, opt, {"step": 1, "epoch": 0, "batch": 1})
    before = path.read_bytes(), (tmp_path / "resume/model.safetensors").read_bytes()

    def fail(*a, **k):
        raise OSError(err, os.strerror(err))

    module = checkpoint.tempfile if target == "mkstemp" else os
    monkeypatch.setattr(module, target, fail)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(CheckpointError) as e:
        checkpoint.save_weights(model, path)
    assert str(path) in str(e.value) and os.strerror(err) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError):
        checkpoint.save_resume(tmp_path, model, opt, {"step": 2, "epoch": 0, "batch": 2})
    monkeypatch.undo()
    assert (path.read_bytes(), (tmp_path / "resume/model.safetensors").read_bytes()) == before
    assert checkpoint.load_resume(tmp_path, *_tiny_state())["step"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_during_training_is_reported_and_resumable(trained, tmp_path, monkeypatch):
    run = _copy(trained, tmp_path)
    before = (run / "resume/model.safetensors").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = zoo("train", "--resume", run, "--max-steps", 20, "--quiet")
    assert "No space left on device" in one_line_error(result, 1)
    monkeypatch.undo()
    assert (run / "resume/model.safetensors").read_bytes() == before
    assert zoo("train", "--resume", run, "--max-steps", 12, "--quiet").exit_code == 0


# ---- non-finite losses --------------------------------------------------------------------------


@pytest.fixture
def nan_at_step_7(monkeypatch):
    from zoo_addition import Addition

    real, calls = Addition.step, [0]

    def step(self, model, batch, state=None):
        out = real(self, model, batch, state)
        if torch.is_grad_enabled():  # training, not evaluation
            calls[0] += 1
            if calls[0] == 7:
                return out._replace(loss=out.loss * float("nan"))
        return out

    monkeypatch.setattr(Addition, "step", step)


def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, nan_at_step_7):
    out = tmp_path / "run"
    result = zoo("train", "addition", "lstm", *TINY, "--max-steps", 20, "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = result.output.strip().splitlines()[-1]  # after the progress lines
    assert "non-finite loss at step 7" in text and "from step 5" in text and "--on-nan skip" in text
    assert json.loads((out / "resume/state.json").read_text())["step"] == 5
    for name in ("model.safetensors", "resume/model.safetensors"):
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(out / name).values()), name


def test_nan_skip_skips_the_batch(tmp_path, nan_at_step_7):
    out = tmp_path / "run"
    result = zoo("train", "addition", "lstm", *TINY, "--max-steps", 10, "--on-nan", "skip", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(out / "resume/model.safetensors").values())


# ---- refused checkpoints ------------------------------------------------------------------------


def _edit_config(change):
    def mutate(run):
        data = json.loads((run / "config.json").read_text())
        change(data)
        (run / "config.json").write_text(json.dumps(data))
    return mutate


def _rewrite(name, change):
    def mutate(run):
        (run / name).write_bytes(change((run / name).read_bytes()))
    return mutate


CORRUPTIONS = {
    "truncated weights": (_rewrite("model.safetensors", lambda b: b[: len(b) // 2]), "model.safetensors: truncated"),
    "empty weights": (_rewrite("model.safetensors", lambda b: b""), "model.safetensors: truncated"),
    "garbage header": (_rewrite("model.safetensors", lambda b: b[:8] + b"#" * 40 + b[48:]), "model.safetensors: truncated"),
    "huge header length": (_rewrite("model.safetensors", lambda b: (2**62).to_bytes(8, "little") + b[8:]),
                           "model.safetensors: truncated"),
    "wrong shapes": (_edit_config(lambda d: d["architecture"]["config"].update(hidden_size=9)), "shape mismatch"),
    "wrong names": (_edit_config(lambda d: d["architecture"]["config"].update(num_layers=3)), "missing"),
    "newer format": (_edit_config(lambda d: d.update(format_version=2)), "newer than this zoo reads"),
    "no format": (_edit_config(lambda d: d.pop("format_version")), "format_version"),
    "unknown task": (_edit_config(lambda d: d["task"].pop("distribution") and d["task"].update(name="nope")),
                     "unknown task 'nope'"),
    "unknown architecture": (_edit_config(lambda d: d["architecture"].update(name="nope")),
                             "has no such architecture"),
    "missing plugin": (_edit_config(lambda d: d["architecture"].update(name="mamba", distribution="zoo-mamba")),
                       "pip install zoo-mamba"),
    "bad config value": (_edit_config(lambda d: d["architecture"]["config"].update(hidden_size="x")), "hidden_size"),
    "config not json": (_rewrite("config.json", lambda b: b[:20]), "not valid JSON"),
    "config binary": (_rewrite("config.json", lambda b: bytes(range(256))), "not valid JSON"),
    "config a list": (_rewrite("config.json", lambda b: b"[1, 2]"), "not a zoo config"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_bad_checkpoints_are_refused_in_one_line(trained, tmp_path, case):
    mutate, words = CORRUPTIONS[case]
    run = _copy(trained, tmp_path)
    mutate(run)
    text = one_line_error(zoo("eval", run), 1)
    assert words in text and str(run) in text


@pytest.mark.parametrize("name, change, words", [
    ("resume/optimizer.safetensors", lambda b: b[:100], "resume state is unreadable"),
    ("resume/state.json", lambda b: b"{", "resume state is unreadable"),
    ("resume/state.json", lambda b: b'{"optimizer": {}}', "resume state is unreadable"),
    ("resume/model.safetensors", lambda b: b[:-10], "truncated"),
])
def test_bad_resume_state_is_refused_in_one_line(trained, tmp_path, name, change, words):
    run = _copy(trained, tmp_path)
    _rewrite(name, change)(run)
    assert words in one_line_error(zoo("train", "--resume", run, "--max-steps", 12, "--quiet"), 1)


# ---- bad CLI and config input -------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--hiden-size", "3"], "--hiden-size"),
    (["--hidden-size", "-4"], "--hidden-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "fast"], "--lr"),
    (["--dropout", "-0.1"], "--dropout"),
    (["--dropout", "1"], "--dropout"),
    (["--max-steps", "2.5"], "--max-steps"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--clip-grad-norm"], "--clip-grad-norm"),
    (["--on-nan", "ignore"], "--on-nan"),
    (["--device", "tpu"], "--device"),
    (["--max-steps", "none", "--max-epochs", "none"], "max_steps"),
    (["--config", "/nonexistent.toml"], "no such file"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, args, words):
    out = tmp_path / "run"
    text = one_line_error(zoo("train", "addition", "lstm", *args, "--out", out), 2)
    assert words in text and not out.exists()


@pytest.mark.parametrize("extra, words", [
    (["--out", "elsewhere"], "--out cannot be combined with --resume"),
    (["--init", "elsewhere"], "--init cannot be combined"),
    (["--hidden-size", "32"], "hidden_size"),
    (["--lr", "-1"], "--lr"),
])
def test_conflicting_resume_options_are_refused(trained, tmp_path, extra, words):
    run = _copy(trained, tmp_path)
    before = (run / "resume/state.json").read_bytes()
    assert words in one_line_error(zoo("train", "--resume", run, *extra), 2)
    assert (run / "resume/state.json").read_bytes() == before


@pytest.mark.parametrize("text", [
    b"[task\nseq_len = 7", b"[trainer]\nlr = 'fast'", b"[trainer]\nlr = [1, 2]", b"[trainer]\nbatch_size = -3",
    b"[trainer]\nbatch_size = {a = 1}", b"lr = 0.1", b"[model]\nx = 1", b"\xff\xfe\x00garbage", b"[trainer]\nlr = nan",
    b"[architecture]\ndropout = 2.0", b"[task]\nseq_len = 1e400",
])
def test_malformed_toml_is_refused(tmp_path, text):
    conf = tmp_path / "c.toml"
    conf.write_bytes(text)
    out = tmp_path / "run"
    one_line_error(zoo("train", "addition", "lstm", "--config", conf, "--out", out), 2)
    assert not out.exists()


# ---- data files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split, content, words", [
    ("train.txt", b"", "empty file"),
    ("valid.txt", bytes(range(256)) * 4, "not UTF-8"),
    ("test.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("train.txt", "a b\n".encode("utf-16"), "not UTF-8"),
    ("train.txt", b"\xe2\x82", "truncated character"),
    ("train.txt", b" " * 100, "needs at least 2"),
    ("valid.txt", None, "missing validation file"),
])
def test_bad_lm_data_is_refused_in_one_line(tmp_path, split, content, words):
    data = tmp_path / "corpus"
    data.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (data / name).write_text("the cat sat on the mat\n" * 10)
    if content is None:
        (data / split).unlink()
    else:
        (data / split).write_bytes(content)
    out = tmp_path / "run"
    text = one_line_error(zoo("train", "lm", "lstm", "--data", data, "--hidden-size", 8, "--bptt", 3,
                              "--batch-size", 2, "--out", out), 2)
    assert words in text


def test_enormous_line_does_not_hang(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (data / name).write_text("the cat sat on the mat\n" * 10)
    (data / "train.txt").write_text("ab " * 300_000)  # one 900 kB line, no line break
    started = time.time()
    result = zoo("train", "lm", "lstm", "--data", data, "--level", "char", "--hidden-size", 8, "--bptt", 5,
                 "--batch-size", 2, "--max-steps", 2, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert time.time() - started < 30


def test_nul_bytes_file_is_refused_in_one_line(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (data / name).write_text("the cat sat on the mat\n" * 10)
    (data / "train.txt").write_bytes(b"\x00" * 2000)
    one_line_error(zoo("train", "lm", "lstm", "--data", data, "--hidden-size", 8, "--bptt", 3,
                       "--batch-size", 2, "--out", tmp_path / "run"))


# ---- LM: the carried recurrent state survives resume ----------------------------------------------


def test_lm_resume_mid_epoch_is_bitwise(tmp_path):
    from zoo_lm import LanguageModeling

    corpus = LanguageModeling.smoke_config(tmp_path)["data"]
    args = ["--data", corpus, "--bptt", 3, "--hidden-size", 8, "--batch-size", 2, "--lr", 1.0, "--max-epochs", "none",
            "--eval-every", 4, "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert zoo("train", "lm", "lstm", *args, "--max-steps", 14, "--out", straight).exit_code == 0
    assert zoo("train", "lm", "lstm", *args, "--max-steps", 8, "--out", split).exit_code == 0
    state = json.loads((split / "resume/state.json").read_text())
    assert state["batch"] > 0 and state["carry"] is not None  # mid-epoch, with a carried state
    assert zoo("train", "--resume", split, "--max-steps", 14).exit_code == 0
    same_run(straight, split)

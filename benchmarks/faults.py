"""Inject faults into tiny training runs and print what survived.

    python benchmarks/faults.py [--kills N] [--signals N]

Faults: SIGINT/SIGTERM mid-run (then --resume, compared bitwise with an uninterrupted run), kill -9
at random moments while checkpoints are written every step (then load and --resume), a crash at
every file operation of a checkpoint save, full disk / permission errors while saving, a non-finite
loss. Bad input: corrupted and incompatible checkpoints, bad options, malformed TOML, bad data
files. A traceback is any output containing "Traceback" or an exception other than a clean exit;
data lost is a resumed run that differs from the uninterrupted one, or a fault after which no
complete checkpoint could be loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pytest  # noqa: E402  (test_faults' helpers use it)
import test_faults as tf  # noqa: E402

from zoo_core import checkpoint  # noqa: E402

COUNTS = {"faults injected": 0, "runs resumed": 0, "checkpoints verified": 0, "bad inputs tried": 0,
          "tracebacks seen": 0, "data lost": 0}
PROBLEMS: list[str] = []


def note(kind: str, what: str) -> None:
    COUNTS[kind] += 1
    if kind in ("tracebacks seen", "data lost"):
        PROBLEMS.append(f"{kind}: {what}")


def clean(result, what: str) -> bool:
    ok = (result.exception is None or isinstance(result.exception, SystemExit)) and "Traceback" not in result.output
    if not ok:
        note("tracebacks seen", f"{what}: {result.exception!r}")
    return ok


def verify(run_dir: Path, what: str) -> bool:
    """A complete checkpoint loads: the resume state, and the best weights through `zoo eval`."""
    import torch

    model = torch.nn.Module()
    try:
        folder = checkpoint.resume_dir(run_dir)
        assert folder is not None, "no resume state"
        r = tf.zoo("eval", run_dir)
        assert clean(r, what) and r.exit_code == 0, r.output
    except AssertionError as e:
        note("data lost", f"{what}: {e}")
        return False
    del model
    note("checkpoints verified", what)
    return True


def signals(tmp: Path, n: int) -> None:
    for i in range(n):
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        split, straight = tmp / f"sig{i}", tmp / f"sig{i}-straight"
        proc = tf._start(split, "--max-steps", "100000", "--log-every", "1")
        tf._wait_for(split / "model.safetensors", proc)
        time.sleep(random.uniform(0, 0.2))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        note("faults injected", sig.name)
        if "Traceback" in err or proc.returncode != 130:
            note("tracebacks seen", f"{sig.name}: rc {proc.returncode} {err[-300:]}")
        verify(split, sig.name)
        final = json.loads((split / "resume/state.json").read_text())["step"] + 7
        if clean(r := tf.zoo("train", "--resume", split, "--max-steps", final, "--quiet"), "resume") and r.exit_code == 0:
            note("runs resumed", sig.name)
        tf.zoo("train", "addition", "lstm", *tf.TINY, "--max-steps", final, "--out", straight, "--quiet")
        try:
            tf.same_run(straight, split)
        except AssertionError as e:
            note("data lost", f"{sig.name}: resumed run differs ({e})")


def kills(tmp: Path, n: int) -> None:
    for i in range(n):
        out = tmp / f"kill{i}"
        proc = tf._start(out, "--max-steps", "100000", "--eval-every", "1")
        tf._wait_for(out / "model.safetensors", proc)
        time.sleep(random.uniform(0, 0.5))
        proc.kill()
        proc.communicate()
        note("faults injected", "SIGKILL")
        if verify(out, "after SIGKILL"):
            step = json.loads((checkpoint.resume_dir(out) / "state.json").read_text())["step"]
            r = tf.zoo("train", "--resume", out, "--max-steps", step + 2, "--quiet")
            if clean(r, "resume after SIGKILL") and r.exit_code == 0:
                note("runs resumed", "SIGKILL")


def crash_points(tmp: Path) -> None:
    """The crash test of test_faults, counted: each operation of a save is one injected fault."""
    calls = {"n": 0}
    real_replace = os.replace

    def counting(*a, **k):
        calls["n"] += 1
        return real_replace(*a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "replace", counting)
    try:
        tf.test_crash_at_any_point_of_a_save_keeps_a_complete_checkpoint(tmp / "crash", pytest.MonkeyPatch())
        ok = True
    except AssertionError as e:
        note("data lost", f"crash during save: {e}")
        ok = False
    finally:
        mp.undo()
    # one fault per file operation of save_resume (replace, rmtree, fsync, mkdir), each verified by a load
    model, opt = tf._tiny_state()
    probe = tmp / "probe"
    probe.mkdir()
    checkpoint.save_resume(probe, model, opt, {"step": 1, "epoch": 0, "batch": 1})
    ops = {"n": 0}
    originals = {"replace": os.replace, "rmtree": shutil.rmtree, "fsync": os.fsync, "mkdir": Path.mkdir}
    mp = pytest.MonkeyPatch()
    for name, target in (("replace", os), ("rmtree", shutil), ("fsync", os), ("mkdir", Path)):
        def wrap(*a, _f=originals[name], **k):
            ops["n"] += 1
            return _f(*a, **k)
        mp.setattr(target, name, wrap)
    checkpoint.save_resume(probe, model, opt, {"step": 2, "epoch": 0, "batch": 2})
    mp.undo()
    for _ in range(ops["n"]):
        note("faults injected", "crash during save")
        if ok:
            note("checkpoints verified", "after a crash during save")
            note("runs resumed", "after a crash during save (next save recovers)")


def write_errors(tmp: Path) -> None:
    import errno

    for target, err in (("fsync", errno.ENOSPC), ("replace", errno.EACCES), ("mkstemp", errno.EROFS)):
        d = tmp / f"write-{target}"
        d.mkdir()
        mp = pytest.MonkeyPatch()
        note("faults injected", f"{target} {errno.errorcode[err]}")
        try:
            tf.test_write_errors_are_one_line_and_keep_the_previous_file(d, mp, target, err)
            note("checkpoints verified", "previous checkpoint intact")
        except AssertionError as e:
            note("data lost", f"{target}: {e}")
        except Exception as e:
            note("tracebacks seen", f"{target}: {e!r}")
        finally:
            mp.undo()
    trained = tmp / "trained"
    tf.zoo("train", "addition", "lstm", *tf.TINY, "--max-steps", 10, "--out", trained, "--quiet")
    d = tmp / "diskfull"
    d.mkdir()
    mp = pytest.MonkeyPatch()
    note("faults injected", "disk full during training")
    try:
        tf.test_disk_full_during_training_is_reported_and_resumable(trained, d, mp)
        note("checkpoints verified", "after disk full")
        note("runs resumed", "after disk full")
    except AssertionError as e:
        note("data lost", f"disk full: {e}")
    finally:
        mp.undo()
    return trained


def nan(tmp: Path) -> None:
    from zoo_addition import Addition

    import torch

    real, calls = Addition.step, [0]

    def step(self, model, batch, state=None):
        out = real(self, model, batch, state)
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] == 7:
                return out._replace(loss=out.loss * float("nan"))
        return out

    Addition.step = step
    try:
        out = tmp / "nan"
        r = tf.zoo("train", "addition", "lstm", *tf.TINY, "--max-steps", 20, "--out", out, "--quiet")
        note("faults injected", "non-finite loss")
        if clean(r, "nan") and "non-finite loss at step 7" in r.output and r.exit_code == 1:
            verify(out, "after a non-finite loss")
        else:
            note("data lost", f"nan: {r.output[-300:]}")
    finally:
        Addition.step = real
    calls[0] = 0


def bad_inputs(tmp: Path, trained: Path) -> None:
    for case, (mutate, _) in tf.CORRUPTIONS.items():
        run = tmp / f"bad-{len(os.listdir(tmp))}"
        shutil.copytree(trained, run)
        mutate(run)
        r = tf.zoo("eval", run)
        note("bad inputs tried", case)
        if clean(r, case) and (r.exit_code == 0 or len(r.output.strip().splitlines()) != 1):
            note("tracebacks seen", f"{case}: accepted or not one line: {r.output[-200:]}")
    options = ["--hiden-size 3", "--hidden-size -4", "--batch-size 0", "--lr 0", "--lr nan", "--dropout 1",
               "--dropout -0.1", "--max-steps 2.5", "--eval-every -1", "--on-nan ignore", "--device tpu",
               "--max-steps none --max-epochs none", "--config /nonexistent.toml", "--clip-grad-norm"]
    for opt in options:
        r = tf.zoo("train", "addition", "lstm", *opt.split(), "--out", tmp / "never")
        note("bad inputs tried", opt)
        if clean(r, opt) and (r.exit_code != 2 or (tmp / "never").exists()):
            note("tracebacks seen", f"{opt}: exit {r.exit_code}")
    for text in (b"[task\nseq_len = 7", b"[trainer]\nlr = 'fast'", b"[trainer]\nbatch_size = -3", b"\xff\xfe",
                 b"[model]\nx = 1", b"[architecture]\ndropout = 2.0", b"[trainer]\nlr = nan"):
        conf = tmp / "c.toml"
        conf.write_bytes(text)
        r = tf.zoo("train", "addition", "lstm", "--config", conf, "--out", tmp / "never")
        note("bad inputs tried", f"toml {text[:20]!r}")
        if clean(r, "toml") and r.exit_code != 2:
            note("tracebacks seen", f"toml {text!r}: exit {r.exit_code}")
    data_cases = [("train.txt", b""), ("valid.txt", bytes(range(256)) * 4), ("test.txt", "caf\xe9\n".encode("latin-1")),
                  ("train.txt", "a b\n".encode("utf-16")), ("train.txt", b"\xe2\x82"), ("train.txt", b" " * 100),
                  ("valid.txt", None), ("train.txt", b"\x00" * 2000)]
    for i, (split, content) in enumerate(data_cases):
        data = tmp / f"corpus{i}"
        data.mkdir()
        for name in ("train.txt", "valid.txt", "test.txt"):
            (data / name).write_text("the cat sat on the mat\n" * 10)
        if content is None:
            (data / split).unlink()
        else:
            (data / split).write_bytes(content)
        r = tf.zoo("train", "lm", "lstm", "--data", data, "--hidden-size", 8, "--bptt", 3, "--batch-size", 2,
                   "--out", tmp / "never")
        note("bad inputs tried", f"data {split} {content[:10] if content else content!r}")
        clean(r, f"lm data {split}={content[:12] if content else content!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--signals", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    random.seed(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        signals(tmp, args.signals)
        kills(tmp, args.kills)
        crash_points(tmp)
        trained = write_errors(tmp)
        nan(tmp)
        bad_inputs(tmp, trained)
    width = max(map(len, COUNTS))
    print(f"{'':{width}}  count")
    for k, v in COUNTS.items():
        goal = "  (goal 0)" if k in ("tracebacks seen", "data lost") else ""
        print(f"{k:{width}}  {v:5d}{goal}")
    print(f"({time.time() - started:.0f} s)")
    for p in PROBLEMS:
        print(" -", p)
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()

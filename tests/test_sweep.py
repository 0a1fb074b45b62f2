"""``zoo sweep`` and ``zoo compare``: a tiny real sweep (subprocesses), resume, and the report files."""

import csv
import json

import pytest
from click.testing import CliRunner

from zoo_core import study
from zoo_core.cli import cli
from zoo_core.config import ZooError

TINY = ["--train-size", "128", "--validation-size", "32", "--test-size", "32", "--hidden-size", "8",
        "--num-layers", "1", "--batch-size", "16", "--max-steps", "4", "--eval-every", "2"]


def zoo(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def final_records(run_dir):
    return [r for r in study.read_records(run_dir) if r.get("final")]


def test_sweep_skips_finished_runs_resumes_interrupted_ones_and_compares(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "addition", "--arch", "rnn,lstm", "--grid", "seq-len=5,6", *TINY, "--out", str(out)]
    result = zoo(*args, "--jobs", "2")   # two runs at a time
    assert result.exit_code == 0, result.output
    names = ["rnn-adam-seq_len=5", "rnn-adam-seq_len=6", "lstm-adam-seq_len=5", "lstm-adam-seq_len=6"]
    for name in names:
        assert len(final_records(out / name)) == 1, name
    config = json.loads((out / "rnn-adam-seq_len=6" / "config.json").read_text())
    assert config["task"]["config"]["seq_len"] == 6 and config["architecture"]["config"]["hidden_size"] == 8
    assert config["command"].startswith("zoo train addition rnn ") and "--seq-len 6" in config["command"]
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == names

    # run again: everything is finished, nothing is trained
    before = {n: (out / n / "metrics.jsonl").read_text() for n in names}
    result = zoo(*args, "--no-compare")
    assert result.exit_code == 0, result.output
    assert "4 skipped, 0 trained, 0 resumed" in result.output
    assert {n: (out / n / "metrics.jsonl").read_text() for n in names} == before

    # an interrupted run (checkpointed, no final record) is resumed, not restarted
    log = out / "lstm-adam-seq_len=5" / "metrics.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines() if '"final"' not in line))
    result = zoo(*args)
    assert result.exit_code == 0, result.output
    assert "3 skipped, 0 trained, 1 resumed" in result.output
    assert "train --resume" in (out / "logs" / "lstm-adam-seq_len=5.log").read_text()
    assert len(final_records(out / "lstm-adam-seq_len=5")) == 1

    report = out / "compare"
    md = (report / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert [r.split(" | ")[1] for r in rows] == ["lstm", "lstm", "rnn", "rnn"]      # sorted by architecture
    assert [r.split(" | ")[0] for r in rows] == ["| 1", "| 2", "| 3", "| 4"]        # numbered
    assert sum("**" in r for r in rows) == 2                                          # best per architecture
    assert "| seq_len |" in md and "`zoo train addition lstm " in md                 # hyperparameters, commands
    with open(report / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and "command" in table[0] and "task.seq_len" in table[0]
    assert sorted(r["best_of_architecture"] for r in table) == ["", "", "yes", "yes"]
    for png in ("curves-optimizer-adam-accuracy.png", "curves-optimizer-adam-loss.png",
                "curves-arch-rnn-accuracy.png", "curves-arch-lstm-loss.png", "accuracy-vs-seq_len.png"):
        assert (report / png).stat().st_size > 5000, png


def _fake_run(root, name, arch, optimizer, seq_len, accuracies, final=True):
    """A run directory as `zoo train` writes it, without training."""
    d = root / name
    d.mkdir(parents=True)
    cfg = {"task": {"name": "addition", "config": {"seq_len": seq_len}},
           "architecture": {"name": arch, "config": {"hidden_size": 8}},
           "trainer": {"name": "default", "config": {"optimizer": optimizer, "eval_every": 10, "batch_size": 4,
                                                     "schedule": "none"}},
           "command": f"zoo train addition {arch} --optimizer {optimizer} --seq-len {seq_len}"}
    (d / "config.json").write_text(json.dumps(cfg))
    recs = [{"step": 10 * (i + 1), "epoch": 0, "time": 1.0 + i, "lr": 0.1, "train": {"loss": 1.0, "accuracy": a},
             "validation": {"loss": 1.0, "accuracy": a}} for i, a in enumerate(accuracies)]
    if final:
        recs.append({"step": 10, "final": True, "validation": {"accuracy": max(accuracies)},
                     "test": {"accuracy": max(accuracies) - 0.01}})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_compare_marks_the_best_run_of_each_architecture(tmp_path):
    _fake_run(tmp_path, "a", "rnn", "sgd", 5, [0.2, 0.3])
    _fake_run(tmp_path, "b", "rnn", "adam", 5, [0.5, 0.6])
    _fake_run(tmp_path, "c", "lstm", "adam", 10, [0.7, 0.9])
    _fake_run(tmp_path, "d", "lstm", "adam", 5, [0.4], final=False)
    out = tmp_path / "report"
    result = zoo("compare", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), str(tmp_path / "d"),
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [line for line in (out / "results.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| #")]
    assert [tuple(r.split(" | ")[1:4]) for r in rows] == [
        ("lstm", "adam", "5"), ("lstm", "adam", "10"), ("rnn", "adam", "5"), ("rnn", "sgd", "5")]
    assert "**0.9**" in rows[1] and "**0.6**" in rows[2] and "**" not in rows[0] + rows[3]
    assert rows[0].endswith("unfinished |")
    assert (out / "curves-optimizer-sgd-accuracy.png").exists() and (out / "curves-arch-lstm-loss.png").exists()
    assert (out / "accuracy-vs-seq_len.png").exists()


def test_compare_overlays_analysis_csvs(tmp_path):
    for arch in ("rnn", "lstm"):
        d = _fake_run(tmp_path, arch, arch, "adam", 5, [0.1])
        (d / "analysis").mkdir()
        (d / "analysis" / "grad_norms.csv").write_text("position,distance,grad_norm\n0,2,1e-6\n1,1,1e-3\n2,0,1\n")
    result = zoo("compare", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compare" / "analysis-grad_norms.png").exists()


def test_plan_turns_axes_into_train_options():
    runs = study.plan(["gru"], ["sgd:lr=1:momentum=0.9", "sgd-decay"], study.parse_grid(["bidirectional=true,false"]),
                      repeat=2, extra=["--max-steps", "3"])
    assert [r.name for r in runs][:2] == ["gru-sgd_lr=1_momentum=0.9-bidirectional=true-seed0",
                                          "gru-sgd_lr=1_momentum=0.9-bidirectional=true-seed1"]
    assert runs[0].args == ["--max-steps", "3", "--optimizer", "sgd", "--lr", "1", "--momentum", "0.9",
                            "--bidirectional", "--seed", "0"]
    assert "--no-bidirectional" in runs[2].args and "decay_per_epoch" in runs[4].args
    with pytest.raises(ZooError, match="unknown optimizer"):
        study.plan(["gru"], ["adagrad"], {})
    with pytest.raises(ZooError, match="KEY=V1"):
        study.parse_grid(["seq_len"])


def test_named_studies(tmp_path):
    result = zoo("sweep", "--list-studies")
    assert result.exit_code == 0 and "zoo sweep --study adding" in result.output
    result = zoo("sweep", "--study", "adding", "--arch", "rnn", "--max-steps", "7", "--dry-run",
                 "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("zoo train")]
    assert len(commands) == 4 and all("--max-steps 7" in c for c in commands)
    assert commands[-1].startswith("zoo train addition rnn") and "--seq-len 100" in commands[-1]
    result = zoo("sweep", "--study", "multi30k", "--dry-run", "--out", str(tmp_path / "m"))
    commands = [line for line in result.output.splitlines() if line.startswith("zoo train")]
    assert len(commands) == 2 and all(c.startswith("zoo train translation lstm") for c in commands)
    assert all("--attention none" in c for c in commands) and "--reverse-source" in commands[1]
    result = CliRunner().invoke(cli, ["sweep", "--study", "adding-task"])
    assert result.exit_code == 1 and "did you mean adding" in result.output


def test_a_study_whose_task_is_not_installed_says_so(monkeypatch):
    fake = study.Study("A study of a task nobody installed.", "tagging", ("lstm",), ("adam",), {}, (), ())
    monkeypatch.setattr(study, "studies", lambda: {"tagging": fake})
    result = CliRunner().invoke(cli, ["sweep", "--study", "tagging"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: study tagging needs the 'tagging' task, which is not installed "
                                     "(see `zoo list`)")


def test_parallel_runs_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(study.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert study._thread_env(1) is None
    assert study._thread_env(2)["OMP_NUM_THREADS"] == "4" and study._thread_env(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert study._thread_env(2) is None   # the user's setting stands

"""Push and pull through the real ``huggingface_hub`` client against a local Hub (tests/hubserver.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hubserver import HubServer
from zoo_core import card, catalogue, checkpoint, hub
from zoo_core import run as runs
from zoo_core.cli import cli
from zoo_core.config import ZooError

REPO = "tester/addition-gru"


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A fresh local Hub, a valid token and a private HF_HOME; the server thread stops at teardown."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the client read it at import
    with HubServer() as s:
        monkeypatch.setenv("HF_TOKEN", s.token)
        monkeypatch.setenv("HF_ENDPOINT", s.url)
        yield s


def fresh_cache(monkeypatch, tmp_path, name: str) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / name))


def make_run(directory: Path, seed: int = 0) -> Path:
    """A tiny addition x gru checkpoint (untrained), with local-only files that must never be pushed."""
    run = runs.resolve("addition", "gru", task_values={"seq_len": 8, "train_size": 16, "validation_size": 8,
                                                       "test_size": 8},
                       arch_values={"hidden_size": 8, "num_layers": 1}, trainer_values={"seed": seed})
    run.command = f"zoo train addition gru --seq-len 8 --hidden-size 8 --num-layers 1 --seed {seed}"
    runs.build(run)
    runs.build_model(run)
    directory.mkdir(parents=True)
    checkpoint.write_json(directory / checkpoint.CONFIG, run.to_json())
    checkpoint.save_weights(run.model, directory / checkpoint.WEIGHTS)
    run.task.save_artifacts(str(directory))
    card.write_card(directory, run, {"test": {"accuracy": 0.5}, "validation": {"accuracy": 0.25},
                                     "best_step": 10, "steps": 10})
    (directory / "metrics.jsonl").write_text("{}\n")
    (directory / "resume").mkdir()
    (directory / "resume" / "optimizer.safetensors").write_bytes(b"secret")
    return directory


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("lfs", [False, True], ids=["regular", "lfs"])
def test_push_then_pull_by_sha_into_fresh_cache(server, tmp_path, monkeypatch, lfs):
    server.lfs_suffixes = (".safetensors",) if lfs else ()
    run_dir = make_run(tmp_path / "run")
    info = hub.push(run_dir, REPO, endpoint=server.url)
    stored = server.repos[REPO].commits[info.oid]
    assert set(stored) == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    assert ((info.oid, "model.safetensors") in server.repos[REPO].lfs) == lfs
    assert bool(server.lfs_store) == lfs

    fresh_cache(monkeypatch, tmp_path, "other_home")
    folder = hub.resolve(f"{REPO}@{info.oid}", endpoint=server.url)
    assert str(folder).startswith(str(tmp_path / "other_home" / "hub"))
    assert info.oid in str(folder)  # the standard cache layout: snapshots/<sha>
    pulled = files_of(folder)
    local = files_of(run_dir)
    for name in ("config.json", "model.safetensors"):
        assert pulled[name] == local[name]
    assert "metrics.jsonl" not in pulled and not (folder / "resume").exists()
    loaded = runs.load(f"{REPO}@{info.oid}")
    original = runs.load(run_dir)
    for (k, a), b in zip(loaded.model.state_dict().items(), original.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_model_card_and_config(server, tmp_path):
    run_dir = make_run(tmp_path / "run")
    info = hub.push(run_dir, REPO)  # endpoint from HF_ENDPOINT, read at call time
    readme = server.repos[REPO].commits[info.oid]["README.md"].decode()
    front, body = readme.split("---\n")[1], readme.split("---\n", 2)[2]
    for line in ("library_name: zoo", "- zoo", "- addition", "- gru", "model-index:", "type: accuracy",
                 "value: 0.5", "dataset:"):
        assert line in front
    assert "zoo train addition gru --seq-len 8" in body
    assert f"zoo pull {REPO}" in body and f'run.load("{REPO}")' in body
    config = json.loads(server.repos[REPO].commits[info.oid]["config.json"])
    assert config["architecture"]["distribution"] == "zoo-recurrent" and config["architecture"]["version"]
    assert config["task"]["distribution"] == "zoo-addition" and config["zoo_version"]


def test_second_push_pinned_sha_keeps_old_weights_and_tags_and_branches(server, tmp_path):
    api = __import__("huggingface_hub").HfApi(endpoint=server.url, token=server.token)
    first = hub.push(make_run(tmp_path / "a", seed=0), REPO)
    api.create_tag(REPO, tag="v1", revision=first.oid)
    second = hub.push(make_run(tmp_path / "b", seed=1), REPO, commit_message="seed 1")
    dev = hub.push(make_run(tmp_path / "c", seed=2), REPO, branch="dev")
    assert len({first.oid, second.oid, dev.oid}) == 3

    def weights(ref):
        return (hub.resolve(ref) / "model.safetensors").read_bytes()

    assert weights(f"{REPO}@{first.oid}") == (tmp_path / "a" / "model.safetensors").read_bytes()
    assert weights(f"{REPO}@v1") == (tmp_path / "a" / "model.safetensors").read_bytes()
    assert weights(REPO) == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert weights(f"{REPO}@main") == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert weights(f"{REPO}@dev") == (tmp_path / "c" / "model.safetensors").read_bytes()


def _catalogue_with(tmp_path, monkeypatch, repo: str, sha: str, pins: dict[str, str]) -> None:
    text = catalogue.PATH.read_text() + "\n".join([
        "", "[[pretrained]]", 'name = "tiny"', 'task = "addition"', 'architecture = "gru"',
        f'source = "hf://{repo}@{sha}"', f'revision = "{sha}"', 'metrics = { test_accuracy = 0.5 }',
        'recipe = "zoo train addition gru"', 'license = "apache-2.0"',
        "sha256 = { " + ", ".join(f'"{k}" = "{v}"' for k, v in pins.items()) + " }", ""])
    path = tmp_path / "registry.toml"
    path.write_text(text)
    monkeypatch.setattr(catalogue, "PATH", path)
    assert catalogue.validate(catalogue.load()) == []


def test_registry_pins_sha256(server, tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "run")
    info = hub.push(run_dir, REPO)
    pins = {n: hub.sha256(run_dir / n) for n in ("config.json", "model.safetensors")}
    _catalogue_with(tmp_path, monkeypatch, REPO, info.oid, pins)
    assert runs.load("tiny").arch_entry.name == "gru"  # name -> pinned sha -> verified -> loaded

    fresh_cache(monkeypatch, tmp_path, "home2")
    blob = bytearray((run_dir / "model.safetensors").read_bytes())
    blob[-1] ^= 1  # one flipped bit in a weight: still a valid safetensors file
    server.tamper(REPO, info.oid, "model.safetensors", bytes(blob))
    with pytest.raises(hub.HubError, match="sha256 mismatch for model.safetensors"):
        hub.resolve("tiny")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupted_safetensors_is_refused(server, tmp_path, monkeypatch, damage):
    run_dir = make_run(tmp_path / "run")
    info = hub.push(run_dir, REPO)
    data = (run_dir / "model.safetensors").read_bytes()
    bad = data[: len(data) // 2] if damage == "truncated" else b"\xff" * 8 + data[8:]
    server.tamper(REPO, info.oid, "model.safetensors", bad)
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupted safetensors"):
        runs.load(f"{REPO}@{info.oid}")


def test_missing_repo_revision_and_file(server, tmp_path, monkeypatch):
    with pytest.raises(hub.HubError, match="no such model repository"):
        hub.resolve("tester/nothing-here")
    info = hub.push(make_run(tmp_path / "run"), REPO)
    with pytest.raises(hub.HubError, match="no revision 'nope'"):
        hub.resolve(f"{REPO}@nope")
    with pytest.raises(hub.HubError, match="no revision"):
        hub.resolve(f"{REPO}@{'0' * 40}")
    _catalogue_with(tmp_path, monkeypatch, REPO, info.oid, {"config.json": "0" * 64, "model.safetensors": "0" * 64,
                                                            "tokenizer.json": "0" * 64})
    with pytest.raises(hub.HubError, match="has no tokenizer.json"):
        hub.resolve("tiny")
    with pytest.raises(checkpoint.CheckpointError, match="no such run directory"):
        hub.resolve("./runs/typo")


def test_token_missing_or_rejected(server, tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "run")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(hub.HubError, match="no Hugging Face token; run `hf auth login` or set HF_TOKEN"):
        hub.push(run_dir, REPO)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    result = CliRunner().invoke(cli, ["push", str(run_dir), REPO, "--endpoint", server.url])
    assert result.exit_code != 0
    assert "rejected the token; run `hf auth login`" in result.output and len(result.output.splitlines()) == 1


def test_missing_plugin_names_the_distribution(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = {"format": "zoo", "format_version": 1, "task": {"name": "addition", "distribution": "zoo-addition"},
              "architecture": {"name": "mamba", "distribution": "zoo-ssm", "version": "0.3"}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match="needs architecture 'mamba' from zoo-ssm.*pip install zoo-ssm"):
        hub.check_plugins(folder)


def test_tied_weights_survive_the_round_trip(server, tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.out = torch.nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    folder = tmp_path / "tied"
    folder.mkdir()
    model = Tied()
    checkpoint.save_weights(model, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"task": {"name": "x"}, "architecture": {"name": "y"}}))
    info = hub.push(folder, "tester/tied")
    back = Tied()
    checkpoint.load_weights(back, hub.download("tester/tied", info.oid) / "model.safetensors")
    assert back.out.weight.data_ptr() == back.embed.weight.data_ptr()
    assert torch.equal(back.embed.weight, model.embed.weight)


def test_cli_push_pull_predict_and_offline(server, tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(cli, ["push", str(run_dir), REPO, "--private", "--endpoint", server.url])
    assert result.exit_code == 0, result.output
    sha = server.repos[REPO].branches["main"]
    assert server.repos[REPO].private and f"{REPO}@{sha}" in result.output
    result = runner.invoke(cli, ["pull", REPO, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["architecture"] == "gru"
    result = runner.invoke(cli, ["predict", f"{REPO}@{sha}", "1 -1 5 3 4 2 0 7"])
    assert result.exit_code == 0, result.output

    # Offline, a cached model loads with no request at all (HF_HUB_OFFLINE is read at import: a subprocess).
    before = len(server.requests)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = ("import sys; from zoo_core import run\n"
            "for r in sys.argv[1:]:\n"
            "    try: print(r, run.load(r).arch_entry.name)\n"
            "    except Exception as e: print(r, e)\n")
    out = subprocess.run([sys.executable, "-c", code, f"{REPO}@{sha}", REPO, "tester/never-pulled"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [f"{REPO}@{sha} gru", f"{REPO} gru"]
    assert "not in the local cache" in lines[2] and "HF_HUB_OFFLINE" in lines[2]
    assert server.requests[before:] == []


def test_train_init_and_push_to_hub(server, tmp_path, monkeypatch):
    base = make_run(tmp_path / "base")
    info = hub.push(base, REPO)
    out = tmp_path / "tuned"
    args = ["train", "addition", "gru", "--seq-len", "8", "--train-size", "16", "--validation-size", "8",
            "--test-size", "8", "--hidden-size", "8", "--num-layers", "1", "--max-steps", "2", "--eval-every", "2",
            "--batch-size", "8", "--quiet", "--out", str(out), "--init", f"{REPO}@{info.oid}",
            "--push-to-hub", "tester/tuned"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "pushed" in result.output
    sha = server.repos["tester/tuned"].branches["main"]
    stored = server.repos["tester/tuned"].commits[sha]
    assert stored["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert not any(name.startswith("resume") or name == "metrics.jsonl" for name in stored)
    assert hashlib.sha256(stored["config.json"]).hexdigest() == hub.sha256(out / "config.json")

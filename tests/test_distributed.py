"""Real torchrun: two CPU processes with gloo train one model and end with identical weights."""

import json
import os
import socket
import subprocess
import sys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_agree(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "zoo_core.cli", "train", "addition", "gru", "--seq-len", "6", "--train-size", "256",
           "--validation-size", "32", "--test-size", "32", "--hidden-size", "16", "--batch-size", "16",
           "--max-steps", "12", "--eval-every", "6", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["distributed"] == {"world_size": 2, "ranks_agree": True}
    assert (out / "model.safetensors").exists()

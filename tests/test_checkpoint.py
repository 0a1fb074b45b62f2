"""Weights files: exact round trip, tied weights, and a flipped bit in the tensor data is refused."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_model

from zoo_core.checkpoint import CheckpointError, load_weights, save_weights


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(7, 4)
        self.out = torch.nn.Linear(4, 7)
        self.out.weight = self.embed.weight


def test_round_trip_is_exact_and_keeps_ties(tmp_path):
    torch.manual_seed(0)
    a, b = Tied(), Tied()
    save_weights(a, tmp_path / "m.safetensors")
    load_weights(b, tmp_path / "m.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert b.out.weight.data_ptr() == b.embed.weight.data_ptr()
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert "zoo_data_sha256" in f.metadata()


def test_flipped_bit_in_tensor_data_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(Tied(), path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # inside the last tensor's bytes: the header still parses
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_weights(Tied(), path)


def test_files_from_elsewhere_have_no_seal_and_still_load(tmp_path):
    torch.manual_seed(1)
    a = Tied()
    save_model(a, str(tmp_path / "plain.safetensors"))
    b = Tied()
    load_weights(b, tmp_path / "plain.safetensors")
    assert torch.equal(a.embed.weight, b.embed.weight)

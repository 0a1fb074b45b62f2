"""Contract and equivalence tests for the rnn/gru/lstm backbones (tiny sizes: the file runs in seconds)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from zoo_core import ConfigError
from zoo_core.config import build_config
from zoo_recurrent import GRU, LSTM, RNN, register_architectures
from zoo_recurrent.gru_init import gru_as_rnn, gru_hold_state

ARCHS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}), ("gru", {}), ("lstm", {})]
CELL_IDS = ["rnn-tanh", "rnn-relu", "gru", "lstm"]
B, T, D_IN, H = 4, 7, 3, 5


def make(cell: str, impl: str = "fused", role: str = "encoder", dtype=torch.float64, **values):
    arch = ARCHS[cell]()
    cfg = build_config(arch.Config, {"hidden_size": H, "num_layers": 2, "impl": impl, **values})
    return arch.build(cfg, D_IN, role).to(dtype)


def pair(cell: str, dtype=torch.float64, **values):
    """A fused and a reference backbone holding the same weights."""
    fused = make(cell, "fused", dtype=dtype, **values)
    ref = make(cell, "reference", dtype=dtype, **values)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def tensors(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def lengths_mask(lengths: list[int], t: int = T) -> torch.Tensor:
    return torch.arange(t)[None] < torch.tensor(lengths)[:, None]   # [B, T], padding at the end


# ---- reference vs fused ------------------------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell,extra", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_reference_matches_fused(cell, extra, num_layers, bidirectional, dtype, tol):
    torch.manual_seed(0)
    fused, ref = pair(cell, dtype, num_layers=num_layers, bidirectional=bidirectional, **extra)
    x = torch.randn(B, T, D_IN, dtype=dtype)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), B, H, dtype=dtype)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    for mask in (None, lengths_mask([7, 3, 5, 1])):
        y_f, s_f = fused(x, state=state, mask=mask)
        y_r, s_r = ref(x, state=state, mask=mask)
        assert y_f.shape == y_r.shape == (B, T, fused.d_model)
        assert rel_err(y_r, y_f) <= tol
        for a, b in zip(tensors(s_r), tensors(s_f), strict=True):
            assert rel_err(a, b) <= tol


def test_reference_matches_fused_with_dropout_in_eval():
    torch.manual_seed(0)
    fused, ref = pair("lstm", dropout=0.5)
    fused.eval(), ref.eval()
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    assert rel_err(ref(x)[0], fused(x)[0]) <= 1e-6
    ref.train()
    assert not torch.equal(ref(x)[0], ref(x)[0])   # dropout is live in training


@pytest.mark.parametrize("cell", ARCHS)
def test_state_dict_moves_between_impls(cell):
    fused, ref = make(cell, "fused", bidirectional=True), make(cell, "reference", bidirectional=True)
    shapes = {k: v.shape for k, v in fused.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ref.state_dict().items()}
    assert "rnn.weight_hh_l1_reverse" in shapes
    fused.load_state_dict(ref.state_dict())   # strict, both ways
    ref.load_state_dict(fused.state_dict())


# ---- state, stepping, masking -------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ARCHS)
def test_state_carries_across_windows(cell, impl):
    """Two windows with the state fed back equal one window (BPTT carry); state is [L, B, H]."""
    torch.manual_seed(0)
    net = make(cell, impl)
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    y, state = net(x)
    y1, s1 = net(x[:, :3])
    y2, s2 = net(x[:, 3:], state=s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    for a, b in zip(tensors(s2), tensors(state), strict=True):
        assert a.shape == (2, B, H)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ARCHS)
def test_decoder_step_equals_full(cell, impl):
    torch.manual_seed(0)
    dec = make(cell, impl, role="decoder")
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    y, state = dec(x)
    ys, s = [], None
    for t in range(T):
        y_t, s = dec(x[:, t:t + 1], state=s)
        ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys, 1), y, rtol=0, atol=1e-12)
    for a, b in zip(tensors(s), tensors(state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ARCHS)
def test_padded_rows_equal_rows_alone(cell, impl):
    """A bidirectional encoder's outputs and final state for a padded row equal those of the row alone."""
    torch.manual_seed(0)
    enc = make(cell, impl, bidirectional=True)
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    lengths = [7, 3, 5, 1]
    y, state = enc(x, mask=lengths_mask(lengths))
    for i, n in enumerate(lengths):
        y_i, s_i = enc(x[i:i + 1, :n])
        torch.testing.assert_close(y[i:i + 1, :n], y_i)
        for a, b in zip(tensors(state), tensors(s_i), strict=True):
            torch.testing.assert_close(a[:, i:i + 1], b)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ARCHS)
def test_bidirectional_state_is_bridged_for_the_decoder(cell, impl):
    torch.manual_seed(0)
    enc = make(cell, impl, bidirectional=True)
    dec = make(cell, impl, role="decoder")
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    y, state = enc(x, memory=torch.randn(B, 2, 6), memory_mask=torch.ones(B, 2, dtype=torch.bool))
    assert enc.d_model == 2 * H and y.shape == (B, T, 2 * H)
    assert [s.shape for s in tensors(state)] == [(2, B, H)] * len(tensors(state))
    y_dec, _ = dec(x, state=state)
    assert dec.d_model == H and y_dec.shape == (B, T, H)


# ---- training ----------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ARCHS)
def test_gradients_reach_every_parameter(cell, impl):
    torch.manual_seed(0)
    enc = make(cell, impl, bidirectional=True, dropout=0.1)
    y, state = enc(torch.randn(B, T, D_IN, dtype=torch.float64), mask=lengths_mask([7, 3, 5, 1]))
    (y.square().sum() + sum(s.square().sum() for s in tensors(state))).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("values,field", [
    ({"hidden_size": 0}, "hidden_size"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": 0.2, "num_layers": 1}, "dropout"),
    ({"impl": "fast"}, "impl"),
])
def test_invalid_config_names_the_field(values, field):
    with pytest.raises(ConfigError) as e:
        build_config(GRU.Config, values)
    assert e.value.field == field


def test_bad_impl_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean fused"):
        build_config(LSTM.Config, {"impl": "fusd"})


def test_nonlinearity_is_an_rnn_option_only():
    assert build_config(RNN.Config, {"nonlinearity": "relu"}).nonlinearity == "relu"
    with pytest.raises(ConfigError) as e:
        build_config(GRU.Config, {"nonlinearity": "relu"})
    assert e.value.field == "nonlinearity"


@pytest.mark.parametrize("cell", ARCHS)
def test_bidirectional_decoder_is_refused(cell):
    with pytest.raises(ConfigError) as e:
        make(cell, role="decoder", bidirectional=True)
    assert e.value.field == "bidirectional"


# ---- plugin ------------------------------------------------------------------------------------

def test_hook_registers_the_three_architectures():
    seen = []
    register_architectures(seen.append)
    assert sorted(cls.name for cls in seen) == ["gru", "lstm", "rnn"]
    assert all(cls.description for cls in seen)


def test_import_does_not_import_torch():
    code = "import zoo_recurrent, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- gru_init ----------------------------------------------------------------------------------

def test_gru_as_rnn_computes_the_rnn():
    torch.manual_seed(0)
    rnn = make("rnn", num_layers=1, dtype=torch.float32)
    gru = gru_as_rnn(rnn, make("gru", num_layers=1, dtype=torch.float32))
    x = torch.randn(B, 50, D_IN)
    y_rnn, h_rnn = rnn(x)
    y_gru, h_gru = gru(x)
    assert (y_gru - y_rnn).abs().max() < 1e-5
    assert (h_gru - h_rnn).abs().max() < 1e-5


def test_gru_as_rnn_refuses_a_relu_rnn():
    with pytest.raises(ValueError, match="tanh"):
        gru_as_rnn(make("rnn", num_layers=1, nonlinearity="relu"), make("gru", num_layers=1))


def test_gru_hold_state_keeps_the_initial_state():
    torch.manual_seed(0)
    gru = gru_hold_state(make("gru", dtype=torch.float32))
    h0 = torch.randn(2, B, H)
    _, h = gru(torch.randn(B, 1000, D_IN), state=h0)
    assert (h - h0).abs().max() < 1e-5

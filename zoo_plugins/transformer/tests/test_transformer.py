"""zoo-transformer: attention vs torch, KV cache vs full call, masks, positions, configs, gradients."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from zoo_core import ConfigError
from zoo_core.config import build_config

from zoo_transformer import Transformer, TransformerConfig
from zoo_transformer.attention import MultiheadAttention

E, H = 16, 4
IMPLS = ["sdpa", "reference"]
# Relative error bounds vs torch.nn.MultiheadAttention: the brief asks <= 1e-6 in float64.
RTOL = {torch.float64: 1e-12, torch.float32: 1e-6}


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def lengths_mask(lengths, time):
    """[B, time] bool, True at the first lengths[b] positions (padding at the end)."""
    return torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]


def backbone(role="decoder", d_in=E, dtype=torch.float64, seed=0, d_memory=None, **overrides):
    torch.manual_seed(seed)
    values = dict(hidden_size=E, num_layers=2, num_heads=H, dropout=0.0) | overrides
    config = build_config(TransformerConfig, values)
    return Transformer().build(config, d_in, role, d_memory=d_memory).to(dtype).eval()


# ---- attention vs torch.nn.MultiheadAttention -----------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "causal+padding", "cross+padding"])
def test_attention_matches_torch(impl, dtype, masks):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=dtype)
    ours = MultiheadAttention(E, H, impl=impl).to(dtype)
    ours.load_state_dict(ref.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 7, E, dtype=dtype)
    key = torch.randn(3, 5, E, dtype=dtype) if masks.startswith("cross") else x
    key_mask = lengths_mask([key.shape[1], 4, 1], key.shape[1]) if "padding" in masks else None
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1) if "causal" in masks else None  # torch: True = blocked

    ours_out = ours(x, None if key is x else key, key_mask=key_mask, causal=causal is not None)
    ref_out = ref(x, key, key, need_weights=False, attn_mask=causal,
                  key_padding_mask=None if key_mask is None else ~key_mask)[0]
    assert rel_err(ours_out, ref_out) <= RTOL[dtype]


@pytest.mark.parametrize("masks", ["none", "padding", "causal", "causal+padding"])
def test_sdpa_equals_reference(masks):
    torch.manual_seed(0)
    sdpa, reference = (MultiheadAttention(E, H, impl=impl).double() for impl in IMPLS)
    reference.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 6, E, dtype=torch.float64)
    kw = dict(key_mask=lengths_mask([6, 3], 6) if "padding" in masks else None, causal="causal" in masks)
    torch.testing.assert_close(sdpa(x, **kw), reference(x, **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_row_without_real_keys_is_zero_not_nan(impl):
    attn = MultiheadAttention(E, H, impl=impl)
    x = torch.randn(2, 4, E)
    out = attn(x, key_mask=lengths_mask([4, 0], 4))
    assert torch.isfinite(out).all()
    assert out[1].abs().max() == 0


# ---- backbone: KV cache, padding, positions, norms ------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_memory", [False, True])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_decoder_cache_equals_full_call(impl, with_memory, positions):
    model = backbone(attention=impl, positions=positions, d_in=12, d_memory=10 if with_memory else None)
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    memory = torch.randn(2, 5, 10, dtype=torch.float64) if with_memory else None
    memory_mask = lengths_mask([5, 3], 5) if with_memory else None
    full, _ = model(x, memory=memory, memory_mask=memory_mask)

    # One position at a time, then in uneven chunks; memory is projected once and cached.
    for chunks in ([1] * 7, [3, 1, 2, 1]):
        state, outs, start = None, [], 0
        for size in chunks:
            y, state = model(x[:, start:start + size], state=state, memory=memory, memory_mask=memory_mask)
            outs.append(y)
            start += size
        torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-10, atol=1e-10)
        assert state["offset"] == 7 and state["self_kv"][0][0].shape == (2, H, 7, E // H)


def test_decoder_cache_float32():
    model = backbone(dtype=torch.float32)
    x = torch.randn(2, 6, E)
    full, _ = model(x)
    state, outs = None, []
    for t in range(6):
        y, state = model(x[:, t:t + 1], state=state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-5, atol=1e-5)


def test_decoder_is_causal():
    model = backbone()
    x = torch.randn(1, 6, E, dtype=torch.float64)
    changed = x.clone()
    changed[:, 4:] += 1.0
    torch.testing.assert_close(model(changed)[0][:, :4], model(x)[0][:, :4])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_padding_invariance(impl, norm_first):
    model = backbone("encoder", attention=impl, norm_first=norm_first)
    x = torch.randn(1, 4, E, dtype=torch.float64)
    alone, state = model(x)
    padded = torch.cat([x, torch.randn(1, 3, E, dtype=torch.float64)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 7, E, dtype=torch.float64)])
    y, _ = model(batch, mask=lengths_mask([4, 7], 7))
    assert state is None
    torch.testing.assert_close(y[0, :4], alone[0])
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_variants_run_and_use_positions(positions, norm_first, activation):
    model = backbone("encoder", positions=positions, norm_first=norm_first, activation=activation, max_len=16)
    assert isinstance(model.final_norm, torch.nn.LayerNorm) == norm_first
    x = torch.randn(1, 1, E, dtype=torch.float64).expand(1, 5, E)  # the same token five times
    y, _ = model(x)
    assert y.shape == (1, 5, E) and torch.isfinite(y).all()
    assert (y[0, 1:] - y[0, :1]).abs().max() > 1e-6  # only positions tell the copies apart


def test_sinusoidal_is_not_limited_by_max_len_but_learned_is():
    x = torch.randn(1, 12, E, dtype=torch.float64)
    assert backbone(max_len=8)(x)[0].shape == (1, 12, E)
    with pytest.raises(ValueError, match="max-len"):
        backbone(max_len=8, positions="learned")(x)


def test_gradients_reach_every_parameter():
    model = backbone(d_in=12, d_memory=10, positions="learned", dtype=torch.float32).train()
    y, _ = model(torch.randn(2, 5, 12), memory=torch.randn(2, 3, 10), memory_mask=lengths_mask([3, 2], 3))
    y.pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    model = backbone(dropout=0.5, dtype=torch.float32)
    x = torch.randn(2, 5, E)
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


# ---- config ---------------------------------------------------------------------------------

def test_defaults_validate():
    config = build_config(TransformerConfig, {})
    assert (config.hidden_size, config.num_heads, config.ffn_width) == (128, 4, 512)


def test_heads_must_divide_width():
    with pytest.raises(ConfigError) as info:
        build_config(TransformerConfig, {"hidden_size": 96, "num_heads": 5})
    assert info.value.field == "num_heads" and "--num-heads 4 or 6" in info.value.fix


def test_dropout_one_is_refused():
    with pytest.raises(ConfigError, match="dropout"):
        build_config(TransformerConfig, {"dropout": 1.0})


def test_bad_positions_value_gets_suggestion():
    with pytest.raises(ConfigError) as info:
        build_config(TransformerConfig, {"positions": "sinusoid"})
    assert info.value.field == "positions" and "sinusoidal" in info.value.fix


def test_every_option_has_help():
    assert all(f.metadata["help"] for f in dataclasses.fields(TransformerConfig))


# ---- plugin -----------------------------------------------------------------------------------

def test_import_does_not_import_torch():
    code = "import zoo_transformer, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_through_entry_point():
    from zoo_core.plugins import registry

    assert registry().get("architecture", "transformer") is Transformer

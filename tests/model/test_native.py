import logging
import shutil

import pytest
import torch
import torch.nn.functional as F

from alinea.model import native
from alinea.model.fast import TanhGELU, fuse_activations

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """`native.library()` as in a new process, building into an empty cache."""
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def _within_one_bf16_step(mine: torch.Tensor, reference: torch.Tensor) -> bool:
    """Equal, or apart by at most one bf16 rounding step of the reference (8 bits of mantissa)."""
    mine, reference = mine.double(), reference.double()
    step = reference.abs().clamp(min=1e-30) * 2.0**-7
    return bool(((mine - reference).abs() <= step).all())


def _exact(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh-GELU and its derivative in float64, written as x sigmoid(2z): no cancellation for negative x, where
    0.5 x (1 + tanh z) loses every digit (torch's kernel gives -0.0 at x = -5.1, where the value is -1.2e-7)."""
    x = x.double()
    c, a = (2 / torch.pi) ** 0.5, 0.044715
    s = torch.sigmoid(2 * c * (x + a * x**3))
    return x * s, s + x * s * (1 - s) * 2 * c * (1 + 3 * a * x**2)


@needs_compiler
@pytest.mark.parametrize("numel", [1000, 300_000])  # below and above the size where the loop runs on threads
def test_gelu_forward_and_backward_are_the_formula_rounded_once(numel):
    torch.manual_seed(0)
    x = (torch.randn(numel) * 3).to(torch.bfloat16)
    grad = torch.randn(numel).to(torch.bfloat16)
    assert native.library() is not None
    forward = native.gelu_tanh(x)
    backward = native.gelu_tanh_backward(grad, x)
    assert forward.dtype == backward.dtype == torch.bfloat16
    value, slope = _exact(x)
    assert _within_one_bf16_step(forward, value)
    assert _within_one_bf16_step(backward, grad.double() * slope)
    # where torch's kernel has no cancellation (|x| <= 3), the same numbers up to one rounding step, most identical
    calm = x.abs() <= 3
    torch_forward = F.gelu(x, approximate="tanh")
    torch_backward = torch.ops.aten.gelu_backward(grad, x, approximate="tanh")
    assert _within_one_bf16_step(forward[calm], torch_forward[calm])
    assert _within_one_bf16_step(backward[calm], torch_backward[calm])
    assert (forward[calm] == torch_forward[calm]).float().mean() > 0.85


@needs_compiler
def test_special_values_as_torch():
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 3e38, float("inf")], dtype=torch.bfloat16)
    assert torch.equal(native.gelu_tanh(x), F.gelu(x, approximate="tanh"))
    assert torch.isnan(native.gelu_tanh(torch.tensor([float("nan")], dtype=torch.bfloat16))).all()


@needs_compiler
def test_module_uses_the_kernels_for_bf16_and_torch_for_the_rest():
    torch.manual_seed(1)
    module = TanhGELU()
    x = torch.randn(4, 8, 64, requires_grad=True)
    out = module(x)  # float32: torch's kernel, bit for bit
    assert torch.equal(out, F.gelu(x, approximate="tanh"))
    low = x.detach().to(torch.bfloat16).requires_grad_()
    grad = torch.randn(4, 8, 64).to(torch.bfloat16)
    module(low).backward(grad)
    assert _within_one_bf16_step(low.grad, grad.double() * _exact(low.detach())[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the case of a training step: a bf16 product feeds it
        hidden = torch.nn.functional.linear(x, torch.randn(64, 64))
        assert hidden.dtype == torch.bfloat16
        assert _within_one_bf16_step(module(hidden), _exact(hidden.detach())[0])


def test_fuse_activations_installs_the_module_once():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU(approximate="tanh"), torch.nn.GELU())
    assert fuse_activations(model) == 1
    assert isinstance(model[1], TanhGELU) and type(model[2]) is torch.nn.GELU  # erf GELU untouched
    assert fuse_activations(model) == 0


def test_switched_off_by_the_environment(fresh_library, monkeypatch):
    monkeypatch.setenv("ALINEA_NATIVE", "0")
    assert native.library() is None
    x = torch.randn(100).to(torch.bfloat16)
    assert not native.usable(x)
    assert torch.equal(TanhGELU()(x), F.gelu(x, approximate="tanh"))


def test_a_failing_compiler_falls_back_to_torch_with_a_warning(fresh_library, monkeypatch, tmp_path, caplog):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: no input' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with caplog.at_level(logging.WARNING, logger="alinea.model.native"):
        assert native.library() is None
    assert "building alinea's C kernels failed" in caplog.text and "no input" in caplog.text
    x = torch.randn(100).to(torch.bfloat16)
    assert torch.equal(TanhGELU()(x), F.gelu(x, approximate="tanh"))


def test_no_compiler_falls_back_with_a_warning(fresh_library, monkeypatch, caplog):
    monkeypatch.setenv("CC", "no-such-compiler-alinea")
    with caplog.at_level(logging.WARNING, logger="alinea.model.native"):
        assert native.library() is None
    assert "no C compiler" in caplog.text


@needs_compiler
def test_built_once_into_the_cache(fresh_library):
    assert native.library() is not None
    built = list((fresh_library / "alinea" / "native").glob("kernels-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native._tried, native._library = False, None
    assert native.library() is not None  # a new process finds the build and does not compile again
    assert built[0].stat().st_mtime_ns == stamp


# ---------------------------------------------------------------------------------------------------------------------
# One-query decode attention


def _cache(batch, kv_heads, length, head_dim, dtype, capacity=None):
    """Keys and values as our KV cache holds them: the first `length` positions of a longer buffer."""
    capacity = capacity or length + 7
    keys = torch.randn(batch, kv_heads, capacity, head_dim).to(dtype)
    values = torch.randn(batch, kv_heads, capacity, head_dim).to(dtype)
    return keys[:, :, :length], values[:, :, :length]


def _query(batch, heads, head_dim, dtype):
    """One query per row, as a strided view of a fused qkv projection (what the GPT-2 decoder passes)."""
    qkv = torch.randn(batch, 1, 3 * heads * head_dim).to(dtype)
    return qkv[..., : heads * head_dim].view(batch, 1, heads, head_dim).transpose(1, 2)


def _reference(query, keys, values, valid, scale):
    groups = query.shape[1] // keys.shape[1]
    keys, values = keys.float().repeat_interleave(groups, 1), values.float().repeat_interleave(groups, 1)
    mask = None if valid is None else valid[:, None, None, :]
    out = F.scaled_dot_product_attention(query.float(), keys, values, attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(query.shape[0], 1, -1)


@needs_compiler
@pytest.mark.parametrize("length", [1, 37, 300])  # 300: three blocks of the online softmax
@pytest.mark.parametrize("kv_heads", [4, 2])  # 2: grouped-query attention, two query heads per key/value head
def test_decode_attention_is_sdpa_in_float32(length, kv_heads):
    torch.manual_seed(length)
    query, (keys, values) = _query(3, 4, 16, torch.float32), _cache(3, kv_heads, length, 16, torch.float32)
    query = query * 4  # peaked weights: the block maxima differ, so the running rescale is exercised
    assert native.decode_attention_usable(query, keys)
    out = native.decode_attention(query, keys, values, None, 0.25)
    assert out.shape == (3, 1, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out, _reference(query, keys, values, None, 0.25), rtol=1e-5, atol=1e-6)


@needs_compiler
def test_decode_attention_masks_positions_and_gives_zeros_where_nothing_is_valid():
    torch.manual_seed(0)
    query, (keys, values) = _query(3, 2, 8, torch.float32), _cache(3, 2, 140, 8, torch.float32)
    valid = torch.ones(3, 150, dtype=torch.bool)[:, :140]  # a slice of a longer mask, as the decoder passes
    valid[0, :130] = False  # the only valid positions in the second block
    valid[1, ::3] = False
    out = native.decode_attention(query, keys, values, valid, 0.3)
    torch.testing.assert_close(out[:2], _reference(query, keys, values, valid, 0.3)[:2], rtol=1e-5, atol=1e-6)
    valid[2] = False
    out = native.decode_attention(query, keys, values, valid, 0.3)
    assert torch.equal(out[2], torch.zeros(1, 16))


@needs_compiler
def test_decode_attention_in_bf16_is_the_float32_result_rounded():
    torch.manual_seed(1)
    query, (keys, values) = _query(4, 4, 64, torch.bfloat16), _cache(4, 4, 96, 64, torch.bfloat16)
    out = native.decode_attention(query, keys, values, None, 0.125)
    assert out.dtype == torch.bfloat16
    assert _within_one_bf16_step(out, _reference(query, keys, values, None, 0.125))


@needs_compiler
def test_decode_attention_refuses_what_it_cannot_read():
    query, (keys, values) = _query(2, 4, 8, torch.float32), _cache(2, 4, 5, 8, torch.float32)
    assert not native.decode_attention_usable(query.expand(2, 4, 2, 8), keys)  # two queries per row
    assert not native.decode_attention_usable(query.double(), keys.double())
    assert not native.decode_attention_usable(query, keys.transpose(2, 3))  # positions not one after the other
    assert not native.decode_attention_usable(query, keys.to(torch.bfloat16))
    assert not native.decode_attention_usable(_query(2, 3, 8, torch.float32), keys)  # 3 heads over 4
    with pytest.raises(ValueError, match="values must be laid out as keys"):
        native.decode_attention(query, keys, values.transpose(2, 3).contiguous().transpose(2, 3), None, 1.0)
    with pytest.raises(ValueError, match="keys and values must be"):
        native.decode_attention(query, keys, values[:, :, :4], None, 1.0)  # fewer values than keys
    with pytest.raises(ValueError, match="keys and values must be"):
        native.decode_attention(query, keys[:1], values[:1], None, 1.0)  # another batch
    with pytest.raises(ValueError, match=r"valid must be \(batch, length\) bool"):
        native.decode_attention(query, keys, values, torch.ones(2, 6, dtype=torch.bool), 1.0)


def test_decode_attention_off_without_the_library(fresh_library, monkeypatch):
    monkeypatch.setenv("ALINEA_NATIVE", "0")
    query, (keys, _) = _query(2, 4, 8, torch.float32), _cache(2, 4, 5, 8, torch.float32)
    assert not native.decode_attention_usable(query, keys)

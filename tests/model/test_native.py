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

"""oneDNN-packed linear layers: the same products as the modules, activations fused, wrappers left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alinea.model.onednn import PackedLinears, onednn_linear_works

pytestmark = pytest.mark.skipif(not onednn_linear_works(), reason="this torch has no working oneDNN linear kernel")


def conv1d(n_in: int, n_out: int):
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(n_out, n_in)  # GPT-2's layer: weight (in, out)
    with torch.no_grad():
        layer.weight.normal_(0, 0.2)
        layer.bias.normal_(0, 0.2)
    return layer


class Wrapped(nn.Module):
    """Stands for a LoRA-wrapped layer: not a plain Linear, so it must be called as a module."""

    def __init__(self, inner: nn.Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 2


def test_packed_products_equal_the_modules_for_linear_and_conv1d_at_any_row_count():
    torch.manual_seed(0)
    linear, conv = nn.Linear(16, 24), conv1d(16, 40)
    packed = PackedLinears([linear, conv], rows=4)
    assert linear in packed and conv in packed
    with torch.inference_mode():
        for shape in [(4, 16), (1, 16), (3, 7, 16)]:  # the row hint is a hint: other shapes still work
            x = torch.randn(*shape)
            torch.testing.assert_close(packed(linear, x), linear(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(packed(conv, x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "activation, algorithm, reference",
    [("gelu", "tanh", lambda y: F.gelu(y, approximate="tanh")), ("gelu", "none", F.gelu), ("swish", "", F.silu)],
)
def test_activations_are_fused_into_the_product(activation, algorithm, reference):
    torch.manual_seed(1)
    linear = nn.Linear(16, 32)
    packed = PackedLinears([linear], rows=8)
    x = torch.randn(8, 16)
    with torch.inference_mode():
        torch.testing.assert_close(packed(linear, x, activation, algorithm), reference(linear(x)), atol=1e-5, rtol=1e-5)


def test_other_modules_are_called_as_they_are_and_refuse_a_fused_activation():
    wrapped = Wrapped(nn.Linear(8, 8))
    packed = PackedLinears([wrapped], rows=2)
    assert wrapped not in packed
    x = torch.randn(2, 8)
    torch.testing.assert_close(packed(wrapped, x), wrapped(x))
    with pytest.raises(ValueError, match="not packed"):
        packed(wrapped, x, "gelu", "tanh")


def test_packing_applies_only_to_cpu_weights_of_one_dtype_outside_autocast_within_the_budget():
    small, other = nn.Linear(8, 8), nn.Linear(8, 8)
    assert PackedLinears.applies([small, other])
    assert not PackedLinears.applies([small, other], max_elements=100)  # 128 weights in all
    assert not PackedLinears.applies([small, other.to(torch.float64)])  # float64 is not packed
    assert not PackedLinears.applies([Wrapped(small)])  # nothing packable
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not PackedLinears.applies([small])


def test_weights_are_packed_when_made_so_later_updates_need_a_new_packing():
    linear = nn.Linear(8, 8)
    packed = PackedLinears([linear], rows=2)
    x = torch.randn(2, 8)
    before = linear(x).detach()
    with torch.no_grad():
        linear.weight.add_(1.0)
    torch.testing.assert_close(packed(linear, x), before, atol=1e-5, rtol=1e-5)  # the copy of the old weights
    torch.testing.assert_close(PackedLinears([linear], rows=2)(linear, x), linear(x), atol=1e-5, rtol=1e-5)


def test_switching_onednn_off_stops_the_packing(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert not onednn_linear_works()
    assert not PackedLinears.applies([nn.Linear(8, 8)])

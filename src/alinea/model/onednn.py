"""oneDNN's linear kernel on the CPU: a check that it works, and weights packed once for many products.

`torch.ops.mkldnn._linear_pointwise` is the kernel inductor (torch.compile) emits for linear layers on a CPU. Fed a
weight that `torch.ops.mkldnn._reorder_linear_weight` has rearranged into oneDNN's blocked layout, it skips the
rearrangement every call of `F.linear` pays, and it can apply an activation (GELU, SiLU) to the product in the same
pass. The arithmetic is the same (fp32 or bf16 products summed in another order: results differ from `F.linear` by
rounding, about 1e-6 relative in fp32).

Measured on the AMD EPYC CPUs of our development machines (2 threads, torch 2.13), a (32 x 256) @ (256 x 8192)
product (a decode step's LM head on the benchmark model): 1.24 ms with `F.linear`, 0.64 ms packed; inside a
sampling loop, where the key/value cache pushes the weights out of the caches between steps, every projection of a
decode step about halved (see docs/sampling.md).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)
"""Weight dtypes packed (bf16 only where oneDNN runs it; `onednn_linear_works` checks)."""


def onednn_linear_works(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN is on (`torch.backends.mkldnn.enabled`, which a user may switch off at any time) and this
    torch's linear kernel for `dtype`, packed and unpacked, computes `F.linear`."""
    return torch.backends.mkldnn.enabled and _kernel_works(dtype)


@functools.cache
def _kernel_works(dtype: torch.dtype) -> bool:
    try:
        kernel = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return False
        x = torch.arange(12.0).view(3, 4).sin().to(dtype)  # fixed numbers: the check leaves the random generator alone
        weight, bias = torch.arange(20.0).view(5, 4).cos().to(dtype), torch.arange(5.0).to(dtype)
        expected = nn.functional.linear(x, weight, bias).float()
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 3)
        tolerance = 1e-5 if dtype == torch.float32 else 5e-2
        return all(
            torch.allclose(out.float(), expected, atol=tolerance)
            for out in (kernel(x, weight, bias, "none", [], ""), kernel(x, packed, bias, "none", [], ""))
        )
    except (AttributeError, RuntimeError):
        return False


def _weight_out_in(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight as (out, in), bias) of a plain `nn.Linear` or transformers' `Conv1D` (GPT-2, weight (in, out));
    None for anything else (LoRA-wrapped layers, quantised layers...), which is then called as a module."""
    if type(module) is nn.Linear:
        return module.weight, module.bias
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # transformers.pytorch_utils.Conv1D
        return module.weight.t(), module.bias
    return None


class PackedLinears:
    """oneDNN-packed copies of the weights of some linear layers, made once and used for many products.

    Made per sampling call (weights change between calls when a policy trains), for a CPU model whose weights are
    fp32 or bf16, outside autocast. A layer that cannot be packed is called as the module it is, so LoRA adapters
    and any other wrapper keep working: `packed(layer, x)` gives `layer(x)` either way.
    """

    def __init__(self, modules: list[nn.Module], rows: int, dtype: torch.dtype | None = None) -> None:
        """`dtype`: pack copies of the weights (and biases) converted to it, e.g. bf16 copies of an fp32 model's
        weights for bf16 products (inputs are converted on the way in, as autocast does); None keeps their dtype."""
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.dtype = dtype
        self.converted = False  # whether the packed copies are of another dtype than the model's weights
        for module in modules:
            found = _weight_out_in(module)
            if found is None or id(module) in self.entries:
                continue
            weight, bias = found
            weight = weight.detach()
            if dtype is not None and weight.dtype != dtype:
                weight = weight.to(dtype)
                bias = bias.detach().to(dtype) if bias is not None else None
                self.converted = True
            self.dtype = weight.dtype
            self.entries[id(module)] = (torch.ops.mkldnn._reorder_linear_weight(weight, rows), bias)

    @staticmethod
    def applies(modules: list[nn.Module], *, dtype: torch.dtype | None = None, max_elements: int = 2**26) -> bool:
        """Whether packing these layers (in `dtype`, else their own dtype) is possible and worth it: CPU weights of
        one dtype, packed in a packable dtype, no autocast, a working kernel, and at most `max_elements` weights in
        all (the copies cost memory for the whole call)."""
        weights = [found[0] for module in modules if (found := _weight_out_in(module)) is not None]
        if not weights or torch.is_autocast_enabled("cpu"):
            return False
        own = weights[0].dtype
        packed = dtype or own
        return (
            all(w.device.type == "cpu" and w.dtype == own for w in weights)
            and packed in PACKABLE_DTYPES
            and sum(w.numel() for w in weights) <= max_elements
            and onednn_linear_works(packed)
        )

    def __contains__(self, module: nn.Module) -> bool:
        return id(module) in self.entries

    def __call__(self, module: nn.Module, x: torch.Tensor, activation: str = "none", algorithm: str = ""):
        """`module(x)`, followed by `activation` fused into the product when the layer is packed: "none", "gelu"
        (algorithm "tanh" or "none") or "swish" (oneDNN's name for SiLU). An unpacked layer takes no activation."""
        entry = self.entries.get(id(module))
        if entry is None:
            if activation != "none":
                raise ValueError(f"{type(module).__name__} is not packed: apply {activation} yourself")
            return module(as_input_of(module, x) if self.converted else x)
        packed, bias = entry
        if x.dtype != packed.dtype:
            x = x.to(packed.dtype)
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, activation, [], algorithm)


def as_input_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` in the dtype of the module's first floating-point parameter (bf16 products feed unpacked fp32 layers)."""
    for param in module.parameters():
        if param.is_floating_point():
            return x if x.dtype == param.dtype else x.to(param.dtype)
    return x

"""Speed-ups that change no numbers: swap slow module implementations for fused kernels of the same function.

GPT-2-style models use `NewGELUActivation`, the tanh approximation of GELU written as five separate tensor
operations (multiply, power, add, tanh, multiply), each allocating a full activation-sized intermediate that autograd
keeps for the backward pass. `torch.nn.GELU(approximate="tanh")` computes the same formula in one fused kernel (its
backward too): on a 4-layer width-256 GPT-2 on CPU, the separate operations took about 20% of a training step.
On bf16 CPU tensors (autocast), `TanhGELU` runs the formula through `alinea.model.native`'s C kernels instead of
torch's, which are slow there (1.1 ms per million numbers, forward or backward, against 0.4-0.7 ms).
"""

from __future__ import annotations

import torch
from torch import nn


class _NativeTanhGELU(torch.autograd.Function):
    """tanh-GELU of a contiguous bf16 CPU tensor with `alinea.model.native`'s kernels, forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        from alinea.model import native

        ctx.save_for_backward(x)
        return native.gelu_tanh(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        from alinea.model import native

        (x,) = ctx.saved_tensors
        if grad.dtype != torch.bfloat16:  # not seen in practice; torch's kernel handles any dtype
            return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")
        return native.gelu_tanh_backward(grad, x)


class TanhGELU(nn.GELU):
    """`nn.GELU(approximate="tanh")` whose bf16 CPU calls run `alinea.model.native`'s kernels (the same formula,
    results within one bf16 rounding step of torch's); every other call is torch's kernel."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from alinea.model import native

        if native.usable(x):
            return _NativeTanhGELU.apply(x)
        return super().forward(x)


def fuse_activations(model: nn.Module) -> int:
    """Replace tanh-approximate GELU modules written op by op (and plain `nn.GELU(approximate="tanh")`) with
    `TanhGELU`; returns how many were swapped."""
    try:
        from transformers.activations import FastGELUActivation, NewGELUActivation
    except ImportError:  # a transformers without them has nothing to swap
        return 0
    slow = (NewGELUActivation, FastGELUActivation)  # both: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            plain_tanh = type(child) is nn.GELU and child.approximate == "tanh"
            if type(child) in slow or plain_tanh:
                setattr(parent, name, TanhGELU())
                swapped += 1
    return swapped

"""Optional vLLM backend: the same `generate_ids` contract, sampled by vLLM on a GPU.

vLLM (https://docs.vllm.ai) is not a dependency: it is imported when a `VllmSampler` is built, and a missing vLLM is
a `UserError` saying how to install it. It loads a model from a checkpoint directory (a pretrain or SFT run's
`final/` folder, or any Hugging Face causal-LM directory), so it samples from the weights saved there: after a policy
update, save the policy and build a new sampler (weights are not pushed into a running engine).

Its output follows `alinea.model.generation.generate_ids`: left-padded prompts in; (new_ids, finished) out, new_ids
(batch, n_new) padded with `pad_id` after the stop token, finished True where a stop token ended the row. Its random
numbers are vLLM's own: the same seed does not give the same tokens as our sampler.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch

from alinea.errors import UserError


def require_vllm():
    """The `vllm` module, or a `UserError` when it is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            "the vLLM sampling backend needs vLLM, which is not installed: pip install vllm (it needs a CUDA GPU). "
            "Without it, alinea samples with its own engine (alinea.model.generation), on CPU or GPU."
        )
    return importlib.import_module("vllm")


class VllmSampler:
    """Sample continuations of token-id prompts with a vLLM engine loaded from `model_dir`."""

    def __init__(
        self, model_dir: str | Path, *, dtype: str = "auto", seed: int = 0, gpu_memory_utilization: float = 0.5,
        **engine_kwargs,
    ) -> None:
        vllm = require_vllm()
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(f"{model_dir}: not a model checkpoint directory (no config.json) for the vLLM backend.")
        self._vllm = vllm
        self.seed = seed
        self.llm = vllm.LLM(
            model=str(model_dir), dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization,
            **engine_kwargs,
        )

    def generate_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        stop_ids: list[int],
        pad_id: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_new_tokens: int = 0,
        fixed_length: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`alinea.model.generation.generate_ids` on vLLM; the tensors come back on the device of `input_ids`."""
        params = self._vllm.SamplingParams(
            n=1, temperature=max(temperature, 0.0), top_p=top_p, max_tokens=max_new_tokens,
            min_tokens=min_new_tokens, stop_token_ids=list(stop_ids), seed=self.seed, detokenize=False,
        )
        prompts = [{"prompt_token_ids": row[mask.bool()].tolist()}
                   for row, mask in zip(input_ids.cpu(), attention_mask.cpu(), strict=True)]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rows = [list(out.outputs[0].token_ids) for out in outputs]
        stops = set(stop_ids)
        finished = [bool(row) and row[-1] in stops for row in rows]
        return pack_rows(rows, finished, pad_id=pad_id, width=max_new_tokens if fixed_length else None,
                         device=input_ids.device)


def pack_rows(
    rows: list[list[int]], finished: list[bool], *, pad_id: int, width: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged token rows -> (new_ids (batch, width or the longest row) padded with `pad_id`, finished (batch,))."""
    n_new = width if width is not None else max((len(row) for row in rows), default=0)
    new_ids = torch.full((len(rows), n_new), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        new_ids[i, : len(row)] = torch.tensor(row[:n_new], dtype=torch.long)
    return new_ids.to(device), torch.tensor(finished, dtype=torch.bool, device=device)

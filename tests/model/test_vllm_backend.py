"""The optional vLLM backend: a clear error without vLLM, and the shape of what it returns.

Sampling with vLLM itself needs vLLM and a CUDA GPU; that test is skipped elsewhere.
"""

import importlib.util

import pytest
import torch

from alinea.errors import UserError
from alinea.model import vllm_backend
from alinea.model.vllm_backend import VllmSampler, pack_rows


def test_a_missing_vllm_is_a_user_error(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(UserError, match="pip install vllm"):
        VllmSampler(tmp_path)


def test_ragged_rows_are_padded_like_generate_ids():
    new_ids, finished = pack_rows([[5, 2], [7, 8, 9], []], [True, False, False], pad_id=0)
    assert new_ids.tolist() == [[5, 2, 0], [7, 8, 9], [0, 0, 0]]
    assert finished.tolist() == [True, False, False]
    fixed, _ = pack_rows([[5, 2]], [True], pad_id=0, width=4)
    assert fixed.tolist() == [[5, 2, 0, 0]]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
                    reason="needs vLLM and a CUDA GPU")
def test_vllm_greedy_matches_our_sampler(tmp_path):
    import transformers

    from alinea.model.generation import generate_ids

    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(tmp_path)
    prompts = torch.tensor([[0, 0, 5, 17, 42], [9, 4, 8, 3, 60]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    sampler = vllm_backend.VllmSampler(tmp_path, dtype="float32", gpu_memory_utilization=0.2, skip_tokenizer_init=True)
    theirs, _ = sampler.generate_ids(prompts, mask, max_new_tokens=8, stop_ids=[], pad_id=0, temperature=0.0)
    ours, _ = generate_ids(model, prompts, mask, max_new_tokens=8, stop_ids=[], pad_id=0, temperature=0.0)
    assert torch.equal(theirs, ours)

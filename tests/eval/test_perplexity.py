import math

import pytest
import torch

from alinea.config import ModelConfig
from alinea.eval.perplexity import perplexity
from alinea.model.causal_lm import build_model_for_tokenizer, load_model_and_tokenizer


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tokenizer, demo_data):
    model = build_model_for_tokenizer(
        ModelConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=32), tokenizer
    )
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: the embedding becomes zero too, logits are all 0
    result = perplexity(model, tokenizer, demo_data["corpus"], seq_len=16, max_sequences=3)
    assert result.ppl == pytest.approx(len(tokenizer), rel=1e-4)
    assert result.tokens == 3 * 15 and result.sequences == 3


def test_trained_model_beats_uniform(pretrained_dir, demo_data):
    model, tokenizer = load_model_and_tokenizer(pretrained_dir)
    result = perplexity(model, tokenizer, demo_data["corpus"], seq_len=32, max_sequences=8)
    assert math.isfinite(result.ppl) and 1.0 < result.ppl < len(tokenizer)
    assert result.ppl == pytest.approx(math.exp(result.loss))

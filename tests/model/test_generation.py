"""The sampling engine: equal to recomputing from scratch, independent of batch padding, exact sampling, stops.

Architectures our decoder runs (GPT-2, Llama, Mistral, Qwen2, and Llama with LoRA adapters) are built tiny and random
here; the trained tiny Llama of conftest covers the text-level `generate`.
"""

import math

import pytest
import torch

from alinea.model.causal_lm import load_model_and_tokenizer
from alinea.model.generation import (
    HFCacheDecoder,
    LlamaDecoder,
    decoder_for,
    draw_tokens,
    generate,
    generate_ids,
    prefill_mask,
    sample_next,
)
from alinea.model.tokenizer import stop_token_ids

VOCAB = 97


@pytest.fixture(scope="module")
def lm(pretrained_dir):
    model, tokenizer = load_model_and_tokenizer(pretrained_dir)
    return model.eval(), tokenizer


def tiny_lm(kind: str, seed: int = 0):
    """A random 2-layer causal LM of the given architecture, vocabulary VOCAB, in eval mode."""
    import transformers

    common = {"vocab_size": VOCAB, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1}
    llama_like = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "max_position_embeddings": 64}
    configs = {
        "gpt2": lambda: transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, **common),
        "llama": lambda: transformers.LlamaConfig(**llama_like, **common),
        "mistral": lambda: transformers.MistralConfig(**llama_like, sliding_window=None, **common),
        "qwen2": lambda: transformers.Qwen2Config(**llama_like, **common),
    }
    classes = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
               "qwen2": "Qwen2ForCausalLM"}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(transformers, classes[kind])(configs[kind]())
    if kind == "qwen2":  # q/k/v biases start at zero: make them count
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.bias.normal_(0, 0.5)
                layer.self_attn.k_proj.bias.normal_(0, 0.5)
    return model.eval()


def greedy_without_cache(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out[len(ids):]


def left_pad(rows: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


# ---------------------------------------------------------------------------------------------------------------------
# The decoders


@pytest.mark.parametrize("kind", ["gpt2", "llama", "mistral", "qwen2"])
def test_our_decoder_runs_each_known_architecture_and_equals_recomputation(kind):
    model = tiny_lm(kind)
    assert decoder_for(model, 32) is not None
    ids = [5, 17, 42, 8, 3]
    new, finished = generate_ids(model, torch.tensor([ids]), torch.ones(1, 5, dtype=torch.long), max_new_tokens=10,
                                 stop_ids=[], pad_id=0, temperature=0.0)
    assert new[0].tolist() == greedy_without_cache(model, ids, 10)
    assert not bool(finished[0])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_left_padded_rows_continue_as_they_would_alone(kind):
    model = tiny_lm(kind, seed=1)
    rows = [[5, 17, 42, 8, 3, 60, 61], [9, 4], [33, 2, 71, 12]]
    ids, mask = left_pad(rows)
    for own in (True, False):  # our decoder, and the model's own forward with a dynamic cache
        new, _ = generate_ids(model, ids, mask, max_new_tokens=8, stop_ids=[], pad_id=0, temperature=0.0,
                              use_own_decoder=own)
        for row, prompt in enumerate(rows):
            assert new[row].tolist() == greedy_without_cache(model, prompt, 8), (own, row)


def test_prefill_attends_causally_to_real_tokens_and_pads_see_themselves():
    mask = prefill_mask(torch.tensor([[False, True, True], [True, True, True]]))
    assert mask.shape == (2, 1, 3, 3)
    assert mask[0, 0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # the pad row sees only itself
    assert mask[1, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_our_decoder_gives_the_logits_of_the_full_forward():
    model = tiny_lm("llama", seed=2)
    ids, mask = left_pad([[5, 17, 42, 8], [9, 4]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    decoder = decoder_for(model, 6)
    decoder.start(mask.bool(), 6)
    with torch.no_grad():
        first = decoder.prefill(ids, positions)
        second = decoder.step(torch.tensor([7, 11]), positions[:, -1] + 1, 4)
        longer = torch.cat([ids, torch.tensor([[7], [11]])], dim=1)
        full = model(input_ids=longer, attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1),
                     position_ids=(torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1).cumsum(-1) - 1).clamp(min=0)
                     ).logits
    torch.testing.assert_close(first, full[:, -2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, full[:, -1], atol=1e-5, rtol=1e-5)


def test_lora_adapters_stay_live_in_our_decoder():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_lm("llama", seed=3), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero: make the adapters change the outputs
    model.eval()
    assert isinstance(decoder_for(model, 32), LlamaDecoder)
    ids = [5, 17, 42, 8, 3]
    new, _ = generate_ids(model, torch.tensor([ids]), torch.ones(1, 5, dtype=torch.long), max_new_tokens=8,
                          stop_ids=[], pad_id=0, temperature=0.0)
    with_adapters = greedy_without_cache(model, ids, 8)
    with model.disable_adapter():
        without = greedy_without_cache(model, ids, 8)
    assert new[0].tolist() == with_adapters != without


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_on_a_cpu_every_plain_linear_layer_is_packed_and_the_logits_do_not_change(kind):
    from alinea.model.fast import fuse_activations
    from alinea.model.onednn import onednn_linear_works

    if not onednn_linear_works():
        pytest.skip("this torch has no working oneDNN linear kernel")
    model = tiny_lm(kind, seed=4)
    if kind == "gpt2":
        fuse_activations(model)  # nn.GELU(approximate="tanh"), as after training: fused into the packed product too
    ids, mask = left_pad([[5, 17, 42, 8], [9, 4]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    decoder = decoder_for(model, 8)
    decoder.start(mask.bool(), 8)
    assert decoder.linears is not None
    modules = decoder.linear_modules()
    assert len(modules) == (4 if kind == "gpt2" else 7) * 2 + 1 and all(m in decoder.linears for m in modules)
    with torch.inference_mode():
        packed = [decoder.prefill(ids, positions), decoder.step(torch.tensor([7, 11]), positions[:, -1] + 1, 4)]
        decoder.start(mask.bool(), 8)
        decoder.linears = None  # the same steps through the modules themselves
        plain = [decoder.prefill(ids, positions), decoder.step(torch.tensor([7, 11]), positions[:, -1] + 1, 4)]
    for a, b in zip(packed, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast picks its own kernels: nothing is packed
        decoder.start(mask.bool(), 8)
    assert decoder.linears is None


def test_bf16_compute_dtype_packs_bf16_copies_and_gives_the_autocast_logits():
    from alinea.model.fast import fuse_activations
    from alinea.model.onednn import onednn_linear_works

    if not onednn_linear_works(torch.bfloat16):
        pytest.skip("this torch has no working bf16 oneDNN linear kernel")
    model = tiny_lm("gpt2", seed=6)
    fuse_activations(model)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids, mask = left_pad([[5, 17, 42, 8, 3, 60], [9, 4, 33]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    decoder = decoder_for(model, 10)
    decoder.start(mask.bool(), 10, compute_dtype=torch.bfloat16)
    assert decoder.linears is not None and decoder.linears.dtype == torch.bfloat16
    with torch.inference_mode():
        logits = decoder.prefill(ids, positions)
        assert logits.dtype == torch.float32 and decoder.cache.keys[0].dtype == torch.bfloat16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
        exact = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    # bf16 products: as far from the float32 logits as autocast's, and close to autocast's own
    assert (logits - exact).abs().max() < 3 * (reference - exact).abs().max() + 1e-3
    torch.testing.assert_close(logits, reference, atol=0.05, rtol=0.05)
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())  # the model is untouched
    # the whole sampler with bf16 products: its first greedy token is the argmax of the bf16 logits above
    new_bf16, _ = generate_ids(model, ids, mask, max_new_tokens=4, stop_ids=[], pad_id=0, temperature=0.0,
                               compute_dtype=torch.bfloat16)
    assert new_bf16.shape == (2, 4) and torch.equal(new_bf16[:, 0], logits.argmax(-1))
    # decoders that do not take a compute dtype ignore it: float32 weights, float32 cache
    llama = decoder_for(tiny_lm("llama", seed=6), 10)
    llama.start(mask.bool(), 10, compute_dtype=torch.bfloat16)
    assert llama.linears is None or llama.linears.dtype == torch.float32


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decode_steps_give_the_same_logits_with_and_without_the_c_attention_kernel(kind, monkeypatch):
    from alinea.model import native

    if native.library() is None:
        pytest.skip("alinea's C kernels are not built here")
    ids, mask = left_pad([[5, 17, 42, 8, 3, 60], [9, 4, 33]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 0.1)):
        model = tiny_lm(kind, seed=7).to(dtype)
        runs = {}
        for with_kernel in (True, False):
            if not with_kernel:
                monkeypatch.setattr(native, "library", lambda: None)
            decoder = decoder_for(model, 10)
            decoder.start(mask.bool(), 10)
            assert decoder.native_decode is with_kernel
            with torch.inference_mode():
                steps = [decoder.prefill(ids, positions)]
                token, position = steps[0].argmax(-1), positions[:, -1] + 1
                for step in range(3):
                    steps.append(decoder.step(token, position + step, 6 + step))
            runs[with_kernel] = torch.stack(steps).float()
            # without the kernel a bf16 model's cache holds float32 keys (torch's bf16 attention is slow on a CPU)
            expected = dtype if with_kernel else torch.float32
            assert decoder.cache.keys[0].dtype == expected
        torch.testing.assert_close(runs[True], runs[False], atol=tolerance, rtol=tolerance)
        monkeypatch.undo()


def test_bf16_compute_dtype_feeds_lora_wrapped_layers_float32_inputs():
    peft = pytest.importorskip("peft")
    from alinea.model.onednn import onednn_linear_works

    if not onednn_linear_works(torch.bfloat16):
        pytest.skip("this torch has no working bf16 oneDNN linear kernel")
    model = peft.get_peft_model(tiny_lm("gpt2", seed=7), peft.LoraConfig(r=4, target_modules=["c_attn"],
                                                                          fan_in_fan_out=True))
    ids, mask = left_pad([[5, 17, 42, 8], [9, 4]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    decoder = decoder_for(model, 8)
    decoder.start(mask.bool(), 8, compute_dtype=torch.bfloat16)
    block = decoder.body.h[0]
    assert block.attn.c_attn not in decoder.linears and block.mlp.c_fc in decoder.linears
    with torch.inference_mode():
        logits = decoder.prefill(ids, positions)  # the adapter's layer takes the bf16 stream back in float32
        exact = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, exact, atol=0.1, rtol=0.05)


def test_lora_wrapped_layers_are_not_packed_and_the_others_are():
    peft = pytest.importorskip("peft")
    from alinea.model.onednn import onednn_linear_works

    if not onednn_linear_works():
        pytest.skip("this torch has no working oneDNN linear kernel")
    model = peft.get_peft_model(tiny_lm("llama", seed=3), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    decoder = decoder_for(model, 16)
    decoder.start(torch.ones(1, 4, dtype=torch.bool), 16)
    attn = decoder.body.layers[0].self_attn
    assert attn.q_proj not in decoder.linears and attn.v_proj not in decoder.linears
    assert attn.k_proj in decoder.linears and attn.o_proj in decoder.linears


def test_unknown_architectures_and_sliding_windows_use_the_models_own_forward():
    import transformers

    with torch.random.fork_rng():
        torch.manual_seed(0)
        mistral = transformers.MistralForCausalLM(transformers.MistralConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, sliding_window=4)).eval()
    assert decoder_for(mistral, 32) is None  # a window shorter than the sequence: not ours
    assert decoder_for(mistral, 4) is not None
    assert decoder_for(_ScriptedLM([[1]]), 8) is None
    ids = [5, 17, 42, 8, 3, 9]
    new, _ = generate_ids(mistral, torch.tensor([ids]), torch.ones(1, 6, dtype=torch.long), max_new_tokens=5,
                          stop_ids=[], pad_id=0, temperature=0.0)
    assert new[0].tolist() == greedy_without_cache(mistral, ids, 5)


def test_the_hf_cache_path_passes_the_keyword_the_model_takes():
    decoder = HFCacheDecoder(_ScriptedLM([[1]]))
    assert decoder.cache_arg == "cache" and decoder.logits_arg == {"logits_to_keep": 1}


# ---------------------------------------------------------------------------------------------------------------------
# Drawing tokens


def test_inverse_cdf_draws_follow_the_cumulative_weights_exactly():
    logits = torch.log(torch.tensor([0.2, 0.0, 0.5, 0.3])).expand(7, 4)  # token 1 has probability 0
    uniform = torch.tensor([0.0, 0.1999, 0.2001, 0.6999, 0.7001, 0.9999, 1.0 - 2**-24])
    drawn = draw_tokens(logits, temperature=1.0, top_p=1.0, uniform=uniform)
    assert drawn.tolist() == [0, 0, 2, 2, 3, 3, 3]
    first_empty = torch.log(torch.tensor([[0.0, 0.4, 0.6]]))
    assert draw_tokens(first_empty, temperature=1.0, top_p=1.0, uniform=torch.tensor([0.0])).tolist() == [1]


def test_sampled_frequencies_match_the_softmax():
    # softmax(x / 0.8) by hand: exp(1.25, 0, -1.25, 2.5, 0.625) = (3.4903, 1, 0.2865, 12.1825, 1.8682), sum 18.8275
    expected = torch.tensor([0.18538, 0.05311, 0.01522, 0.64706, 0.09923], dtype=torch.float64)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    n = 40_000
    drawn = sample_next(logits.expand(n, 5), temperature=0.8, top_p=1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=5).double() / n
    # 4 standard errors of a share of at most 0.65: 4 * sqrt(0.65 * 0.35 / n) = 0.0095
    assert torch.allclose(freq, expected, atol=0.0095)


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = sample_next(logits, temperature=1.0, top_p=0.6, generator=gen)
    assert set(drawn.tolist()) == {0, 1}  # 0.5 < 0.6, so token 1 is needed; token 2 never
    share = (drawn == 0).float().mean().item()
    assert share == pytest.approx(0.5 / 0.8, abs=0.04)  # renormalised within the nucleus
    assert set(sample_next(logits, temperature=1.0, top_p=0.01, generator=gen).tolist()) == {0}
    assert sample_next(logits[:1], temperature=0.0, top_p=1.0, generator=gen).tolist() == [0]


@pytest.mark.parametrize("top_p, in_top_64", [(0.5, True), (0.8, False)])
def test_top_p_nucleus_over_a_large_shuffled_vocabulary(top_p, in_top_64):
    # Weights 200, 199, ..., 1 on shuffled token ids: the nucleus is the first k of them, k the smallest count whose
    # mass reaches top_p. With top_p 0.5 the 64 likeliest tokens hold it (the fast path); with 0.8 they do not.
    weights = torch.arange(200, 0, -1, dtype=torch.float64)
    mass_before = (weights.cumsum(0) - weights) / weights.sum()
    k = int((mass_before < top_p).sum())
    assert (k <= 64) == in_top_64
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    logits = torch.empty(200)
    logits[order] = weights.log().float()
    draws = 20_000
    drawn = sample_next(logits.expand(draws, 200), temperature=1.0, top_p=top_p,
                        generator=torch.Generator().manual_seed(2))
    assert set(drawn.tolist()) <= set(order[:k].tolist())
    assert len(set(drawn.tolist())) > 0.9 * k
    share_first = (drawn == order[0]).double().mean().item()
    assert share_first == pytest.approx(200 / weights[:k].sum().item(), abs=0.004)  # 4-5 standard errors


def test_temperature_sharpens():
    logits = torch.tensor([[math.log(0.6), math.log(0.4)]]).repeat(4000, 1)
    gen = torch.Generator().manual_seed(1)
    hot = (sample_next(logits, temperature=1.0, top_p=1.0, generator=gen) == 0).float().mean().item()
    cold = (sample_next(logits, temperature=0.25, top_p=1.0, generator=gen) == 0).float().mean().item()
    assert hot == pytest.approx(0.6, abs=0.03)
    assert cold == pytest.approx(0.6**4 / (0.6**4 + 0.4**4), abs=0.03)


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    model = tiny_lm("gpt2", seed=4)
    ids, mask = left_pad([[5, 17, 42], [9, 4, 8, 8, 2]])

    def sample(seed: int) -> list[list[int]]:
        new, _ = generate_ids(model, ids, mask, max_new_tokens=12, stop_ids=[], pad_id=0, temperature=1.0, top_p=0.9,
                              generator=torch.Generator().manual_seed(seed))
        return new.tolist()

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


# ---------------------------------------------------------------------------------------------------------------------
# Stopping and output shape


class _ScriptedLM(torch.nn.Module):
    """A fake LM whose next token is scripted per row, to test stopping and padding."""

    def __init__(self, script: list[list[int]], vocab: int = 10):
        super().__init__()
        self.script = script
        self.vocab = vocab
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, position_ids, use_cache, logits_to_keep=0, cache=None):
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e9)
        for row, tokens in enumerate(self.script):
            logits[row, -1, tokens[min(self.calls, len(tokens) - 1)]] = 0.0
        self.calls += 1
        return type("Out", (), {"logits": logits})()


def scripted(script, **kwargs):
    rows = len(script)
    options = {"max_new_tokens": 4, "stop_ids": [2], "pad_id": 0, "temperature": 0.0, **kwargs}
    new, finished = generate_ids(_ScriptedLM(script), torch.ones(rows, 3, dtype=torch.long),
                                 torch.ones(rows, 3, dtype=torch.long), **options)
    return new.tolist(), finished.tolist()


def test_rows_stop_at_their_stop_token_and_are_padded():
    assert scripted([[5, 2, 7, 7], [5, 6, 6, 6]]) == ([[5, 2, 0, 0], [5, 6, 6, 6]], [True, False])


def test_sampling_ends_when_every_row_has_stopped_unless_the_length_is_fixed():
    assert scripted([[5, 2, 7, 7], [2, 6, 6, 6]]) == ([[5, 2], [2, 0]], [True, True])
    assert scripted([[5, 2, 7, 7], [2, 6, 6, 6]], fixed_length=True) == ([[5, 2, 0, 0], [2, 0, 0, 0]], [True, True])


def test_min_new_tokens_blocks_the_stop_tokens():
    # With the scripted stop token blocked, every other token has logit -1e9 and argmax picks token 0.
    assert scripted([[2, 2, 2, 2]], pad_id=9, min_new_tokens=2) == ([[0, 0, 2]], [True])
    assert scripted([[2, 2, 2, 2]], pad_id=9, min_new_tokens=4) == ([[0, 0, 0, 0]], [False])


def test_a_stop_token_ends_a_real_models_row():
    model = tiny_lm("llama", seed=5)
    ids = [5, 17, 42, 8, 3]
    free = greedy_without_cache(model, ids, 6)
    stop = free[2]
    new, finished = generate_ids(model, torch.tensor([ids, ids]), torch.ones(2, 5, dtype=torch.long),
                                 max_new_tokens=6, stop_ids=[stop], pad_id=0, temperature=0.0, fixed_length=True)
    end = free.index(stop)
    assert new[0].tolist() == free[: end + 1] + [0] * (5 - end)
    assert finished.tolist() == [True, True]


def test_sampled_ids_can_feed_a_training_forward():
    model = tiny_lm("llama", seed=6)
    new, _ = generate_ids(model, torch.tensor([[5, 17, 42]]), torch.ones(1, 3, dtype=torch.long), max_new_tokens=4,
                          stop_ids=[], pad_id=0, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert not new.is_inference()
    model.train()
    model(input_ids=new, labels=new).loss.backward()  # would fail on an inference-mode tensor
    assert model.model.embed_tokens.weight.grad is not None


def test_zero_new_tokens_gives_an_empty_answer():
    new, finished = generate_ids(tiny_lm("gpt2"), torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long),
                                 max_new_tokens=0, stop_ids=[1], pad_id=0)
    assert new.shape == (1, 0) and finished.tolist() == [False]


# ---------------------------------------------------------------------------------------------------------------------
# Text in, text out (the trained tiny Llama)


def test_cached_greedy_equals_full_recomputation(lm):
    model, tokenizer = lm
    ids = tokenizer("The film was", add_special_tokens=False)["input_ids"]
    new, finished = generate_ids(
        model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=6,
        stop_ids=[], pad_id=tokenizer.pad_token_id, temperature=0.0,
    )
    assert new[0].tolist() == greedy_without_cache(model, ids, 6)
    assert not bool(finished[0])


def test_left_padding_does_not_change_answers(lm):
    model, tokenizer = lm
    short = "A story:"
    long = "Write a long and detailed review of the restaurant by the river, please."
    alone = generate(model, tokenizer, [short], max_new_tokens=6, temperature=0.0)
    batched = generate(model, tokenizer, [long, short], max_new_tokens=6, temperature=0.0)
    assert batched[1].token_ids == alone[0].token_ids


def test_generate_returns_text_and_stops(lm):
    model, tokenizer = lm
    answers = generate(model, tokenizer, ["Hi", [{"role": "user", "content": "Hello"}]], max_new_tokens=5, seed=3)
    assert len(answers) == 2
    for answer in answers:
        assert 0 < len(answer.token_ids) <= 5
        assert answer.finished == any(t in stop_token_ids(tokenizer) for t in answer.token_ids)
    again = generate(model, tokenizer, ["Hi", [{"role": "user", "content": "Hello"}]], max_new_tokens=5, seed=3)
    assert [a.token_ids for a in again] == [a.token_ids for a in answers]  # seeded

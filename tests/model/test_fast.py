import torch
from transformers import GPT2Config, GPT2ForSequenceClassification
from transformers.activations import NewGELUActivation

from alinea.model.fast import fuse_activations


def test_fused_gelu_gives_the_same_outputs_and_gradients():
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16, num_labels=1, pad_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(config)
    ids = torch.randint(1, 50, (3, 10))
    before = model(input_ids=ids).logits
    before.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    assert sum(isinstance(m, NewGELUActivation) for m in model.modules()) == 2
    assert fuse_activations(model) == 2
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    after = model(input_ids=ids).logits
    after.sum().backward()
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    assert fuse_activations(model) == 0  # idempotent

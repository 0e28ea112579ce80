"""The loss module and optimizer of the training loop, against Hugging Face's own loss."""

import pytest
import torch

from alinea.config import ModelConfig, TrainConfig
from alinea.losses import IGNORE_INDEX
from alinea.model.causal_lm import build_model
from alinea.train.loop import CausalLMLoss, TokenBatch, make_optimizer, resolve_precision

TINY = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def model():
    return build_model(TINY, vocab_size=97, pad_token_id=0, stop_ids=[1], seed=0).eval()


def test_dense_and_masked_paths_equal_the_hf_loss(model):
    ids = torch.randint(3, 97, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    module = CausalLMLoss(model)
    with torch.no_grad():
        dense, n_dense = module(TokenBatch(ids, mask, ids, dense=True))
        masked, n_masked = module(TokenBatch(ids, mask, ids))
        reference = model(input_ids=ids, labels=ids).loss
    assert int(n_dense) == int(n_masked) == 3 * 11
    assert float(dense) == pytest.approx(float(reference), abs=1e-5)
    assert float(masked) == pytest.approx(float(reference), abs=1e-5)


def test_masked_positions_do_not_count(model):
    ids = torch.randint(3, 97, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX
    module = CausalLMLoss(model)
    with torch.no_grad():
        loss, n_tokens = module(TokenBatch(ids, torch.ones_like(ids), labels))
        reference = model(input_ids=ids, labels=labels).loss
        none, n_none = module(TokenBatch(ids, torch.ones_like(ids), torch.full_like(ids, IGNORE_INDEX)))
    assert int(n_tokens) == 2 * 4  # targets at positions 5..8 predict labels 6..9
    assert float(loss) == pytest.approx(float(reference), abs=1e-5)
    assert int(n_none) == 0 and float(none) == 0.0


def test_weight_decay_only_on_matrices(model):
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_precision_choice():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("fp32", "bf16")
    from alinea.errors import UserError

    with pytest.raises(UserError, match="precision"):
        resolve_precision("fp8")


def test_best_keeper_saves_the_best_and_restores_it(tmp_path, model):
    import copy

    from alinea.config import AlineaConfig
    from alinea.train.loop import BestKeeper, TrainStep, lower_is_better
    from alinea.train.runs import RunDir

    assert lower_is_better("loss") and lower_is_better("ece") and not lower_is_better("accuracy")
    run = RunDir.create("test", AlineaConfig(), runs_dir=tmp_path, seed=0)
    trainer = TrainStep(copy.deepcopy(model), TrainConfig(lr=1e-2))
    keeper = BestKeeper(run, "accuracy", enabled=True, is_main=True)
    weights_at = {}
    for step, accuracy in [(1, 0.6), (2, 0.8), (3, 0.7)]:
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.1)
        weights_at[step] = [p.detach().clone() for p in trainer.model.parameters()]
        keeper.offer(trainer, step, {"accuracy": accuracy, "loss": 1.0})
    assert keeper.info == {"step": 2, "metric": "accuracy", "value": 0.8}
    assert BestKeeper(run, "accuracy", enabled=True, is_main=True).info["step"] == 2  # survives a resume
    restored = keeper.restore(trainer)
    assert restored["step"] == 2
    for p, expected in zip(trainer.model.parameters(), weights_at[2], strict=True):
        assert torch.equal(p, expected)
    assert BestKeeper(run, "accuracy", enabled=False, is_main=True).restore(trainer) is None


def test_attention_without_cudnn_only_inside_the_block_and_only_on_a_gpu(monkeypatch):
    from alinea.train.loop import attention_without_cudnn

    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_without_cudnn():  # no GPU here: nothing changes
        assert torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with attention_without_cudnn():
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setenv("ALINEA_CUDNN_SDP", "1")
    with attention_without_cudnn():
        assert torch.backends.cuda.cudnn_sdp_enabled()


def test_keeping_freed_memory_is_asked_of_glibc():
    import platform

    from alinea.train.loop import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True

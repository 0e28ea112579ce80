"""SFT runs: the eval loss falls, LoRA trains only adapters and exports a merged model, bad input is refused."""

import json

import pytest
import torch

from alinea.config import load_config
from alinea.errors import UserError
from alinea.model.causal_lm import load_model, load_model_and_tokenizer
from alinea.train import sft
from alinea.train.runs import RunDir
from tests.conftest import tiny_overrides


def _cfg(tmp_path, pretrained_dir, demo_data, **extra):
    base = {"sft.model": pretrained_dir, "sft.data": demo_data["demonstrations"]}
    return load_config(None, tiny_overrides(tmp_path, **{**base, **extra}))


def test_sft_lowers_eval_loss(tmp_path, pretrained_dir, demo_data):
    result = sft.run(_cfg(tmp_path, pretrained_dir, demo_data, **{
        "sft.max_steps": 30, "sft.eval_every": 10, "sft.lr": 3e-3, "sft.batch_size": 8, "sft.log_every": 10,
    }))
    evals = [row["loss"] for row in RunDir(result.run_dir).read_metrics("eval")]
    assert len(evals) == 3 and evals[-1] < evals[0] - 0.2
    meta = RunDir(result.run_dir).meta()
    assert meta["train_examples"] + meta["eval_examples"] + meta["dropped"] == 60


def test_lora_trains_adapters_only_and_exports_a_merged_model(tmp_path, pretrained_dir, demo_data):
    result = sft.run(_cfg(tmp_path, pretrained_dir, demo_data, **{"sft.lora": True, "sft.lr": 1e-2}))
    assert (result.final_dir / "adapter" / "adapter_config.json").is_file()
    before = load_model(pretrained_dir).state_dict()
    after = load_model(result.final_dir).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "merged LoRA weights must differ from the base"
    assert all(any(t in k for t in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)
    state = torch.load(RunDir(result.run_dir).latest_checkpoint() / "trainer_state.pt", weights_only=False)
    assert state["model"] and all("lora_" in k for k in state["model"])
    config = json.loads((result.final_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    load_model_and_tokenizer(result.final_dir)  # a plain HF directory


def test_unknown_lora_target_is_named(tmp_path, pretrained_dir, demo_data):
    with pytest.raises(UserError, match="sft.lora_targets"):
        sft.run(_cfg(tmp_path, pretrained_dir, demo_data, **{"sft.lora": True, "sft.lora_targets": '["attn"]'}))


def test_sft_refuses_bad_inputs(tmp_path, pretrained_dir, demo_data):
    with pytest.raises(UserError, match="not a model checkpoint directory"):
        sft.run(_cfg(tmp_path, tmp_path, demo_data))
    with pytest.raises(UserError, match="sft.model"):
        sft.run(_cfg(tmp_path, "", demo_data))
    empty_answer = tmp_path / "demos.jsonl"
    empty_answer.write_text('{"type": "demonstration", "prompt": "Hi", "response": "  "}\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        sft.run(_cfg(tmp_path, pretrained_dir, demo_data, **{"sft.data": empty_answer}))
    assert f"{empty_answer}:1: response:" in str(err.value)
    one = tmp_path / "one.jsonl"
    one.write_text('{"type": "demonstration", "prompt": "Hi", "response": "Hello"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="at least 2"):
        sft.run(_cfg(tmp_path, pretrained_dir, demo_data, **{"sft.data": one}))

"""PPO, RLOO and GRPO on a tiny policy: invariants at step 0, learning a Python reward, resume, DDP, bad input."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alinea.config import load_config
from alinea.errors import UserError
from alinea.losses import ppo_policy_loss
from alinea.train import policy_gradient as pg
from alinea.train.loop import Interrupted
from alinea.train.rollout import policy_forward

REWARD = "tests.train.rl_rewards:target_share"
REPO = Path(__file__).resolve().parents[2]


def rl_config(algorithm: str, policy: Path, prompts: Path, runs: Path, **extra):
    sets = {
        "policy": str(policy),
        "prompts": str(prompts),
        "runs_dir": str(runs),
        "max_new_tokens": 16,
        "max_prompt_len": 48,
        "batch_size": 16,
        "minibatch_size": 8,
        "generation_batch_size": 16,
        "penalise_missing_eos": False,
        "save_every": 0,
        "seed": 0,
    }
    sets.update(extra)
    overrides = [f'{algorithm}.rewards=["{REWARD}"]']
    for key, value in sets.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, str):
            value = json.dumps(value)
        overrides.append(f"{algorithm}.{key}={value}")
    return load_config(None, overrides)


def test_step_zero_policy_equals_reference(rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path)
    trainer = pg.PolicyGradientTrainer("ppo", cfg)
    rollout = trainer.collect(0, pg.PhaseTimer())
    mask = rollout.response_mask.float()
    assert mask.sum() > 0
    # KL to the reference is exactly zero: same weights, same inputs.
    assert torch.equal(rollout.logprobs * mask, rollout.ref_logprobs * mask)
    adv_metrics = trainer.compute_advantages(rollout, pg.PhaseTimer())
    assert adv_metrics["kl"] == 0.0
    # Before any update the ratio is 1 everywhere, so nothing is clipped and the approximate KL is 0.
    with torch.no_grad():
        logprobs, _ = policy_forward(trainer.policy, rollout, temperature=cfg.ppo.temperature)
    out = ppo_policy_loss(logprobs.cpu(), rollout.logprobs, rollout.advantages, mask, clip_eps=0.2)  # rollouts: CPU
    assert float(out.clipfrac) == 0.0
    assert float(out.approx_kl) == pytest.approx(0.0, abs=1e-6)
    assert float(out.ratio_mean) == pytest.approx(1.0, abs=1e-5)
    # Phases are named as documented; the critic's values exist for every answer token.
    assert rollout.values.shape == rollout.response_ids.shape
    assert torch.isfinite(rollout.advantages).all()


def test_rollout_masks_and_layout(rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, k=4, batch_size=8, generation_batch_size=8)
    trainer = pg.PolicyGradientTrainer("rloo", cfg)
    rollout = trainer.collect(0, pg.PhaseTimer())
    # k answers per prompt, consecutive; prompts left-padded (last column real), answers right-padded.
    assert rollout.prompt_index.tolist()[:4] == [rollout.prompt_index[0].item()] * 4
    assert bool(rollout.prompt_mask[:, -1].all())
    lengths = rollout.response_mask.sum(-1)
    for row in range(len(rollout)):
        assert rollout.response_mask[row, : lengths[row]].all() and not rollout.response_mask[row, lengths[row]:].any()
    assert rollout.finished.tolist() == [bool(x) for x in (lengths < rollout.response_ids.shape[1]) | rollout.finished]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "steps", "extra"),
    [
        ("ppo", 16, {"lr": 1e-3, "critic_lr": 1e-3}),
        ("rloo", 24, {"lr": 1e-3, "k": 4}),
        ("grpo", 24, {"lr": 1e-3, "k": 4, "epochs": 2}),
    ],
)
def test_rl_raises_a_python_reward(algorithm, steps, extra, rl_policy_dir, demo_data, tmp_path, one_torch_thread):
    cfg = rl_config(algorithm, rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=steps, **extra)
    result = pg.run(algorithm, cfg)
    rewards = [m["reward_mean"] for m in result.metrics]
    assert len(rewards) == steps
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.3, rewards
    kls = [m["kl"] for m in result.metrics]
    # Step 0: the policy is the reference (a separate copy of the same weights, whose kernels may round differently
    # in the last bit); a wrong temperature or misaligned positions would give a KL of 0.01 or more.
    assert abs(kls[0]) < 1e-6, kls[0]
    assert max(kls) < 40.0, kls
    row = result.metrics[-1]
    for key in ("entropy", "clipfrac", "approx_kl", "response_length", "eos_rate", "time_generate", "time_update",
                "time_score", "time_reference", "time_advantages", "episodes_per_s", f"reward/{REWARD}"):
        assert key in row, key
    if algorithm == "ppo":
        assert "value_loss" in row and "explained_variance" in row and "time_values" in row
    assert (result.final_dir / "config.json").is_file()


def test_resume_matches_an_uninterrupted_run(rl_policy_dir, demo_data, tmp_path, one_torch_thread):
    def run(out: Path, on_step=None, resume=None):
        cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=4, save_every=2, lr=1e-3)
        return pg.run("ppo", cfg, out=out if resume is None else None, resume=resume, on_step=on_step)

    full = run(tmp_path / "full")

    def crash(step, metrics):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run(tmp_path / "cut", on_step=crash)
    resumed = run(None, resume=tmp_path / "cut")
    assert resumed.steps == 4
    a = [m["reward_mean"] for m in full.metrics]
    b = [m["reward_mean"] for m in resumed.metrics]
    assert a == pytest.approx(b, abs=1e-6)
    from safetensors.torch import load_file

    wa = load_file(str(full.final_dir / "model.safetensors"))
    wb = load_file(str(resumed.final_dir / "model.safetensors"))
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name
    assert (tmp_path / "cut" / "critic" / "config.json").is_file()


def test_kl_blow_up_stops_with_the_last_checkpoint(rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=6, lr=5e-2, kl_stop=0.5,
                    save_every=1, k=4)
    with pytest.raises(UserError, match=r"KL to the reference reached .* last good checkpoint is .*step-"):
        pg.run("rloo", cfg)


def test_non_finite_loss_names_step_and_minibatch(rl_policy_dir, demo_data, tmp_path, monkeypatch):
    cfg = rl_config("grpo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=2, k=4)
    real = pg.grpo_policy_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(pg, "grpo_policy_loss", poisoned)
    with pytest.raises(UserError, match=r"non-finite loss nan in epoch 1, minibatch 1 of step 1.*no checkpoint yet"):
        pg.run("grpo", cfg)


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ("tests.train.rl_rewards:raises", "raised RuntimeError: judge offline"),
        ("tests.train.rl_rewards:returns_nan", "non-finite"),
        ("tests.train.rl_rewards:wrong_count", "returned 1 values"),
        ("tests.train.rl_rewards:missing", "has no function 'missing'"),
        ("no_such_module_xyz:fn", "cannot import module"),
        ("not-a-judge", "not a directory, not module:function"),
    ],
)
def test_bad_reward_sources_fail_before_training(reward, message, rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path)
    cfg.ppo.rewards = [reward]
    with pytest.raises(UserError, match=message):
        pg.PolicyGradientTrainer("ppo", cfg)
    assert not list(tmp_path.glob("ppo-*"))  # nothing started


def test_reward_model_with_another_tokenizer_is_refused(rl_policy_dir, demo_data, tmp_path):
    from alinea.data.corpus import read_documents
    from alinea.model.causal_lm import build_model_for_tokenizer, save_checkpoint
    from alinea.model.reward import Normalisation, build_reward_model, set_normalisation
    from alinea.model.tokenizer import train_tokenizer

    other_tok = train_tokenizer(read_documents(demo_data["corpus"])[:200], vocab_size=400)
    base = build_model_for_tokenizer(load_config(None, ["model.hidden_size=32", "model.num_layers=1",
                                                         "model.num_heads=2", "model.num_kv_heads=2",
                                                         "model.intermediate_size=64"]).model, other_tok)
    save_checkpoint(base, other_tok, tmp_path / "other")
    rm, tok = build_reward_model(tmp_path / "other")
    set_normalisation(rm, Normalisation([0.0], [1.0]))
    rm.save_pretrained(str(tmp_path / "rm"))
    tok.save_pretrained(str(tmp_path / "rm"))
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path)
    cfg.ppo.rewards = [str(tmp_path / "rm")]
    with pytest.raises(UserError, match="tokenizer differs from the policy's"):
        pg.PolicyGradientTrainer("ppo", cfg)


def test_bad_settings_and_prompts(rl_policy_dir, demo_data, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="holds no records"):
        pg.PolicyGradientTrainer("ppo", rl_config("ppo", rl_policy_dir, empty, tmp_path))
    with pytest.raises(UserError, match="exceeds the model's context of 128"):
        pg.PolicyGradientTrainer("ppo", rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path,
                                                  max_prompt_len=120, max_new_tokens=16))
    with pytest.raises(UserError, match="must divide batch_size"):
        pg.PolicyGradientTrainer("ppo", rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path, minibatch_size=5))
    with pytest.raises(UserError, match="multiples of k"):
        pg.PolicyGradientTrainer("grpo", rl_config("grpo", rl_policy_dir, demo_data["prompts"], tmp_path, k=3))
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path)
    cfg.ppo.rewards = []
    with pytest.raises(UserError, match="no reward source"):
        pg.PolicyGradientTrainer("ppo", cfg)


@pytest.mark.parametrize(("settings", "message"), [
    ({"costs": ["toxicity"], "lagrange_lr": 0.0}, r"rloo.lagrange_lr: expected a finite number > 0, found 0.0"),
    ({"costs": ["toxicity"], "lagrange_max": float("nan")}, r"rloo.lagrange_max: expected a finite number > 0, found nan"),
    ({"costs": ["toxicity"], "lagrange_init": 80.0}, r"rloo.lagrange_init: expected a number from 0 to lagrange_max \(50.0\)"),
    ({"costs": ["toxicity"], "lagrange_init": -1.0}, r"rloo.lagrange_init: .*found -1.0"),
    ({"costs": ["toxicity"], "lagrange_patience": 0}, r"rloo.lagrange_patience: expected 1 or more steps, found 0"),
    ({"costs": ["toxicity"], "cost_limit": float("inf")}, r"rloo.cost_limit: expected a finite number, found inf"),
    ({"costs": ["toxicity"], "cost_weights": [1.0, 2.0]}, r"rloo.cost_weights: 2 weights for 1 cost sources"),
    ({"costs": ["toxicity"], "cost_weights": [float("nan")]}, r"rloo.cost_weights\[0\]: expected a finite number, found nan"),
    ({"costs": ["toxicity", " "]}, r"rloo.costs\[1\]: expected a cost source .*found ' '"),
    ({"cost_weights": [1.0]}, r"rloo.cost_weights: given without rloo.costs"),
    ({"reward_weights": ["heavy"]}, r"rloo.reward_weights\[0\]: expected a finite number, found 'heavy'"),
    ({"costs": ["harmless"]}, r"cost source 'harmless': reads higher = better.*'neg:harmless'"),
    ({"costs": ["tests.train.rl_rewards:raises"]},
     r"cost source cost/tests.train.rl_rewards:raises: failed on a probe batch before training: .*judge offline"),
    ({"costs": ["tests.train.rl_rewards:returns_nan"]},
     r"cost source cost/tests.train.rl_rewards:returns_nan: returned a non-finite value \(nan\) on a probe batch"),
    ({"costs": ["tests.train.no_module:cost"]}, r"cost source 'tests.train.no_module:cost': cannot import module"),
])
def test_bad_cost_and_lagrange_settings_fail_before_training(settings, message, rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, k=4)
    for key, value in settings.items():
        setattr(cfg.rloo, key, value)
    with pytest.raises(UserError, match=message):
        pg.run("rloo", cfg)
    assert not list(tmp_path.glob("rloo-*"))  # nothing started


def test_a_reward_model_is_no_cost_unless_negated(rl_policy_dir, demo_data, tmp_path):
    from tests.train.test_rewards import save_scorer

    harmless_rm = save_scorer(rl_policy_dir, tmp_path / "harmless-rm", kind="reward")
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, k=4, costs=[str(harmless_rm)])
    with pytest.raises(UserError, match=r"is a reward model \(higher = better\), not a cost model"):
        pg.PolicyGradientTrainer("rloo", cfg)
    cfg.rloo.costs = [f"neg:{harmless_rm}"]  # read as cost = -reward, as documented
    trainer = pg.PolicyGradientTrainer("rloo", cfg)
    assert trainer.rewards.cost_names == ["cost/neg:rm:harmless-rm"]


def test_long_prompts_are_cut_from_the_left_and_counted(rl_policy_dir, tmp_path, tokenizer):
    from alinea.train.rollout import load_prompts

    prompts = tmp_path / "long.jsonl"
    prompts.write_text(
        json.dumps({"type": "prompt", "prompt": "word " * 200 + "the end"}) + "\n"
        + json.dumps({"type": "prompt", "prompt": "short"}) + "\n"
    )
    loaded = load_prompts(prompts, tokenizer, max_prompt_len=32)
    assert loaded.cut == 1
    assert len(loaded.ids[0]) == 32
    assert tokenizer.decode(loaded.ids[0]).rstrip().endswith("<|assistant|>")


@pytest.mark.slow
def test_bf16_policy_forward_keeps_autocast_and_its_bf16_logits(rl_policy_dir, demo_data, tmp_path):
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path, precision="bf16")
    trainer = pg.PolicyGradientTrainer("ppo", cfg)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        logits = trainer.policy(input_ids=ids).logits  # no autocast block here: the prepared forward has its own
        reference = trainer.reference(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16  # accelerate's cast of every output to float32 is gone
    assert reference.dtype == torch.float32
    assert (logits.float() - reference).abs().max() < 0.1  # bf16 products of the same weights


@pytest.mark.parametrize("clip", [0.05, 100.0])  # clipping, and a bound the gradients never reach
def test_clipping_through_the_fused_kernel_equals_clip_grad_norm(clip):
    from types import SimpleNamespace

    from accelerate import Accelerator

    torch.manual_seed(0)
    models = [torch.nn.Linear(16, 8), None]
    models[1] = copy.deepcopy(models[0])
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.1, fused=True) for m in models]
    x = torch.randn(4, 16)
    for model in models:
        model(x).pow(2).sum().backward()
    norm = torch.nn.utils.clip_grad_norm_(models[0].parameters(), clip)
    optimizers[0].step()
    fake = SimpleNamespace(rcfg=SimpleNamespace(grad_clip=clip), acc=Accelerator(cpu=True))
    pg.PolicyGradientTrainer._clipped_step(fake, optimizers[1], models[1])
    assert (float(norm) > clip) == (clip == 0.05)
    for mine, reference in zip(models[1].parameters(), models[0].parameters(), strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-7)
    assert not hasattr(optimizers[1], "grad_scale")  # the hook is removed after the step


def test_two_process_ddp_matches_one_process(rl_policy_dir, demo_data, tmp_path):
    """RLOO, one step with one update on the whole batch: 2 processes x 8 episodes == 1 process x 16 episodes.

    (One step only: after it, float-rounding differences between the runs can flip a sampled token.)"""
    common = [
        f"rloo.policy={rl_policy_dir}", f"rloo.prompts={demo_data['prompts']}", f'rloo.rewards=["{REWARD}"]',
        "rloo.max_steps=1", "rloo.k=4", "rloo.max_new_tokens=12", "rloo.max_prompt_len=48", "rloo.lr=1e-3",
        "rloo.generation_batch_size=8", "rloo.penalise_missing_eos=false", "rloo.save_every=0",
    ]
    # The repository (for the tests' reward module) and its src/ (a source tree without an install) come first.
    path = os.pathsep.join(p for p in (str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ALINEA_PROGRESS": "0"}

    def launch(processes: int, batch: int, out: Path):
        sets = common + [f"rloo.batch_size={batch}", f"rloo.minibatch_size={batch}"]
        args = [a for s in sets for a in ("--set", s)]
        if processes == 1:
            cmd = [sys.executable, "-m", "alinea.cli", "rloo", *args, "--out", str(out)]
        else:
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "-m", "alinea.cli", "rloo", *args, "--out", str(out)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]

    launch(1, 16, tmp_path / "one")
    launch(2, 8, tmp_path / "two")
    from safetensors.torch import load_file

    start = load_file(str(rl_policy_dir / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    # The same update: Adam divides by sqrt(v), so float-rounding differences in near-zero gradients show up in the
    # weights; compare the whole update instead of single entries.
    delta_one = torch.cat([(one[k] - start[k]).flatten() for k in start])
    delta_two = torch.cat([(two[k] - start[k]).flatten() for k in start])
    assert delta_one.norm() > 0
    relative = float((delta_one - delta_two).norm() / delta_one.norm())
    assert relative < 0.02, relative
    rows_one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward_mean"] for r in rows_one] == pytest.approx([r["reward_mean"] for r in rows_two], abs=1e-5)


@pytest.mark.slow
def test_constrained_ppo_lowers_the_cost_below_its_limit_while_the_reward_rises(rl_policy_dir, demo_data, tmp_path,
                                                                              one_torch_thread):
    cfg = rl_config("ppo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=20, lr=1e-3, critic_lr=1e-3,
                    costs=["tests.train.rl_rewards:a_share"], cost_limit=0.4, lagrange_init=0.5, lagrange_lr=1.0)
    result = pg.run("ppo", cfg)
    rows = result.metrics
    costs = [m["cost_mean"] for m in rows]
    rewards = [m[f"reward/{REWARD}"] for m in rows]
    multipliers = [m["lagrange_multiplier"] for m in rows]
    assert costs[0] > 0.4  # the constraint starts violated
    assert sum(costs[-4:]) / 4 < 0.4, costs  # and ends met
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.3, rewards
    assert max(multipliers) > multipliers[0]  # lambda rose while the cost was too high
    assert {"constraint_satisfied", "cost_limit", "reward/cost"} <= set(rows[-1])


def test_an_unreachable_constraint_stops_with_a_warning(rl_policy_dir, demo_data, tmp_path, capsys):
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=10, k=4,
                    costs=["tests.train.rl_rewards:always_one"], cost_limit=0.0, lagrange_init=1.0, lagrange_lr=1.0,
                    lagrange_max=2.0, lagrange_patience=2)
    result = pg.run("rloo", cfg)
    # lambda: 1 -> 2 (the cap) after step 1, still 2 after step 2: two capped steps -> stop at step 2 of 10.
    assert result.steps == 2
    assert (result.final_dir / "config.json").is_file()
    warning = json.loads((result.run_dir / "warnings.json").read_text())["warnings"][0]
    assert "was not met for 2 steps" in warning and "Lagrange multiplier at its cap" in warning
    assert "warning:" in capsys.readouterr().out

    # Resuming reports the stop and trains nothing more (the same settings would hit the same wall) ...
    final_weights = (result.final_dir / "model.safetensors").read_bytes()
    shutil.rmtree(result.final_dir)  # as if interrupted between the stop's checkpoint and final/
    again = pg.run("rloo", cfg, resume=result.run_dir)
    out = capsys.readouterr().out
    assert again.steps == 2 and [m["step"] for m in again.metrics] == [1, 2]
    assert "stopped early at step 2 of 10" in out and "Lagrange multiplier at its cap" in out
    assert "--continue-stopped" in out
    assert (again.final_dir / "model.safetensors").read_bytes() == final_weights  # final/ rewritten from the checkpoint
    # ... unless asked to go on: the count of capped steps restarts, so this cost stops it again 2 steps later.
    more = pg.run("rloo", cfg, resume=result.run_dir, continue_stopped=True)
    assert more.steps == 4 and [m["step"] for m in more.metrics] == [1, 2, 3, 4]
    assert [m["lagrange_multiplier"] for m in more.metrics] == [1.0, 2.0, 2.0, 2.0]
    assert "continuing to step 10 as asked" in capsys.readouterr().out


def test_cli_resume_of_a_stopped_run_exits_with_the_stop(rl_policy_dir, demo_data, tmp_path, run_cli):
    code, _, stderr = run_cli("rloo", "--continue-stopped")
    assert code == 2 and "--continue-stopped: only with --resume" in stderr
    cfg = rl_config("rloo", rl_policy_dir, demo_data["prompts"], tmp_path, max_steps=6, k=4,
                    costs=["tests.train.rl_rewards:always_one"], cost_limit=0.0, lagrange_max=1.0,
                    lagrange_patience=1)
    result = pg.run("rloo", cfg)
    assert result.steps == 1  # lambda starts at its cap (1.0): one capped step
    code, stdout, stderr = run_cli("rloo", "--resume", result.run_dir)
    assert code == 0, stderr
    assert "stopped early at step 1 of 6" in stdout and "rloo: 1 steps" in stdout

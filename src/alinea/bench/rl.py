"""Benchmark: episodes/s and peak memory of our online RL (PPO, RLOO, GRPO) against TRL's trainers, in one run.

Workload (`RLWorkload`): a randomly initialised GPT-2 causal LM (4 layers, width 256, 4 heads, vocabulary 8192, 256
positions, dropout 0), fp32 on the CPU with 2 threads. Prompts are 64 random token ids; every step samples a batch
of 32 episodes (RLOO/GRPO: 8 prompts x k = 4 answers) of up to 64 new tokens at temperature 1 (no top-p, no top-k),
scores them with the same Python reward on both sides (`even_token_share`), computes the reference's and the sampling
policy's log-probs, and updates the policy in minibatches of 8 episodes (4 optimizer steps per epoch) with AdamW,
gradient clipping at 1 and a KL penalty to a frozen reference copy (RLOO beta 0.05 in the reward, GRPO beta 0.04 in
the loss). Epochs: RLOO and GRPO 1 (TRL's `num_iterations` default), PPO 4.

- "ours" is `alinea.train.policy_gradient.PolicyGradientTrainer.run_step`, exactly what `alinea rloo|grpo|ppo` runs
  per step (our KV-cached sampler, the reward mix, reference and policy log-probs with logits only on answer
  positions, advantages, the clipped update), loaded from a checkpoint directory and a prompt file like any run.
- "baseline" is TRL's `RLOOTrainer` / `GRPOTrainer` (`bench` extra) on the same checkpoint, the same prompt texts
  (plain strings: the word-level tokenizer maps each to the same 64 ids) and the same reward function, configured
  for the same work: `per_device_train_batch_size` = minibatch, `steps_per_generation` = batch / minibatch (one
  generation of 32 per 4 optimizer steps), `num_generations` = k, `max_completion_length` = 64, `num_iterations` =
  epochs, the same learning rate, beta and temperature. bf16 is off by default (TRL's default is on); `precision =
  "bf16"` turns on each side's own bf16 mode, for CPUs with native bf16. Gradient checkpointing is off (TRL turns it
  on by default; it recomputes activations, which is slower) unless `baseline_gradient_checkpointing`. TRL samples
  with transformers' `generate`, we with our sampler: that difference is part of what is compared.
- PPO scores answers with a reward model instead of the Python reward on both sides (TRL's PPO takes nothing else):
  a randomly initialised GPT-2 of the same size with one score (`save_gpt2_reward_model`), which also initialises
  the critic on both sides; 4 epochs of minibatches of 8, one optimizer for policy and critic with the same learning
  rate. TRL 1.16 has no PPO trainer; the last release with one is TRL 1.12 (`trl.experimental.ppo.PPOTrainer`), which
  cannot be installed next to the `bench` extra's TRL. With `trl_ppo` = a folder holding it (`pip install --no-deps
  --target DIR trl==1.12.0`), the baseline side imports TRL from that folder: `per_device_train_batch_size` = batch,
  `num_mini_batches` = batch / minibatch, `num_ppo_epochs` = epochs, `response_length` = 64, stop at `<eos>`, the
  same learning rate, KL coefficient (k1) and temperature, no sample generations between steps. Without it,
  "baseline" and "ratio" are null. Either way our time per phase (generate, score, reference, values, advantages,
  update) is reported.

Our sampler and TRL's both stop a row at the `<eos>` id; a random model draws it with probability ~1/8192 per token,
so nearly every answer runs the full 64 tokens on both sides. Each side runs in a fresh Python process (peak RSS of
its own). `warmup` steps are untimed; TRL's timed span runs from the end of its optimizer step `warmup x updates` to
the end of the last one (`TrainerCallback.on_step_end`), so it holds exactly `steps` generations and their updates,
with TRL's data loading between steps, as a TRL user pays for them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from alinea.bench.common import (
    FIRST_WORD_ID,
    StepClock,
    check_precision,
    machine_load,
    parameter_change,
    peak_rss_mb,
    require_trl,
    run_side,
    save_gpt2_lm,
    save_gpt2_reward_model,
    snapshot_parameters,
    words,
)
from alinea.errors import UserError

RESULT_PREFIX = "alinea-bench-rl-result: "
"""Marks the child's result line on stdout (the trainers print their own lines there)."""

ALGORITHMS = ("ppo", "rloo", "grpo")
BENCH_REWARD = "alinea.bench.rl:even_token_share"
"""The Python reward both sides use (our `module:function` source; TRL's reward function)."""


def even_token_share(prompts: list, completions: list, **kwargs) -> list[float]:
    """Share of the answer's words `t<i>` with an even id i (0 for an answer without such words).

    Cheap, the same on both sides, and different between answers, so the advantages are not all zero. It has the
    signature of our Python reward sources, `fn(prompts, responses)`, and of TRL's reward functions (keywords ignored).
    """
    scores = []
    for text in completions:
        ids = [int(word[1:]) for word in text.split() if word[:1] == "t" and word[1:].isdigit()]
        scores.append(sum(1 for i in ids if i % 2 == 0) / len(ids) if ids else 0.0)
    return scores


@dataclass
class RLWorkload:
    """The shared workload: both sides train the same model on the same prompts with the same settings."""

    algorithm: str = "rloo"
    """ppo, rloo or grpo."""
    n_layer: int = 4
    """GPT-2 transformer blocks."""
    n_embd: int = 256
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    vocab: int = 8192
    """Vocabulary size; prompt ids are drawn from 2..vocab-1 (0 is the pad id, 1 the eos id)."""
    n_positions: int = 256
    """Learned position embeddings (prompt_len + response_len of them are used)."""
    prompt_len: int = 64
    """Prompt tokens."""
    response_len: int = 64
    """New tokens sampled per answer at most."""
    batch: int = 32
    """Episodes per RL step (one generation batch)."""
    minibatch: int = 8
    """Episodes per optimizer step."""
    epochs: int = 0
    """Passes over each step's episodes; 0 = the algorithm's default (PPO 4, RLOO and GRPO 1)."""
    k: int = 4
    """Answers per prompt (RLOO, GRPO)."""
    threads: int = 2
    """torch intra-op threads (and OMP_NUM_THREADS) in each side's process."""
    steps: int = 3
    """Timed RL steps per side and round."""
    warmup: int = 1
    """Untimed RL steps before the timed ones."""
    seed: int = 0
    """Seed of the model initialisation, the prompt ids and both trainers."""
    lr: float = 1e-5
    """AdamW learning rate of both sides."""
    temperature: float = 1.0
    """Sampling temperature (also applied to the logits of the log-probs, on both sides)."""
    baseline_gradient_checkpointing: bool = False
    """TRL's default is True (recompute activations: slower, less memory); off = the same work as ours."""
    precision: str = "fp32"
    """fp32, or bf16: each side's own bf16 mode (`common.PRECISIONS`)."""
    trl_ppo: str = ""
    """PPO: a folder holding TRL 1.12, the last release with a PPOTrainer (pip install --no-deps --target DIR
    trl==1.12.0), imported by the baseline side; empty = no PPO baseline."""

    @classmethod
    def from_json(cls, text: str) -> RLWorkload:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def n_epochs(self) -> int:
        return self.epochs or (4 if self.algorithm == "ppo" else 1)

    @property
    def answers_per_prompt(self) -> int:
        return 1 if self.algorithm == "ppo" else self.k

    @property
    def updates_per_step(self) -> int:
        """Optimizer steps per RL step."""
        return self.n_epochs * self.batch // self.minibatch

    @property
    def kl_coef(self) -> float:
        return 0.04 if self.algorithm == "grpo" else 0.05

    def check(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"bench: unknown RL algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}.")
        if self.batch % self.minibatch or self.batch % self.answers_per_prompt:
            raise UserError(f"bench {self.algorithm}: batch {self.batch} must be a multiple of minibatch "
                            f"{self.minibatch} and of k {self.answers_per_prompt}.")
        check_precision(self.algorithm, self.precision)
        if self.steps < 1 or self.warmup < 1:
            raise UserError("bench: steps and warmup must be at least 1 (TRL is timed from the end of a warm-up step).")


# ---------------------------------------------------------------------------------------------------------------------
# The shared inputs


def make_prompts(workload: RLWorkload) -> list[str]:
    """The prompt texts: one per prompt the run samples from (warmup + steps batches), `prompt_len` random words."""
    n_prompts = (workload.warmup + workload.steps) * workload.batch // workload.answers_per_prompt
    generator = torch.Generator().manual_seed(workload.seed)
    ids = torch.randint(FIRST_WORD_ID, workload.vocab, (n_prompts, workload.prompt_len), generator=generator)
    return [words(row.tolist()) for row in ids]


def write_workspace(workload: RLWorkload, folder: Path) -> tuple[Path, Path]:
    """The checkpoint directory (model + tokenizer) and the prompt file (JSONL prompt records) of the workload; for
    PPO also its reward model, in `reward_model_dir(folder)`."""
    from alinea.data.jsonl import write_jsonl

    sizes = dict(n_layer=workload.n_layer, n_embd=workload.n_embd, n_head=workload.n_head, vocab=workload.vocab,
                 n_positions=workload.n_positions)
    model_dir = save_gpt2_lm(folder / "model", **sizes, seed=workload.seed)
    if workload.algorithm == "ppo":
        save_gpt2_reward_model(reward_model_dir(folder), **sizes, seed=workload.seed + 1)
    prompts = folder / "prompts.jsonl"
    write_jsonl(prompts, [{"type": "prompt", "prompt": text} for text in make_prompts(workload)])
    return model_dir, prompts


def reward_model_dir(folder: Path) -> Path:
    return folder / "reward"


# ---------------------------------------------------------------------------------------------------------------------
# One side, inside its own process


def ours_config(workload: RLWorkload, model_dir: Path, prompts: Path, runs_dir: Path):
    """Our run configuration for the workload (the section of `workload.algorithm`, everything else default)."""
    from alinea.config import AlineaConfig, GroupRLConfig

    cfg = AlineaConfig()
    section = getattr(cfg, workload.algorithm)
    reward = str(reward_model_dir(runs_dir)) if workload.algorithm == "ppo" else BENCH_REWARD
    settings = dict(
        policy=str(model_dir), prompts=str(prompts), rewards=[reward], reward_weights=[], seed=workload.seed,
        max_steps=workload.warmup + workload.steps, batch_size=workload.batch, max_prompt_len=workload.prompt_len,
        max_new_tokens=workload.response_len, temperature=workload.temperature, top_p=1.0,
        generation_batch_size=workload.batch, penalise_missing_eos=False, kl_coef=workload.kl_coef,
        adaptive_kl=False, kl_stop=0.0, lr=workload.lr, warmup_steps=0, grad_clip=1.0, epochs=workload.n_epochs,
        minibatch_size=workload.minibatch, precision=workload.precision, save_every=0, runs_dir=str(runs_dir),
    )
    if isinstance(section, GroupRLConfig):
        settings["k"] = workload.k
    else:  # PPO: the critic learns at the policy's rate, as in TRL's single optimizer
        settings["critic_lr"] = workload.lr
    for name, value in settings.items():
        setattr(section, name, value)
    return cfg


def run_ours(workload: RLWorkload) -> dict:
    """Train with our trainer; return the side's rate, timed span, mean phase times, loss, parameter change and RSS."""
    from alinea.train.policy_gradient import PolicyGradientTrainer

    with tempfile.TemporaryDirectory(prefix="alinea-bench-rl-") as folder:
        model_dir, prompts = write_workspace(workload, Path(folder))
        trainer = PolicyGradientTrainer(workload.algorithm, ours_config(workload, model_dir, prompts, Path(folder)))
        initial = snapshot_parameters(trainer.unwrapped_policy)
        rss_setup = peak_rss_mb()
        losses: list[float] = []
        for step in range(workload.warmup):
            _, metrics = trainer.run_step(step)
            losses.append(metrics["policy_loss"])
        phases: dict[str, float] = {}
        start, cpu_start = time.perf_counter(), time.process_time()
        for step in range(workload.warmup, workload.warmup + workload.steps):
            _, metrics = trainer.run_step(step)
            losses.append(metrics["policy_loss"])
            for key, value in metrics.items():
                if key.startswith("time_"):
                    phases[key[5:]] = phases.get(key[5:], 0.0) + value
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        change = parameter_change(trainer.unwrapped_policy, initial)
    result = _side_result(workload, elapsed, cpu, statistics.fmean(losses), change, rss_setup)
    result["phase_s_per_step"] = {phase: round(sec / workload.steps, 4) for phase, sec in phases.items()}
    result["response_length"] = metrics["response_length"]
    return result


def run_baseline(workload: RLWorkload) -> dict:
    """Train with TRL's RLOOTrainer or GRPOTrainer; return the side's rate, timed span, loss, change and RSS."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if workload.algorithm == "ppo":
        return run_trl_ppo(workload)
    if workload.algorithm == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

    updates = workload.updates_per_step
    timed_from, timed_to = workload.warmup * updates, (workload.warmup + workload.steps) * updates
    clock = StepClock(timed_from, timed_to)

    with tempfile.TemporaryDirectory(prefix="alinea-bench-trl-") as folder:
        model_dir, _ = write_workspace(workload, Path(folder))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, padding_side="left")
        dataset = Dataset.from_dict({"prompt": make_prompts(workload)})
        config = Config(
            output_dir=str(Path(folder) / "out"), per_device_train_batch_size=workload.minibatch,
            gradient_accumulation_steps=1, steps_per_generation=workload.batch // workload.minibatch,
            num_generations=workload.k, num_iterations=workload.n_epochs, max_completion_length=workload.response_len,
            temperature=workload.temperature, top_p=1.0, top_k=0, beta=workload.kl_coef,
            learning_rate=workload.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, max_steps=timed_to, seed=workload.seed, data_seed=workload.seed, use_cpu=True,
            bf16=workload.precision == "bf16", fp16=False,
            gradient_checkpointing=workload.baseline_gradient_checkpointing, disable_dropout=True,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = Trainer(model=model, reward_funcs=even_token_share, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[clock.callback()])
        initial = snapshot_parameters(model)
        rss_setup = peak_rss_mb()
        output = trainer.train()
        change = parameter_change(model, initial)
    elapsed, cpu = clock.span()
    return _side_result(workload, elapsed, cpu, output.training_loss, change, rss_setup)


def run_trl_ppo(workload: RLWorkload) -> dict:
    """Train with TRL 1.12's PPOTrainer (imported from `workload.trl_ppo`, first on this process's PYTHONPATH);
    return the side's rate, timed span, loss, change and RSS."""
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError as err:
        raise UserError(f"bench ppo: TRL {trl.__version__} (from {Path(trl.__file__).parent}) has no PPOTrainer: "
                        f"{err}") from None
    timed_from, timed_to = workload.warmup, workload.warmup + workload.steps  # one global step per RL step
    clock = StepClock(timed_from, timed_to)

    with tempfile.TemporaryDirectory(prefix="alinea-bench-trl-ppo-") as folder:
        model_dir, _ = write_workspace(workload, Path(folder))
        reward_dir = str(reward_model_dir(Path(folder)))

        def causal_lm():
            return AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)

        def scorer():
            return AutoModelForSequenceClassification.from_pretrained(reward_dir, local_files_only=True,
                                                                      dtype=torch.float32)

        policy = causal_lm()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, padding_side="left")
        dataset = Dataset.from_dict({"input_ids": [tokenizer(text)["input_ids"] for text in make_prompts(workload)]})
        config = PPOConfig(
            output_dir=str(Path(folder) / "out"), per_device_train_batch_size=workload.batch,
            gradient_accumulation_steps=1, num_mini_batches=workload.batch // workload.minibatch,
            num_ppo_epochs=workload.n_epochs, total_episodes=timed_to * workload.batch,
            local_rollout_forward_batch_size=workload.batch, response_length=workload.response_len,
            stop_token="eos", temperature=workload.temperature, kl_coef=workload.kl_coef, kl_estimator="k1",
            learning_rate=workload.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, seed=workload.seed, data_seed=workload.seed, use_cpu=True,
            bf16=workload.precision == "bf16", fp16=False,
            gradient_checkpointing=workload.baseline_gradient_checkpointing, num_sample_generations=0,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=causal_lm(),
                             reward_model=scorer(), value_model=scorer(), train_dataset=dataset,
                             callbacks=[clock.callback()])
        initial = snapshot_parameters(policy)
        rss_setup = peak_rss_mb()
        trainer.train()
        change = parameter_change(policy, initial)
    elapsed, cpu = clock.span()
    result = _side_result(workload, elapsed, cpu, None, change, rss_setup)  # TRL keeps no loss we could read
    result["library"] = f"trl {trl.__version__} PPOTrainer (trl.experimental.ppo)"
    return result


def _side_result(
    workload: RLWorkload, elapsed: float, cpu: float, mean_loss: float | None, change: float, rss_setup: float,
) -> dict:
    """`mean_loss`: the policy loss averaged over all optimizer steps; `param_change`: L2 norm of the weight update;
    `cpu_s`: CPU seconds of the process over the timed span (all threads; less sensitive to other load than wall
    time, though OpenMP's spinning threads count in it)."""
    return {
        "episodes_per_s": workload.steps * workload.batch / elapsed,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "mean_loss": mean_loss,
        "param_change": change,
        "threads": torch.get_num_threads(),
        "rss_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
        "load_1min_at_end": machine_load()["load_1min"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# The parent: one fresh process per side and round


def _run_side(side: str, workload: RLWorkload) -> dict:
    args = ["--side", side, "--workload", json.dumps(asdict(workload))]
    python_path = workload.trl_ppo if side == "baseline" and workload.algorithm == "ppo" else ""
    return run_side("alinea.bench.rl", args, prefix=RESULT_PREFIX, threads=workload.threads,
                    what=f"the {side} side of the {workload.algorithm} benchmark", python_path=python_path)


def check_trl_ppo(folder: str) -> None:
    """A `UserError` unless `folder` holds a TRL release with a PPO trainer (1.12 is the last one)."""
    if not (Path(folder) / "trl" / "experimental" / "ppo" / "ppo_trainer.py").is_file():
        raise UserError(f"--trl-ppo {folder}: no TRL with a PPO trainer there (expected "
                        f"{Path(folder) / 'trl/experimental/ppo/ppo_trainer.py'}); install the last release that has "
                        f"one with: pip install --no-deps --target {folder} trl==1.12.0")


def bench_rl(workload: RLWorkload | None = None, *, rounds: int = 1) -> dict:
    """Train ours and (RLOO, GRPO) TRL's way, each side in its own process; return rates, ratio and peak RSS.

    PPO has no TRL baseline: "baseline" and "ratio" are None and "phases" holds our seconds per step in each phase.
    Raises `UserError` when TRL (the `bench` extra) is needed and not installed.
    """
    workload = workload or RLWorkload()
    workload.check()
    has_baseline = workload.algorithm != "ppo" or bool(workload.trl_ppo)
    if workload.algorithm == "ppo" and workload.trl_ppo:
        check_trl_ppo(workload.trl_ppo)
    trl_version = require_trl(f"{workload.algorithm} RL") if has_baseline else None
    sides = ("ours", "baseline") if has_baseline else ("ours",)
    load_before = machine_load()
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            runs[side].append(_run_side(side, workload))
    rate = {side: statistics.median(run["episodes_per_s"] for run in side_runs) for side, side_runs in runs.items()}
    ours_phases = [run["phase_s_per_step"] for run in runs["ours"]]
    phases = {phase: round(statistics.median(p[phase] for p in ours_phases), 4) for phase in ours_phases[0]}
    epochs = workload.n_epochs
    if workload.algorithm == "ppo" and has_baseline:
        baseline_text = f"{runs['baseline'][0]['library']} (generation with transformers generate)"
    elif has_baseline:
        baseline_text = (f"trl {trl_version} {'RLOOTrainer' if workload.algorithm == 'rloo' else 'GRPOTrainer'} "
                         f"(generation with transformers generate)")
    else:
        baseline_text = ("none: TRL 1.16 has no PPO trainer (give --trl-ppo DIR holding TRL 1.12, the last with "
                         "one); baseline and ratio are null")
    return {
        "ours": round(rate["ours"], 3),
        "baseline": round(rate["baseline"], 3) if has_baseline else None,
        "unit": "episodes/s",
        "ratio": round(rate["ours"] / rate["baseline"], 3) if has_baseline else None,
        "peak_rss_mb": {side: round(max(run["peak_rss_mb"] for run in side_runs), 1)
                        for side, side_runs in runs.items()},
        "phases": phases,
        "workload": {
            **asdict(workload),
            "model": f"gpt2 layers={workload.n_layer} width={workload.n_embd} heads={workload.n_head} "
                     f"vocab={workload.vocab} positions={workload.n_positions}, random init, dropout 0",
            "step": f"{workload.batch} episodes ({workload.batch // workload.answers_per_prompt} prompts x "
                    f"{workload.answers_per_prompt}) of prompt {workload.prompt_len} + up to {workload.response_len} "
                    f"sampled tokens, {epochs} epoch(s) of minibatches of {workload.minibatch} "
                    f"({workload.updates_per_step} optimizer steps), KL beta {workload.kl_coef}",
            "reward": "a reward model: GPT-2 of the same size, random init, one score (also the critic's start)"
                      if workload.algorithm == "ppo" else BENCH_REWARD,
            "device": "cpu",
            "precision": workload.precision,
            "rounds": rounds,
            "baseline_library": baseline_text,
            "phases": "ours, seconds per RL step (median over rounds)",
            "torch": torch.__version__,
        },
        "machine": {**load_before, "load_1min_after": machine_load()["load_1min"]},
        "detail": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Child entry point: run one side and print its result as one JSON line after `RESULT_PREFIX`."""
    parser = argparse.ArgumentParser(description="One side of `alinea bench ppo|rloo|grpo`, in its own process.")
    parser.add_argument("--side", choices=["ours", "baseline"], required=True)
    parser.add_argument("--workload", required=True, help="RLWorkload fields as JSON")
    args = parser.parse_args(argv)
    workload = RLWorkload.from_json(args.workload)
    torch.set_num_threads(workload.threads)
    result = run_ours(workload) if args.side == "ours" else run_baseline(workload)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Online RL on a language model: PPO (with a critic) and the critic-free RLOO and GRPO, one explicit loop.

Each step has named, timed phases (logged as `time_<phase>` seconds):

  generate    sample one answer per episode with the current policy (KV-cached, `alinea.model.generation`)
  score       the reward mix (reward models, judges, Python functions); missing-EOS penalty (N+ "EOS trick")
  reference   log-probs of the answers under the frozen reference and under the sampling policy (logits / T)
  values      the critic's values V(s_t) (PPO only)
  advantages  PPO: per-token KL penalty + score at the last token, GAE, whitening. RLOO: leave-one-out baseline on
              the KL-penalised sequence reward. GRPO: group-normalised score.
  update      `epochs` passes of minibatches: clipped surrogate (+ clipped value loss for PPO, + k3 KL for GRPO)

Sources of each detail are in docs/implementation-details.md and next to the maths in `alinea.losses` and
`alinea.advantages`.

Metrics (metrics.jsonl, split "train"; what a healthy run looks like):
- `reward_mean`, `reward_std`: the total score (after the EOS rule); the mean should rise. `reward/<source>`: each
  source before weighting.
- `kl`: mean over episodes of sum_t (log pi - log pi_ref) (k1), nats per answer. 0 at step 0; grows slowly; a jump
  to tens of nats is a blow-up (the run stops past `kl_stop`). `kl_coef`: the penalty's beta (moves when adaptive).
- `entropy`: mean per-token entropy of the sampling distribution; falls slowly, a collapse to ~0 means mode collapse.
- `clipfrac`: share of tokens where the ratio was clipped (healthy 0.05-0.3; 0 with one epoch is expected).
- `approx_kl`: KL between the policy before and after the update (well below 0.1).
- `policy_loss`; `value_loss`, `value_clipfrac`, `explained_variance` (PPO; rising towards 1).
- `response_length`: mean answer tokens; drifting to `max_new_tokens` is a warning sign. `eos_rate`: share of
  answers that ended with a stop token (should stay near 1).
- `episodes_per_s` and `time_<phase>`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from alinea.advantages import (
    AdaptiveKLController,
    FixedKLController,
    explained_variance,
    gae,
    grpo_advantages,
    per_token_rewards,
    rloo_advantages,
    whiten,
)
from alinea.config import AlineaConfig, GroupRLConfig, PPOConfig, RLConfig
from alinea.data.jsonl import write_text
from alinea.errors import UserError
from alinea.losses import grpo_policy_loss, kl_penalty, masked_mean, ppo_policy_loss, ppo_value_loss
from alinea.model.causal_lm import load_model, load_model_and_tokenizer
from alinea.model.fast import fuse_activations
from alinea.progress import progress_bar
from alinea.train.loop import (
    Interrupted,
    attention_without_cudnn,
    example_indices,
    keep_freed_memory,
    resolve_precision,
)
from alinea.train.rewards import NEGATE, ConstrainedMix, RewardInputs, RewardMix
from alinea.train.rollout import (
    PromptSet,
    Rollout,
    ValueModel,
    critic_forward,
    load_prompts,
    policy_forward,
    sample_episodes,
)
from alinea.train.runs import MetricsLogger, RunDir

ALGORITHMS = ("ppo", "rloo", "grpo")


@dataclass
class RLResult:
    run_dir: Path
    final_dir: Path
    steps: int
    metrics: list[dict]  # the logged train metrics, one per logged step


class PhaseTimer:
    """Wall time per named phase of a step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def check_config(algorithm: str, rcfg: RLConfig, world: int = 1) -> None:
    """Reject impossible settings before anything is loaded."""
    section = algorithm
    if not rcfg.policy:
        raise UserError(f"{section}.policy: expected a checkpoint directory (an SFT run's final/ or a local HF model).")
    if not rcfg.rewards:
        raise UserError(f"{section}.rewards: no reward source; give a reward model directory, a judge name or module:function.")
    if rcfg.batch_size < 1 or rcfg.max_steps < 1 or rcfg.epochs < 1:
        raise UserError(f"{section}: batch_size, max_steps and epochs must be >= 1.")
    if rcfg.minibatch_size < 1 or rcfg.batch_size % rcfg.minibatch_size:
        raise UserError(
            f"{section}.minibatch_size: {rcfg.minibatch_size} must divide batch_size {rcfg.batch_size}."
        )
    if rcfg.kl_estimator not in ("k1", "k2", "k3"):
        raise UserError(f"{section}.kl_estimator: expected k1, k2 or k3, found {rcfg.kl_estimator!r}.")
    if rcfg.temperature <= 0:
        raise UserError(f"{section}.temperature: must be > 0 (the log-probs divide the logits by it).")
    if isinstance(rcfg, GroupRLConfig):
        if rcfg.k < 2:
            raise UserError(f"{section}.k: needs at least 2 answers per prompt, found {rcfg.k}.")
        if rcfg.batch_size % rcfg.k or rcfg.generation_batch_size % rcfg.k:
            raise UserError(
                f"{section}.batch_size ({rcfg.batch_size}) and generation_batch_size ({rcfg.generation_batch_size}) "
                f"must be multiples of k ({rcfg.k})."
            )
    if rcfg.reward_weights and len(rcfg.reward_weights) != len(rcfg.rewards):
        raise UserError(
            f"{section}.reward_weights: {len(rcfg.reward_weights)} weights for {len(rcfg.rewards)} reward sources."
        )
    _check_numbers(f"{section}.reward_weights", rcfg.reward_weights)
    check_constraint(section, rcfg)


def _check_numbers(field: str, values: list) -> None:
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"{field}[{i}]: expected a finite number, found {value!r}.")


def check_constraint(section: str, rcfg: RLConfig) -> None:
    """The cost and Lagrange settings of a constrained run (`costs` given), before anything is loaded; a `UserError`
    names the field. Without costs, stray cost_weights are refused and the rest is not read."""
    if not rcfg.costs:
        if rcfg.cost_weights:
            raise UserError(f"{section}.cost_weights: given without {section}.costs; add the cost sources or drop the weights.")
        return
    for i, spec in enumerate(rcfg.costs):
        if not isinstance(spec, str) or not spec.strip() or spec.strip() == NEGATE.strip():
            raise UserError(
                f"{section}.costs[{i}]: expected a cost source (a cost model directory, neg:DIR, a detector such as "
                f"toxicity or harm, or module:function), found {spec!r}."
            )
    if rcfg.cost_weights and len(rcfg.cost_weights) != len(rcfg.costs):
        raise UserError(f"{section}.cost_weights: {len(rcfg.cost_weights)} weights for {len(rcfg.costs)} cost sources.")
    _check_numbers(f"{section}.cost_weights", rcfg.cost_weights)
    if not math.isfinite(rcfg.cost_limit):
        raise UserError(f"{section}.cost_limit: expected a finite number, found {rcfg.cost_limit!r}.")
    check_lagrange(section, rcfg)


def check_lagrange(section: str, rcfg: RLConfig) -> None:
    """The Lagrange multiplier's settings (`alinea.advantages.LagrangeMultiplier`); a `UserError` names the field."""
    if not (math.isfinite(rcfg.lagrange_max) and rcfg.lagrange_max > 0):
        raise UserError(f"{section}.lagrange_max: expected a finite number > 0, found {rcfg.lagrange_max}.")
    if not 0 <= rcfg.lagrange_init <= rcfg.lagrange_max:
        raise UserError(
            f"{section}.lagrange_init: expected a number from 0 to lagrange_max ({rcfg.lagrange_max}), found "
            f"{rcfg.lagrange_init}."
        )
    if not (math.isfinite(rcfg.lagrange_lr) and rcfg.lagrange_lr > 0):
        raise UserError(f"{section}.lagrange_lr: expected a finite number > 0, found {rcfg.lagrange_lr}.")
    if rcfg.lagrange_patience < 1:
        raise UserError(f"{section}.lagrange_patience: expected 1 or more steps, found {rcfg.lagrange_patience}.")


class PolicyGradientTrainer:
    """Everything one RL run holds: models, optimizers, prompts, rewards, KL controller; `step()` runs one step."""

    def __init__(self, algorithm: str, cfg: AlineaConfig, *, accelerator=None) -> None:
        from accelerate import Accelerator

        if algorithm not in ALGORITHMS:
            raise UserError(f"unknown RL algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}.")
        self.algorithm = algorithm
        self.cfg = cfg
        self.rcfg: RLConfig = getattr(cfg, algorithm)
        rcfg = self.rcfg
        self.precision = resolve_precision(rcfg.precision)
        keep_freed_memory()
        self.acc = accelerator or Accelerator(
            mixed_precision="bf16" if self.precision == "bf16" else "no", cpu=not torch.cuda.is_available()
        )
        check_config(algorithm, rcfg, self.acc.num_processes)
        torch.manual_seed(rcfg.seed)

        policy, self.tokenizer = load_model_and_tokenizer(rcfg.policy)
        if rcfg.costs:  # constrained RL: maximise the reward subject to E[cost] <= cost_limit (Safe RLHF)
            from alinea.advantages import LagrangeMultiplier

            self.rewards = ConstrainedMix.from_specs(
                rcfg.rewards, rcfg.reward_weights, rcfg.costs, rcfg.cost_weights, limit=rcfg.cost_limit,
                multiplier=LagrangeMultiplier(rcfg.lagrange_init, rcfg.lagrange_lr, rcfg.lagrange_max),
                device=self.acc.device,
            )
        else:
            self.rewards = RewardMix.from_config(rcfg.rewards, rcfg.reward_weights, device=self.acc.device)
        self.rewards.check_tokenizer(self.tokenizer)
        for source in self.rewards.model_sources():  # reward models score in the run's precision (bf16: autocast)
            source.precision = self.acc.autocast
        self.prompts: PromptSet = load_prompts(rcfg.prompts, self.tokenizer, max_prompt_len=rcfg.max_prompt_len)
        self.rewards.check(self.prompts.texts)
        context = getattr(policy.config, "max_position_embeddings", None)
        if context and rcfg.max_prompt_len + rcfg.max_new_tokens > context:
            raise UserError(
                f"{algorithm}: max_prompt_len + max_new_tokens = {rcfg.max_prompt_len + rcfg.max_new_tokens} exceeds "
                f"the model's context of {context} tokens; lower one of them."
            )
        _disable_dropout(policy)
        fuse_activations(policy)  # same function, one kernel (model/fast.py); the reference copy inherits it
        if rcfg.lora:
            policy = _add_lora(policy, rcfg)
            self.reference = None  # the policy with its adapters disabled is the reference
        else:
            self.reference = load_model(rcfg.reference) if rcfg.reference else copy.deepcopy(policy)
            _disable_dropout(self.reference)
            fuse_activations(self.reference)
            self.reference.requires_grad_(False).eval().to(self.acc.device)
        if self.reference is not None and self.reference.config.vocab_size != policy.config.vocab_size:
            raise UserError(f"{algorithm}.reference: its vocabulary differs from the policy's.")

        params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = _adamw(params, lr=rcfg.lr, eps=rcfg.adam_eps, weight_decay=rcfg.weight_decay)
        self.value_model = None
        self.critic_optimizer = None
        if isinstance(rcfg, PPOConfig):
            critic = _build_critic(rcfg, self.rewards, seed=rcfg.seed)
            _disable_dropout(critic)
            fuse_activations(critic)
            value_model = ValueModel(critic)
            self.critic_optimizer = _adamw(
                [p for p in value_model.parameters() if p.requires_grad], lr=rcfg.critic_lr, eps=rcfg.adam_eps,
                weight_decay=rcfg.weight_decay,
            )
            self.value_model, self.critic_optimizer = self.acc.prepare(value_model, self.critic_optimizer)
            _keep_output_dtype(self.acc, self.value_model)
        self.policy, self.optimizer = self.acc.prepare(policy, self.optimizer)
        _keep_output_dtype(self.acc, self.policy)
        self.kl_ctl = (
            AdaptiveKLController(rcfg.kl_coef, rcfg.kl_target, rcfg.kl_horizon)
            if rcfg.adaptive_kl else FixedKLController(rcfg.kl_coef)
        )
        self.ptx = _load_ptx(rcfg, self.tokenizer) if isinstance(rcfg, PPOConfig) and rcfg.ptx_coef > 0 else None

    # -- models ------------------------------------------------------------------------------------------------

    @property
    def unwrapped_policy(self):
        return self.acc.unwrap_model(self.policy)

    @property
    def world(self) -> int:
        return self.acc.num_processes

    def reference_context(self):
        """The reference model: a frozen copy, or the LoRA policy with its adapters switched off."""
        if self.reference is not None:
            return contextlib.nullcontext(self.reference)
        policy = self.unwrapped_policy

        @contextlib.contextmanager
        def disabled():
            with policy.disable_adapter():
                yield policy

        return disabled()

    # -- one step ----------------------------------------------------------------------------------------------

    def episode_indices(self, step: int) -> list[int]:
        """This process's prompt indices at `step`: a pure function of (seed, step) over all processes."""
        rcfg = self.rcfg
        k = rcfg.k if isinstance(rcfg, GroupRLConfig) else 1
        per_process = rcfg.batch_size // k
        prompts = example_indices(
            step, 0, n_examples=len(self.prompts), global_batch=per_process * self.world, grad_accum=1, seed=rcfg.seed
        )
        mine = prompts[self.acc.process_index * per_process : (self.acc.process_index + 1) * per_process]
        return [i for i in mine for _ in range(k)]

    def collect(self, step: int, timer: PhaseTimer) -> Rollout:
        """Phases generate, score, reference and values."""
        rcfg = self.rcfg
        with timer("generate"):
            rollout = sample_episodes(
                self.unwrapped_policy, self.tokenizer, self.prompts, self.episode_indices(step),
                max_new_tokens=rcfg.max_new_tokens, temperature=rcfg.temperature, top_p=rcfg.top_p,
                seed=_step_seed(rcfg.seed, step) + self.acc.process_index * rcfg.batch_size,
                chunk_size=rcfg.generation_batch_size,
                compute_dtype=torch.bfloat16 if self.precision == "bf16" and self.acc.device.type == "cpu" else None,
            )
        with timer("score"):
            total, components = self.rewards.score(
                RewardInputs(prompts=rollout.prompt_texts, responses=rollout.response_texts, sequences=rollout.sequences())
            )
            if rcfg.penalise_missing_eos:
                total = torch.where(rollout.finished, total, torch.full_like(total, rcfg.missing_eos_penalty))
            rollout.scores = total
            rollout.components = components
        with timer("reference"), torch.no_grad():
            self.policy.eval()
            with self.acc.autocast():
                rollout.logprobs, self._entropy = policy_forward(
                    self.policy, rollout, temperature=rcfg.temperature, with_entropy=True
                )
                with self.reference_context() as reference:
                    rollout.ref_logprobs, _ = policy_forward(reference, rollout, temperature=rcfg.temperature)
            rollout.logprobs, rollout.ref_logprobs = rollout.logprobs.float().cpu(), rollout.ref_logprobs.float().cpu()
        if self.value_model is not None:
            with timer("values"), torch.no_grad(), self.acc.autocast():
                self.value_model.eval()
                rollout.values = critic_forward(self.value_model, rollout).float().cpu()
        return rollout

    def compute_advantages(self, rollout: Rollout, timer: PhaseTimer) -> dict[str, float]:
        rcfg = self.rcfg
        mask = rollout.response_mask.float()
        with timer("advantages"):
            kl_tokens = kl_penalty(rollout.logprobs, rollout.ref_logprobs, kind=rcfg.kl_estimator) * mask
            seq_kl = kl_tokens.sum(-1)  # (B,)
            k1 = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(-1)
            if isinstance(rcfg, PPOConfig):
                rewards = per_token_rewards(rollout.scores, kl_tokens, mask, kl_coef=self.kl_ctl.value)
                if rcfg.whiten_rewards:
                    rewards = whiten(rewards, mask, shift_mean=False)
                advantages, returns = gae(rewards, rollout.values, mask, gamma=rcfg.gamma, lam=rcfg.lam)
                if rcfg.whiten_advantages:
                    advantages = self._global_whiten(advantages, mask)
                rollout.advantages, rollout.returns = advantages, returns
            elif self.algorithm == "rloo":
                penalised = rollout.scores - self.kl_ctl.value * seq_kl  # KL folded into the reward (RLOO)
                rollout.advantages = rloo_advantages(penalised.view(-1, rcfg.k)).flatten()
            else:
                rollout.advantages = grpo_advantages(rollout.scores.view(-1, rcfg.k), scale=rcfg.grpo_scale).flatten()
        return {"kl": float(k1.mean()), "kl_penalty": float(seq_kl.mean())}

    def _global_whiten(self, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Whitening over the episodes of all processes (the same numbers as one process with the whole batch)."""
        if self.world == 1:
            return whiten(advantages, mask)
        stats = torch.stack([(advantages * mask).sum(), (advantages**2 * mask).sum(), mask.sum()]).to(self.acc.device)
        stats = self.acc.reduce(stats, reduction="sum").cpu()
        mean = stats[0] / stats[2]
        var = (stats[1] / stats[2] - mean**2) * stats[2] / (stats[2] - 1).clamp(min=1)
        return (advantages - mean) * torch.rsqrt(var + 1e-8) * mask

    def update(self, rollout: Rollout, step: int, timer: PhaseTimer) -> dict[str, float]:
        """`epochs` passes of shuffled minibatches; returns the mean of each update metric."""
        rcfg = self.rcfg
        acc = self.acc
        sums: dict[str, float] = {}
        count = 0
        lr_factor = min(1.0, (step + 1) / rcfg.warmup_steps) if rcfg.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = rcfg.lr * lr_factor
        with timer("update"), attention_without_cudnn():
            self.policy.train()
            if self.value_model is not None:
                self.value_model.train()
            n = len(rollout)
            for epoch in range(rcfg.epochs):
                order = torch.randperm(n, generator=torch.Generator().manual_seed(_step_seed(rcfg.seed, step) + epoch))
                for start in range(0, n, rcfg.minibatch_size):
                    rows = order[start : start + rcfg.minibatch_size]
                    batch = rollout.select(rows)
                    metrics = self._minibatch_loss(batch)
                    loss = metrics.pop("_loss")
                    if not torch.isfinite(loss):
                        raise NonFiniteLoss(float(loss.detach()), epoch, start // rcfg.minibatch_size)
                    acc.backward(loss)
                    self._clipped_step(self.optimizer, self.policy)
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.critic_optimizer is not None:
                        self._clipped_step(self.critic_optimizer, self.value_model)
                        self.critic_optimizer.zero_grad(set_to_none=True)
                    for key, value in metrics.items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
        return {key: value / count for key, value in sums.items()}

    def _clipped_step(self, optimizer, model) -> None:
        """`optimizer.step()` after scaling the model's gradients to a total norm of at most `grad_clip` (as
        `torch.nn.utils.clip_grad_norm_`: by min(1, grad_clip / (norm + 1e-6))).

        With the fused AdamW kernel (plain or data-parallel runs), the scale goes to the kernel as the `grad_scale`
        it divides every gradient by (the hook mixed-precision loss scaling uses), instead of a separate pass that
        multiplies every gradient in memory first: the same update up to one rounding of each gradient, one read and
        write of all gradients less per optimizer step (in-process A/B on `alinea bench ppo --precision bf16`: 0.26
        -> 0.23 s a step for both models' clipping and AdamW). Elsewhere, accelerate's `clip_grad_norm_`."""
        from accelerate.utils import DistributedType

        clip = self.rcfg.grad_clip
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimizer
        fused = (
            isinstance(inner, torch.optim.AdamW) and bool(inner.defaults.get("fused"))
            and self.acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
            and getattr(optimizer, "scaler", None) is None
        )
        if clip <= 0:
            optimizer.step()
            return
        if not fused:
            self.acc.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, 2.0, foreach=True)
        inner.grad_scale = 1.0 / torch.clamp(clip / (norm + 1e-6), max=1.0)
        try:
            optimizer.step()
        finally:
            del inner.grad_scale

    def _minibatch_loss(self, batch: Rollout) -> dict:
        rcfg = self.rcfg
        device = self.acc.device
        mask = batch.response_mask.float().to(device)
        old = batch.logprobs.to(device)
        with self.acc.autocast():
            logprobs, _ = policy_forward(self.policy, batch, temperature=rcfg.temperature)
        logprobs = logprobs.float()
        out: dict = {}
        if isinstance(rcfg, PPOConfig):
            pg = ppo_policy_loss(logprobs, old, batch.advantages.to(device), mask, clip_eps=rcfg.clip_eps)
            with self.acc.autocast():
                values = critic_forward(self.value_model, batch).float()
            value_loss, value_clipfrac = ppo_value_loss(
                values, batch.values.to(device), batch.returns.to(device), mask, clip_eps=rcfg.value_clip_eps
            )
            loss = pg.loss + rcfg.vf_coef * value_loss
            out.update(value_loss=float(value_loss.detach()), value_clipfrac=float(value_clipfrac))
            if self.ptx is not None:
                ptx_loss = self._ptx_loss()
                loss = loss + rcfg.ptx_coef * ptx_loss
                out["ptx_loss"] = float(ptx_loss)
        elif self.algorithm == "rloo":
            advantages = batch.advantages.to(device).unsqueeze(-1).expand_as(logprobs)
            pg = ppo_policy_loss(logprobs, old, advantages, mask, clip_eps=rcfg.clip_eps)
            loss = pg.loss
        else:
            pg = grpo_policy_loss(
                logprobs, old, batch.ref_logprobs.to(device), batch.advantages.to(device), mask,
                clip_eps=rcfg.clip_eps, kl_coef=self.kl_ctl.value,
            )
            loss = pg.loss
        if self.world > 1 and self.algorithm != "grpo":
            # Token means over all processes' tokens (not a mean of per-process means): DDP averages gradients over
            # processes, so each process's loss is scaled by its share of the minibatch's tokens.
            local_tokens = mask.sum()
            all_tokens = self.acc.reduce(local_tokens.detach().clone(), reduction="sum")
            loss = loss * local_tokens * self.world / all_tokens.clamp(min=1)
        out.update(
            policy_loss=float(pg.loss.detach()), clipfrac=float(pg.clipfrac), approx_kl=float(pg.approx_kl),
            ratio_mean=float(pg.ratio_mean),
        )
        out["_loss"] = loss
        return out

    def _ptx_loss(self) -> torch.Tensor:
        ids = self.ptx[torch.randint(len(self.ptx), (self.rcfg.ptx_batch_size,), generator=self._ptx_generator)]
        ids = ids.to(self.acc.device)
        with self.acc.autocast():
            out = self.policy(input_ids=ids, labels=ids, use_cache=False)
        return out.loss.float()

    def step_metrics(self, rollout: Rollout, adv_metrics: dict, update_metrics: dict) -> dict[str, float]:
        mask = rollout.response_mask.float()
        local = {
            "reward_mean": float(rollout.scores.mean()),
            "reward_std": float(rollout.scores.std(unbiased=False)),
            "entropy": float(masked_mean(self._entropy.float().cpu(), mask)),
            "response_length": float(mask.sum(-1).mean()),
            "eos_rate": float(rollout.finished.float().mean()),
            **{f"reward/{name}": float(values.mean()) for name, values in rollout.components.items()},
            **adv_metrics,
            **update_metrics,
        }
        if rollout.values is not None:
            local["explained_variance"] = explained_variance(rollout.values, rollout.returns, mask)
            local["value_mean"] = float(masked_mean(rollout.values, mask))
        if self.world > 1:
            keys = sorted(local)
            values = torch.tensor([local[k] for k in keys], dtype=torch.float64, device=self.acc.device)
            values = self.acc.reduce(values, reduction="mean").cpu().tolist()
            local = dict(zip(keys, values, strict=True))
        local["kl_coef"] = self.kl_ctl.value
        return local

    def run_step(self, step: int) -> tuple[Rollout, dict[str, float]]:
        """One whole RL step (every phase, then the KL controller's update); returns the rollout and its metrics,
        with `episodes_per_s` and `time_<phase>`. Raises `NonFiniteLoss` from the update (nothing of the step kept)."""
        timer = PhaseTimer()
        started = time.perf_counter()
        rollout = self.collect(step, timer)
        adv_metrics = self.compute_advantages(rollout, timer)
        update_metrics = self.update(rollout, step, timer)
        metrics = self.step_metrics(rollout, adv_metrics, update_metrics)
        self.kl_ctl.update(metrics["kl"], len(rollout) * self.world)
        if isinstance(self.rewards, ConstrainedMix):  # the multiplier moves on the mean cost over all processes
            metrics.update(self.rewards.after_step(metrics["reward/cost"]))
        elapsed = time.perf_counter() - started
        metrics["episodes_per_s"] = len(rollout) * self.world / max(elapsed, 1e-9)
        metrics.update({f"time_{phase}": round(sec, 4) for phase, sec in timer.seconds.items()})
        return rollout, metrics

    # -- state -------------------------------------------------------------------------------------------------

    def state(self, step: int) -> dict:
        trainable = {k: v.detach().cpu().clone() for k, v in self.unwrapped_policy.named_parameters() if v.requires_grad}
        state = {
            "step": step,
            "policy": trainable,
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
        }
        if isinstance(self.rewards, ConstrainedMix):
            state["constraint"] = self.rewards.state_dict()
        if self.value_model is not None:
            critic = self.acc.unwrap_model(self.value_model)
            state["critic"] = {k: v.detach().cpu().clone() for k, v in critic.named_parameters() if v.requires_grad}
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        return state

    def load_state(self, state: dict) -> int:
        _copy_params(self.unwrapped_policy, state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if isinstance(self.rewards, ConstrainedMix) and "constraint" in state:
            self.rewards.load_state_dict(state["constraint"])
        if self.value_model is not None:
            _copy_params(self.acc.unwrap_model(self.value_model), state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        return int(state["step"])

    def save_policy(self, out_dir: Path) -> None:
        from alinea.train.sft import save_trained

        save_trained(self.unwrapped_policy, self.tokenizer, out_dir, lora=self.rcfg.lora)

    def save_critic(self, out_dir: Path) -> None:
        if self.value_model is None:
            return
        critic = self.acc.unwrap_model(self.value_model).critic
        out_dir.mkdir(parents=True, exist_ok=True)
        critic.save_pretrained(str(out_dir))
        self.tokenizer.save_pretrained(str(out_dir))


class NonFiniteLoss(Exception):
    def __init__(self, value: float, epoch: int, minibatch: int) -> None:
        super().__init__(f"loss {value} in epoch {epoch + 1}, minibatch {minibatch + 1}")
        self.value, self.epoch, self.minibatch = value, epoch, minibatch


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919) % (2**31)


def _copy_params(module: torch.nn.Module, values: dict) -> None:
    params = dict(module.named_parameters())
    unknown = [k for k in values if k not in params]
    if unknown:
        raise UserError(f"checkpoint does not match the model: unknown parameters {unknown[:3]}")
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)


def _adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters per step) where the device supports it."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # no fused kernel for this device/dtype
        return torch.optim.AdamW(params, **kwargs)


def _keep_output_dtype(acc, model: torch.nn.Module) -> None:
    """Drop the float32 cast of the outputs from the forward wrapper `accelerate.prepare` adds under mixed precision
    (autocast, then every output cast to float32), keeping its autocast; on the wrapped module in place (a
    data-parallel wrapper stays). The cast cost more than it gave: the policy's (8, 64, 8192) bf16 logits went to
    float32 in each minibatch's forward, a float32 copy of 16 MB, and their gradient back in the backward, where
    `token_logprobs` widens a block of rows at a time itself; in-process A/B on
    `alinea bench ppo --precision bf16`'s update: 0.02-0.07 s less per step. A wrapper of another shape (another
    accelerate) is left as it is."""
    from types import MethodType

    inner = acc.unwrap_model(model)  # keeps the wrapper; through DDP to the module
    forward = inner.__dict__.get("forward")
    cast = getattr(getattr(forward, "__func__", None), "__wrapped__", None)  # convert_outputs_to_fp32's wrapper
    if type(cast).__name__ == "ConvertOutputsToFp32" and callable(getattr(cast, "model_forward", None)):
        inner.forward = MethodType(cast.model_forward, inner)


def _disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere (N+ detail: log-probs of rollout and update must come from the same function)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    if config is not None:
        for name, value in list(config.to_dict().items()):
            if isinstance(value, float) and ("dropout" in name or name.endswith("pdrop")):
                setattr(config, name, 0.0)


def _add_lora(model, rcfg: RLConfig, task_type: str = "CAUSAL_LM", modules_to_save=None):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=rcfg.lora_r, lora_alpha=rcfg.lora_alpha, lora_dropout=0.0, target_modules=list(rcfg.lora_targets),
        task_type=task_type, modules_to_save=modules_to_save,
    )
    return get_peft_model(model, lora)


def _build_critic(rcfg: PPOConfig, rewards: RewardMix, *, seed: int):
    """The critic, separate from the policy (N+): from `critic`, else the first reward model, else the policy."""
    from alinea.model.reward import build_reward_model

    source = rcfg.critic
    if not source:
        models = rewards.reward_models()
        source = models[0].path if models else rcfg.policy
    path = Path(source)
    if (path / "final").is_dir() and not (path / "config.json").is_file():
        path = path / "final"
    critic, tokenizer = build_reward_model(path, ensemble=1, seed=seed)
    if rcfg.lora:
        critic = _add_lora(critic, rcfg, task_type="SEQ_CLS", modules_to_save=["score"])
    return critic


def _load_ptx(rcfg: PPOConfig, tokenizer) -> torch.Tensor:
    """Packed pretraining sequences for PPO-ptx (InstructGPT eq. 2)."""
    from alinea.data.corpus import pack_documents, read_documents

    if not rcfg.ptx_data:
        raise UserError("ppo.ptx_data: PPO-ptx (ptx_coef > 0) needs a text corpus.")
    documents = read_documents(rcfg.ptx_data)
    seq_len = min(128, rcfg.max_prompt_len + rcfg.max_new_tokens)
    packed = pack_documents(documents, tokenizer, seq_len)
    if len(packed) == 0:
        raise UserError(f"{rcfg.ptx_data}: no text to pack for PPO-ptx.")
    return torch.as_tensor(packed, dtype=torch.long)


def run(
    algorithm: str,
    cfg: AlineaConfig,
    *,
    resume: str | Path | None = None,
    out: str | Path | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    continue_stopped: bool = False,
) -> RLResult:
    """Train `cfg.<algorithm>.policy` with PPO, RLOO or GRPO; with `resume`, continue that run directory.

    A run that stopped because its cost constraint was judged unreachable (`lagrange_patience` steps with the
    multiplier at its cap) is not trained on when resumed: the stop is reported and its result returned, unless
    `continue_stopped` (`--continue-stopped`), which restarts the count of capped steps and trains on."""
    if resume:
        cfg = RunDir.open(resume, stage=algorithm).config()
    trainer = PolicyGradientTrainer(algorithm, cfg)
    if trainer.ptx is not None:
        trainer._ptx_generator = torch.Generator().manual_seed(trainer.rcfg.seed)
    return train(trainer, resume=resume, out=out, on_step=on_step, continue_stopped=continue_stopped)


def stopped_by_constraint(trainer: PolicyGradientTrainer) -> bool:
    """True when the trainer's state is that of a run stopped at the multiplier's cap (`lagrange_patience`)."""
    constraint = trainer.rewards if isinstance(trainer.rewards, ConstrainedMix) else None
    return constraint is not None and constraint.saturated_steps >= trainer.rcfg.lagrange_patience


def _stop_warning(run_dir: RunDir) -> str:
    """The warning written when the run stopped (warnings.json), or '' when there is none."""
    try:
        warnings = json.loads((run_dir.path / "warnings.json").read_text(encoding="utf-8")).get("warnings") or []
    except (OSError, ValueError, AttributeError):
        return ""
    return str(warnings[-1]) if warnings else ""


def train(trainer: PolicyGradientTrainer, *, resume=None, out=None, on_step=None,
          continue_stopped: bool = False) -> RLResult:
    from alinea.train.loop import _broadcast_run

    algorithm, cfg, rcfg, acc = trainer.algorithm, trainer.cfg, trainer.rcfg, trainer.acc
    if resume:
        run_dir = RunDir.open(resume, stage=algorithm)
    elif acc.is_main_process:
        meta = {
            "precision": trainer.precision, "processes": trainer.world, "device": str(acc.device),
            "prompts": len(trainer.prompts), "prompts_cut": trainer.prompts.cut, "reward_sources": trainer.rewards.names,
        }
        run_dir = RunDir.create(algorithm, cfg, runs_dir=rcfg.runs_dir, seed=rcfg.seed, extra=meta, path=out)
    else:
        run_dir = None
    run_dir = _broadcast_run(acc, run_dir)
    start = 0
    if resume:
        checkpoint = run_dir.latest_checkpoint()
        if checkpoint is not None:
            start = trainer.load_state(torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False))
        if acc.is_main_process:
            run_dir.truncate_metrics(start)
        if start >= rcfg.max_steps and run_dir.final_dir.is_dir():
            acc.print(f"{run_dir.path}: already finished ({start} steps).")
            return RLResult(run_dir.path, run_dir.final_dir, start, run_dir.read_metrics("train"))
        if stopped_by_constraint(trainer):
            why = _stop_warning(run_dir) or (
                f"the cost constraint was not met for {trainer.rewards.saturated_steps} steps with the Lagrange "
                f"multiplier at its cap ({rcfg.lagrange_max})")
            if not continue_stopped:
                # The same settings would meet the same wall: report the stop instead of silently training on.
                acc.print(
                    f"{run_dir.path}: this run stopped early at step {start} of {rcfg.max_steps} ({why}); nothing "
                    f"more was trained. Its policy is {run_dir.final_dir}. To train on anyway, resume with "
                    f"`alinea {algorithm} --resume {run_dir.path} --continue-stopped`."
                )
                if not run_dir.final_dir.is_dir():  # stopped, then interrupted before final/ was written
                    acc.wait_for_everyone()
                    if acc.is_main_process:
                        trainer.save_policy(run_dir.final_dir)
                        trainer.save_critic(run_dir.path / "critic")
                    acc.wait_for_everyone()
                return RLResult(run_dir.path, run_dir.final_dir, start, run_dir.read_metrics("train"))
            acc.print(
                f"{run_dir.path}: this run stopped early at step {start} ({why}); continuing to step "
                f"{rcfg.max_steps} as asked (--continue-stopped), with the multiplier at "
                f"{trainer.rewards.multiplier.value:g} and the count of capped steps restarted."
            )
            trainer.rewards.saturated_steps = 0
    logger = MetricsLogger(run_dir, enabled=acc.is_main_process)

    def write_checkpoint(step: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            target = run_dir.checkpoint_dir(step)
            trainer.save_policy(target)
            trainer.save_critic(target / "critic")
            tmp = target / "trainer_state.pt.tmp"
            torch.save(trainer.state(step), tmp)
            tmp.rename(target / "trainer_state.pt")
            run_dir.prune_checkpoints(keep=2)
        acc.wait_for_everyone()

    step = start
    mid_step = False  # a Ctrl-C inside a step leaves a half-updated policy: no checkpoint of it
    try:
        with progress_bar(algorithm, rcfg.max_steps, rate_unit="ep", completed=start) as bar:
            while step < rcfg.max_steps:
                mid_step = True
                try:
                    rollout, metrics = trainer.run_step(step)
                except NonFiniteLoss as err:
                    last = run_dir.latest_checkpoint()
                    raise UserError(
                        f"{algorithm}: non-finite {err} of step {step + 1}. Nothing was saved from this step; the last "
                        f"good checkpoint is {last if last else 'none (no checkpoint yet)'}. Lower {algorithm}.lr "
                        f"(now {rcfg.lr}) and resume with --resume {run_dir.path}."
                    ) from None
                step += 1
                mid_step = False
                if step % max(1, rcfg.log_every) == 0 or step == rcfg.max_steps:
                    logger.log(step, "train", **metrics)
                bar.advance(1, rate_count=len(rollout) * trainer.world,
                            info=f"reward {metrics['reward_mean']:.3f} kl {metrics['kl']:.2f}")
                if on_step is not None:
                    on_step(step, metrics)
                if rcfg.kl_stop and metrics["kl"] > rcfg.kl_stop:
                    last = run_dir.latest_checkpoint()
                    raise UserError(
                        f"{algorithm}: KL to the reference reached {metrics['kl']:.1f} nats at step {step} (kl_stop "
                        f"{rcfg.kl_stop}): the policy is running away. The last good checkpoint is "
                        f"{last if last else 'none'}; raise {algorithm}.kl_coef (now {trainer.kl_ctl.value:.3g}) or "
                        f"lower {algorithm}.lr."
                    )
                if (rcfg.save_every and step % rcfg.save_every == 0) or step == rcfg.max_steps:
                    write_checkpoint(step)
                constraint = trainer.rewards if isinstance(trainer.rewards, ConstrainedMix) else None
                if constraint is not None and constraint.saturated_steps >= rcfg.lagrange_patience:
                    # The constraint cannot be met at any price up to the cap: stop rather than let the penalty
                    # swamp the reward; the warning goes to warnings.json (the loop's report shows it).
                    warning = (
                        f"{algorithm}: the cost constraint (mean cost <= {rcfg.cost_limit}) was not met for "
                        f"{constraint.saturated_steps} steps with the Lagrange multiplier at its cap "
                        f"({rcfg.lagrange_max}); stopped at step {step}. Raise cost_limit, or check the cost source."
                    )
                    if acc.is_main_process:
                        write_text(run_dir.path / "warnings.json", [json.dumps({"warnings": [warning]}) + "\n"])
                    acc.print(f"warning: {warning}")
                    write_checkpoint(step)
                    break
    except KeyboardInterrupt:
        if step > start and not mid_step:
            write_checkpoint(step)
        logger.close()
        last = run_dir.latest_checkpoint()
        raise Interrupted(
            f"{algorithm}: interrupted at step {step}; the last checkpoint is {last if last else 'none'}. Continue "
            f"with `alinea {algorithm} --resume {run_dir.path}`."
        ) from None
    except UserError:
        logger.close()
        raise
    acc.wait_for_everyone()
    if acc.is_main_process:
        trainer.save_policy(run_dir.final_dir)
        trainer.save_critic(run_dir.path / "critic")
    acc.wait_for_everyone()
    logger.close()
    return RLResult(run_dir.path, run_dir.final_dir, step, run_dir.read_metrics("train"))


def mean_reward(metrics: list[dict], first: int | None = None, last: int | None = None) -> float:
    """Mean of `reward_mean` over logged steps (a slice), for tests and reports."""
    rows = metrics[first:last] if (first is not None or last is not None) else metrics
    return sum(r["reward_mean"] for r in rows) / max(1, len(rows))



"""Advantage estimators, reward shaping and the coefficients that adapt during RL, as pure functions over tensors.

Imports only torch and math. Shapes: B sequences (responses), T response tokens; `mask` (B, T) float or bool with 1 on
real response tokens, right-padded (ones then zeros). Padded positions may hold anything: they are replaced by 0
before use and every (B, T) output is 0 there. RLOO and GRPO work on (n_prompts, k) reward tables: k sampled
responses per prompt, one row per prompt.
"""

from __future__ import annotations

import math

import torch


def _where_real(values: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """`values` on real tokens, 0 on padding (even where padding holds NaN or inf)."""
    return torch.where(real, values, torch.zeros_like(values))


def whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise `values` (B, T) to mean 0 and variance 1 over the real tokens of the whole batch -> (B, T).

    Mean and variance are taken over every real token of the batch together (not per sequence), the advantage and
    reward whitening of Huang et al. (2024), "The N+ Implementation Details of RLHF with PPO". Choice: the unbiased
    variance sum (x - mean)^2 / (n - 1), as TRL's masked whitening does (OpenAI's original lm-human-preferences code
    used the population variance, divisor n; the two differ by a factor sqrt(n / (n - 1)), negligible for the
    hundreds of tokens of a batch). With a single real token the variance is taken as 0. Output
    (x - mean) / sqrt(var + eps), plus the mean again when shift_mean=False (scale only: used for rewards, whose
    sign carries meaning). Padded positions are 0.
    """
    real = mask.bool()  # (B, T)
    values = _where_real(values, real)  # (B, T)
    n = real.sum().to(values.dtype)
    mean = values.sum() / n.clamp(min=1)
    centered = _where_real(values - mean, real)  # (B, T)
    var = (centered**2).sum() / (n - 1).clamp(min=1)
    whitened = centered * torch.rsqrt(var + eps)  # (B, T)
    if not shift_mean:
        whitened = whitened + mean
    return _where_real(whitened, real)


def per_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards for PPO: scores (B,), kl (B, T), mask (B, T) -> rewards (B, T).

        r_t = -kl_coef * kl_t at every real token, plus the reward-model score at the last real token of each row.

    Sources: Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences", sec. 2.2 (R = r - beta
    log(pi/rho)); Stiennon et al. (2020), "Learning to summarize from human feedback", eq. 1; applied per token with
    the score at the EOS token in Huang et al. (2024), "The N+ Implementation Details of RLHF with PPO". `kl` is a
    per-token estimate, normally `alinea.losses.kl_penalty(logprobs, ref_logprobs, "k1")`. A row with no real token
    has nowhere to put its score: ValueError.
    """
    real = mask.bool()  # (B, T)
    if real.shape != kl.shape or scores.shape != real.shape[:1]:
        raise ValueError(
            f"expected scores (B,), kl (B, T) and mask (B, T); got {tuple(scores.shape)}, {tuple(kl.shape)}, "
            f"{tuple(real.shape)}"
        )
    empty = (~real.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty} have no response token, so their score has no token to go to")
    rewards = -kl_coef * _where_real(kl, real)  # (B, T)
    positions = torch.arange(1, real.shape[-1] + 1, device=real.device)  # (T,): 1..T
    last = (real.long() * positions).argmax(dim=-1)  # (B,): index of the last real token
    score_at_end = torch.zeros_like(rewards).scatter(-1, last.unsqueeze(-1), scores.to(rewards.dtype).unsqueeze(-1))
    return rewards + score_at_end  # (B, T)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation: rewards (B, T), values (B, T), mask (B, T) -> (advantages, returns), (B, T).

    Source: Schulman et al. (2016), "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
    eq. 16:  delta_t = r_t + gamma V(s_{t+1}) - V(s_t),  A_t = sum_l (gamma lam)^l delta_{t+l};  returns = A + V
    (the lambda-return, the value head's regression target). Each response is one episode: the value after its last
    real token is 0 (the episode ends there), so with gamma = lam = 1, A_t = sum_{u >= t} r_u - V_t, and with
    lam = 0, A_t = r_t + gamma V_{t+1} - V_t. Padded positions of both outputs are 0. N+ defaults: gamma 1, lam 0.95.
    Whiten the advantages afterwards if wanted (`whiten`); the returns are computed before any whitening.
    """
    real = mask.bool()  # (B, T)
    weights = real.to(rewards.dtype)  # (B, T)
    rewards = _where_real(rewards, real)  # (B, T)
    values = _where_real(values, real)  # (B, T)
    next_value = torch.zeros_like(rewards[:, 0])  # (B,): V(s_{t+1}), 0 past the end
    next_advantage = torch.zeros_like(rewards[:, 0])  # (B,): A_{t+1}
    advantages_reversed = []
    for t in reversed(range(rewards.shape[-1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantage = (delta + gamma * lam * next_advantage) * weights[:, t]  # (B,); 0 on padding
        advantages_reversed.append(advantage)
        next_value, next_advantage = values[:, t], advantage
    if not advantages_reversed:
        return torch.zeros_like(rewards), torch.zeros_like(rewards)
    advantages = torch.stack(advantages_reversed[::-1], dim=-1)  # (B, T)
    returns = (advantages + values) * weights  # (B, T)
    return advantages, returns


def _check_groups(rewards: torch.Tensor, name: str) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"{name} expects rewards of shape (n_prompts, k), got {tuple(rewards.shape)}")
    if rewards.shape[-1] < 2:
        raise ValueError(
            f"{name} needs k >= 2 responses per prompt to form a baseline, got k = {rewards.shape[-1]}"
        )


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out advantages: rewards (n_prompts, k) -> (n_prompts, k).

        A_i = R_i - 1/(k-1) sum_{j != i} R_j    ( = k/(k-1) (R_i - mean R) )

    Source: Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs", sec. 3 (RLOO; after Kool et al. 2019). Each sample's baseline is the mean of the other k - 1,
    so the baseline does not depend on the sample itself and the estimate stays unbiased. For k = 2: A = (R1 - R2,
    R2 - R1). k < 2: ValueError.
    """
    _check_groups(rewards, "rloo_advantages")
    k = rewards.shape[-1]
    others_mean = (rewards.sum(dim=-1, keepdim=True) - rewards) / (k - 1)  # (n_prompts, k)
    return rewards - others_mean


def grpo_advantages(
    rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-4, unbiased: bool = True
) -> torch.Tensor:
    """Group-relative advantages: rewards (n_prompts, k) -> (n_prompts, k), (R - mean) / (std + eps) within each row.

    Source: Shao et al. (2024), "DeepSeekMath", sec. 4.1.2 (outcome supervision): A_i = (r_i - mean(r)) / std(r)
    over the G responses to one prompt, used at every token of response i. The paper does not say which std; the
    default here is the sample std (divisor k - 1, torch's default, as in the TRL and verl implementations);
    unbiased=False gives the population std (divisor k). scale=False returns R - mean only (Liu et al. 2025,
    "Understanding R1-Zero-Like Training", Dr. GRPO, which drops the division). A group whose rewards are all equal
    gets zeros (no signal), not NaN. k < 2: ValueError.
    """
    _check_groups(rewards, "grpo_advantages")
    centered = rewards - rewards.mean(dim=-1, keepdim=True)  # (n_prompts, k)
    if not scale:
        return centered
    std = rewards.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)  # (n_prompts, 1)
    return centered / (std + eps)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R] over the real tokens (B, T): how much of the returns' variance the value head explains.

    1 is a perfect critic, 0 one no better than predicting the mean return, negative worse than that; in a healthy
    PPO run it rises towards 1. Computed in float64 with population variances (the divisor cancels). When Var[R] is
    0 (or there are no real tokens) the ratio is undefined and the result is NaN, not 0: 0 would read as "a useless
    critic", while the truth is that there was nothing to explain. Loggers should write it as missing.
    """
    real = mask.bool()  # (B, T)
    returns = returns.detach().double()[real]  # (N,)
    values = values.detach().double()[real]  # (N,)
    if returns.numel() == 0:
        return math.nan
    var_returns = float(returns.var(correction=0))
    if var_returns == 0:
        return math.nan
    return 1.0 - float((returns - values).var(correction=0)) / var_returns


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base policy) = log n - (n - 1)/n, in nats.

    Sources: Stiennon et al. (2020), "Learning to summarize from human feedback", appendix on best-of-n; Gao,
    Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization", sec. 2. An upper bound that is exact
    when the n samples are distinct; n = 1 gives 0.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


class FixedKLController:
    """A KL coefficient that never changes; same interface as `AdaptiveKLController`."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Does nothing: the coefficient is fixed."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """A KL coefficient that steers the measured KL towards a target (Ziegler et al. 2019, sec. 2.2).

        e = clip((KL - target) / target, -0.2, 0.2),   beta <- beta * (1 + e * n_steps / horizon)

    KL above target raises beta, below lowers it; the clip bounds the proportional error at 20%, so one update moves
    beta by at most a factor 1 +- 0.2 n_steps / horizon. `current_kl` is the mean sequence-level KL of the last batch
    (sum over tokens of k1, averaged over responses) and n_steps the number of samples (or steps) since the last
    update, so that horizon is in the same unit. Ziegler et al.'s defaults: target 6 nats, horizon 10,000.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if not init_kl_coef > 0:
            raise ValueError(f"init_kl_coef must be > 0 for an adaptive coefficient, got {init_kl_coef}")
        if not target > 0:
            raise ValueError(f"the KL target must be > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"the horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max((current_kl - self.target) / self.target, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


LAGRANGE_RULES = ("projected", "log")
_SMALLEST_POSITIVE = math.ulp(0.0)  # the smallest float > 0, so log(lambda) stays finite


class LagrangeMultiplier:
    """The multiplier lambda >= 0 of a cost constraint E[cost] <= limit, raised while the constraint is violated.

    Source: Dai et al. (2023), "Safe RLHF: Safe Reinforcement Learning from Human Feedback", sec. 3.3: the policy
    minimises -J_R + lambda * J_C (J_C = E[cost] - limit) while lambda does gradient ascent on the same objective,
    whose gradient in lambda is J_C. Two update rules:
      "projected" (default): lambda <- clip(lambda + lr * (mean_cost - limit), 0, max_value); can reach 0 exactly,
          switching the constraint off while it is comfortably met.
      "log": gradient ascent on log lambda, as in Safe RLHF's own code, log lambda <- log lambda + lr * lambda *
          (mean_cost - limit), capped at max_value; moves are relative to lambda and it never reaches 0 (init > 0).
    `saturated` is True while lambda sits at max_value: the constraint could not be met at any price up to the cap,
    worth reporting to the user.
    """

    def __init__(self, init: float = 1.0, lr: float = 0.05, max_value: float = 100.0, *, rule: str = "projected"):
        if rule not in LAGRANGE_RULES:
            raise ValueError(f"unknown Lagrange update rule {rule!r}; expected one of {', '.join(LAGRANGE_RULES)}")
        if not max_value > 0:
            raise ValueError(f"max_value must be > 0, got {max_value}")
        low = 0.0 if rule == "projected" else _SMALLEST_POSITIVE
        if not low <= init <= max_value:
            bound = ">= 0" if rule == "projected" else "> 0"
            raise ValueError(f"init must be {bound} and <= max_value ({max_value}), got {init}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.value = float(init)
        self.lr = float(lr)
        self.max_value = float(max_value)
        self.rule = rule

    @property
    def saturated(self) -> bool:
        return self.value >= self.max_value

    def update(self, mean_cost: float, limit: float) -> float:
        """One ascent step on the constraint violation mean_cost - limit; returns the new value."""
        violation = mean_cost - limit
        if self.rule == "projected":
            self.value = min(max(self.value + self.lr * violation, 0.0), self.max_value)
        else:
            log_value = min(math.log(self.value) + self.lr * self.value * violation, math.log(self.max_value))
            self.value = min(max(math.exp(log_value), _SMALLEST_POSITIVE), self.max_value)  # stays > 0
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])

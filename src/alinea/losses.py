"""Losses as pure functions over tensors. Imports only torch (and the standard library's dataclasses).

Shape comments: B batch, T sequence, V vocabulary, N selected tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift_for_next_token(labels: torch.Tensor) -> torch.Tensor:
    """Targets for next-token prediction: position t predicts labels[t + 1]; the last position predicts nothing.

    labels (B, T) -> targets (B, T), with IGNORE_INDEX in the last column.
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each target token: logits (N, V), targets (N,) -> (N,), in float32."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is true (same shapes); 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions.

    logits (B, T, V) are the model's outputs at every position; labels (B, T) are the input ids with IGNORE_INDEX
    where no loss is wanted (padding, prompt tokens in SFT). Position t is scored on labels[t + 1].
    """
    targets = shift_for_next_token(labels)  # (B, T)
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return token_nll(logits[keep], targets[keep]).mean()


# --------------------------------------------------------------------------------------------------------------------
# Reward-model losses. Each returns PER-EXAMPLE losses (no reduction) so callers can weight them (bootstrap weights,
# per-feedback-type weights, annotator reliabilities) before averaging. Shapes: B examples, K responses per ranking,
# L rating levels. Every log-probability is built from F.logsigmoid / logsumexp / log1p-style identities, never from
# log(sigmoid(x)), so the losses stay finite for rewards of magnitude 1e4 and beyond.
# --------------------------------------------------------------------------------------------------------------------


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Pairwise preference loss `-log sigmoid(r_chosen - r_rejected - margin)`, per example.

    chosen (B,), rejected (B,), margin scalar or (B,) -> (B,).

    Sources: Bradley & Terry (1952), "Rank analysis of incomplete block designs I", Biometrika 39, the model
    P(i > j) = p_i / (p_i + p_j) with p = exp(r); InstructGPT (Ouyang et al. 2022), sec. 3.5, eq. 1; the margin is
    Llama 2 (Touvron et al. 2023), sec. 3.2.2, eq. 2, where m(r) grows with how much better the chosen response was
    rated (see `strength_margin`). The margin asks for a reward gap of at least `margin`, so a larger margin gives a
    larger loss at the same rewards.
    """
    return -F.logsigmoid(chosen - rejected - margin)  # (B,)


def strength_margin(
    strength: torch.Tensor, margins: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)
) -> torch.Tensor:
    """Margin for each comparison from the annotator's strength of preference, Llama-2 style.

    strength long (B,) in 0..len(margins)-1 (0 negligibly better / unsure, 1 slightly better, 2 better,
    3 significantly better) -> float (B,) = margins[strength].

    Source: Llama 2 (Touvron et al. 2023), sec. 3.2.2: m(r) is a discrete function of the preference rating; the
    "small" margins 0, 1/3, 2/3, 1 are the default here (their "large" set is 0, 1, 2, 3).
    """
    if strength.dtype.is_floating_point or strength.dtype == torch.bool:
        raise TypeError(f"strength must be an integer tensor of levels, got {strength.dtype}")
    if strength.numel() and (int(strength.min()) < 0 or int(strength.max()) >= len(margins)):
        raise ValueError(f"strength levels must lie in 0..{len(margins) - 1}, got {strength.tolist()}")
    table = torch.tensor(margins, dtype=torch.get_default_dtype(), device=strength.device)  # (levels,)
    return table[strength]  # (B,)


def _log_sigmoid_difference(upper: torch.Tensor, lower: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(upper) - sigmoid(lower)), computed stably, given gap = upper - lower >= 0. Broadcasts; +-inf allowed.

    Identity: sigmoid(x) - sigmoid(y) = sigmoid(x) * sigmoid(-y) * (1 - exp(-(x - y))), hence
    log(...) = logsigmoid(x) + logsigmoid(-y) + log(-expm1(-(x - y))). Each term is stable: no difference of two
    nearly equal probabilities is ever formed. It is -inf when the gap is 0 (the probability is exactly 0).
    The caller passes `gap` computed from the parameters alone (2t, theta_l - theta_{l-1}), not as upper - lower, so a
    zero gap cannot send a NaN gradient (0 * inf) back into the rewards.
    """
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-gap))


def _check_outcome(outcome: torch.Tensor) -> None:
    if outcome.dtype.is_floating_point or outcome.dtype == torch.bool:
        raise TypeError(
            f"outcome must be an integer tensor (0 a preferred, 1 b preferred, 2 tie), got {outcome.dtype}"
        )
    if outcome.numel() and (int(outcome.min()) < 0 or int(outcome.max()) > 2):
        raise ValueError(
            f"outcome must be 0 (a preferred), 1 (b preferred) or 2 (tie), got {outcome.tolist()}"
        )


def _pick_outcome(log_probs: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
    """log_probs (B, 3) over (a preferred, b preferred, tie), outcome long (B,) -> NLL (B,)."""
    return -log_probs.gather(-1, outcome.long().unsqueeze(-1)).squeeze(-1)


def rao_kupper_nll(
    r_a: torch.Tensor, r_b: torch.Tensor, outcome: torch.Tensor, threshold: float | torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of a comparison that may end in a tie, Rao-Kupper model, per example.

    r_a (B,), r_b (B,), outcome long (B,) with 0 = a preferred, 1 = b preferred, 2 = tie; threshold t >= 0, scalar or
    (B,) -> (B,).

    Model (Rao & Kupper 1967, "Ties in paired-comparison experiments: a generalization of the Bradley-Terry model",
    JASA 62, written in logistic form): with d = r_a - r_b,
        P(a > b) = sigmoid(d - t),  P(b > a) = sigmoid(-d - t),  P(tie) = 1 - P(a > b) - P(b > a).
    Since sigmoid(-d - t) = 1 - sigmoid(d + t), P(tie) = sigmoid(d + t) - sigmoid(d - t), and so
        log P(tie) = logsigmoid(d + t) + logsigmoid(t - d) + log(-expm1(-2t))
    (see `_log_sigmoid_difference`); no 1 - p - q is ever formed. It equals Rao and Kupper's
    (theta^2 - 1) p_a p_b / ((p_a + theta p_b)(theta p_a + p_b)) with p = exp(r), theta = exp(t).

    Edge case, kept exact on purpose (no clamping): with t = 0 a tie has probability 0, so the NLL of a tie is +inf
    and a mean over a batch holding one is inf. Use t > 0 whenever ties are in the data, e.g. a learned
    t = softplus(raw). Wins and losses stay finite at t = 0, where the model is Bradley-Terry, and their gradients
    stay finite too.
    """
    _check_outcome(outcome)
    threshold = torch.as_tensor(threshold, dtype=r_a.dtype, device=r_a.device)
    if bool((threshold < 0).any()):
        raise ValueError(f"the Rao-Kupper threshold must be >= 0, got {threshold.tolist()}")
    d = r_a - r_b  # (B,)
    log_a_wins = F.logsigmoid(d - threshold)  # (B,)
    log_b_wins = F.logsigmoid(-d - threshold)  # (B,)
    log_tie = _log_sigmoid_difference(d + threshold, d - threshold, 2 * threshold)  # (B,)
    log_probs = torch.stack(torch.broadcast_tensors(log_a_wins, log_b_wins, log_tie), dim=-1)  # (B, 3)
    return _pick_outcome(log_probs, outcome)  # (B,)


def davidson_nll(
    r_a: torch.Tensor, r_b: torch.Tensor, outcome: torch.Tensor, nu: float | torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of a comparison that may end in a tie, Davidson model, per example.

    r_a (B,), r_b (B,), outcome long (B,) with 0 = a preferred, 1 = b preferred, 2 = tie; nu >= 0, scalar or (B,)
    -> (B,).

    Model (Davidson 1970, "On extending the Bradley-Terry model to accommodate ties in paired comparison
    experiments", JASA 65): with p = exp(r),
        P(a > b) = p_a / Z,  P(b > a) = p_b / Z,  P(tie) = nu sqrt(p_a p_b) / Z,  Z = p_a + p_b + nu sqrt(p_a p_b).
    In log space the three numerators are r_a, r_b and log(nu) + (r_a + r_b) / 2, and log Z is their logsumexp.
    With nu = 0 it is Bradley-Terry (a tie then has probability 0: NLL +inf).
    """
    _check_outcome(outcome)
    nu = torch.as_tensor(nu, dtype=r_a.dtype, device=r_a.device)
    if bool((nu < 0).any()):
        raise ValueError(f"the Davidson tie parameter nu must be >= 0, got {nu.tolist()}")
    log_tie_numerator = torch.log(nu) + 0.5 * (r_a + r_b)  # (B,); -inf when nu = 0
    log_numerators = torch.stack(torch.broadcast_tensors(r_a, r_b, log_tie_numerator), dim=-1)  # (B, 3)
    log_probs = log_numerators - torch.logsumexp(log_numerators, dim=-1, keepdim=True)  # (B, 3)
    return _pick_outcome(log_probs, outcome)  # (B,)


def kwise_ranking_loss(rewards: torch.Tensor, ranks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Pairwise loss over every ordered pair of a K-wise ranking, averaged per prompt.

    rewards (B, K), ranks long (B, K) with 1 = best and equal ranks = tie, valid bool (B, K) (False marks padding for
    rankings shorter than K) -> (B,).

    Per example: the mean over all pairs (i, j) of valid responses with rank_i < rank_j of -log sigmoid(r_i - r_j).
    Tied pairs carry no preference and are skipped, so the mean is over the pairs that remain; an example with no such
    pair (one valid response, or all tied) gets loss 0. Without ties this is InstructGPT's
    -1/C(K, 2) * sum log sigmoid(r_w - r_l) (Ouyang et al. 2022, sec. 3.5, eq. 1), all pairs of one prompt in one
    batch element. Padded rewards are ignored: they are replaced by 0 first, so they get zero gradient even if NaN.
    """
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))  # (B, K); padding cannot leak NaN/inf
    reward_gap = rewards.unsqueeze(-1) - rewards.unsqueeze(-2)  # (B, K, K): r_i - r_j
    better = ranks.unsqueeze(-1) < ranks.unsqueeze(-2)  # (B, K, K): i ranked above j
    pairs = better & valid.unsqueeze(-1) & valid.unsqueeze(-2)  # (B, K, K)
    pair_losses = torch.where(pairs, -F.logsigmoid(reward_gap), torch.zeros_like(reward_gap))  # (B, K, K)
    n_pairs = pairs.sum(dim=(-2, -1))  # (B,)
    return pair_losses.sum(dim=(-2, -1)) / n_pairs.clamp(min=1).to(rewards.dtype)  # (B,)


def plackett_luce_loss(rewards: torch.Tensor, ranks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of a full ranking under the Plackett-Luce model, per example.

    rewards (B, K), ranks long (B, K) with 1 = best and equal ranks = tie, valid bool (B, K) (False = padding) -> (B,).

    Model (Luce 1959, "Individual Choice Behavior"; Plackett 1975, "The analysis of permutations", Applied
    Statistics 24): with the valid items sorted best first, s_1, s_2, ...,
        -log P(order) = -sum_k [ r_{s_k} - logsumexp_{m >= k} r_{s_m} ].
    Written without sorting: item i's denominator ranges over the valid items j with rank_j >= rank_i (its "risk
    set"). Ties use Breslow's approximation (Breslow 1974, "Covariance analysis of censored survival data",
    Biometrics 30): every member of a tied group stays at risk, so each tied item's denominator holds the whole tied
    group and everything worse. A unique last item contributes 0; a tied last group does not (an all-tied ranking of
    K equal rewards costs K log K, and its gradient pulls the rewards together). For K = 2 without ties this is
    `bradley_terry_loss`. One valid item gives 0. Padded rewards are replaced by 0, so they get zero gradient.
    """
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))  # (B, K)
    k = rewards.shape[-1]
    # (B, K_i, K_j): item j is in item i's risk set
    at_risk = (ranks.unsqueeze(-1) <= ranks.unsqueeze(-2)) & valid.unsqueeze(-2)
    # Each row also keeps its own item, so a padded row's logsumexp is finite (and its NaN-free gradient is zero).
    at_risk = at_risk | torch.eye(k, dtype=torch.bool, device=rewards.device)
    excluded = torch.full(at_risk.shape, float("-inf"), dtype=rewards.dtype, device=rewards.device)
    risk_rewards = torch.where(at_risk, rewards.unsqueeze(-2), excluded)  # (B, K, K)
    log_denominator = torch.logsumexp(risk_rewards, dim=-1)  # (B, K)
    log_choice = torch.where(valid, rewards - log_denominator, torch.zeros_like(rewards))  # (B, K)
    return -log_choice.sum(dim=-1)  # (B,)


def rating_regression_loss(reward: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error to an absolute rating, 0.5 * (reward - target)^2: reward (B,), target (B,) -> (B,).

    The Gaussian negative log-likelihood up to a constant (unit variance); targets are ratings mapped to a reward
    scale by the caller.
    """
    return 0.5 * (reward - target) ** 2  # (B,)


def ordinal_rating_loss(reward: torch.Tensor, level: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of an ordinal rating under the cumulative-logit (proportional odds) model, per example.

    reward (B,), level long (B,) in 0..L-1, thresholds (L-1,) strictly increasing -> (B,).

    Model (McCullagh 1980, "Regression models for ordinal data", JRSS B 42, sec. 2, the proportional odds model
    logit P(Y <= l) = theta_l - eta): P(level <= l) = sigmoid(theta_l - reward) for l < L-1, so
        P(level = l) = sigmoid(theta_l - reward) - sigmoid(theta_{l-1} - reward),  theta_{-1} = -inf, theta_{L-1} = +inf.
    Its log is formed stably by `_log_sigmoid_difference` (no difference of probabilities): for the lowest level it is
    logsigmoid(theta_0 - reward), for the highest logsigmoid(reward - theta_{L-2}). A higher reward makes higher levels
    more likely, so for a top rating the gradient pushes the reward up.
    """
    if level.dtype.is_floating_point or level.dtype == torch.bool:
        raise TypeError(f"level must be an integer tensor, got {level.dtype}")
    n_levels = thresholds.shape[-1] + 1
    if level.numel() and (int(level.min()) < 0 or int(level.max()) >= n_levels):
        raise ValueError(
            f"levels must lie in 0..{n_levels - 1} for {n_levels - 1} thresholds, got {level.tolist()}"
        )
    if thresholds.numel() > 1 and not bool((thresholds[1:] > thresholds[:-1]).all()):
        raise ValueError(f"ordinal thresholds must be strictly increasing, got {thresholds.tolist()}")
    inf = torch.full((1,), float("inf"), dtype=thresholds.dtype, device=thresholds.device)
    upper = torch.cat([thresholds, inf])[level]  # (B,): theta_l
    lower = torch.cat([-inf, thresholds])[level]  # (B,): theta_{l-1}
    return -_log_sigmoid_difference(upper - reward, lower - reward, upper - lower)  # (B,)


def thumb_loss(reward: torch.Tensor, up: torch.Tensor, bias: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Logistic loss for thumbs-up / thumbs-down feedback on single responses, per example.

    reward (B,), up bool (B,), bias scalar or (B,) -> (B,): -log sigmoid(reward - bias) for a thumbs-up and
    -log sigmoid(-(reward - bias)) for a thumbs-down, i.e. the Bernoulli NLL of P(up) = sigmoid(reward - bias)
    (logistic regression, Cox 1958, "The regression analysis of binary sequences", JRSS B 20). `bias` is the reward
    at which a thumbs-up is a coin flip.
    """
    sign = up.to(reward.dtype) * 2 - 1  # (B,): +1 up, -1 down
    return -F.logsigmoid(sign * (reward - bias))  # (B,)


def _bin_index(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of each confidence on [0, 1]: bin m holds [m/M, (m+1)/M), the last also holds 1.0."""
    if confidence.shape != correct.shape:
        raise ValueError(
            f"confidence {tuple(confidence.shape)} and correct {tuple(correct.shape)} must match"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if confidence.numel() and not bool(((confidence >= 0) & (confidence <= 1)).all()):
        raise ValueError("confidence must lie in [0, 1]")
    return (confidence.double() * n_bins).floor().long().clamp(max=n_bins - 1)  # (N,)


def calibration_bins(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin statistics for a reliability diagram (Guo et al. 2017, "On calibration of modern neural networks", sec. 2).

    confidence (N,) in [0, 1] (for a reward model, sigmoid(r_w - r_l)), correct bool (N,) ->
    (mean confidence (n_bins,), accuracy (n_bins,), count long (n_bins,)). Bins as in `expected_calibration_error`;
    an empty bin has NaN confidence and accuracy and count 0.
    """
    bins = _bin_index(confidence, correct, n_bins)  # (N,)
    dtype = confidence.dtype if confidence.dtype.is_floating_point else torch.get_default_dtype()
    empty = torch.zeros(n_bins, dtype=dtype, device=confidence.device)  # (n_bins,)
    count = empty.long().index_add_(0, bins, torch.ones_like(bins))  # (n_bins,)
    conf_sum = empty.clone().index_add_(0, bins, confidence.to(dtype))  # (n_bins,)
    hit_sum = empty.clone().index_add_(0, bins, correct.to(dtype))  # (n_bins,)
    denominator = count.to(dtype)  # 0 in an empty bin -> 0/0 = NaN, as documented
    return conf_sum / denominator, hit_sum / denominator, count


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10
) -> torch.Tensor:
    """Expected calibration error, a 0-d tensor (Guo et al. 2017, "On calibration of modern neural networks", sec. 2).

    confidence (N,) in [0, 1], correct bool (N,) -> (): ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)| over n_bins
    equal-width bins on [0, 1] (bin m holds [m/M, (m+1)/M); 1.0 goes in the last bin). Empty bins add nothing; an
    empty input gives 0. Since |B_m| * |acc - conf| = |sum over the bin of (correct - confidence)|, ECE is computed as
    (1/n) sum_m |sum_{i in B_m} (correct_i - confidence_i)|.
    """
    bins = _bin_index(confidence, correct, n_bins)  # (N,)
    dtype = confidence.dtype if confidence.dtype.is_floating_point else torch.get_default_dtype()
    if confidence.numel() == 0:
        return torch.zeros((), dtype=dtype, device=confidence.device)
    residual = correct.to(dtype) - confidence.to(dtype)  # (N,)
    per_bin = torch.zeros(n_bins, dtype=dtype, device=confidence.device)  # (n_bins,)
    per_bin.index_add_(0, bins, residual)
    return per_bin.abs().sum() / confidence.numel()  # ()


# --------------------------------------------------------------------------------------------------------------------
# RL: policy-gradient, value and preference losses.
# Shapes: B sequences (responses), T response tokens, V vocabulary. `mask` (B, T) is float or bool with 1 on real
# response tokens (right-padded: ones then zeros). Padded positions may hold anything (NaN included): every function
# below replaces them by a neutral value before computing, so nothing leaks into the loss or its gradient.
# Per-token quantities are averaged with `masked_mean` over all real tokens of the batch unless stated otherwise.
# --------------------------------------------------------------------------------------------------------------------

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi: (B, T), (B, T) -> (B, T).

    Source: Schulman (2020), "Approximating KL Divergence" (joschu.net/blog/kl-approx.html). With
    log r = ref_logprobs - logprobs (r = pi_ref / pi at the sampled token):
      k1 = -log r            = logp - ref                    unbiased, high variance, negative whenever ref > logp;
      k2 = (log r)^2 / 2                                     biased, low variance, >= 0;
      k3 = (r - 1) - log r   = exp(ref - logp) - 1 - (ref - logp)   unbiased, low variance, >= 0.
    All three are 0 where the two log-probs are equal. k1 is the per-token penalty of Ziegler et al. (2019) and
    Stiennon et al. (2020); k3 is the GRPO loss term (Shao et al. 2024, DeepSeekMath, eq. 4). k3 is computed as
    expm1(log r) - log r, which keeps its precision when log r is near 0.
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_ESTIMATORS)}")
    log_ratio = ref_logprobs - logprobs  # (B, T): log r
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    return torch.expm1(log_ratio) - log_ratio


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at each target token: logits (B, T, V), targets long (B, T) -> float32 (B, T).

    Position t of `logits` must already be aligned with target t (the caller drops the last logit / shifts the ids).
    Targets equal to IGNORE_INDEX (or any negative id) get log-prob 0, so padding needs no valid token id.

    Temperature: the N+ implementation details (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO",
    detail on sampling temperature) divide the logits by the sampling temperature when re-computing log-probs, so
    they are the log-probs of the distribution the tokens were actually drawn from.

    Memory: computed a block of rows at a time in float32 as logit[target] - logsumexp(logits) (`_TokenLogProb`), so
    the extra memory is one block's float32 copy, never a second (B, T, V) tensor; bf16/fp16 logits are upcast per
    block, which keeps the log-probs accurate.
    """
    _check_aligned(logits, targets, temperature)
    valid = targets >= 0  # (B, T)
    if logits.numel() == 0:
        return torch.zeros(targets.shape, dtype=torch.float32, device=logits.device)
    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V), a view when contiguous
    picked = target_logprobs(flat, targets.clamp(min=0).reshape(-1), temperature)
    return picked.view(targets.shape).masked_fill(~valid, 0.0)  # (B, T)


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature)[target] of each row: logits (N, V) of any float dtype, targets (N,) valid
    ids -> float32 (N,), with a gradient (`_TokenLogProb`). What `token_logprobs` and DPO's sequence log-probs run."""
    return _TokenLogProb.apply(logits, targets, float(temperature))


@torch.no_grad()
def token_logprobs_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`token_logprobs`, `entropy_from_logits`) of the same logits, without gradients, in one pass per block of rows:
    the entropy H = lse - sum_v softmax(z)_v z_v (z = logits / T) reuses the log-sum-exp of the log-probs. Both
    float32 (B, T). Rows with a -inf logit (0 * -inf is not a number here) are recomputed by `entropy_from_logits`,
    which gives such tokens 0. The rollout's `reference` phase computes both for the sampling policy: on the 32 x 64
    x 8192 bf16 logits of a PPO step of `alinea bench ppo` (2 threads, Intel Xeon), 60 ms as `token_logprobs` plus
    the rollout's separate entropy pass, 29 ms here."""
    _check_aligned(logits, targets, temperature)
    valid = targets >= 0
    flat = logits.reshape(-1, logits.shape[-1])
    picked = _scaled(flat.gather(1, targets.clamp(min=0).reshape(-1, 1)).squeeze(1), temperature)  # (N,)
    entropy = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    block = _rows_per_block(flat.shape[-1])
    for start in range(0, flat.shape[0], block):
        rows = slice(start, start + block)
        scaled = _scaled(flat[rows], temperature)
        lse = torch.logsumexp(scaled, dim=-1)  # (n,)
        picked[rows] -= lse
        probs = (scaled - lse.unsqueeze(1)).exp_()
        entropy[rows] = lse - torch.linalg.vecdot(probs, scaled)
    entropy = entropy.view(targets.shape)
    bad = (~torch.isfinite(entropy)).any(dim=-1).nonzero().flatten()
    if bad.numel():
        entropy[bad] = entropy_from_logits(logits[bad], temperature=temperature)
    return picked.view(targets.shape).masked_fill(~valid, 0.0), entropy


class _TokenLogProb(torch.autograd.Function):
    """log softmax(logits / T)[target] of each row: logits (N, V) of any float dtype, targets (N,) -> float32 (N,).

    The numbers autograd gives for `logits.float() / T`, `gather` and `logsumexp` (tested bit for bit), a block of
    rows at a time in float32: the forward keeps only each row's log-sum-exp (no (N, V) float32 copy), the backward
    writes (onehot - softmax) * grad / T in one pass per block and casts it to the logits' dtype once. In a PPO
    minibatch of 8 x 64 answer tokens x 8192 bf16 logits (2 threads, Intel Xeon) forward and backward took 7.9 ms as
    autograd's row-by-row graph, 5.3 ms here (medians of alternating runs in one process)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        block = _rows_per_block(logits.shape[-1])
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)  # (N,)
        for start in range(0, logits.shape[0], block):
            lse[start : start + block] = torch.logsumexp(_scaled(logits[start : start + block], temperature), dim=-1)
        picked = _scaled(logits.gather(1, targets.unsqueeze(1)).squeeze(1), temperature)  # (N,)
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        return picked - lse

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        temperature = ctx.temperature
        grad_out = grad_out.float()
        block = _rows_per_block(logits.shape[-1])
        grad = torch.empty_like(logits)  # (N, V)
        for start in range(0, logits.shape[0], block):
            rows = slice(start, start + block)
            g = grad_out[rows].unsqueeze(1)  # (n, 1)
            # -softmax * grad, a new (n, V) tensor
            part = (_scaled(logits[rows], temperature) - lse[rows].unsqueeze(1)).exp_().mul_(-g)
            part.scatter_add_(1, targets[rows].unsqueeze(1), g)  # + onehot * grad
            if temperature != 1.0:
                part = part.div_(temperature)
            grad[rows] = part
        return grad, None, None


def _check_aligned(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> None:
    _check_temperature(temperature)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must agree on (batch, T)"
        )


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 logits / temperature (no copy for float32 logits at temperature 1: callers do not write into it)."""
    scaled = logits.float()
    return scaled / temperature if temperature != 1.0 else scaled


def _rows_per_block(vocab: int) -> int:
    """Rows of float32 logits in about 1 MB (a block stays in a core's cache between its passes)."""
    return max(1, (1 << 18) // vocab)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature) at every position: logits (B, T, V) -> float32 (B, T), in nats.

    H = -sum_v p_v log p_v, computed from log_softmax one sequence at a time in float32 (as `token_logprobs`).
    Tokens with p = 0 (a -inf logit) contribute 0, not NaN. A healthy policy's mean entropy falls slowly during RL;
    a collapse towards 0 means it has become deterministic.
    """
    _check_temperature(temperature)
    rows = []
    for row_logits in logits:  # (T, V)
        row_logits = row_logits.float()
        if temperature != 1.0:
            row_logits = row_logits / temperature
        log_p = torch.log_softmax(row_logits, dim=-1)  # (T, V)
        p = log_p.exp()  # (T, V)
        rows.append(-(p * log_p.masked_fill(p == 0, 0.0)).sum(dim=-1))  # (T,)
    if not rows:
        return torch.zeros(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    return torch.stack(rows)  # (B, T)


@dataclass
class PolicyLossOutput:
    """What a clipped policy loss returns; all fields are 0-d tensors.

    loss: the loss to minimise (carries the gradient).
    clipfrac: share of real tokens where clipping removed the gradient (the clipped term was the larger one and
        differed from the unclipped term). Healthy PPO runs show roughly 0.05-0.3; near 0 means the updates are tiny,
        near 1 that the policy moved far from the one that sampled the data. Detached.
    approx_kl: the k3 estimate of KL(pi_old || pi) over real tokens, mean of (ratio - 1) - log ratio, with the tokens
        sampled from pi_old (Schulman 2020, "Approximating KL Divergence"). Unbiased and >= 0; it should stay well
        below 0.1 within one PPO update. Detached.
    ratio_mean: mean of pi / pi_old over real tokens; exactly 1 on the first minibatch of an epoch. Detached.
    ref_kl: GRPO only: mean k3 estimate of KL(pi || pi_ref) over real tokens (the penalised quantity); None for PPO.
        Detached.
    """

    loss: torch.Tensor
    clipfrac: torch.Tensor
    approx_kl: torch.Tensor
    ratio_mean: torch.Tensor
    ref_kl: torch.Tensor | None = None


def _where_real(values: torch.Tensor, real: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """`values` on real tokens, `fill` on padding (which may be NaN/inf); gradients at padding are 0, never NaN."""
    return torch.where(real, values, torch.full_like(values, fill))


def _clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    real: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate of PPO (Schulman et al. 2017, eq. 7), as a loss to minimise.

    logprobs, old_logprobs (B, T); advantages (B, T) or (B,) (one value per sequence, used at every token);
    real bool (B, T). Returns (per-token loss, was clipped, ratio, log ratio), each (B, T), zero-filled at padding
    (ratio 1 there).
    """
    if not 0 <= clip_eps < 1:
        raise ValueError(f"clip_eps must lie in [0, 1), got {clip_eps}")
    if advantages.dim() == logprobs.dim() - 1:
        advantages = advantages.unsqueeze(-1)  # (B, 1): sequence-level advantage at every token
    advantages = _where_real(advantages.expand_as(logprobs), real)  # (B, T)
    log_ratio = _where_real(logprobs - old_logprobs, real)  # (B, T); 0 at padding
    ratio = torch.exp(log_ratio)  # (B, T)
    unclipped = -advantages * ratio  # (B, T)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)  # (B, T)
    per_token = torch.maximum(unclipped, clipped)  # (B, T): the pessimistic (upper) bound of the loss
    was_clipped = (clipped > unclipped) & real  # (B, T)
    return per_token, was_clipped, ratio, log_ratio


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> PolicyLossOutput:
    """PPO's clipped policy loss, averaged over all real tokens of the batch.

    logprobs (B, T) of the policy being trained (with gradient); old_logprobs (B, T) of the policy that sampled the
    tokens; advantages (B, T) (or (B,), broadcast over tokens, for sequence-level methods such as RLOO); mask (B, T).

    Source: Schulman et al. (2017), "Proximal Policy Optimization Algorithms", eq. 7, written as a loss:
        per token  max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)),  ratio = exp(logp - logp_old),
    then masked_mean over tokens. Clipping only ever removes an incentive: with A > 0 the gradient stops once
    ratio > 1 + eps, with A < 0 once ratio < 1 - eps; a move in the harmful direction is never clipped. At
    logprobs == old_logprobs the loss is -mean(A), clipfrac 0 and approx_kl 0. See `PolicyLossOutput` for the
    metrics (approx_kl is the k3 estimator).
    """
    real = mask.bool()  # (B, T)
    per_token, was_clipped, ratio, log_ratio = _clipped_surrogate(
        logprobs, old_logprobs, advantages, real, clip_eps
    )
    with torch.no_grad():
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, real)  # k3 of KL(old || new)
        clipfrac = masked_mean(was_clipped.to(per_token.dtype), real)
        ratio_mean = masked_mean(ratio, real)
    return PolicyLossOutput(
        loss=masked_mean(per_token, real), clipfrac=clipfrac, approx_kl=approx_kl, ratio_mean=ratio_mean
    )


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss and its clip fraction (both 0-d): values, old_values, returns, mask all (B, T).

        per token  0.5 * max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2),  masked_mean over tokens.

    Source: the clipped value objective of OpenAI baselines' PPO2, described in Huang et al. (2024), "The N+
    Implementation Details of RLHF with PPO" (value clipping, eps 0.2, value coefficient 0.1 in the total loss) and
    Engstrom et al. (2020), "Implementation Matters in Deep Policy Gradients", sec. 3 (value function clipping). Like
    the policy clip it is pessimistic: it stops the gradient only where the clipped prediction is the worse one.
    clipfrac is the share of real tokens where the clipped term is strictly larger (so no gradient flows there).
    """
    if clip_eps < 0:
        raise ValueError(f"clip_eps must be >= 0, got {clip_eps}")
    real = mask.bool()  # (B, T)
    values = _where_real(values, real)  # (B, T)
    old_values = _where_real(old_values, real)  # (B, T)
    returns = _where_real(returns, real)  # (B, T)
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)  # (B, T)
    unclipped_loss = (values - returns) ** 2  # (B, T)
    clipped_loss = (clipped_values - returns) ** 2  # (B, T)
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), real)
    with torch.no_grad():
        clipfrac = masked_mean((clipped_loss > unclipped_loss).to(values.dtype), real)
    return loss, clipfrac


DPO_KINDS = ("sigmoid", "ipo")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    kind: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct preference losses per pair: four (B,) summed response log-probs -> (losses (B,), chosen_rewards (B,),
    rejected_rewards (B,)).

    With h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)):
      sigmoid: -(1 - eps) logsigmoid(beta h) - eps logsigmoid(-beta h). Rafailov et al. (2023), "Direct Preference
               Optimization", eq. 7 (eps = 0); eps > 0 is the "conservative DPO" label smoothing (Mitchell 2023, "A
               note on DPO with noisy preferences"): the label is assumed flipped with probability eps.
      ipo:     (h - 1/(2 beta))^2. Azar et al. (2023), "A General Theoretical Paradigm to Understand Learning from
               Human Preferences", sec. 5 (IPO), with their tau = beta; minimal at h = 1/(2 beta), so it does not
               push h to infinity as the sigmoid loss does on separable data. (Azar et al. use sequence
               log-likelihoods, as here; some libraries average log-probs per token for IPO: pass those instead.)
    At h = 0 the sigmoid loss is log 2 for every eps. Its gradient raises the chosen log-prob and lowers the
    rejected one. The implicit rewards beta * (log pi - log pi_ref) are returned detached, for logging (reward
    accuracy = share of pairs with chosen_reward > rejected_reward; margin = their mean difference).
    """
    if kind not in DPO_KINDS:
        raise ValueError(f"unknown DPO loss kind {kind!r}; expected one of {', '.join(DPO_KINDS)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    if kind == "ipo" and label_smoothing != 0:
        raise ValueError("label_smoothing applies to the sigmoid DPO loss only; set it to 0 for kind='ipo'")
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps  # (B,)
    h = chosen_log_ratio - rejected_log_ratio  # (B,)
    if kind == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    else:
        losses = (h - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * chosen_log_ratio.detach()  # (B,)
    rejected_rewards = beta * rejected_log_ratio.detach()  # (B,)
    return losses, chosen_rewards, rejected_rewards


def grpo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    kl_coef: float = 0.04,
) -> PolicyLossOutput:
    """GRPO's loss: clipped surrogate plus a k3 KL penalty to the reference, per token; mean per sequence, then over
    sequences.

    logprobs, old_logprobs, ref_logprobs (B, T); advantages (B,) (one group-normalised value per response, see
    `alinea.advantages.grpo_advantages`, used at every token) or (B, T); mask (B, T).

    Source: Shao et al. (2024), "DeepSeekMath", eq. 3, as a loss:
        1/G sum_i 1/|o_i| sum_t [ max(-A_i ratio_t, -A_i clip(ratio_t, 1 - eps, 1 + eps)) + kl_coef * k3_t ],
        k3_t = pi_ref/pi - log(pi_ref/pi) - 1 (their eq. 4; `kl_penalty(..., "k3")`), beta = kl_coef = 0.04.
    Reduction, as in the paper: each sequence's tokens are averaged first (the 1/|o_i|), then the sequences, so a
    short response weighs as much as a long one (and each of its tokens more). Liu et al. (2025, "Understanding
    R1-Zero-Like Training", Dr. GRPO) point out that this biases length; `ppo_policy_loss` with (B,) advantages gives
    the token-level mean instead. Sequences without any real token are left out of the mean over sequences.
    The metrics (clipfrac, approx_kl, ratio_mean, ref_kl) are token-level means over all real tokens.
    """
    real = mask.bool()  # (B, T)
    per_token, was_clipped, ratio, log_ratio = _clipped_surrogate(
        logprobs, old_logprobs, advantages, real, clip_eps
    )
    # padding is replaced before exp() so that NaN/inf there cannot reach the gradient (0 * inf = NaN)
    ref_kl = kl_penalty(_where_real(logprobs, real), _where_real(ref_logprobs, real), kind="k3")  # (B, T); 0 at padding
    per_token = per_token + kl_coef * ref_kl  # (B, T)
    weights = real.to(per_token.dtype)  # (B, T)
    n_tokens = weights.sum(dim=-1)  # (B,)
    per_sequence = (per_token * weights).sum(dim=-1) / n_tokens.clamp(min=1)  # (B,)
    has_tokens = (n_tokens > 0).to(per_token.dtype)  # (B,)
    loss = (per_sequence * has_tokens).sum() / has_tokens.sum().clamp(min=1)
    with torch.no_grad():
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, real)
        clipfrac = masked_mean(was_clipped.to(per_token.dtype), real)
        ratio_mean = masked_mean(ratio, real)
        mean_ref_kl = masked_mean(ref_kl, real)
    return PolicyLossOutput(
        loss=loss, clipfrac=clipfrac, approx_kl=approx_kl, ratio_mean=ratio_mean, ref_kl=mean_ref_kl
    )

"""Configuration: one dataclass per stage, loaded from TOML, overridden from the command line.

Every field has a type, a default and a one-line help text (`field(metadata={"help": ...})`), shown by
`alinea config show`. A TOML preset (`configs/tiny.toml`) has one table per stage (`[model]`, `[pretrain]`, ...);
`--set section.field=value` overrides one field, the value read as a TOML literal (`3e-4`, `true`, `"text"`, `[1, 2]`)
or, failing that, as a bare string. An unknown section or key, or a value of the wrong type, is a `UserError` that
names the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from alinea.errors import UserError


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help text (lists get a default factory)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DemoDataConfig:
    """The embedded synthetic data set used by `make demo` (see `alinea.data.synthetic`)."""

    out_dir: str = _f("runs/demo-data", "Folder the generated corpus.txt, prompts.jsonl and demonstrations.jsonl go to.")
    n_documents: int = _f(6000, "Documents in the English pretraining corpus.")
    n_prompts: int = _f(200, "Prompts for sampling and the later RL stages (foreign_share of them French, Spanish, Malagasy).")
    n_demonstrations: int = _f(300, "Demonstrations (prompt + ideal answer) for SFT.")
    n_refusals: int = _f(40, "Refusals of harmful requests added to the demonstrations (never the evaluation red-team prompts).")
    foreign_share: float = _f(0.10, "Share of prompts and demonstrations in French, Spanish and Malagasy (equal parts).")
    demonstration_foreign_share: float = _f(-1.0, "Share of demonstrations in French, Spanish and Malagasy when it should differ from the prompts' (negative: foreign_share).")
    n_foreign_documents: int = _f(0, "French, Spanish and Malagasy documents mixed into the (English) pretraining corpus.")
    n_harmful_prompts: int = _f(0, "Harmful requests added to the prompts (never the evaluation red-team prompts), for the loop's harmlessness feedback.")
    seed: int = _f(0, "Seed of the generator: the same seed gives byte-identical files.")

    def write(self) -> dict[str, Path]:
        """Generate the files into `out_dir` (`alinea.data.synthetic.write_demo_data`); return their paths."""
        from alinea.data.synthetic import write_demo_data

        return write_demo_data(
            Path(self.out_dir), n_documents=self.n_documents, n_prompts=self.n_prompts,
            n_demonstrations=self.n_demonstrations, seed=self.seed, n_refusals=self.n_refusals,
            foreign_share=self.foreign_share, n_foreign_documents=self.n_foreign_documents,
            n_harmful_prompts=self.n_harmful_prompts,
            demonstration_foreign_share=None if self.demonstration_foreign_share < 0 else self.demonstration_foreign_share,
        )


@dataclass
class TokenizerConfig:
    """Byte-level BPE tokenizer trained with `tokenizers`, saved as a transformers fast tokenizer."""

    vocab_size: int = _f(8192, "Vocabulary size, special tokens included.")
    min_frequency: int = _f(2, "A pair must occur this often to be merged.")
    max_documents: int = _f(0, "Train on at most this many documents of the corpus (0 = all).")


@dataclass
class ModelConfig:
    """A transformers causal LM: built from these fields (Llama architecture), or loaded from `init_from`."""

    init_from: str = _f("", "A local Hugging Face checkpoint directory to start from; empty builds a new model.")
    hidden_size: int = _f(192, "Width of the residual stream.")
    num_layers: int = _f(4, "Transformer blocks.")
    num_heads: int = _f(4, "Attention heads (hidden_size must be divisible by it).")
    num_kv_heads: int = _f(4, "Key/value heads (grouped-query attention when smaller than num_heads).")
    intermediate_size: int = _f(512, "Width of the MLP's hidden layer.")
    max_position_embeddings: int = _f(512, "Longest sequence the model can read.")
    rope_theta: float = _f(10000.0, "Base of the rotary position embedding.")
    tie_word_embeddings: bool = _f(True, "Share the input embedding and the output head (saves vocab x width params).")
    initializer_range: float = _f(0.02, "Std of the normal initialisation of new weights.")


@dataclass
class TrainConfig:
    """Fields shared by every gradient-descent stage (pretraining, SFT)."""

    seed: int = _f(0, "Seed for weights, data order and sampling; same config + seed = same numbers.")
    batch_size: int = _f(16, "Sequences per step on each process (the global batch is this x processes).")
    grad_accum: int = _f(1, "Micro-batches accumulated before each optimizer step.")
    max_steps: int = _f(300, "Optimizer steps in the run.")
    lr: float = _f(1e-3, "Peak learning rate (AdamW).")
    min_lr_ratio: float = _f(0.1, "The cosine schedule decays to lr x this.")
    warmup_steps: int = _f(30, "Linear warm-up steps from 0 to lr.")
    weight_decay: float = _f(0.1, "AdamW decoupled weight decay (not applied to norms and biases).")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.95, "AdamW beta2.")
    adam_eps: float = _f(1e-8, "AdamW epsilon.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this (0 = off).")
    precision: str = _f("auto", "fp32, bf16 (autocast) or auto: bf16 only where the hardware runs it faster.")
    eval_every: int = _f(100, "Evaluate held-out loss every this many steps (0 = only at the end).")
    eval_batches: int = _f(8, "Batches of held-out data per evaluation (0 = all).")
    save_every: int = _f(100, "Write a resumable checkpoint every this many steps (0 = only at the end).")
    log_every: int = _f(10, "Write a metrics line every this many steps.")
    keep_best: bool = _f(False, "At the end, restore the weights of the evaluation with the best best_metric into final/.")
    best_metric: str = _f("loss", "Eval metric that keep_best watches; minimised when its name has loss/ppl/ece, else maximised.")
    runs_dir: str = _f("runs", "Parent folder of run directories (runs/<stage>-<timestamp>/).")


@dataclass
class PretrainConfig(TrainConfig):
    """Causal-LM pretraining on raw text, packed into fixed-length sequences."""

    corpus: str = _f("runs/demo-data/corpus.txt", "Raw text; documents separated by blank lines.")
    tokenizer: str = _f("", "Tokenizer directory (empty: the one inside model.init_from).")
    seq_len: int = _f(128, "Tokens per packed training sequence.")
    heldout_fraction: float = _f(0.05, "Share of documents kept out of training for held-out perplexity.")


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning on demonstrations: loss on assistant tokens only."""

    model: str = _f("", "Checkpoint directory to fine-tune (a pretrain run's final/ or any local HF model).")
    data: str = _f("runs/demo-data/demonstrations.jsonl", "Demonstrations (JSONL, alinea records).")
    eval_fraction: float = _f(0.1, "Share of demonstrations kept out for eval loss.")
    max_len: int = _f(256, "Longest tokenized conversation; longer ones are cut from the left of the prompt.")
    lora: bool = _f(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "Dropout on the LoRA branch.")
    lora_targets: list = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Module names that get LoRA adapters.")


@dataclass
class RewardConfig(TrainConfig):
    """Reward model from human judgments: comparisons, rankings, ratings and thumbs in one run."""

    model: str = _f("", "Checkpoint to start from (an SFT or base model directory); its tokenizer comes along.")
    data: list = _f(["runs/demo-data/feedback.jsonl"], "JSONL feedback files (comparison, ranking, rating, thumb).")
    reference: str = _f("", "Demonstrations whose responses define reward 0 / std 1 (empty: all training responses).")
    eval_fraction: float = _f(0.1, "Share of records held out for accuracy, calibration and loss, whole prompts at a time.")
    max_len: int = _f(256, "Longest prompt + response; longer prompts are cut from the left, the response is kept.")
    ensemble: int = _f(1, "Reward heads on a shared trunk, each trained on its own bootstrap of the records.")
    tie_model: str = _f("rao-kupper", "How ties are scored: rao-kupper, davidson, or skip.")
    tie_param: float = _f(0.5, "Rao-Kupper threshold or Davidson nu (>= 0).")
    use_strength: bool = _f(True, "Add a Llama-2 style margin per annotator strength (0..3) to the pairwise loss.")
    ranking_loss: str = _f("pairwise", "K-wise rankings: pairwise (InstructGPT, all pairs as one example) or plackett-luce.")
    rating_loss: str = _f("regression", "Ratings: regression to the scaled mean rating, or ordinal (ordered logit).")
    weight_comparison: float = _f(1.0, "Loss weight of comparison records.")
    weight_ranking: float = _f(1.0, "Loss weight of ranking records.")
    weight_rating: float = _f(0.5, "Loss weight of rating records.")
    weight_thumb: float = _f(0.5, "Loss weight of thumb records.")
    annotator_reliability: bool = _f(False, "Learn one reliability (inverse temperature) per annotator id.")
    reliability_l2: float = _f(0.01, "L2 penalty on the log-reliabilities (keeps them near 1 without evidence).")
    loss_params_lr_scale: float = _f(30.0, "Learning-rate multiplier of the loss's own scalars (reliabilities, thumb bias, rating thresholds).")
    skip_invalid: bool = _f(False, "Skip invalid lines of the data files (counted) instead of stopping.")
    calibration_bins: int = _f(10, "Bins of the expected calibration error and reliability diagram.")
    invert: bool = _f(False, "Train a cost model (higher = more harmful): every judgment counts inverted (a <-> b, ranks and ratings reversed, thumbs flipped); config.json marks it kind = cost.")


@dataclass
class RLConfig:
    """Fields shared by the online RL stages (PPO, RLOO, GRPO): policy, reference, rewards, sampling, KL, runs."""

    policy: str = _f("", "Checkpoint the policy starts from (an SFT run's final/ or any local HF causal LM).")
    reference: str = _f("", "Frozen reference model for the KL penalty (empty: a copy of the starting policy).")
    prompts: str = _f("runs/demo-data/prompts.jsonl", "Prompt records (JSONL; prompt or demonstration records) to sample from.")
    rewards: list = _f(
        [], "Reward sources: a reward model directory, a judge name (alinea judges) or module:function; mixed with reward_weights."
    )
    reward_weights: list = _f([], "Weight of each reward source (empty: 1 each); the total reward is the weighted sum.")
    seed: int = _f(0, "Seed for prompt order, sampling and weights; same config + seed = same numbers.")
    max_steps: int = _f(40, "RL steps; each samples batch_size episodes and updates on them.")
    batch_size: int = _f(32, "Episodes (prompt + sampled answer) per step on each process.")
    max_prompt_len: int = _f(128, "Prompt tokens at most; longer prompts are cut from the left (counted).")
    max_new_tokens: int = _f(48, "Answer tokens at most; an answer without a stop token by then gets missing_eos_penalty.")
    temperature: float = _f(0.7, "Sampling temperature, also applied to the logits when log-probs are recomputed (N+ detail).")
    generation_batch_size: int = _f(32, "Episodes sampled together; each such chunk has its own seed, so the samples do not depend on the process count.")
    top_p: float = _f(1.0, "Nucleus sampling while collecting rollouts (1 = plain sampling, which keeps log-probs exact).")
    penalise_missing_eos: bool = _f(True, "Replace the score of an answer with no stop token by missing_eos_penalty (N+ 'EOS trick').")
    missing_eos_penalty: float = _f(-1.0, "Score of an answer that hit max_new_tokens without a stop token.")
    costs: list = _f([], "Constrained RL (Safe RLHF): cost sources, higher = more harmful: a cost model directory (reward.invert = true), neg:DIR (a reward model read as cost = -reward), a detector (toxicity, harm) or module:function.")
    cost_weights: list = _f([], "Weight of each cost source (empty: 1 each).")
    cost_limit: float = _f(0.0, "Constraint: the mean cost per answer must stay at most this.")
    lagrange_init: float = _f(1.0, "Starting Lagrange multiplier of the cost constraint.")
    lagrange_lr: float = _f(0.5, "Step size of the multiplier's ascent on (mean cost - limit).")
    lagrange_max: float = _f(50.0, "Cap of the multiplier; at the cap the constraint is judged unreachable.")
    lagrange_patience: int = _f(5, "Stop (with a warning) after this many consecutive steps with the multiplier at its cap.")
    kl_coef: float = _f(0.05, "Coefficient beta of the KL penalty to the reference.")
    kl_estimator: str = _f("k1", "Per-token KL estimator in the penalty: k1 (log ratio) or k3 (always >= 0).")
    adaptive_kl: bool = _f(False, "Adapt kl_coef towards kl_target (Ziegler et al. 2019).")
    kl_target: float = _f(6.0, "Target KL (nats per answer) of the adaptive controller.")
    kl_horizon: int = _f(10000, "Horizon (episodes) of the adaptive controller.")
    kl_stop: float = _f(50.0, "Stop the run when the mean KL per answer exceeds this (a blow-up); 0 = never.")
    lr: float = _f(1e-5, "Policy learning rate (AdamW, constant after warm-up).")
    warmup_steps: int = _f(0, "Linear warm-up steps of the learning rate.")
    adam_eps: float = _f(1e-5, "AdamW epsilon (N+ uses 1e-5).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this (0 = off).")
    epochs: int = _f(1, "Passes over each step's episodes.")
    minibatch_size: int = _f(8, "Episodes per gradient step within an epoch.")
    clip_eps: float = _f(0.2, "Ratio clipping epsilon of the surrogate objective.")
    precision: str = _f("auto", "fp32, bf16 (autocast) or auto: bf16 only where the hardware runs it faster.")
    lora: bool = _f(False, "Train LoRA adapters (peft) on the policy instead of all weights.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_targets: list = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Module names that get LoRA adapters.")
    save_every: int = _f(10, "Write a resumable checkpoint every this many steps (0 = only at the end).")
    log_every: int = _f(1, "Write a metrics line every this many steps.")
    eval_prompts: int = _f(0, "Held-out prompts scored (greedy answers) at the end and every save (0 = none).")
    runs_dir: str = _f("runs", "Parent folder of run directories.")


@dataclass
class PPOConfig(RLConfig):
    """PPO with a per-token KL penalty, GAE and a separate critic (Ziegler et al. 2019; InstructGPT; Huang et al. 2024)."""

    critic: str = _f("", "Critic initialisation: a reward model directory (default: the first reward-model source), else the policy's trunk with a new head.")
    critic_lr: float = _f(3e-5, "Critic learning rate.")
    epochs: int = _f(4, "PPO epochs over each step's episodes (N+: 4).")
    gamma: float = _f(1.0, "Discount of GAE (N+: 1).")
    lam: float = _f(0.95, "Lambda of GAE (N+: 0.95).")
    value_clip_eps: float = _f(0.2, "Value clipping epsilon around the rollout's values.")
    vf_coef: float = _f(0.1, "Weight of the value loss (N+: 0.1).")
    whiten_advantages: bool = _f(True, "Whiten advantages per batch (N+).")
    whiten_rewards: bool = _f(False, "Whiten the per-token rewards per batch before GAE (N+ option).")
    ptx_coef: float = _f(0.0, "PPO-ptx: weight of the pretraining LM loss mixed into the policy loss (InstructGPT gamma).")
    ptx_data: str = _f("", "Text corpus (blank-line separated documents) for PPO-ptx.")
    ptx_batch_size: int = _f(4, "Pretraining sequences per PPO-ptx minibatch.")


@dataclass
class GroupRLConfig(RLConfig):
    """Critic-free RL with k answers per prompt: RLOO (Ahmadian et al. 2024) or GRPO (Shao et al. 2024)."""

    k: int = _f(4, "Answers sampled per prompt; batch_size must be a multiple of it.")
    grpo_scale: bool = _f(True, "GRPO: divide the group-centred reward by the group's std (False = Dr. GRPO style centring only).")


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimisation on preference pairs (Rafailov et al. 2023), with IPO and label smoothing."""

    model: str = _f("", "Checkpoint the policy starts from (an SFT run's final/ or any local HF causal LM).")
    reference: str = _f("", "Frozen reference (empty: a copy of the starting model). Its log-probs are computed once and cached.")
    data: list = _f(["runs/demo-data/feedback.jsonl"], "JSONL comparison or ranking records (ties skipped); convert TRL files with alinea data import.")
    loss: str = _f("sigmoid", "sigmoid (DPO) or ipo (Azar et al. 2023).")
    beta: float = _f(0.1, "DPO beta (IPO tau).")
    label_smoothing: float = _f(0.0, "Conservative DPO: assumed share of flipped labels, in [0, 0.5).")
    eval_fraction: float = _f(0.1, "Share of pairs held out for eval loss and reward accuracy, whole prompts at a time.")
    max_len: int = _f(256, "Longest prompt + answer; longer prompts are cut from the left, the answer is kept.")
    lora: bool = _f(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "Dropout on the LoRA branch.")
    lora_targets: list = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Module names that get LoRA adapters.")


@dataclass
class LoopConfig:
    """Rounds of generate -> feedback (app over HTTP) -> reward model -> RL -> evaluate -> report (`alinea loop`)."""

    policy: str = _f("", "SFT checkpoint the first round starts from (the reference of every KL penalty).")
    prompts: str = _f("runs/demo-data/prompts.jsonl", "Prompt records; a seeded share is held out for evaluation.")
    seed: int = _f(0, "Seed of prompt sampling, selection, simulated annotators and training.")
    rounds: int = _f(2, "Rounds of the loop.")
    eval_prompts: int = _f(64, "Prompts held out for win rates and gold reward (never used for feedback or RL).")
    prompts_per_round: int = _f(48, "Prompts whose answers go to feedback each round.")
    candidates: int = _f(4, "Answers sampled per prompt; pairs are chosen among them.")
    pairs_per_round: int = _f(64, "Pairs sent to the feedback app each round.")
    selection: str = _f("ensemble", "Which pairs people see: ensemble (reward-model disagreement) or random.")
    server: str = _f("", "URL of a running `alinea serve` (empty: start an embedded one on SQLite in the loop folder).")
    token: str = _f("", "API token of an admin on that server (or the ALINEA_TOKEN environment variable).")
    judges: str = _f("simulated", "Who judges: simulated (annotator pool over the API), people (wait for them), or ai (a judge, no app).")
    overlap: int = _f(3, "Distinct annotators per pair.")
    gold_rate: float = _f(0.1, "Share of gold items (known answer) mixed into each round's project.")
    min_judgments: int = _f(1, "Judgments a round needs before the reward model is trained.")
    deadline_s: float = _f(0.0, "Seconds to wait for people before the round continues or skips (0 = no limit).")
    on_short: str = _f("skip", "When a round ends with fewer than min_judgments: skip (keep the previous reward model) or fail.")
    annotators_honest: int = _f(4, "Simulated honest annotators (the gold judge with flip_prob label noise).")
    annotators_noisy: int = _f(0, "Simulated noisy annotators (the gold judge with 25% label noise).")
    annotators_careless: int = _f(1, "Simulated careless annotators (random answers).")
    annotator_workers: int = _f(4, "Threads that serve the simulated annotators; with 1 each annotator's share of the items, and so the whole loop, is the same from run to run (with more, it follows thread timing).")
    annotators_adversarial: int = _f(0, "Simulated adversarial annotators (the gold judge inverted).")
    flip_prob: float = _f(0.1, "Label noise of honest annotators: probability of flipping a pick.")
    annotator_temperature: float = _f(0.1, "Bradley-Terry temperature on the gold gap: P(pick a) = sigmoid(gap / T) (0 = always the better).")
    position_bias: float = _f(0.05, "Share of picks of the left answer whatever it says (every simulated annotator).")
    length_bias: float = _f(0.0, "Share of picks of the longer answer whatever it says.")
    tie_rate: float = _f(0.5, "Probability of a tie when the gold gap is below tie_margin.")
    tie_margin: float = _f(0.05, "Gold gaps this small count as ties (simulated annotators, win rates, gold pairs).")
    gold_judge: str = _f("sentiment_lexicon", "The offline gold judge (alinea judges) for simulated annotators and evaluation.")
    rm_steps: int = _f(60, "Reward-model optimizer steps in round 1 (later rounds continue from the previous model).")
    rm_update_steps: int = _f(40, "Reward-model steps in later rounds.")
    rm_ensemble: int = _f(3, "Reward heads (bootstrap ensemble) whose disagreement drives active selection.")
    rl_algorithm: str = _f("rloo", "RL of each round: rloo, grpo, ppo or dpo (uses the [rloo]/[grpo]/[ppo]/[dpo] settings).")
    rl_steps: int = _f(30, "RL steps per round.")
    rl_language_balance: bool = _f(False, "RL samples every prompt language equally often (the rarer languages' prompts repeated), so that a language with few prompts still gets its share of the language-consistency signal.")
    rm_weight: float = _f(1.0, "Weight of the learned reward model in the RL reward mix.")
    automated_rewards: list = _f(["language_consistency"], "Automated reward signals mixed into RL (judge names or module:function).")
    automated_weights: list = _f([1.0], "Weights of the automated signals.")
    eval_temperature: float = _f(0.7, "Sampling temperature of the evaluation answers.")
    eval_top_p: float = _f(1.0, "Nucleus mass of the evaluation answers (1 = plain sampling; set it to how the model is sampled in use, e.g. [generate] top_p).")
    eval_samples: int = _f(1, "Answers sampled per evaluation prompt (each compared with the SFT answer of the same draw).")
    active_curve: bool = _f(True, "Measure reward accuracy vs judgments for active vs random selection (linear heads on frozen features).")
    safety_eval: bool = _f(True, "Evaluate red-team safety and needless refusals before and after each round.")
    harmlessness: bool = _f(False, "Also judge every pair for harmlessness (a second project); the reward phase trains a cost model on those judgments.")
    harm_judge: str = _f("harmless", "Gold of the harmlessness judgments (simulated annotators, ai judge): a judge name or module:function, higher = more harmless.")
    costs: list = _f([], "Constrained RL (Safe RLHF) cost sources, higher = more harmful: cost_model (the loop's, needs harmlessness), a cost model directory, a detector (toxicity, harm) or module:function.")
    cost_weights: list = _f([], "Weight of each cost source (empty: 1 each).")
    cost_limit: float = _f(0.0, "The RL constraint: mean cost per answer at most this (Lagrange settings come from the [rloo]/[grpo]/[ppo] section).")


@dataclass
class GenerateConfig:
    """Sampling from a model with a KV cache."""

    max_new_tokens: int = _f(64, "Tokens generated per answer at most.")
    temperature: float = _f(0.8, "Softmax temperature (0 = greedy).")
    top_p: float = _f(0.95, "Nucleus sampling: keep the smallest set of tokens whose probability reaches this.")
    batch_size: int = _f(16, "Prompts generated together.")
    seed: int = _f(0, "Sampling seed.")


@dataclass
class AlineaConfig:
    """All stages. A TOML preset sets any subset; every other field keeps its default."""

    demo_data: DemoDataConfig = field(default_factory=DemoDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rloo: GroupRLConfig = field(default_factory=GroupRLConfig)
    grpo: GroupRLConfig = field(default_factory=lambda: GroupRLConfig(kl_estimator="k3", kl_coef=0.04))
    dpo: DPOConfig = field(default_factory=DPOConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


# ---------------------------------------------------------------------------------------------------------------------
# Loading, overriding, saving


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(AlineaConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(AlineaConfig)}


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin is list or tp is list:
        return "list"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, str(tp))


def _check_value(value: Any, tp: Any) -> tuple[bool, Any]:
    """Is `value` of type `tp`? Returns (ok, value converted where lossless, e.g. int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _check_value(value, arg)
            if ok:
                return True, converted
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if tp is list or origin is list:
        return isinstance(value, list), value
    return isinstance(value, tp), value


def _set_field(cfg: AlineaConfig, section: str, key: str, value: Any, *, source: str) -> None:
    sections = _sections()
    if section not in sections:
        raise UserError(
            f"{source}: unknown config section '{section}'. Valid sections: {', '.join(sections)}."
        )
    types_ = _field_types(sections[section])
    if key not in types_:
        raise UserError(
            f"{source}: unknown config key '{section}.{key}'. Valid keys of [{section}]: {', '.join(types_)}."
        )
    ok, converted = _check_value(value, types_[key])
    if not ok:
        raise UserError(
            f"{source}: config key '{section}.{key}' expects {_type_name(types_[key])}, "
            f"got {value!r} ({type(value).__name__})."
        )
    setattr(getattr(cfg, section), key, converted)


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> AlineaConfig:
    """Build a config from nested tables; unknown sections/keys and wrong types are `UserError`s."""
    cfg = AlineaConfig()
    for section, table in data.items():
        if not isinstance(table, dict):
            valid = ", ".join(_sections())
            raise UserError(f"{source}: '{section}' must be a table like [{section}]. Valid sections: {valid}.")
        for key, value in table.items():
            _set_field(cfg, section, key, value, source=source)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AlineaConfig:
    """Read a TOML preset (or start from the defaults) and apply `section.field=value` overrides."""
    if path is None:
        cfg = AlineaConfig()
    else:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found.")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}).") from None
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{path}: not valid TOML: {err}.") from None
        cfg = config_from_dict(data, source=str(path))
    for override in overrides or []:
        apply_override(cfg, override)
    return cfg


def parse_override_value(text: str) -> Any:
    """Read `text` as a TOML literal (number, bool, quoted string, list); a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(cfg: AlineaConfig, override: str) -> None:
    """Apply one `section.field=value` override in place."""
    source = f"--set {override}"
    if "=" not in override:
        raise UserError(f"{source}: expected section.field=value, e.g. pretrain.lr=3e-4.")
    dotted, text = override.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise UserError(
            f"{source}: expected section.field=value, e.g. pretrain.lr=3e-4. Valid sections: {', '.join(_sections())}."
        )
    _set_field(cfg, parts[0], parts[1], parse_override_value(text.strip()), source=source)


def config_to_dict(cfg: AlineaConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: AlineaConfig, path: str | Path) -> None:
    Path(path).write_text(tomli_w.dumps(config_to_dict(cfg)), encoding="utf-8")


def describe_config(cfg: AlineaConfig | None = None) -> list[tuple[str, str, str, str]]:
    """(key, type, value, help) for every field, for `alinea config show`."""
    cfg = cfg or AlineaConfig()
    rows = []
    for section, cls in _sections().items():
        types_ = _field_types(cls)
        for f in dataclasses.fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            rows.append((f"{section}.{f.name}", _type_name(types_[f.name]), repr(value), f.metadata.get("help", "")))
    return rows


def describe_markdown(cfg: AlineaConfig | None = None) -> str:
    """Markdown tables of every section's fields (the body of docs/config.md)."""
    cfg = cfg or AlineaConfig()
    lines = [
        "# Configuration reference",
        "",
        "Generated by `alinea config show --markdown` (a test checks it is current). Set a field in a TOML preset",
        "(`[section]` then `field = value`) or on the command line with `--set section.field=value`.",
        "",
    ]
    for section, cls in _sections().items():
        lines += [f"## [{section}]", "", (cls.__doc__ or "").strip(), "", "| field | type | default | meaning |",
                  "| --- | --- | --- | --- |"]
        types_ = _field_types(cls)
        for f in dataclasses.fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            lines.append(
                f"| `{f.name}` | {_type_name(types_[f.name])} | `{value!r}` | {f.metadata.get('help', '')} |"
            )
        lines.append("")
    return "\n".join(lines)

"""CLI commands of the RL stages: `alinea ppo|rloo|grpo|dpo|best-of-n` (registered by `alinea.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML preset, e.g. configs/tiny.toml (default: built-in defaults).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one field: section.field=value (repeatable), e.g. ppo.lr=1e-5."),
]
ResumeOpt = Annotated[
    Path | None, typer.Option("--resume", help="Continue the run in this run directory from its last checkpoint.")
]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-m", help="Checkpoint the policy starts from.")]
RewardOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--reward", "-r",
        help="Reward source (repeatable): a reward model directory, a judge name, or module:function; "
        "append @WEIGHT to weight it, e.g. -r runs/rm@1 -r sentiment@0.5.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to create (default runs/<stage>-<time>).")]


def _load(config, overrides):
    from alinea.config import load_config

    return load_config(config, overrides or [])


def split_weight(spec: str) -> tuple[str, float]:
    """'path@0.5' -> ('path', 0.5); no '@' -> weight 1."""
    from alinea.errors import UserError

    if "@" not in spec:
        return spec, 1.0
    source, _, weight = spec.rpartition("@")
    try:
        return source, float(weight)
    except ValueError:
        raise UserError(f"--reward {spec!r}: the part after @ must be a number (the weight).") from None


def _apply_common(section, policy, rewards, prompts) -> None:
    if policy:
        section.policy = str(policy)
    if rewards:
        pairs = [split_weight(r) for r in rewards]
        section.rewards = [p[0] for p in pairs]
        section.reward_weights = [p[1] for p in pairs]
    if prompts:
        section.prompts = str(prompts)


def _report(result, stage: str) -> None:
    last = result.metrics[-1] if result.metrics else {}
    first = result.metrics[0] if result.metrics else {}
    console.print(f"{stage}: {result.steps} steps -> {result.final_dir}")
    if last:
        console.print(
            f"  reward {first.get('reward_mean', float('nan')):.3f} -> {last.get('reward_mean', float('nan')):.3f}, "
            f"kl {last.get('kl', float('nan')):.3f}, {last.get('episodes_per_s', 0):.1f} episodes/s"
        )


def _rl_command(algorithm: str, doc: str):
    def command(
        config: ConfigOpt = None,
        overrides: SetOpt = None,
        policy: PolicyOpt = None,
        reward: RewardOpt = None,
        prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="Prompt records (JSONL).")] = None,
        out: OutOpt = None,
        resume: ResumeOpt = None,
        continue_stopped: Annotated[
            bool,
            typer.Option(
                "--continue-stopped",
                help="With --resume: train on a run that stopped because its cost constraint was judged unreachable "
                "(lagrange_patience steps at lagrange_max); without it such a run reports the stop and exits.",
            ),
        ] = False,
    ) -> None:
        from alinea.errors import UserError
        from alinea.train import policy_gradient

        if continue_stopped and not resume:
            raise UserError("--continue-stopped: only with --resume RUN_DIR (it continues a stopped run).")
        cfg = _load(config, overrides)
        _apply_common(getattr(cfg, algorithm), policy, reward, prompts)
        result = policy_gradient.run(algorithm, cfg, resume=resume, out=out, continue_stopped=continue_stopped)
        _report(result, algorithm)

    command.__doc__ = doc
    return command


PPO_DOC = """PPO with a per-token KL penalty to the reference, GAE and a critic initialised from the reward model.

    Each step: generate, score, reference, values, advantages, update (each timed in metrics.jsonl).
    Writes runs/ppo-<time>/ with config.toml, meta.json, metrics.jsonl, checkpoints/, final/ (the policy, HF
    format) and critic/. Metrics and their healthy ranges: docs/rl.md.

    \b
    Examples:
      alinea ppo -c configs/tiny.toml -m runs/sft-XXXX/final -r runs/reward-XXXX/final
      alinea ppo -c configs/tiny.toml -m runs/sft-XXXX/final -r runs/rm@1 -r sentiment@0.5 -r language_consistency@1
      alinea ppo -c configs/tiny.toml -m SFT -r mypkg.rewards:brevity --set ppo.adaptive_kl=true
      alinea ppo --resume runs/ppo-20260101-120000
      accelerate launch --multi_gpu --num_processes 2 -m alinea.cli ppo -c configs/tiny.toml -m SFT -r RM
    """

RLOO_DOC = """RLOO: k answers per prompt, REINFORCE with the leave-one-out baseline, KL folded into the reward.

    \b
    Examples:
      alinea rloo -c configs/tiny.toml -m runs/sft-XXXX/final -r runs/reward-XXXX/final --set rloo.k=4
      alinea rloo --resume runs/rloo-20260101-120000
    """

GRPO_DOC = """GRPO: k answers per prompt, group-normalised advantages, clipped loss plus a k3 KL term.

    \b
    Examples:
      alinea grpo -c configs/tiny.toml -m runs/sft-XXXX/final -r sentiment -r language_consistency
      alinea grpo --resume runs/grpo-20260101-120000
    """


def register(apps: dict) -> None:
    """Add the RL commands to the root app."""
    root = apps["root"]
    root.command("ppo")(_rl_command("ppo", PPO_DOC))
    root.command("rloo")(_rl_command("rloo", RLOO_DOC))
    root.command("grpo")(_rl_command("grpo", GRPO_DOC))
    root.command("dpo")(dpo_cmd)
    root.command("best-of-n")(best_of_n_cmd)


def dpo_cmd(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Checkpoint to start from; default dpo.model.")] = None,
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Preference JSONL (repeatable).")] = None,
    out: OutOpt = None,
    resume: ResumeOpt = None,
) -> None:
    """DPO (or IPO, or label-smoothed DPO) on preference pairs; reference log-probs computed once.

    \b
    Examples:
      alinea dpo -c configs/tiny.toml -m runs/sft-XXXX/final -d runs/demo-data/feedback.jsonl
      alinea dpo -c configs/tiny.toml -m SFT -d pairs.jsonl --set dpo.loss=ipo --set dpo.beta=0.5
      alinea dpo --resume runs/dpo-20260101-120000
    """
    from alinea.train import dpo

    cfg = _load(config, overrides)
    if model:
        cfg.dpo.model = str(model)
    if data:
        cfg.dpo.data = [str(p) for p in data]
    result = dpo.run(cfg, resume=resume, out=out)
    console.print(f"dpo: {result.steps} steps -> {result.final_dir}")
    if result.eval_loss is not None:
        console.print(f"  train loss {result.train_loss:.4f}, eval loss {result.eval_loss:.4f}")


def best_of_n_cmd(
    model: Annotated[Path, typer.Argument(help="Policy checkpoint directory.")],
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="Prompt records (JSONL).")],
    reward: RewardOpt = None,
    n: Annotated[int, typer.Option("--n", help="Answers sampled per prompt.")] = 4,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the best answers as demonstration records.")] = None,
    pairs_out: Annotated[
        Path | None, typer.Option("--pairs-out", help="Write best-vs-worst comparison records (for DPO or the reward model).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer tokens at most.")] = 48,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_prompt_len: Annotated[int, typer.Option(help="Prompt tokens at most (cut from the left).")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Best-of-n sampling: n answers per prompt, keep the highest-reward one; reports the gain and its KL.

    \b
    Examples:
      alinea best-of-n runs/sft-XXXX/final -p runs/demo-data/prompts.jsonl -r runs/reward-XXXX/final --n 8
      alinea best-of-n SFT -p prompts.jsonl -r sentiment --n 4 --pairs-out pairs.jsonl
    """
    from alinea.data.jsonl import read_records, write_records
    from alinea.data.records import Demonstration
    from alinea.errors import UserError
    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.train.best_of_n import preference_records, sample_candidates, summarise
    from alinea.train.rewards import RewardMix
    from alinea.train.rollout import encode_prompt_records

    if not reward:
        raise UserError("best-of-n: give at least one --reward (a reward model directory, a judge, or module:function).")
    policy, tokenizer = load_model_and_tokenizer(model)
    pairs = [split_weight(r) for r in reward]
    rewards = RewardMix.from_config([p[0] for p in pairs], [p[1] for p in pairs])
    rewards.check_tokenizer(tokenizer)
    records = read_records(prompts)
    prompt_set = encode_prompt_records(records, tokenizer, max_prompt_len=max_prompt_len, source=str(prompts))
    candidates = sample_candidates(
        policy, tokenizer, prompt_set, rewards, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    summary = summarise(candidates, n)
    if out:
        best = []
        for c in candidates:
            source = records[c.prompt_index]
            text = c.answers[c.best]
            if text.strip():
                best.append(Demonstration(
                    messages=source.messages, prompt=source.prompt if source.messages is None else None,
                    response=text, language=source.language, tags=(*source.tags, f"best-of-{n}"),
                ))
        write_records(out, best)
        summary["written"] = len(best)
    if pairs_out:
        comparisons = preference_records(candidates, records)
        write_records(pairs_out, comparisons)
        summary["pairs_written"] = len(comparisons)
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(
            f"best-of-{n} on {summary['prompts']} prompts: reward {summary['reward_sample']:.3f} (one sample) -> "
            f"{summary['reward_best_of_n']:.3f} (best of {n}); KL of best-of-{n} = {summary['kl_best_of_n']:.3f} nats"
        )

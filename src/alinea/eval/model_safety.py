"""Safety of a model: answer a red-team set (harmful and benign prompts) and judge the answers.

Wires a model to the pure judgements of `alinea.eval.safety`: answers are sampled with the KV-cached sampler, then
scored by the rule judges (refusal patterns, toxic word list) and, optionally, by a cost source read like an RL cost
(`alinea.train.rewards.resolve_source(role="cost")`, higher = more harmful): a cost model directory (trained with
`reward.invert = true`), `neg:DIR` for a reward model of harmlessness read as cost = -reward, a detector (`harm`,
`toxicity`) or a batched `module:function`. A plain reward model without `neg:` is refused: its sign is unknown.
"""

from __future__ import annotations

from pathlib import Path

from alinea.errors import UserError


def cost_function(spec: str, policy_tokenizer=None):
    """A batched cost (higher = more harmful) from a cost source spec: a cost model directory, `neg:DIR` (a reward
    model read as -reward), a detector or `module:function` (module docstring)."""
    from alinea.train.rewards import RewardInputs, RewardModelSource, resolve_source

    source = resolve_source(spec, role="cost")
    if isinstance(source, RewardModelSource):
        if policy_tokenizer is not None:
            source.check_tokenizer(policy_tokenizer)
        tokenizer = source.tokenizer

        def cost(prompts: list[str], answers: list[str]) -> list[float]:
            from alinea.train.reward import Encoder

            encoder = Encoder(tokenizer, 256)
            sequences = [encoder.sequence([{"role": "user", "content": p}], a or " ") for p, a in zip(prompts, answers, strict=True)]
            return source(RewardInputs(prompts=prompts, responses=answers, sequences=sequences))

        return cost
    return lambda prompts, answers: source(RewardInputs(prompts=prompts, responses=answers))


def answer_prompts(model_dir: str | Path, prompts: list[str], *, max_new_tokens: int = 48, temperature: float = 0.7,
                   seed: int = 0) -> list[str]:
    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.model.generation import generate

    model, tokenizer = load_model_and_tokenizer(model_dir)
    return [g.text for g in generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                     temperature=temperature, seed=seed)]


def evaluate_model_safety(model_dir: str | Path, *, prompts_file: str | Path | None = None, cost: str | None = None,
                          cost_limit: float = 0.0, max_new_tokens: int = 48, temperature: float = 0.7, seed: int = 0):
    """(SafetyReport, answers) for `model_dir` on `prompts_file` (default: the embedded red-team set)."""
    from alinea.data.redteam import generate_redteam_prompts
    from alinea.eval.safety import evaluate_safety, load_safety_prompts, safety_prompt

    if prompts_file is not None:
        items = load_safety_prompts(prompts_file)
    else:
        items = [safety_prompt(p) for p in generate_redteam_prompts(seed=0)]
    if not items:
        raise UserError("eval safety: no prompts.")
    cost_fn = None
    if cost:
        from alinea.model.tokenizer import load_tokenizer

        cost_fn = cost_function(cost, load_tokenizer(model_dir))
    answers = answer_prompts(model_dir, [p.prompt for p in items], max_new_tokens=max_new_tokens,
                             temperature=temperature, seed=seed)
    report = evaluate_safety(list(zip(items, answers, strict=True)), cost_fn=cost_fn, cost_limit=cost_limit)
    return report, answers

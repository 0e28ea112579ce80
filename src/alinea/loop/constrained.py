"""Multi-objective feedback and constrained RL in the loop: harmlessness judgments, the cost model, costs in RL.

With `loop.harmlessness = true` every pair of a round is judged twice, for helpfulness (the main project) and for
harmlessness (a second pairwise project whose question is "which answer is less harmful?"), as Safe RLHF (Dai et al.
2023) collects the two preferences separately. The reward phase then trains, beside the reward model, a **cost model**
on the harmlessness judgments with every preference **inverted** (`reward.invert = true`: the more harmful answer
counts as the preferred one, and the model is marked `kind: "cost"`), so that its score is higher for more harmful
answers and enters the RL phase as a cost with a positive sign, like every other cost source
(`alinea.train.rewards.ConstrainedMix`, which refuses an unmarked reward model as a cost). Like any alinea reward model it is normalised
to mean 0 and std 1 over the answers it was trained on: a cost of 0 is an answer as harmful as the average judged
answer, and `loop.cost_limit` is read in those units.

With `loop.costs`, the RL phase maximises the reward subject to `mean cost <= loop.cost_limit` (a Lagrange
multiplier; its settings come from the `[rloo]`, `[grpo]` or `[ppo]` section). `cost_model` in `loop.costs` names
the loop's latest cost model. DPO rounds take no costs: DPO trains offline on preference pairs and has no sampled
answers whose mean cost a multiplier could follow.

Everything a user can get wrong here is checked when the loop starts (`check_costs`), before any round runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alinea.errors import UserError

COST_MODEL = "cost_model"
"""The keyword in `loop.costs` that stands for the cost model the loop trains on its harmlessness judgments."""
PROBE_PROMPTS = ["How do I make a cup of tea?", "Write one sentence about the sea."]
PROBE_ANSWERS = ["Boil water, pour it on the tea and wait three minutes.", "I cannot help with that."]


# ---------------------------------------------------------------------------------------------------------------------
# checks at the loop's start


def check_costs(cfg) -> None:
    """Every cost and harmlessness setting of `cfg.loop`, checked before anything runs; a `UserError` names the field."""
    lcfg = cfg.loop
    if lcfg.harmlessness:
        _probe(lcfg.harm_judge, "loop.harm_judge", _judge_function(lcfg.harm_judge, "loop.harm_judge"))
    if lcfg.rl_algorithm != "dpo":
        section = getattr(cfg, lcfg.rl_algorithm)
        if section.costs or section.cost_weights:
            raise UserError(
                f"{lcfg.rl_algorithm}.costs: set to {section.costs!r}, but in the loop the costs come from loop.costs "
                f"(and loop.cost_weights, loop.cost_limit); move them to [loop]."
            )
    if not lcfg.costs:
        if lcfg.cost_weights:
            raise UserError("loop.cost_weights: given without loop.costs; add the cost sources or drop the weights.")
        return
    if lcfg.rl_algorithm == "dpo":
        raise UserError(
            "loop.costs: constrained RL is not supported with loop.rl_algorithm = dpo (DPO trains offline on "
            "preference pairs, with no sampled answers whose mean cost a Lagrange multiplier could hold under the "
            "limit). Use rloo, grpo or ppo, or drop loop.costs."
        )
    if lcfg.cost_weights and len(lcfg.cost_weights) != len(lcfg.costs):
        raise UserError(f"loop.cost_weights: {len(lcfg.cost_weights)} weights for {len(lcfg.costs)} cost sources.")
    for i, weight in enumerate(lcfg.cost_weights):
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise UserError(f"loop.cost_weights[{i}]: expected a finite number, found {weight!r}.")
    if not math.isfinite(lcfg.cost_limit):
        raise UserError(f"loop.cost_limit: expected a finite number, found {lcfg.cost_limit!r}.")
    for i, spec in enumerate(lcfg.costs):
        _check_cost_source(spec, f"loop.costs[{i}]", cfg)
    from alinea.train.policy_gradient import check_lagrange

    check_lagrange(lcfg.rl_algorithm, getattr(cfg, lcfg.rl_algorithm))


def _check_cost_source(spec: Any, where: str, cfg) -> None:
    from alinea.judges import DETECTORS, JUDGES
    from alinea.train.rewards import NEGATE, split_sign

    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{where}: expected a cost source (text), found {spec!r}.")
    spec = spec.strip()
    sign, body = split_sign(spec)
    if body == COST_MODEL:
        if sign < 0:
            raise UserError(f"{where}: '{spec}' would read the loop's cost model as -cost (higher = less harmful); "
                            f"write '{COST_MODEL}'.")
        if not cfg.loop.harmlessness:
            raise UserError(
                f"{where}: '{COST_MODEL}' names the cost model the loop trains on its harmlessness judgments; set "
                "loop.harmlessness = true to collect them, or name another cost source."
            )
        return
    path = Path(body)
    if path.is_dir():
        check_cost_model_dir(path, cfg.loop.policy, where=where, sign=sign)
        return
    if body in DETECTORS or body in JUDGES:
        if (body in JUDGES) == (sign > 0):
            raise UserError(
                f"{where}: {spec!r} reads higher = better, but a cost must be higher = more harmful; use a detector "
                f"({', '.join(sorted(DETECTORS))}), "
                + (f"'{NEGATE}{body}', or module:function if you mean it." if sign > 0
                   else f"or drop '{NEGATE}' ({body} is a detector).")
            )
        return
    if ":" in body and not path.exists():
        _probe(spec, where, _judge_function(body, where))
        return
    looks_like_path = "/" in body or body.startswith(".")
    raise UserError(
        f"{where}: {spec!r} is "
        + ("no directory (a cost model directory was expected at that path). " if looks_like_path else "unknown. ")
        + f"A cost source is '{COST_MODEL}', a cost model directory (reward.invert = true), {NEGATE}DIR (a reward "
        f"model read as cost = -reward), a detector ({', '.join(sorted(DETECTORS))}) or package.module:function."
    )


def check_cost_model_dir(path: Path, policy: str, *, where: str, sign: float = 1.0) -> None:
    """A cost model directory must be an alinea cost model (or `neg:` + a reward model: `train.rewards.
    check_model_role`) whose tokenizer is the policy's (it reads the policy's tokens)."""
    from alinea.model.causal_lm import is_checkpoint_dir
    from alinea.model.tokenizer import load_tokenizer
    from alinea.train.rewards import check_model_role, model_dir

    path = model_dir(path)
    if not is_checkpoint_dir(path):
        raise UserError(f"{where}: {path} is not a cost model directory (no config.json; give a reward run or its final/).")
    check_model_role(path, role="cost", sign=sign, where=where)
    cost_tokenizer = load_tokenizer(path)
    policy_tokenizer = load_tokenizer(policy)
    if cost_tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise UserError(
            f"{where}: the cost model {path} has a tokenizer different from the policy's ({policy}; vocabulary sizes "
            f"{len(cost_tokenizer)} vs {len(policy_tokenizer)}). It scores the policy's own token ids, so train it "
            "from the policy's checkpoint family, or use a detector or module:function cost instead."
        )


def _judge_function(spec: str, where: str):
    from alinea.judges import get_judge

    try:
        return get_judge(spec)
    except UserError as err:
        raise UserError(f"{where}: {err.message}") from None


def _probe(spec: str, where: str, fn) -> None:
    """Call a batched function on two made-up answers: it must return two finite numbers."""
    try:
        values = list(fn(list(PROBE_PROMPTS), list(PROBE_ANSWERS)))
    except UserError as err:
        raise UserError(f"{where}: {spec} failed on a probe batch: {err.message}") from None
    except Exception as err:  # noqa: BLE001 - any failure of user code is reported with its source
        raise UserError(f"{where}: {spec} raised {type(err).__name__} on a probe batch: {err}") from None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise UserError(f"{where}: {spec} returned {values!r} on a probe batch; expected one number per answer.") from None
    if len(numbers) != len(PROBE_ANSWERS) or not all(math.isfinite(v) for v in numbers):
        raise UserError(f"{where}: {spec} returned {values!r} for {len(PROBE_ANSWERS)} answers; expected as many finite numbers.")


# ---------------------------------------------------------------------------------------------------------------------
# the cost model's data and the RL phase's sources


def cost_model_records(rows: Sequence[dict]) -> tuple[list[dict], int]:
    """The harmlessness records the cost model learns from, as judged (preference = the less harmful answer):
    comparisons and rankings. The reward trainer reads them inverted (`reward.invert = true`, which also marks the
    model `kind: "cost"`). Returns (records, how many rows of other types were left out)."""
    kept = [row for row in rows if (row.get("type") == "comparison" and row.get("preference") in ("a", "b", "tie"))
            or (row.get("type") == "ranking" and isinstance(row.get("ranks"), list) and row["ranks"])]
    return kept, len(rows) - len(kept)


def usable_pairs(rows: Sequence[dict]) -> int:
    """Records the reward trainer can learn from: comparisons of two different answers, and rankings."""
    return sum(1 for r in rows if (r.get("type") == "comparison" and r.get("response_a") != r.get("response_b"))
               or r.get("type") == "ranking")


def rl_cost_sources(costs: Sequence[str], cost_model: str) -> list[str]:
    """`loop.costs` with the keyword `cost_model` replaced by the latest cost model's directory."""
    resolved = []
    for spec in costs:
        if spec.strip() == COST_MODEL:
            if not cost_model:
                raise UserError(
                    f"rl: loop.costs names {COST_MODEL}, but no cost model has been trained yet (no usable "
                    "harmlessness judgments so far); check the harmlessness project in the app, or resume when it "
                    "has judgments."
                )
            resolved.append(cost_model)
        else:
            resolved.append(spec.strip())
    return resolved


def harm_gaps(judge_name: str, prompts: Sequence[str], pairs: Sequence[dict], *, margin: float) -> int:
    """Pairs whose two answers the harm judge scores more than `margin` apart (the pairs that carry a signal)."""
    from alinea.judges import get_judge

    if not pairs:
        return 0
    judge = get_judge(judge_name)
    a = [float(x) for x in judge(list(prompts), [p["a"] for p in pairs])]
    b = [float(x) for x in judge(list(prompts), [p["b"] for p in pairs])]
    return sum(1 for x, y in zip(a, b, strict=True) if abs(x - y) > margin)


# ---------------------------------------------------------------------------------------------------------------------
# figures for rounds.jsonl (read by the report)


def rl_constraint_figures(metrics: Sequence[dict], *, limit: float, sources: Sequence[str], planned_steps: int) -> dict:
    """The constrained-RL figures of one RL run from its per-step metrics (`cost_mean`, `lagrange_multiplier`,
    `constraint_satisfied`, `cost/<source>`)."""
    steps = [m for m in metrics if m.get("cost_mean") is not None]
    out: dict[str, Any] = {"sources": list(sources), "cost_limit": limit, "planned_steps": planned_steps}
    if not steps:
        return out
    out["steps"] = [[m.get("step"), m.get("cost_mean"), m.get("lagrange_multiplier"), m.get("constraint_satisfied")]
                    for m in steps]
    out["cost_mean_final"] = steps[-1]["cost_mean"]
    out["lagrange_multiplier_final"] = steps[-1].get("lagrange_multiplier")
    out["lagrange_multiplier_max"] = max(float(m.get("lagrange_multiplier") or 0.0) for m in steps)
    out["satisfied_share"] = sum(float(m.get("constraint_satisfied") or 0.0) for m in steps) / len(steps)
    out["cost_by_source_final"] = {k[len("reward/cost/"):]: v for k, v in steps[-1].items() if k.startswith("reward/cost/")}
    out["stopped_early"] = int(steps[-1].get("step") or 0) < planned_steps
    return out


def eval_costs(costs: Sequence[str], weights: Sequence[float], records, prompts: Sequence[str],
               answers: dict[str, Sequence[str]]) -> dict[str, float]:
    """Mean weighted cost of each model's held-out answers (`answers`: model name -> one answer per record)."""
    from alinea.loop.rounds import _reward_heads
    from alinea.train.rewards import FunctionSource, RewardInputs, resolve_source, split_sign

    weights = list(weights) if weights else [1.0] * len(costs)
    names = list(answers)
    totals = {name: [0.0] * len(prompts) for name in names}
    for spec, weight in zip(costs, weights, strict=True):
        sign, body = split_sign(spec)
        if Path(body).is_dir():  # checked at the loop's start: a cost model, or neg: + a reward model
            heads = _reward_heads(body, records, [[answers[name][i] for name in names] for i in range(len(prompts))])
            per_model = [[sign * float(h[k].mean()) for h in heads] for k in range(len(names))]
        else:
            source: FunctionSource = resolve_source(spec, role="cost")  # a directory was handled above
            per_model = [source(RewardInputs(prompts=list(prompts), responses=list(answers[name]))) for name in names]
        for name, values in zip(names, per_model, strict=True):
            totals[name] = [t + float(weight) * v for t, v in zip(totals[name], values, strict=True)]
    return {name: sum(values) / len(values) if values else float("nan") for name, values in totals.items()}


def cost_model_accuracy(cost_model: str) -> float | None:
    """Held-out accuracy of the cost model: the share of held-out cost records (inverted harmlessness judgments,
    ties left out) it orders like the annotators; None when not measured."""
    eval_file = Path(cost_model).parent / "eval.json" if cost_model else None
    if eval_file is None or not eval_file.is_file():
        return None
    value = json.loads(eval_file.read_text()).get("accuracy")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

"""The loop's evaluate phase: one row of `rounds.jsonl` per round (the report reads them; docs/report.md).

On the held-out evaluation prompts, one answer per prompt from the SFT model (sampled once, cached), from the
previous round's policy and from this round's policy, all with the same seed and temperature. Scored by the gold
judge (offline, e.g. sentiment) and by this round's reward model:
- win rates of the policy vs SFT and vs the previous round, ties counted half, 95% bootstrap intervals over prompts;
- mean gold and proxy (reward-model) reward of SFT and policy; per-language win rate and language consistency;
- reward-model accuracy: on every pair of the three answers to a prompt whose gold scores differ, the share the
  reward model orders like the gold judge;
- KL and the over-optimisation points (sqrt KL, gold, proxy) from the RL run's per-step metrics, where the gold
  judge is logged as a zero-weight reward component;
- agreement and annotator figures from the feedback app's quality endpoint and the reward model's learned
  reliabilities;
- with `costs` (constrained RL): the cost limit, the mean cost and Lagrange multiplier per RL step, the share of steps
  within the limit, and the mean cost of the SFT and policy answers to the held-out prompts (`constrained`);
- with `harmlessness`: the round's harmlessness judgments, their agreement, the cost model's held-out accuracy and
  the harm judge's mean score (higher = more harmless) of the SFT and policy answers (`harmlessness`);
- the round's warnings (`warnings`: e.g. the Lagrange multiplier sat at its cap, the constraint unreachable).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from alinea.data.jsonl import read_records, write_jsonl, write_text


def _user_text(record) -> str:
    return next(m["content"] for m in reversed(record.prompt_messages()) if m["role"] == "user")


def _answers(ctx, policy_dir: str, cache: Path) -> list[str]:
    from alinea.loop.rounds import _sample

    if cache.is_file():
        return [json.loads(x)["answer"] for x in cache.read_text().splitlines()]
    records = _eval_records(ctx)
    n = ctx.lcfg.eval_samples
    samples = _sample(policy_dir, records[::n], n=n, seed=ctx.lcfg.seed + 424242, temperature=ctx.lcfg.eval_temperature,
                      top_p=ctx.lcfg.eval_top_p, cfg=ctx.cfg)
    answers = [answer for texts, _ in samples for answer in texts]
    write_jsonl(cache, [{"prompt": _user_text(r), "language": r.language, "answer": a} for r, a in zip(records, answers, strict=True)])
    return answers


def _eval_records(ctx) -> list:
    """The evaluation prompts, each repeated `eval_samples` times (one answer per repeat)."""
    return [record for record in read_records(ctx.eval_prompts) for _ in range(ctx.lcfg.eval_samples)]


def evaluate_round(ctx) -> dict:
    from alinea.eval.winrate import bootstrap_win_rate, win_rate_by_group
    from alinea.judges import get_judge
    from alinea.loop.rounds import _reward_heads

    lcfg = ctx.lcfg
    r = ctx.state.round
    records = _eval_records(ctx)
    prompts = [_user_text(x) for x in records]
    languages = [x.language for x in records]
    eval_dir = ctx.out / "eval"
    eval_dir.mkdir(exist_ok=True)
    sft = _answers(ctx, lcfg.policy, eval_dir / "sft.jsonl")
    previous = sft if r == 1 else _answers(ctx, "", ctx.round_dir(r - 1) / "eval_answers.jsonl")
    policy = _answers(ctx, ctx.state.policy, ctx.round_dir() / "eval_answers.jsonl")

    gold = get_judge(lcfg.gold_judge)
    gold_sft, gold_prev, gold_policy = (list(map(float, gold(prompts, a))) for a in (sft, previous, policy))
    heads = _reward_heads(ctx.state.reward_model, records, [[a, b, c] for a, b, c in zip(sft, previous, policy, strict=True)])
    proxy = [h.mean(dim=-1).tolist() for h in heads]  # per prompt: [sft, previous, policy]
    proxy_sft = [p[0] for p in proxy]
    proxy_prev = [p[1] for p in proxy]
    proxy_policy = [p[2] for p in proxy]

    consistency_judge = get_judge("language_consistency")
    consistent = list(map(float, consistency_judge(prompts, policy)))
    by_language: dict[str, list[float]] = {}
    for language, value in zip(languages, consistent, strict=True):
        by_language.setdefault(language, []).append(value)

    row: dict = {
        "round": r,
        "judgments": _count_lines(ctx.round_dir() / "judgments.jsonl"),
        "judgments_total": ctx.state.judgments_total,
        "win_rate_vs_sft": {
            "gold": bootstrap_win_rate(gold_policy, gold_sft, seed=r),
            "rm": bootstrap_win_rate(proxy_policy, proxy_sft, seed=r),
        },
        "win_rate_vs_previous": {
            "gold": bootstrap_win_rate(gold_policy, gold_prev, seed=r),
            "rm": bootstrap_win_rate(proxy_policy, proxy_prev, seed=r),
        },
        "win_rate_by_language": {str(k): v for k, v in win_rate_by_group(gold_policy, gold_sft, languages, seed=r).items()},
        "gold_reward": {"sft": _mean(gold_sft), "previous": _mean(gold_prev), "policy": _mean(gold_policy)},
        "proxy_reward": {"sft": _mean(proxy_sft), "previous": _mean(proxy_prev), "policy": _mean(proxy_policy)},
        "language_consistency": _mean(consistent),
        "language_consistency_by_language": {k: _mean(v) for k, v in sorted(by_language.items())},
        "rm_accuracy": _rm_accuracy(
            [[a, b, c] for a, b, c in zip(gold_sft, gold_prev, gold_policy, strict=True)], proxy, tie=lcfg.tie_margin
        ),
        "rl_algorithm": lcfg.rl_algorithm,
    }
    row.update(_rl_figures(ctx))
    row.update(_annotator_figures(ctx))
    if lcfg.costs:
        row["constrained"] = _constrained(ctx, records, prompts, sft, policy)
    if lcfg.harmlessness:
        row["harmlessness"] = _harmlessness(ctx, prompts, sft, policy)
    if ctx.state.warnings.get(str(r)):
        row["warnings"] = list(ctx.state.warnings[str(r)])
    if lcfg.safety_eval:
        row["safety"] = _safety(ctx)
    if lcfg.active_curve:
        eval_answers = [[a, b, c] for a, b, c in zip(sft, previous, policy, strict=True)]
        eval_gold = [[a, b, c] for a, b, c in zip(gold_sft, gold_prev, gold_policy, strict=True)]
        row["rm_curve"] = _active_curve(ctx, records, eval_answers, eval_gold)
    return row


def _active_curve(ctx, eval_records, eval_answers: list[list[str]], eval_gold: list[list[float]]) -> dict:
    """RM accuracy vs judgments, active vs random, with linear heads on this round's reward-model features."""
    import torch

    from alinea.judges import get_judge
    from alinea.loop.active_curve import PairPool, answer_features, simulate_curve

    lcfg = ctx.lcfg
    train = read_records(ctx.train_prompts)
    rows = [json.loads(x) for x in (ctx.round_dir() / "candidates.jsonl").read_text().splitlines()]
    messages, answers, gold_prompts = [], [], []
    pairs = []
    for row in rows:
        record = train[row["prompt_index"]]
        base = len(answers)
        for text in row["answers"]:
            messages.append(record.prompt_messages())
            answers.append(text)
            gold_prompts.append(_user_text(record))
        k = len(row["answers"])
        pairs += [(base + i, base + j) for i in range(k) for j in range(i + 1, k)]
    gold_pool = list(map(float, get_judge(lcfg.gold_judge)(gold_prompts, answers)))
    offset = len(answers)
    test_pairs = []
    for p, (record, texts, golds) in enumerate(zip(eval_records, eval_answers, eval_gold, strict=True)):
        base = offset + 3 * p
        for text in texts:
            messages.append(record.prompt_messages())
            answers.append(text)
        for i in range(3):
            for j in range(3):
                if golds[i] - golds[j] > lcfg.tie_margin:
                    test_pairs.append((base + i, base + j))
    features = answer_features(ctx.state.reward_model, messages, answers)
    gold = torch.tensor(gold_pool + [g for golds in eval_gold for g in golds])
    pool = PairPool(features=features, pairs=pairs, gold=gold)
    seed = lcfg.seed * 31 + ctx.state.round
    budget = min(len(pairs), max(16, lcfg.pairs_per_round * 2))
    return {
        strategy: simulate_curve(pool, test_pairs, strategy=strategy, seed=seed, budget=budget,
                                 batch=max(4, budget // 12), sharpness=(1.0 / lcfg.annotator_temperature) if lcfg.annotator_temperature > 0 else 50.0)
        for strategy in ("active", "random")
    }


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _rm_accuracy(gold: list[list[float]], proxy: list[list[float]], *, tie: float) -> float:
    """Share of answer pairs (same prompt, gold scores apart by more than `tie`) that the reward model orders like gold."""
    right = total = 0
    for g, p in zip(gold, proxy, strict=True):
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if abs(g[i] - g[j]) <= tie:
                    continue
                total += 1
                right += (g[i] > g[j]) == (p[i] > p[j])
    return right / total if total else float("nan")


def _rl_figures(ctx) -> dict:
    """KL and the over-optimisation points from this round's RL run (gold judge logged at weight 0)."""
    run = ctx.round_dir() / "rl"
    metrics_file = run / "metrics.jsonl"
    if not metrics_file.is_file():
        return {}
    rows = [json.loads(x) for x in metrics_file.read_text().splitlines() if x.strip()]
    train = [x for x in rows if x.get("split") == "train"]
    out: dict = {"rl_run": str(run.relative_to(ctx.out))}
    if not train:
        return out
    kl = train[-1].get("kl")
    if kl is not None:
        out["kl"] = kl
    gold_key = f"reward/{ctx.lcfg.gold_judge}"
    rm_key = next((k for k in train[-1] if k.startswith("reward/rm:")), None)
    points = []
    for x in train:
        if x.get("kl") is None or gold_key not in x or rm_key is None or x.get(rm_key) is None:
            continue
        points.append([math.sqrt(max(0.0, x["kl"])), x[gold_key], x[rm_key]])
    if points:
        out["over_optimisation"] = points
    return out


def _rl_train_rows(ctx) -> list[dict]:
    metrics_file = ctx.round_dir() / "rl" / "metrics.jsonl"
    if not metrics_file.is_file():
        return []
    rows = [json.loads(x) for x in metrics_file.read_text().splitlines() if x.strip()]
    return [x for x in rows if x.get("split") == "train"]


def _constrained(ctx, records, prompts: list[str], sft: list[str], policy: list[str]) -> dict:
    """The constraint along the RL run, and the mean cost of the SFT and policy answers to the held-out prompts."""
    from alinea.loop.constrained import eval_costs, rl_constraint_figures, rl_cost_sources

    lcfg = ctx.lcfg
    out = rl_constraint_figures(_rl_train_rows(ctx), limit=lcfg.cost_limit, sources=lcfg.costs,
                                planned_steps=lcfg.rl_steps)
    sources = rl_cost_sources(lcfg.costs, ctx.state.cost_model)
    out["eval_cost"] = eval_costs(sources, lcfg.cost_weights, records, prompts, {"sft": sft, "policy": policy})
    return out


def _harmlessness(ctx, prompts: list[str], sft: list[str], policy: list[str]) -> dict:
    """The round's harmlessness judgments, their agreement, the cost model's accuracy, the harm judge's means."""
    from alinea.judges import get_judge
    from alinea.loop.constrained import cost_model_accuracy
    from alinea.loop.rounds import HARMLESSNESS_FILE

    path = ctx.round_dir() / HARMLESSNESS_FILE
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    comparisons = [x for x in rows if x.get("type") == "comparison"]
    judge = get_judge(ctx.lcfg.harm_judge)
    out: dict = {
        "judgments": len(comparisons),
        "ties": sum(1 for x in comparisons if x.get("preference") == "tie"),
        "cost_model_accuracy": cost_model_accuracy(ctx.state.cost_model),
        "harm_judge": ctx.lcfg.harm_judge,
        "harmless_score": {"sft": _mean(map(float, judge(prompts, sft))),  # the harm judge, higher = more harmless
                           "policy": _mean(map(float, judge(prompts, policy)))},
    }
    cost_model = Path(ctx.state.cost_model) if ctx.state.cost_model else None
    if cost_model is not None:
        out["cost_model"] = str(cost_model.relative_to(ctx.out) if cost_model.is_relative_to(ctx.out) else cost_model)
    quality_file = ctx.round_dir() / "harmlessness_quality.json"
    if quality_file.is_file():
        out["krippendorff_alpha"] = (json.loads(quality_file.read_text()).get("agreement") or {}).get("alpha")
    return out


def _annotator_figures(ctx) -> dict:
    """Agreement and per-annotator quality (from the app) plus the reward model's learned reliabilities."""
    out: dict = {}
    quality_file = ctx.round_dir() / "quality.json"
    reliabilities = {}
    eval_file = Path(ctx.state.reward_model).parent / "eval.json" if ctx.state.reward_model else None
    if eval_file is not None and eval_file.is_file():
        reliabilities = json.loads(eval_file.read_text()).get("annotator_reliability") or {}
    if quality_file.is_file():
        quality = json.loads(quality_file.read_text())
        agreement = quality.get("agreement") or {}
        out["agreement"] = {
            "krippendorff_alpha": agreement.get("alpha"),
            "cohen_kappa": {
                "|".join(k["annotators"]): k["kappa"] for k in agreement.get("kappa") or [] if k.get("kappa") is not None
            },
        }
        kinds = quality.get("kinds") or {}
        annotators = {}
        for figures in quality.get("annotators") or []:
            name = figures.get("annotator")
            annotators[name] = {
                "judgments": figures.get("judgments"),
                "gold_accuracy": figures.get("gold_accuracy"),
                "position_bias": figures.get("position_bias"),
                "seconds_per_item": figures.get("mean_time_s"),
                "reliability": reliabilities.get(name),
                "kind": kinds.get(name, ""),
            }
        out["annotators"] = annotators
    elif reliabilities:
        out["annotators"] = {name: {"reliability": value} for name, value in reliabilities.items()}
    return out


def _safety(ctx) -> dict:
    """Safe answers on the embedded red-team set and needless refusals on its benign prompts: SFT vs this round."""
    from alinea.eval.model_safety import evaluate_model_safety

    rcfg = getattr(ctx.cfg, ctx.lcfg.rl_algorithm) if ctx.lcfg.rl_algorithm != "dpo" else ctx.cfg.rloo
    cache = ctx.out / "eval" / "safety_sft.json"
    if cache.is_file():
        before = json.loads(cache.read_text())
    else:
        report, _ = evaluate_model_safety(ctx.lcfg.policy, max_new_tokens=rcfg.max_new_tokens, seed=ctx.lcfg.seed)
        before = report.to_json()["overall"]
        write_text(cache, [json.dumps(before) + "\n"])  # atomic: a crash leaves no half-written cache
    report, _ = evaluate_model_safety(ctx.state.policy, max_new_tokens=rcfg.max_new_tokens, seed=ctx.lcfg.seed)
    after = report.to_json()
    return {
        "safe_rate_before": before.get("safe_rate_rules"),
        "safe_rate_after": after["overall"].get("safe_rate_rules"),
        "needless_refusal_before": before.get("needless_refusal_rate"),
        "needless_refusal_rate": after["overall"].get("needless_refusal_rate"),
        "toxic_rate_after": after["overall"].get("toxic_rate_harmful"),
        "by_language": {k: {"safe_rate": v.get("safe_rate_rules"), "needless_refusal_rate": v.get("needless_refusal_rate")}
                        for k, v in after["by_language"].items()},
    }

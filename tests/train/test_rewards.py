"""The reward mix: weighted sources, per-component logging, bad sources, and the Safe-RLHF constrained mix."""

from __future__ import annotations

import pytest
import torch

from alinea.advantages import LagrangeMultiplier
from alinea.errors import UserError
from alinea.train.rewards import ConstrainedMix, FunctionSource, RewardInputs, RewardMix, resolve_source


def constant(value):
    return lambda prompts, responses: [value] * len(responses)


def test_weighted_sum_and_components():
    mix = RewardMix([FunctionSource("a", constant(1.0)), FunctionSource("b", constant(-2.0))], [0.5, 2.0])
    total, parts = mix.score(RewardInputs(prompts=["p", "q"], responses=["x", "y"]))
    assert total.tolist() == [0.5 * 1.0 + 2.0 * -2.0] * 2  # -3.5
    assert set(parts) == {"a", "b"}


def test_duplicate_names_are_numbered_and_judges_resolve():
    mix = RewardMix([FunctionSource("a", constant(1.0)), FunctionSource("a", constant(2.0))], [1, 1])
    assert mix.names == ["a#0", "a#1"]
    assert resolve_source("toxicity").name == "toxicity"  # rule detectors can be costs
    with pytest.raises(UserError, match="empty reward source"):
        resolve_source(" ")


def test_constrained_mix_penalises_cost_and_moves_the_multiplier():
    # Two answers with costs 1 and 0 (cost weight 2), reward 1 each, lambda 0.5:
    # score = 1 - 0.5 * (2 * cost) = [0, 1]; mean cost 1.0 > limit 0.25, so lambda rises by lr * 0.75 = 0.375.
    costs = FunctionSource("harm", lambda p, r: [1.0 if "bad" in x else 0.0 for x in r])
    mix = ConstrainedMix([FunctionSource("r", constant(1.0))], [1.0], [costs], [2.0], limit=0.25,
                         multiplier=LagrangeMultiplier(init=0.5, lr=0.5, max_value=10.0))
    total, parts = mix.score(RewardInputs(prompts=["p", "p"], responses=["bad", "good"]))
    assert total.tolist() == [0.0, 1.0]
    assert parts["cost/harm"].tolist() == [1.0, 0.0] and parts["cost"].tolist() == [2.0, 0.0]
    metrics = mix.after_step()
    assert metrics == {"cost_mean": 1.0, "cost_limit": 0.25, "constraint_satisfied": 0.0, "lagrange_multiplier": 0.5}
    assert mix.multiplier.value == pytest.approx(0.875)
    # A step within the limit lowers it: mean cost 0 -> lambda - 0.5 * 0.25.
    mix.score(RewardInputs(prompts=["p"], responses=["good"]))
    assert mix.after_step()["constraint_satisfied"] == 1.0
    assert mix.multiplier.value == pytest.approx(0.75)
    state = mix.state_dict()
    mix.multiplier.value = 3.0
    mix.load_state_dict(state)
    assert mix.multiplier.value == pytest.approx(0.75)


def test_an_unreachable_constraint_saturates_the_multiplier():
    costs = FunctionSource("harm", constant(1.0))
    mix = ConstrainedMix([FunctionSource("r", constant(0.0))], [1.0], [costs], [1.0], limit=0.0,
                         multiplier=LagrangeMultiplier(init=1.0, lr=1.0, max_value=3.0))
    for _ in range(4):
        mix.score(RewardInputs(prompts=["p"], responses=["x"]))
        mix.after_step()
    assert mix.multiplier.saturated and mix.saturated_steps == 3  # lambda 1 -> 2 -> 3 (cap) -> 3 -> 3
    assert torch.isfinite(torch.tensor(mix.multiplier.value))


def test_constrained_mix_needs_costs():
    with pytest.raises(UserError, match="at least one cost source"):
        ConstrainedMix([FunctionSource("r", constant(0.0))], [1.0], [], [], limit=0.0,
                       multiplier=LagrangeMultiplier())


# ---------------------------------------------------------------------------------------------------------------------
# which way a source points: reward models, cost models, neg:, judges as costs


def save_scorer(policy_dir, out, *, kind: str | None, seed: int = 0):
    """A tiny alinea reward-model directory from `policy_dir` (a fresh head, normalisation 0/1), marked `kind`
    (None: no marker, like models trained before it existed). The same seed gives the same weights."""
    from alinea.model.reward import Normalisation, build_reward_model, set_normalisation

    model, tokenizer = build_reward_model(policy_dir, seed=seed)
    set_normalisation(model, Normalisation([0.0], [1.0]), **({"kind": kind} if kind else {}))
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def scorers(rl_policy_dir, tmp_path_factory):
    """Three directories with the same weights: marked reward, marked cost, and unmarked."""
    root = tmp_path_factory.mktemp("scorers")
    return {kind or "unmarked": save_scorer(rl_policy_dir, root / (kind or "unmarked"), kind=kind)
            for kind in ("reward", "cost", None)}


def test_model_kind_reads_the_marker(scorers, tmp_path):
    from alinea.train.rewards import model_kind

    assert [model_kind(scorers[k]) for k in ("reward", "cost", "unmarked")] == ["reward", "cost", "reward"]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UserError, match="not an alinea reward or cost model .*has no 'alinea_reward'"):
        model_kind(tmp_path / "plain")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"alinea_reward": {"shift": [0], "scale": [1], "kind": "harm"}}')
    with pytest.raises(UserError, match=r"alinea_reward.kind is 'harm'; expected 'reward' or 'cost'"):
        model_kind(tmp_path / "odd")


@pytest.mark.parametrize(("spec", "role", "message"), [
    ("{reward}", "cost", r"cost source '.*reward': .* is a reward model \(higher = better\), not a cost model.*"
                         r"reward.invert = true.*'neg:.*reward'"),
    ("{unmarked}", "cost", r"is a reward model \(higher = better\), not a cost model"),
    ("{cost}", "reward", r"reward source '.*cost': .* is a cost model .*put it in costs, or read it as reward = -cost"),
    ("neg:{cost}", "cost", r"'neg:.*cost' reads a cost model negated, which makes it a reward source, not a cost"),
    ("neg:{reward}", "reward", r"reads a reward model negated, which makes it a cost source, not a reward"),
    ("harmless", "cost", r"cost source 'harmless': reads higher = better.*use a detector \(harm, refusal, "
                         r"toxicity\), or 'neg:harmless'"),
    ("neg:toxicity", "cost", r"cost source 'neg:toxicity': reads higher = better.*drop 'neg:'"),
    ("neg:", "reward", r"empty reward source"),
])
def test_a_source_pointing_the_wrong_way_is_refused(spec, role, message, scorers):
    with pytest.raises(UserError, match=message):
        resolve_source(spec.format(**scorers), role=role)


def test_neg_reads_a_source_negated(scorers, tokenizer):
    from alinea.judges import harm

    sequences = [tokenizer("<|user|>\nHi<|end|>\n<|assistant|>\nHello there.", add_special_tokens=False)["input_ids"],
                 tokenizer("<|user|>\nHi<|end|>\n<|assistant|>\nGo away.", add_special_tokens=False)["input_ids"]]
    inputs = RewardInputs(prompts=["Hi", "Hi"], responses=["Hello there.", "Go away."], sequences=sequences)
    as_reward = resolve_source(str(scorers["reward"]))(inputs)
    as_cost = resolve_source(str(scorers["cost"]), role="cost")(inputs)
    negated = resolve_source(f"neg:{scorers['reward']}", role="cost")
    assert as_reward == as_cost and as_reward[0] != as_reward[1]  # the same weights, read as they are
    assert negated(inputs) == [-x for x in as_reward] and negated.name == "neg:rm:reward"
    assert resolve_source(f"neg:{scorers['cost']}")(inputs) == [-x for x in as_cost]  # a cost model as reward -cost
    prompts, answers = ["How do I steal a bike?", "Tell me about rivers."], ["Cut the lock.", "Rivers run, you idiot."]
    harmless_as_cost = resolve_source("neg:harmless", role="cost")
    assert harmless_as_cost(RewardInputs(prompts=prompts, responses=answers)) == [h - 1.0 for h in harm(prompts, answers)]
    assert resolve_source("toxicity", role="cost").name == "toxicity"


def test_a_raising_or_nan_cost_fails_on_the_probe_batch_naming_it():
    reward = [FunctionSource("r", constant(1.0))]

    def mix(cost_fn):
        return ConstrainedMix(reward, [1.0], [FunctionSource("judge", cost_fn, role="cost")], [1.0], limit=0.0,
                              multiplier=LagrangeMultiplier())

    def offline(prompts, responses):
        raise RuntimeError("judge offline")

    with pytest.raises(UserError, match=r"cost source cost/judge: failed on a probe batch before training: cost "
                                        r"function judge raised RuntimeError: judge offline"):
        mix(offline).check(["p", "q"])
    with pytest.raises(UserError, match=r"cost source cost/judge: returned a non-finite value \(nan\) on a probe batch"):
        mix(constant(float("nan"))).check(["p"])
    with pytest.raises(UserError, match=r"cost function judge: returned 1 values for 2 responses"):
        mix(lambda p, r: [0.0]).check(["p", "q"])
    mix(constant(0.5)).check(["p"])  # a working cost passes


def test_a_reward_model_scores_inside_the_precision_context_it_is_given(scorers, tokenizer):
    import contextlib

    sequences = [tokenizer("<|user|>\nHi<|end|>\n<|assistant|>\nHello there.", add_special_tokens=False)["input_ids"]]
    inputs = RewardInputs(prompts=["Hi"], responses=["Hello there."], sequences=sequences)
    source = resolve_source(str(scorers["reward"]))
    plain = source(inputs)
    entered = []

    @contextlib.contextmanager
    def bf16():
        entered.append(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    source.precision = bf16  # what an RL trainer sets in a bf16 run
    low = source(inputs)
    assert entered and low != plain and low == pytest.approx(plain, abs=0.1)
    mix = RewardMix([source, FunctionSource("f", constant(1.0))], [1.0, 1.0])
    assert mix.model_sources() == [source]

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

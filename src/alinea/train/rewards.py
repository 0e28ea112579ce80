"""Reward sources for the RL stages: reward models, judges and Python functions, mixed with weights.

The guide this project follows asks to mix human-learned rewards with automated signals. A source is one of

- a **reward model directory** (an `alinea reward train` run or its `final/`; as a cost, a cost model directory):
  scored on the policy's own token ids, so its tokenizer must be the policy's (checked before training starts);
- a **judge name** from `alinea.judges` (e.g. `sentiment`, `language_consistency`);
- a **Python function** `package.module:function` with the batched signature
  `fn(prompts: list[str], responses: list[str]) -> list[float]` (higher is better).

`RewardMix.score(...)` returns the weighted total and every component, so each is logged separately. A function that
raises, returns the wrong number of values, or returns NaN/inf is a `UserError` naming the source: caught on a probe
batch before training (`RewardMix.check`, `ConstrainedMix.check` for costs too) or, later, at the step where it
happens.

**Which way a model directory points.** A directory trained by `alinea reward train` says in its config.json what it
scores (`alinea_reward.kind`, `model_kind`): "reward" (higher = better) or "cost" (`reward.invert = true`: higher =
more harmful). A reward source must be a reward model and a cost source a cost model; anything else is refused before
training, unless the spec starts with `neg:`, which reads the source negated (`neg:DIR` of a reward model of
harmlessness is the cost -reward; `neg:` works on judges and functions as well). Costs also refuse a judge
(higher = better) unless negated, and a negated detector.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from alinea.errors import UserError

RewardFn = Callable[[list[str], list[str]], Sequence[float]]
NEGATE = "neg:"
"""Prefix of a source read negated: `neg:DIR`, `neg:judge`, `neg:module:function`."""
ROLES = ("reward", "cost")


def split_sign(spec: str) -> tuple[float, str]:
    """'neg:X' -> (-1.0, 'X'); anything else -> (1.0, spec), stripped."""
    spec = spec.strip()
    if spec.startswith(NEGATE):
        return -1.0, spec[len(NEGATE):].strip()
    return 1.0, spec


def model_dir(path: str | Path) -> Path:
    """A reward run directory's final/ when given the run, else the path itself."""
    path = Path(path)
    if (path / "final").is_dir() and not (path / "config.json").is_file():
        return path / "final"
    return path


def model_kind(path: str | Path) -> str:
    """What an alinea reward-model directory scores: "cost" (trained with `reward.invert`, higher = more harmful) or
    "reward" (higher = better; also every model trained before the marker existed). A `UserError` when `path` holds
    no alinea reward model."""
    import json

    config_file = model_dir(path) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a reward or cost model directory ({config_file}: {err}).") from None
    stored = config.get("alinea_reward") if isinstance(config, dict) else None
    if not isinstance(stored, dict):
        raise UserError(f"{path}: not an alinea reward or cost model ({config_file} has no 'alinea_reward').")
    kind = stored.get("kind", "reward")
    if kind not in ROLES:
        raise UserError(f"{config_file}: alinea_reward.kind is {kind!r}; expected 'reward' or 'cost'.")
    return kind


def check_model_role(path: str | Path, *, role: str, sign: float, where: str) -> None:
    """A model directory may be a `role` source only if it scores that way: a reward model as a reward, a cost model
    as a cost, or the other kind negated (`neg:`). A `UserError` starting with `where` says what to do instead."""
    kind = model_kind(path)
    reads_as = kind if sign > 0 else ("cost" if kind == "reward" else "reward")
    if reads_as == role:
        return
    if sign < 0:
        raise UserError(
            f"{where}: 'neg:{path}' reads a {kind} model negated, which makes it a {reads_as} source, not a {role}; "
            f"drop 'neg:' to use the {kind} model as it is."
        )
    if role == "cost":
        raise UserError(
            f"{where}: {path} is a reward model (higher = better), not a cost model (higher = more harmful). Train a "
            "cost model on harmlessness preferences with reward.invert = true, or, if this is a reward model of "
            f"harmlessness, read it as cost = -reward with 'neg:{path}'."
        )
    raise UserError(
        f"{where}: {path} is a cost model (trained with reward.invert = true: higher = more harmful), not a reward "
        f"model; put it in costs, or read it as reward = -cost with 'neg:{path}'."
    )


@dataclass
class RewardInputs:
    """What a reward source may read about a batch of episodes."""

    prompts: list[str]  # the user's prompt text (last user turn), as written
    responses: list[str]  # the decoded answer, special tokens removed
    sequences: list[list[int]] | None = None  # chat-formatted prompt + answer token ids, ending at the stop token


class RewardModelSource:
    """A trained alinea reward model, read at the answer's stop token, normalised as stored in its config."""

    kind = "reward_model"

    def __init__(self, path: str | Path, *, batch_size: int = 32, device: str | torch.device = "cpu",
                 sign: float = 1.0) -> None:
        from alinea.model.reward import load_reward_model, normalisation_of

        self.path = str(path)
        from alinea.model.fast import fuse_activations

        self.model, self.tokenizer = load_reward_model(path)
        self.model.to(device)
        fuse_activations(self.model)  # same function, one kernel (model/fast.py); scoring is inference only
        self.precision = contextlib.nullcontext
        """A context manager factory the forward runs in: an RL trainer sets its autocast (a bf16 run scores in bf16)."""
        self.norm = normalisation_of(self.model)
        self.batch_size = batch_size
        self.sign = sign  # -1 for `neg:DIR`
        name = f"rm:{Path(path).name if Path(path).name != 'final' else Path(path).parent.name}"
        self.name = name if sign > 0 else NEGATE + name
        from alinea.model.tokenizer import END_OF_TURN, stop_token_ids

        end_id = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self._end_id = end_id if end_id is not None and end_id != self.tokenizer.unk_token_id else None
        self._stop_ids = set(stop_token_ids(self.tokenizer))

    def _ending_at_end_of_turn(self, sequence: list[int]) -> list[int]:
        """The reward model was trained reading `<|end|>` after the answer (`train.reward.Encoder`): an answer that
        stopped on another stop token, or hit the length limit, is scored as if it ended there, never mid-answer."""
        if self._end_id is None:
            return sequence
        if sequence and sequence[-1] in self._stop_ids:
            sequence = sequence[:-1]
        return sequence + [self._end_id]

    def check_tokenizer(self, policy_tokenizer) -> None:
        if self.tokenizer.get_vocab() != policy_tokenizer.get_vocab():
            raise UserError(
                f"reward model {self.path}: its tokenizer differs from the policy's (vocabulary sizes "
                f"{len(self.tokenizer)} vs {len(policy_tokenizer)}); train the reward model from the policy's "
                "checkpoint family, or use a judge or Python reward instead."
            )

    @torch.no_grad()
    def __call__(self, inputs: RewardInputs) -> list[float]:
        if inputs.sequences is None:
            raise UserError(f"{self.name}: needs token sequences (internal error: none were passed)")
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        sequences = [self._ending_at_end_of_turn(seq) for seq in inputs.sequences]
        scores: list[float] = []
        for start in range(0, len(sequences), self.batch_size):
            chunk = sequences[start : start + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(chunk):  # right padding: the model reads the last real token
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with self.precision():
                raw = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            scores.extend((self.sign * self.norm.apply(raw).mean(dim=-1)).tolist())  # ensemble: mean over heads
        return scores


class FunctionSource:
    """A batched Python function (a judge or `module:function`), used as a reward or (`role = "cost"`) as a cost."""

    kind = "function"

    def __init__(self, name: str, fn: RewardFn, *, role: str = "reward", sign: float = 1.0) -> None:
        self.name = name if sign > 0 else NEGATE + name
        self.fn = fn
        self.role = role
        self.sign = sign

    def __call__(self, inputs: RewardInputs) -> list[float]:
        what = f"{self.role} function {self.name}"
        try:
            values = self.fn(list(inputs.prompts), list(inputs.responses))
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of user code is reported with its source
            raise UserError(f"{what} raised {type(err).__name__}: {err}") from err
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError) as err:
            raise UserError(f"{what}: expected a list of numbers, got {type(values).__name__}") from err
        if len(values) != len(inputs.responses):
            raise UserError(f"{what}: returned {len(values)} values for {len(inputs.responses)} responses")
        return [self.sign * v for v in values]


def resolve_source(spec: str, *, role: str = "reward",
                   device: str | torch.device = "cpu") -> RewardModelSource | FunctionSource:
    """A `role` ("reward" or "cost") source from its spec: a directory, a judge name, or `module:function`, each
    optionally prefixed `neg:` (read negated). A model directory must score the way `role` reads (`check_model_role`);
    a cost must not be a judge (higher = better) nor a negated detector."""
    sign, body = split_sign(spec)
    if not body:
        raise UserError(
            f"{role}s: an empty {role} source; give a {role} model directory, a judge name or module:function."
        )
    path = Path(body)
    if path.is_dir():
        check_model_role(path, role=role, sign=sign, where=f"{role} source {spec.strip()!r}")
        return RewardModelSource(path, device=device, sign=sign)
    if ":" in body and not path.exists():
        module_name, _, attr = body.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UserError(f"{role} source {spec!r}: cannot import module {module_name!r} ({err}).") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise UserError(f"{role} source {spec!r}: module {module_name!r} has no function {attr!r}.")
        return FunctionSource(body, fn, role=role, sign=sign)
    judges, detectors = _judges()
    if body in judges or body in detectors:
        higher_is_better = (body in judges) == (sign > 0)
        if role == "cost" and higher_is_better:
            raise UserError(
                f"cost source {spec.strip()!r}: reads higher = better, but a cost must be higher = more harmful; use "
                f"a detector ({', '.join(sorted(detectors))}), "
                + (f"or 'neg:{body}'." if sign > 0 else f"or drop 'neg:' ({body} is a detector).")
            )
        return FunctionSource(body, {**judges, **detectors}[body], role=role, sign=sign)
    known = ", ".join(sorted({**judges, **detectors})) or "(none installed)"
    raise UserError(
        f"{role} source {spec!r}: not a directory, not module:function, and not a judge name (judges: {known})."
    )


def _judges() -> tuple[dict[str, RewardFn], dict[str, RewardFn]]:
    """(judges: higher = better, detectors: 1 = found), empty when `alinea.judges` is not installed."""
    try:
        from alinea.judges import DETECTORS, JUDGES
    except ImportError:
        return {}, {}
    return dict(JUDGES), dict(DETECTORS)


class RewardMix:
    """A weighted sum of reward sources; `score` returns the total and each component."""

    def __init__(self, sources: list, weights: list[float]) -> None:
        if not sources:
            raise UserError("rewards: no reward source given; set rewards = [...] (a reward model directory, a judge, or module:function).")
        if len(weights) != len(sources):
            raise UserError(f"reward_weights: {len(weights)} weights for {len(sources)} reward sources.")
        self.sources = sources
        self.weights = [float(w) for w in weights]
        names = [s.name for s in sources]
        self.names = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]

    @classmethod
    def from_config(cls, specs: Sequence[str], weights: Sequence[float], *, device="cpu") -> RewardMix:
        sources = [resolve_source(s, device=device) for s in specs]
        return cls(sources, list(weights) if weights else [1.0] * len(sources))

    def check_tokenizer(self, tokenizer) -> None:
        for source in self.sources:
            if isinstance(source, RewardModelSource):
                source.check_tokenizer(tokenizer)

    def reward_models(self) -> list[RewardModelSource]:
        return [s for s in self.sources if isinstance(s, RewardModelSource)]

    def model_sources(self) -> list[RewardModelSource]:
        """Every reward-model source this mix reads (a constrained mix: its cost models too)."""
        return [s for s in [*self.sources, *getattr(self, "costs", [])] if isinstance(s, RewardModelSource)]

    def score(self, inputs: RewardInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total (batch,), {component name: (batch,)}); a non-finite value is a `UserError` naming its source."""
        components: dict[str, torch.Tensor] = {}
        total = torch.zeros(len(inputs.responses))
        for name, source, weight in zip(self.names, self.sources, self.weights, strict=True):
            values = torch.tensor(source(inputs), dtype=torch.float32)
            bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
            if bad:
                example = inputs.responses[bad[0]][:80]
                raise UserError(
                    f"reward source {name}: {len(bad)} non-finite value(s) (first at episode {bad[0]}, answer "
                    f"{example!r}); fix the function or drop it from rewards."
                )
            components[name] = values
            total += weight * values
        return total, components

    def check(self, prompts: list[str]) -> None:
        """Score a probe batch (each prompt with a short answer) so a broken source fails before training."""
        _probe(self.names, self.sources, prompts, role="reward")


def _probe(names: list[str], sources: list, prompts: list[str], *, role: str) -> None:
    """Call every function source on up to 4 prompts, each with the answer "ok": it must return one finite number per
    answer, else a `UserError` names the source. (Model sources are checked by their tokenizer; they need token ids.)"""
    probe = prompts[: min(4, len(prompts))] or ["Hello."]
    inputs = RewardInputs(prompts=probe, responses=["ok"] * len(probe), sequences=None)
    for name, source in zip(names, sources, strict=True):
        if not isinstance(source, FunctionSource):
            continue
        try:
            values = source(inputs)
        except UserError as err:
            raise UserError(f"{role} source {name}: failed on a probe batch before training: {err.message}") from None
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise UserError(
                f"{role} source {name}: returned a non-finite value ({bad[0]}) on a probe batch before training; "
                f"fix the function or drop it from {role}s."
            )


class ConstrainedMix(RewardMix):
    """Reward sources and cost sources under a constraint E[cost] <= cost_limit (Safe RLHF, Dai et al. 2023).

    The score the policy maximises is `sum_i w_i r_i - lambda * cost`, with `cost = sum_j v_j c_j`; after each step
    `after_step()` moves lambda by gradient ascent on the violation `mean cost - limit` (`alinea.advantages.
    LagrangeMultiplier`): it rises while the constraint is violated and falls (not below 0) once it is met. Costs are
    logged as `cost/<name>`, the multiplier as `lagrange_multiplier`, and `constraint_satisfied` is 1 when the step's
    mean cost was within the limit. `saturated_steps` counts consecutive steps with lambda at its cap: a constraint
    that cannot be met at any price (the trainer stops after `lagrange_patience` such steps, with a warning).
    """

    def __init__(self, sources: list, weights: list[float], costs: list, cost_weights: list[float], *,
                 limit: float, multiplier) -> None:
        super().__init__(sources, weights)
        if not costs:
            raise UserError("costs: a constrained run needs at least one cost source.")
        if len(cost_weights) != len(costs):
            raise UserError(f"cost_weights: {len(cost_weights)} weights for {len(costs)} cost sources.")
        self.costs = costs
        self.cost_weights = [float(w) for w in cost_weights]
        self.cost_names = [f"cost/{c.name}" for c in costs]
        self.limit = float(limit)
        self.multiplier = multiplier
        self.saturated_steps = 0
        self._last_costs: list[torch.Tensor] = []

    @classmethod
    def from_specs(cls, specs, weights, cost_specs, cost_weights, *, limit: float, multiplier, device="cpu"):
        sources = [resolve_source(s, device=device) for s in specs]
        costs = [resolve_source(s, role="cost", device=device) for s in cost_specs]
        return cls(sources, list(weights) if weights else [1.0] * len(sources), costs,
                   list(cost_weights) if cost_weights else [1.0] * len(costs), limit=limit, multiplier=multiplier)

    def check_tokenizer(self, tokenizer) -> None:
        super().check_tokenizer(tokenizer)
        for source in self.costs:
            if isinstance(source, RewardModelSource):
                source.check_tokenizer(tokenizer)

    def check(self, prompts: list[str]) -> None:
        """The reward sources' probe, then the same for every cost function (raising or NaN: a `UserError`)."""
        super().check(prompts)
        _probe(self.cost_names, self.costs, prompts, role="cost")

    def score(self, inputs: RewardInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, components = super().score(inputs)
        cost = torch.zeros_like(total)
        for name, source, weight in zip(self.cost_names, self.costs, self.cost_weights, strict=True):
            values = torch.tensor(source(inputs), dtype=torch.float32)
            if not torch.isfinite(values).all():
                raise UserError(f"cost source {name}: non-finite values; fix it or drop it from costs.")
            components[name] = values
            cost += weight * values
        components["cost"] = cost
        self._last_costs.append(cost)
        return total - self.multiplier.value * cost, components

    def after_step(self, mean_cost: float | None = None) -> dict[str, float]:
        """Update lambda from this step's mean cost (all processes' mean when given); returns the step's metrics."""
        if mean_cost is None:
            costs = torch.cat(self._last_costs) if self._last_costs else torch.zeros(1)
            mean_cost = float(costs.mean())
        self._last_costs = []
        used = self.multiplier.value
        self.multiplier.update(mean_cost, self.limit)
        self.saturated_steps = self.saturated_steps + 1 if self.multiplier.saturated else 0
        return {
            "cost_mean": mean_cost,
            "cost_limit": self.limit,
            "constraint_satisfied": float(mean_cost <= self.limit),
            "lagrange_multiplier": used,
        }

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier.state_dict(), "saturated_steps": self.saturated_steps}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier.load_state_dict(state["multiplier"])
        self.saturated_steps = int(state.get("saturated_steps", 0))

"""`alinea loop`: rounds of generate -> feedback -> reward model -> RL -> evaluate, resumable at phase granularity.

Each round runs these phases, each leaving its output in `DIR/round-R/` before the state file says it is done:

  prompts    a seeded sample of the training prompts (the evaluation prompts are held out once, for all rounds)
  generate   K answers per prompt from the current policy
  select     which pairs people see: reward-model ensemble disagreement (active) or random (round 1 has no model yet)
  feedback   a project in the feedback app (over its HTTP API): the pairs plus gold items; simulated annotators judge
             through the same API, or the loop waits for people; the judgments are exported as records. With
             `harmlessness`, a second project asks of the same pairs which answer is less harmful
  reward     the reward model trained on every judgment so far (round 1 from the SFT model, later rounds continue);
             with `harmlessness`, also the cost model on the inverted harmlessness judgments (`alinea.loop.constrained`)
  rl         the policy optimised against the reward model mixed with automated signals, KL to the SFT model; with
             `costs`, subject to mean cost <= `cost_limit` (Safe RLHF's Lagrange multiplier)
  evaluate   win rates vs SFT and vs the previous round (gold judge and reward model, bootstrap CIs), gold reward,
             KL, language consistency, reward-model accuracy on gold pairs, annotator agreement; then the report

`DIR/loop_state.json` (written atomically) records the last finished phase; `alinea loop --resume DIR` continues with
the next one after a crash. Imports follow STYLE.md: the loop reaches the app only through `alinea.loop.client`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from alinea.config import AlineaConfig, load_config, save_config
from alinea.data.jsonl import read_records, write_jsonl, write_records, write_text
from alinea.errors import UserError

PHASES = ("prompts", "generate", "select", "feedback", "reward", "rl", "evaluate")
STATE_FILE = "loop_state.json"


@dataclass
class LoopState:
    """What the loop has done; saved after every phase."""

    round: int = 1
    phase: str = ""  # last finished phase of `round` ("" = none yet)
    done: bool = False
    policy: str = ""  # current policy checkpoint
    reward_model: str = ""  # latest reward model directory
    cost_model: str = ""  # latest cost model directory (harmlessness = true)
    project_ids: dict = field(default_factory=dict)  # round -> app project id
    annotators: dict = field(default_factory=dict)  # simulated annotator name -> API token
    judgments_total: int = 0
    phase_seconds: dict = field(default_factory=dict)  # round -> {phase: seconds}
    warnings: dict = field(default_factory=dict)  # round -> [message, ...] (shown in the report and summary.json)

    @classmethod
    def load(cls, out: Path) -> LoopState:
        path = out / STATE_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, out: Path) -> None:
        write_text(out / STATE_FILE, [json.dumps(asdict(self), indent=2) + "\n"])


class PhaseFailed(UserError):
    pass


@dataclass
class LoopContext:
    cfg: AlineaConfig
    out: Path
    console: Console
    state: LoopState
    train_prompts: Path
    eval_prompts: Path
    client: object | None = None

    @property
    def lcfg(self):
        return self.cfg.loop

    def round_dir(self, r: int | None = None) -> Path:
        path = self.out / f"round-{r or self.state.round}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def warn(self, message: str) -> None:
        """Record a warning of this round (kept in the state, so a resumed loop still reports it) and print it."""
        messages = self.state.warnings.setdefault(str(self.state.round), [])
        if message not in messages:
            messages.append(message)
        self.console.print(f"[yellow]warning: {message}", highlight=False)


# ---------------------------------------------------------------------------------------------------------------------
# entry point


def run_loop(
    cfg: AlineaConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    console: Console | None = None,
    stop_after: Callable[[int, str], bool] | None = None,
) -> Path:
    """Run (or, with `resume`, continue) the loop in `out`; returns the report path.

    `stop_after(round, phase)` returning True raises `KeyboardInterrupt` after that phase is saved (for tests of
    resumption)."""
    out = Path(out)
    console = console or Console()
    if resume:
        if not (out / STATE_FILE).is_file():
            raise UserError(f"{out}: not a loop directory (no {STATE_FILE}); start one with alinea loop --out {out}.")
        cfg = load_config(out / "config.toml")
    else:
        if (out / STATE_FILE).is_file():
            raise UserError(f"{out}: already holds a loop; continue it with alinea loop --resume {out}.")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.toml")
    _check(cfg)
    state = LoopState.load(out)
    if not state.policy:
        state.policy = cfg.loop.policy
    train_prompts, eval_prompts = _split_prompts(cfg, out)
    ctx = LoopContext(cfg=cfg, out=out, console=console, state=state, train_prompts=train_prompts, eval_prompts=eval_prompts)
    server = _connect(ctx)
    try:
        with server as client:
            ctx.client = client
            while not state.done:
                next_phase = _next_phase(state.phase)
                if next_phase is None:  # the round is complete
                    if state.round >= cfg.loop.rounds:
                        state.done = True
                        state.save(out)
                        break
                    state.round += 1
                    state.phase = ""
                    state.save(out)
                    continue
                console.rule(f"[bold]round {state.round}/{cfg.loop.rounds}: {next_phase}")
                started = time.perf_counter()
                PHASE_FUNCTIONS[next_phase](ctx)
                seconds = time.perf_counter() - started
                state.phase_seconds.setdefault(str(state.round), {})[next_phase] = round(seconds, 2)
                state.phase = next_phase
                state.save(out)
                if stop_after is not None and stop_after(state.round, next_phase):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise UserError(
            f"loop interrupted after round {state.round} phase '{state.phase or 'start'}'; continue with "
            f"alinea loop --resume {out}"
        ) from None
    from alinea.eval.report import write_report

    report, summary = write_report(out)
    console.print(f"report: {report}")
    return report


def _next_phase(last: str) -> str | None:
    if not last:
        return PHASES[0]
    index = PHASES.index(last)
    return PHASES[index + 1] if index + 1 < len(PHASES) else None


def _check(cfg: AlineaConfig) -> None:
    lcfg = cfg.loop
    if not lcfg.policy:
        raise UserError("loop.policy: expected the SFT checkpoint the loop starts from (an SFT run's final/).")
    if lcfg.rounds < 1 or lcfg.candidates < 2 or lcfg.pairs_per_round < 1:
        raise UserError("loop: rounds >= 1, candidates >= 2 and pairs_per_round >= 1 are needed.")
    if lcfg.selection not in ("ensemble", "random"):
        raise UserError(f"loop.selection: expected ensemble or random, found {lcfg.selection!r}.")
    if lcfg.judges not in ("simulated", "people", "ai"):
        raise UserError(f"loop.judges: expected simulated, people or ai, found {lcfg.judges!r}.")
    if lcfg.rl_algorithm not in ("ppo", "rloo", "grpo", "dpo"):
        raise UserError(f"loop.rl_algorithm: expected ppo, rloo, grpo or dpo, found {lcfg.rl_algorithm!r}.")
    if lcfg.on_short not in ("skip", "fail"):
        raise UserError(f"loop.on_short: expected skip or fail, found {lcfg.on_short!r}.")
    if len(lcfg.automated_weights) != len(lcfg.automated_rewards):
        raise UserError("loop.automated_weights: one weight per automated reward.")
    if lcfg.annotator_workers < 1:
        raise UserError(f"loop.annotator_workers: at least 1, found {lcfg.annotator_workers}.")
    if not 0.0 < lcfg.eval_top_p <= 1.0:
        raise UserError(f"loop.eval_top_p: expected 0 < top_p <= 1, found {lcfg.eval_top_p}.")
    if lcfg.eval_temperature < 0:
        raise UserError(f"loop.eval_temperature: expected >= 0, found {lcfg.eval_temperature}.")
    from alinea.loop.constrained import check_costs

    check_costs(cfg)


def _split_prompts(cfg: AlineaConfig, out: Path) -> tuple[Path, Path]:
    """Hold out `eval_prompts` prompts (seeded, stratified by language) once; the rest feed feedback and RL."""
    train_path, eval_path = out / "train_prompts.jsonl", out / "eval_prompts.jsonl"
    if train_path.is_file() and eval_path.is_file():
        return train_path, eval_path
    source = Path(cfg.loop.prompts)
    if not source.is_file():
        raise UserError(f"{source}: prompt file not found (loop.prompts).")
    records = read_records(source)
    if len(records) < cfg.loop.eval_prompts + 8:
        raise UserError(
            f"{source}: {len(records)} prompts; the loop needs eval_prompts ({cfg.loop.eval_prompts}) + at least 8."
        )
    rng = random.Random(cfg.loop.seed)
    by_language: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_language.setdefault(record.language, []).append(i)
    share = cfg.loop.eval_prompts / len(records)
    held: list[int] = []
    for indices in by_language.values():
        rng.shuffle(indices)
        held.extend(indices[: max(1, round(len(indices) * share))])
    held_set = set(held[: cfg.loop.eval_prompts])
    write_records(eval_path, [r for i, r in enumerate(records) if i in held_set])
    write_records(train_path, [r for i, r in enumerate(records) if i not in held_set])
    return train_path, eval_path


# ---------------------------------------------------------------------------------------------------------------------
# the app


class _NoServer:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _connect(ctx: LoopContext):
    """A context manager giving an admin client: the configured server, or an embedded one on SQLite."""
    lcfg = ctx.lcfg
    if lcfg.judges == "ai":
        return _NoServer()
    from alinea.loop import server

    if lcfg.server:
        import os

        token = lcfg.token or os.environ.get("ALINEA_TOKEN", "")
        if not token:
            raise UserError("loop.server is set: give loop.token (an admin's API token) or ALINEA_TOKEN.")
        return server.connect(lcfg.server, token)
    return _embedded(ctx.out / "feedback", ctx.console)


@contextlib.contextmanager
def _embedded(folder: Path, console: Console):
    from alinea.loop.server import start_server

    with start_server(folder) as running:
        console.print(f"feedback app (embedded, SQLite): {running.url}  log: {running.log_path}", markup=False,
                      highlight=False)
        client = running.client()
        try:
            yield client
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------------------------------
# phases


def phase_prompts(ctx: LoopContext) -> None:
    records = read_records(ctx.train_prompts)
    rng = random.Random(f"{ctx.lcfg.seed}-round-{ctx.state.round}")
    indices = sorted(rng.sample(range(len(records)), min(ctx.lcfg.prompts_per_round, len(records))))
    write_text(ctx.round_dir() / "prompts.json", [json.dumps(indices) + "\n"])


def _sample(policy_dir: str, prompt_records, *, n: int, seed: int, temperature: float, cfg: AlineaConfig,
            top_p: float = 1.0):
    """n answers per prompt from `policy_dir`: list (per prompt) of (answers, finished)."""
    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.train.rollout import encode_prompt_records, sample_episodes

    rcfg = getattr(cfg, cfg.loop.rl_algorithm) if cfg.loop.rl_algorithm != "dpo" else cfg.rloo
    model, tokenizer = load_model_and_tokenizer(policy_dir)
    prompts = encode_prompt_records(prompt_records, tokenizer, max_prompt_len=rcfg.max_prompt_len)
    episodes = [i for i in range(len(prompt_records)) for _ in range(n)]
    rollout = sample_episodes(
        model, tokenizer, prompts, episodes, max_new_tokens=rcfg.max_new_tokens, temperature=temperature,
        top_p=top_p, seed=seed, chunk_size=max(n, 32 // n * n),
    )
    out = []
    for i in range(len(prompt_records)):
        rows = range(i * n, (i + 1) * n)
        out.append(([rollout.response_texts[r] for r in rows], [bool(rollout.finished[r]) for r in rows]))
    return out


def phase_generate(ctx: LoopContext) -> None:
    records = read_records(ctx.train_prompts)
    indices = json.loads((ctx.round_dir() / "prompts.json").read_text())
    chosen = [records[i] for i in indices]
    samples = _sample(ctx.state.policy, chosen, n=ctx.lcfg.candidates, seed=ctx.lcfg.seed * 1000 + ctx.state.round,
                      temperature=ctx.cfg.rloo.temperature if ctx.lcfg.rl_algorithm == "dpo" else
                      getattr(ctx.cfg, ctx.lcfg.rl_algorithm).temperature, cfg=ctx.cfg)
    rows = [
        {"prompt_index": index, "answers": answers, "finished": finished}
        for index, (answers, finished) in zip(indices, samples, strict=True)
    ]
    write_jsonl(ctx.round_dir() / "candidates.jsonl", rows)


def _reward_heads(rm_dir: str, prompt_records, answers: list[list[str]]):
    """Normalised per-head rewards: list (per prompt) of (K, heads) tensors."""
    import torch

    from alinea.model.reward import load_reward_model, normalisation_of
    from alinea.train.reward import Encoder, _score_sequences

    model, tokenizer = load_reward_model(rm_dir)
    encoder = Encoder(tokenizer, 256)
    sequences, owners = [], []
    for p, (record, texts) in enumerate(zip(prompt_records, answers, strict=True)):
        for text in texts:
            sequences.append(encoder.sequence(record.prompt_messages(), text or " "))
            owners.append(p)
    raw = _score_sequences(model, sequences, tokenizer.pad_token_id, 32)
    scores = normalisation_of(model).apply(raw)  # (N, heads)
    out, start = [], 0
    for texts in answers:
        out.append(scores[start : start + len(texts)].to(torch.float32))
        start += len(texts)
    return out


def phase_select(ctx: LoopContext) -> None:
    from alinea.loop.selection import select_pairs

    records = read_records(ctx.train_prompts)
    rows = [json.loads(x) for x in (ctx.round_dir() / "candidates.jsonl").read_text().splitlines()]
    answers = [r["answers"] for r in rows]
    strategy = ctx.lcfg.selection if ctx.state.reward_model else "random"
    if strategy == "ensemble":
        heads = _reward_heads(ctx.state.reward_model, [records[r["prompt_index"]] for r in rows], answers)
        scores = [h.T.tolist() for h in heads]  # per prompt: (heads, K)
    else:  # round 1 has no reward model yet: random pairs
        scores = [[[0.0] * len(a)] for a in answers]
    picked = select_pairs(
        scores, ctx.lcfg.pairs_per_round, strategy="disagreement" if strategy == "ensemble" else "random",
        per_prompt=max(1, -(-ctx.lcfg.pairs_per_round // max(1, len(rows)))), seed=ctx.lcfg.seed * 7919 + ctx.state.round,
    )
    pairs = []
    for n, pick in enumerate(picked):
        row = rows[pick.prompt_index]
        a, b = row["answers"][pick.i], row["answers"][pick.j]
        if not a.strip() or not b.strip() or a == b:
            continue
        pairs.append({
            "id": f"r{ctx.state.round}-{n}", "prompt_index": row["prompt_index"], "a": a, "b": b,
            "priority": pick.disagreement, "strategy": strategy,
        })
    if not pairs:
        raise PhaseFailed("select: no usable pair (every candidate pair was empty or identical).")
    write_jsonl(ctx.round_dir() / "pairs.jsonl", pairs)


def _gold_scores(judge_name: str, prompts: list[str], responses: list[str]) -> list[float]:
    from alinea.judges import get_judge

    return [float(x) for x in get_judge(judge_name)(prompts, responses)]


HARMLESSNESS_FILE = "harmlessness.jsonl"
"""A round's harmlessness judgments (preference = the less harmful answer), when loop.harmlessness is on."""


def _ai_judgments(records, pairs: list[dict], judge_name: str, *, tie_margin: float, annotator: str) -> list:
    """Comparison records labelled by a judge: the higher score wins, a gap below `tie_margin` is a tie."""
    from alinea.data.records import Comparison

    prompts = [records[p["prompt_index"]].prompt_messages()[-1]["content"] for p in pairs]
    score_a = _gold_scores(judge_name, prompts, [p["a"] for p in pairs])
    score_b = _gold_scores(judge_name, prompts, [p["b"] for p in pairs])
    judged = []
    for pair, sa, sb in zip(pairs, score_a, score_b, strict=True):
        source = records[pair["prompt_index"]]
        preference = "tie" if abs(sa - sb) < tie_margin else ("a" if sa > sb else "b")
        judged.append(Comparison(
            messages=source.messages, prompt=source.prompt if source.messages is None else None,
            response_a=pair["a"], response_b=pair["b"], preference=preference,
            strength=0 if preference == "tie" else 1, language=source.language, annotator=annotator,
        ))
    return judged


def phase_feedback(ctx: LoopContext) -> None:
    lcfg = ctx.lcfg
    records = read_records(ctx.train_prompts)
    pairs = [json.loads(x) for x in (ctx.round_dir() / "pairs.jsonl").read_text().splitlines()]
    out_file = ctx.round_dir() / "judgments.jsonl"
    harmless_file = ctx.round_dir() / HARMLESSNESS_FILE
    if lcfg.judges == "ai":
        judged = _ai_judgments(records, pairs, lcfg.gold_judge, tie_margin=lcfg.tie_margin, annotator="ai-judge")
        write_records(out_file, judged)
        if lcfg.harmlessness:
            write_records(harmless_file, _ai_judgments(records, pairs, lcfg.harm_judge, tie_margin=lcfg.tie_margin,
                                                        annotator="ai-harm-judge"))
        n = len(judged)
    else:
        from alinea.loop.feedback_round import judge_project, prepare_project

        aspects = ("helpfulness", "harmlessness") if lcfg.harmlessness else ("helpfulness",)
        project_ids = {aspect: prepare_project(ctx, records, pairs, aspect=aspect) for aspect in aspects}
        judged_rows, quality = judge_project(ctx, project_ids["helpfulness"], pairs)
        write_jsonl(out_file, judged_rows)
        write_text(ctx.round_dir() / "quality.json", [json.dumps(quality, indent=2) + "\n"])
        n = sum(1 for r in judged_rows if r.get("type") == "comparison")
        if n < lcfg.min_judgments:
            message = f"round {ctx.state.round}: {n} judgments, fewer than loop.min_judgments ({lcfg.min_judgments})"
            if lcfg.on_short == "fail":
                raise PhaseFailed(message + "; the round stops (loop.on_short = fail). Resume when people have judged more.")
            ctx.warn(f"{message}: the reward model keeps its previous weights this round.")
        if lcfg.harmlessness:
            harmless_rows, harmless_quality = judge_project(ctx, project_ids["harmlessness"], pairs, aspect="harmlessness")
            write_jsonl(harmless_file, harmless_rows)
            write_text(ctx.round_dir() / "harmlessness_quality.json", [json.dumps(harmless_quality, indent=2) + "\n"])
            if not any(r.get("type") == "comparison" for r in harmless_rows):
                ctx.warn(f"round {ctx.state.round}: no harmlessness judgments; the cost model keeps its previous weights.")
    if lcfg.harmlessness and lcfg.judges != "people":
        from alinea.loop.constrained import harm_gaps

        prompts = [records[p["prompt_index"]].prompt_messages()[-1]["content"] for p in pairs]
        if harm_gaps(lcfg.harm_judge, prompts, pairs, margin=lcfg.tie_margin) == 0:
            ctx.warn(
                f"round {ctx.state.round}: the harm judge ({lcfg.harm_judge}) sees no difference in harm in any of the "
                f"{len(pairs)} pairs, so the harmlessness judgments are ties or coin flips and the cost model learns "
                "no signal; mix harmful requests into loop.prompts to give it one."
            )
    ctx.state.judgments_total += n  # last: prepare_project saves the state, a rerun must not count twice


def _all_judgments(ctx: LoopContext, name: str = "judgments.jsonl") -> list[Path]:
    return [ctx.round_dir(r) / name for r in range(1, ctx.state.round + 1)
            if (ctx.round_dir(r) / name).is_file() and (ctx.round_dir(r) / name).stat().st_size]


def phase_reward(ctx: LoopContext) -> None:
    _train_reward_model(ctx)
    if ctx.lcfg.harmlessness:
        _train_cost_model(ctx)


def _train_reward_model(ctx: LoopContext) -> None:
    from alinea.train import reward

    lcfg = ctx.lcfg
    files = _all_judgments(ctx)
    this_round = ctx.round_dir() / "judgments.jsonl"
    if ctx.state.reward_model and (not this_round.is_file() or this_round.stat().st_size == 0):
        return  # too few judgments: keep the previous reward model
    if not files:
        raise PhaseFailed("reward: no judgments yet; the first round needs some (check the feedback app).")
    cfg = copy.deepcopy(ctx.cfg)
    rcfg = cfg.reward
    rcfg.data = [str(f) for f in files]
    rcfg.model = ctx.state.reward_model or lcfg.policy
    rcfg.max_steps = lcfg.rm_update_steps if ctx.state.reward_model else lcfg.rm_steps
    rcfg.ensemble = lcfg.rm_ensemble
    rcfg.seed = lcfg.seed + ctx.state.round
    rcfg.skip_invalid = True
    target = ctx.round_dir() / "reward"
    if (target / "meta.json").is_file():  # a crash inside training: continue that run
        result = reward.run(cfg, resume=target)
    else:
        result = reward.run(cfg, out=target)
    ctx.state.reward_model = str(result.final_dir)


def _train_cost_model(ctx: LoopContext) -> None:
    """The cost model: a reward model of the harmlessness judgments so far, each preference inverted (higher = more
    harmful; `alinea.loop.constrained`). Round 1 starts from the SFT model, later rounds continue the previous one."""
    from alinea.loop.constrained import COST_MODEL, cost_model_records, usable_pairs
    from alinea.train import reward

    lcfg = ctx.lcfg
    target = ctx.round_dir() / "cost"
    if (target / "final").is_dir():  # trained before a crash later in this phase
        ctx.state.cost_model = str(target / "final")
        return
    this_round = ctx.round_dir() / HARMLESSNESS_FILE
    if ctx.state.cost_model and (not this_round.is_file() or this_round.stat().st_size == 0):
        return  # no new harmlessness judgments: keep the previous cost model
    rows = [json.loads(line) for f in _all_judgments(ctx, HARMLESSNESS_FILE)
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    judged, _ = cost_model_records(rows)
    if usable_pairs(judged) < 4:
        message = (f"round {ctx.state.round}: {usable_pairs(judged)} usable harmlessness judgments so far; the cost "
                   "model needs at least 4")
        if COST_MODEL in [c.strip() for c in lcfg.costs] and not ctx.state.cost_model:
            raise PhaseFailed(f"reward: {message}, and loop.costs names {COST_MODEL}. Resume when more are judged.")
        ctx.warn(message + ("; it keeps its previous weights." if ctx.state.cost_model else "; none is trained yet."))
        return
    data = ctx.round_dir() / "cost_records.jsonl"
    write_jsonl(data, judged)
    cfg = copy.deepcopy(ctx.cfg)
    rcfg = cfg.reward
    rcfg.data = [str(data)]
    rcfg.invert = True  # trained on the judgments inverted, and marked kind = "cost" (docs/reward.md)
    rcfg.model = ctx.state.cost_model or lcfg.policy
    rcfg.max_steps = lcfg.rm_update_steps if ctx.state.cost_model else lcfg.rm_steps
    rcfg.ensemble = 1  # no active selection reads it: one head
    rcfg.seed = lcfg.seed + ctx.state.round
    rcfg.skip_invalid = True
    result = reward.run(cfg, resume=target) if (target / "meta.json").is_file() else reward.run(cfg, out=target)
    ctx.state.cost_model = str(result.final_dir)


def phase_rl(ctx: LoopContext) -> None:
    lcfg = ctx.lcfg
    cfg = copy.deepcopy(ctx.cfg)
    target = ctx.round_dir() / "rl"
    if lcfg.rl_algorithm == "dpo":
        from alinea.train import dpo

        dcfg = cfg.dpo
        dcfg.model = ctx.state.policy
        dcfg.reference = lcfg.policy
        dcfg.data = [str(f) for f in _all_judgments(ctx)]
        dcfg.max_steps = lcfg.rl_steps
        result = dpo.run(cfg, resume=target) if (target / "meta.json").is_file() else dpo.run(cfg, out=target)
        ctx.state.policy = str(result.final_dir)
        return
    from alinea.train import policy_gradient

    rcfg = getattr(cfg, lcfg.rl_algorithm)
    rcfg.policy = ctx.state.policy
    rcfg.reference = lcfg.policy  # the KL penalty is always to the SFT model
    rcfg.prompts = str(_rl_prompts(ctx))
    rcfg.max_steps = lcfg.rl_steps
    rcfg.seed = lcfg.seed + ctx.state.round
    # The learned reward, the automated signals, and the gold judge at weight 0: logged per step, never optimised,
    # so the report can plot gold against proxy reward along the run (over-optimisation, Gao et al. 2022).
    rcfg.rewards = [ctx.state.reward_model, *lcfg.automated_rewards, lcfg.gold_judge]
    rcfg.reward_weights = [lcfg.rm_weight, *lcfg.automated_weights, 0.0]
    if lcfg.costs:  # constrained RL (Safe RLHF); the Lagrange settings stay those of the algorithm's section
        from alinea.loop.constrained import rl_cost_sources

        rcfg.costs = rl_cost_sources(lcfg.costs, ctx.state.cost_model)
        rcfg.cost_weights = list(lcfg.cost_weights)
        rcfg.cost_limit = lcfg.cost_limit
    if (target / "meta.json").is_file():
        result = policy_gradient.run(lcfg.rl_algorithm, cfg, resume=target)
    else:
        result = policy_gradient.run(lcfg.rl_algorithm, cfg, out=target)
    ctx.state.policy = str(result.final_dir)
    warnings_file = Path(result.run_dir) / "warnings.json"
    if warnings_file.is_file():  # e.g. the multiplier sat at its cap: the constraint was judged unreachable
        for message in json.loads(warnings_file.read_text(encoding="utf-8")).get("warnings") or []:
            ctx.warn(f"round {ctx.state.round}: {message}")


def balance_languages(records: list, seed: int | str) -> list:
    """The records with each language group (`record.language`; None is a group) repeated up to the largest one.

    A smaller group keeps all its records once per full copy, plus a seeded sample without replacement for the rest,
    so the groups differ in size by nothing. Repeats get ids `ID~2`, `ID~3`, ... (ids stay unique). The order is the
    input's, each record followed by its repeats.
    """
    groups: dict[object, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(record.language, []).append(i)
    if len(groups) < 2:
        return list(records)
    target = max(len(members) for members in groups.values())
    rng = random.Random(f"{seed}-language-balance")
    copies = [0] * len(records)
    for members in groups.values():
        full, rest = divmod(target, len(members))
        for i in members:
            copies[i] = full
        for i in rng.sample(members, rest):
            copies[i] += 1
    out = []
    for record, n in zip(records, copies, strict=True):
        out.extend([record] + [dataclasses.replace(record, id=f"{record.id}~{k}") for k in range(2, n + 1)])
    return out


def _rl_prompts(ctx: LoopContext) -> Path:
    """The prompt file of the RL phase: the training prompts, balanced across languages with rl_language_balance."""
    if not ctx.lcfg.rl_language_balance:
        return ctx.train_prompts
    path = ctx.round_dir() / "rl_prompts.jsonl"
    if not path.is_file():
        write_records(path, balance_languages(read_records(ctx.train_prompts), f"{ctx.lcfg.seed}-{ctx.state.round}"))
    return path


def phase_evaluate(ctx: LoopContext) -> None:
    from alinea.loop.evaluate import evaluate_round

    row = _json_safe(evaluate_round(ctx))
    row["phase_seconds"] = ctx.state.phase_seconds.get(str(ctx.state.round), {})
    path = ctx.out / "rounds.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    rows = [r for r in rows if r.get("round") != ctx.state.round] + [row]
    write_jsonl(path, rows)
    ctx.console.print(
        f"round {ctx.state.round}: win rate vs SFT (gold) {row['win_rate_vs_sft']['gold']['rate']:.2f}, "
        f"gold reward {row['gold_reward']['sft']:.3f} -> {row['gold_reward']['policy']:.3f}, "
        f"language consistency {row['language_consistency']:.2f}, RM accuracy {row.get('rm_accuracy') or float('nan'):.2f}"
    )


def _json_safe(value):
    """NaN and infinities (an undefined rate) become null: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


PHASE_FUNCTIONS = {
    "prompts": phase_prompts,
    "generate": phase_generate,
    "select": phase_select,
    "feedback": phase_feedback,
    "reward": phase_reward,
    "rl": phase_rl,
    "evaluate": phase_evaluate,
}

"""Simulated annotators: app users who judge through the feedback app's HTTP API exactly as people would.

Each simulated annotator has an account and its own API token; it leases an item, sees the responses in the order
the app shows them to it (left, right), decides from a gold judge (`fn(prompts, responses) -> list[float]`, higher
is better, e.g. `alinea.judges.sentiment_lexicon`) plus its configured flaws, and submits in screen positions.

The decision on a pairwise item, with g_left and g_right the gold scores of the shown responses and d = g_left -
g_right, is a mixture; one reason decides each judgment:
- with probability `position_bias`: pick the left response (a click on the first thing seen);
- else with probability `length_bias`: pick the longer response (in words; a coin flip when equally long);
- else the annotator's kind decides:
  - `honest` and `noisy`: follow the gold judge. With `temperature` T > 0 the pick is drawn from the Bradley-Terry
    model P(left) = sigmoid(d / T) (Bradley & Terry 1952; the preference model of reward-model training), else the
    higher gold score wins (a coin flip when equal). Then the pick is flipped with probability `flip_prob`. A small
    gold difference, |d| <= `tie_margin`, is answered "tie" with probability `tie_rate`. Honest and noisy differ only
    in the flip probability `PoolConfig` gives them;
  - `careless`: a coin flip (ties at `tie_rate`), whatever the gold says: about 50% agreement with gold;
  - `adversarial`: the gold judge's choice inverted (then `flip_prob` as above): agreement with gold near 0.
Strength (0..3, `alinea.data.records.STRENGTHS`) grows with |d| in steps of `strength_step` when the pick follows the
gold judge (1 + floor(|d| / step), at most 3); any other pick gets 1; careless picks a random strength. "Both bad" is
set when both gold scores are below `both_bad_below` (when set).

With every reason's share known, the chance of picking the left response is linear in two indicators, G (1: the gold
prefers the left response, 0: the right, 0.5: equal) and L (1: the left one is longer, 0: shorter, 0.5: equal):
    P(left) = pb + lb * L + (1 - pb - lb) * (a + (1 - 2a) * G),
with pb the position bias, lb the length bias and a the rate of going against the gold (flips; 0.5 for careless;
1 - flip for adversarial). `measure_annotator` fits this by least squares to an annotator's exported judgments and
reads pb, lb and a back from the coefficients; the tests use it to show that each simulated annotator reproduces its
configuration. Because the app shows each annotator its own random order, the gold-following picks land on the left
half of the time, so the share of left picks (what the app's quality page calls position bias) is about 0.5 + pb/2.

Ranking, rating and thumbs items are answered too (see `decide`): rankings by gold score (position bias: the shown
order; length bias: longest first), thumbs up when the gold score reaches `thumb_threshold`, ratings by mapping the
gold score from `gold_range` onto the project's scale.
"""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alinea.loop.client import ApiError, FeedbackClient

GoldFn = Callable[[list[str], list[str]], Sequence[float]]
"""A batched gold judge: prompts and responses in, one float per response out, higher is better."""
KINDS = ("honest", "noisy", "careless", "adversarial")
TASK_TYPES = ("pairwise", "ranking", "rating", "thumbs")


@dataclass(frozen=True)
class AnnotatorSpec:
    """One simulated annotator: its account name, kind and flaws (see the module docstring for the model)."""

    name: str
    """Username in the feedback app (letters, digits, _ . @ -)."""
    kind: str = "honest"
    """honest | noisy (follow the gold judge) | careless (coin flips) | adversarial (the gold judge inverted)."""
    flip_prob: float = 0.0
    """Probability of flipping a gold-driven pick (label noise)."""
    temperature: float = 0.0
    """Bradley-Terry temperature on the gold difference: P(left) = sigmoid(d / T); 0 = always the higher score."""
    position_bias: float = 0.0
    """Share of judgments that pick the left response whatever it says."""
    length_bias: float = 0.0
    """Share of judgments that pick the longer response whatever it says."""
    tie_rate: float = 0.0
    """Probability of answering "tie" when the gold difference is small (|d| <= tie_margin); careless: always."""
    tie_margin: float = 0.05
    """What counts as a small gold difference, in gold-score units."""
    strength_step: float = 0.2
    """Gold difference per strength level: strength = 1 + floor(|d| / step), at most 3."""
    both_bad_below: float | None = None
    """Mark "both bad" when both gold scores are below this; None never does."""
    thumb_threshold: float = 0.0
    """Thumbs tasks: thumb up when the gold score is at least this."""
    gold_range: tuple[float, float] = (-1.0, 1.0)
    """Rating tasks: the gold scores mapped linearly onto the project's rating scale."""
    seconds_per_item: float = 20.0
    """Typical time spent per item, reported to the app as `time_spent_ms` (nothing actually waits)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for name in ("flip_prob", "position_bias", "length_bias", "tie_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{self.name}: {name} must be in [0, 1], found {value}")
        if self.position_bias + self.length_bias > 1.0:
            raise ValueError(f"{self.name}: position_bias + length_bias must be at most 1")
        if self.temperature < 0 or self.tie_margin < 0 or self.strength_step <= 0:
            raise ValueError(f"{self.name}: temperature and tie_margin must be >= 0 and strength_step > 0")


@dataclass
class PoolConfig:
    """A pool of simulated annotators: how many of each kind, their shared flaws, the gold judge and the seed."""

    honest: int = 3
    """Annotators who follow the gold judge with `flip_prob` noise."""
    noisy: int = 0
    """Annotators who follow the gold judge with `noisy_flip_prob` noise."""
    careless: int = 0
    """Annotators who answer at random (about 50% agreement with the gold judge)."""
    adversarial: int = 0
    """Annotators who answer against the gold judge."""
    gold: str = "sentiment_lexicon"
    """Gold judge by name (`alinea.judges.JUDGES`, or package.module:function)."""
    flip_prob: float = 0.05
    """Label noise of honest (and adversarial) annotators: probability of flipping a pick."""
    noisy_flip_prob: float = 0.25
    """Label noise of noisy annotators."""
    temperature: float = 0.0
    """Bradley-Terry temperature on the gold difference (0: the higher gold score always wins before noise)."""
    position_bias: float = 0.0
    """Every annotator's share of picks of the left response, whatever it says."""
    length_bias: float = 0.0
    """Every annotator's share of picks of the longer response, whatever it says."""
    tie_rate: float = 0.0
    """Probability of a tie when the gold difference is at most `tie_margin`."""
    tie_margin: float = 0.05
    """A gold difference this small may be answered "tie"."""
    seed: int = 0
    """Seed of every annotator's decisions (each judgment is a function of seed, annotator and item)."""
    prefix: str = "sim"
    """Usernames are `<prefix>-<kind>-<n>`."""

    def specs(self) -> list[AnnotatorSpec]:
        """One spec per annotator, in the order honest, noisy, careless, adversarial."""
        shared = {"temperature": self.temperature, "position_bias": self.position_bias,
                  "length_bias": self.length_bias, "tie_rate": self.tie_rate, "tie_margin": self.tie_margin}
        flips = {"honest": self.flip_prob, "noisy": self.noisy_flip_prob, "careless": 0.0,
                 "adversarial": self.flip_prob}
        return [AnnotatorSpec(name=f"{self.prefix}-{kind}-{n}", kind=kind, flip_prob=flips[kind], **shared)
                for kind in KINDS for n in range(getattr(self, kind))]

    def build(self) -> AnnotatorPool:
        from alinea.judges import get_judge

        return AnnotatorPool(self.specs(), get_judge(self.gold), seed=self.seed)


# ---------------------------------------------------------------------------------------------------------------------
# decisions (pure functions of the annotator, what it sees, the gold scores and a random generator)


def word_count(text: str) -> int:
    return len(text.split())


def _strength(spec: AnnotatorSpec, gap: float) -> int:
    return min(3, 1 + int(abs(gap) / spec.strength_step))


def decide_pairwise(spec: AnnotatorSpec, gold: Sequence[float], lengths: Sequence[int],
                    rng: random.Random) -> dict[str, Any]:
    """The answer {choice, strength, both_bad} to a pairwise item whose shown responses (left, right) have gold
    scores `gold` and `lengths` words (see the module docstring for the model)."""
    gold_left, gold_right = float(gold[0]), float(gold[1])
    gap = gold_left - gold_right
    both_bad = spec.both_bad_below is not None and max(gold_left, gold_right) < spec.both_bad_below
    reason = rng.random()
    if reason < spec.position_bias:
        return {"choice": "left", "strength": 1, "both_bad": both_bad}
    if reason < spec.position_bias + spec.length_bias:
        if lengths[0] == lengths[1]:
            choice = rng.choice(("left", "right"))
        else:
            choice = "left" if lengths[0] > lengths[1] else "right"
        return {"choice": choice, "strength": 1, "both_bad": both_bad}
    if spec.kind == "careless":
        if rng.random() < spec.tie_rate:
            return {"choice": "tie", "strength": 0, "both_bad": both_bad}
        return {"choice": rng.choice(("left", "right")), "strength": rng.randint(1, 3), "both_bad": both_bad}
    if abs(gap) <= spec.tie_margin and rng.random() < spec.tie_rate:
        return {"choice": "tie", "strength": 0, "both_bad": both_bad}
    if spec.temperature > 0:
        p_left = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, gap / spec.temperature))))
    else:
        p_left = 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
    if spec.kind == "adversarial":
        p_left = 1.0 - p_left
    left = rng.random() < p_left
    flipped = rng.random() < spec.flip_prob
    if flipped:
        left = not left
    follows_gold = gap != 0 and (left == (gap > 0))
    strength = _strength(spec, gap) if (not flipped and (follows_gold or spec.kind == "adversarial")) else 1
    return {"choice": "left" if left else "right", "strength": strength, "both_bad": both_bad}


def decide_ranking(spec: AnnotatorSpec, gold: Sequence[float], lengths: Sequence[int],
                   rng: random.Random) -> dict[str, Any]:
    """Ranks (1 best) per shown response: by gold score, or by the annotator's flaw (see the module docstring)."""
    n = len(gold)
    reason = rng.random()
    if reason < spec.position_bias:
        utility = [float(-k) for k in range(n)]  # the shown order
    elif reason < spec.position_bias + spec.length_bias:
        utility = [float(length) + rng.random() * 0.1 for length in lengths]
    elif spec.kind == "careless" or rng.random() < spec.flip_prob:
        utility = [rng.random() for _ in range(n)]
    else:
        sign = -1.0 if spec.kind == "adversarial" else 1.0
        noise = [rng.gumbelvariate(0.0, spec.temperature) if spec.temperature > 0 else rng.random() * 1e-9
                 for _ in range(n)]
        utility = [sign * float(g) + e for g, e in zip(gold, noise, strict=True)]
    order = sorted(range(n), key=lambda k: -utility[k])
    ranks = [0] * n
    for rank, position in enumerate(order, start=1):
        ranks[position] = rank
    return {"ranks": ranks, "none_acceptable": False}


def _against_gold(spec: AnnotatorSpec, rng: random.Random) -> bool | None:
    """True: invert the gold judgment; None: answer at random; False: follow it."""
    if spec.kind == "careless":
        return None
    inverted = spec.kind == "adversarial"
    return (not inverted) if rng.random() < spec.flip_prob else inverted


def decide_thumbs(spec: AnnotatorSpec, gold: float, rng: random.Random) -> dict[str, Any]:
    against = _against_gold(spec, rng)
    up = rng.random() < 0.5 if against is None else (gold >= spec.thumb_threshold) != against
    return {"thumb": "up" if up else "down", "comment": ""}


def decide_rating(spec: AnnotatorSpec, gold: float, rng: random.Random, *, aspects: Sequence[str],
                  scale: tuple[int, int]) -> dict[str, Any]:
    low, high = scale
    against = _against_gold(spec, rng)
    if against is None:
        score = rng.randint(low, high)
    else:
        g_low, g_high = spec.gold_range
        share = min(1.0, max(0.0, (gold - g_low) / (g_high - g_low)))
        if against:
            share = 1.0 - share
        score = low + round(share * (high - low))
    return {"ratings": dict.fromkeys(aspects, score), "flags": [], "comment": ""}


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The prompt a gold judge sees: the last user turn of an item's conversation."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


# ---------------------------------------------------------------------------------------------------------------------
# the pool


@dataclass
class PoolResult:
    """What a `run_pool` call did."""

    judgments: int = 0
    """Judgments recorded by the app in this call."""
    per_annotator: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    """Judgments whose first answer was lost in transit: the retry got the recorded judgment back (not a second)."""
    conflicts: int = 0
    """Submissions refused because the lease had expired and another annotator took the slot (409)."""
    stopped: str = "done"
    """done (nothing left for anyone), quota (max_judgments reached) or deadline (deadline_s passed)."""
    seconds: float = 0.0


class AnnotatorPool:
    """Simulated annotators with a gold judge: `run_pool(client, project_id, pool)` lets them work."""

    def __init__(self, specs: Sequence[AnnotatorSpec], gold: GoldFn, *, seed: int = 0) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("annotator names must be distinct")
        if not specs:
            raise ValueError("a pool needs at least one annotator")
        self.specs = list(specs)
        self.gold = gold
        self.seed = seed
        self.tokens: dict[str, str] = {}
        """username -> API token, filled by `ensure_accounts`."""
        self._gold_cache: dict[tuple[str, str], float] = {}

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def ensure_accounts(self, admin: FeedbackClient) -> dict[str, str]:
        """Create the annotators' accounts where missing (random passwords: they sign in by token only) and give
        each an API token; safe to call again (an existing account is reused)."""
        for spec in self.specs:
            if spec.name in self.tokens:
                continue
            try:
                admin.create_user(spec.name, secrets.token_urlsafe(24), "annotator",
                                  display_name=f"simulated ({spec.kind})")
            except ApiError as err:
                if err.status != 409:  # 409: the name is taken, i.e. the account exists from an earlier run
                    raise
            self.tokens[spec.name] = admin.user_token(spec.name)
        return dict(self.tokens)

    def gold_scores(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """Gold scores of `responses` to `prompt`, computed once per (prompt, response)."""
        missing = [r for r in responses if (prompt, r) not in self._gold_cache]
        if missing:
            scores = self.gold([prompt] * len(missing), list(missing))
            for response, score in zip(missing, scores, strict=True):
                self._gold_cache[(prompt, response)] = float(score)
        return [self._gold_cache[(prompt, r)] for r in responses]

    def rng(self, spec: AnnotatorSpec, item_id: int) -> random.Random:
        """The generator behind one annotator's judgment of one item: the same whatever the thread schedule."""
        return random.Random(f"{self.seed}:{spec.name}:{item_id}")

    def decide(self, spec: AnnotatorSpec, lease: dict[str, Any], project: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        """The answer `spec` gives to a leased item (in screen positions), for pairwise, ranking, rating and thumbs
        tasks; `project` (the API's project object) supplies a rating task's aspects and scale."""
        task_type = lease["task_type"]
        if task_type not in TASK_TYPES:
            raise ValueError(f"simulated annotators answer {', '.join(TASK_TYPES)} tasks, not {task_type!r}")
        responses = list(lease["responses"])
        gold = self.gold_scores(last_user_text(lease["messages"]), responses)
        lengths = [word_count(r) for r in responses]
        rng = self.rng(spec, int(lease["item_id"]))
        if task_type == "pairwise":
            return decide_pairwise(spec, gold, lengths, rng)
        if task_type == "ranking":
            return decide_ranking(spec, gold, lengths, rng)
        if task_type == "thumbs":
            return decide_thumbs(spec, gold[0], rng)
        project = project or {}
        return decide_rating(spec, gold[0], rng, aspects=project.get("aspects") or [],
                             scale=tuple(project.get("scale") or (1, 7)))

    def time_spent_ms(self, spec: AnnotatorSpec, item_id: int) -> int:
        rng = random.Random(f"{self.seed}:{spec.name}:{item_id}:time")
        return int(1000 * spec.seconds_per_item * rng.lognormvariate(0.0, 0.3))


class _Budget:
    """Judgments still allowed (quota) before a deadline, shared by the worker threads."""

    def __init__(self, quota: int | None, deadline: float | None) -> None:
        self.left = quota
        self.deadline = deadline
        self.stopped: str | None = None
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.stopped:
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.stopped = "deadline"
                return False
            if self.left is not None:
                if self.left <= 0:
                    self.stopped = "quota"
                    return False
                self.left -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            if self.left is not None:
                self.left += 1

    def stop(self, why: str) -> None:
        with self._lock:
            self.stopped = self.stopped or why


def run_pool(client: FeedbackClient, project_id: int, pool: AnnotatorPool, *, max_judgments: int | None = None,
             deadline_s: float | None = None, workers: int = 4, batch: int = 5,
             on_judgment: Callable[[str, dict[str, Any]], None] | None = None) -> PoolResult:
    """Let the pool's annotators judge project `project_id` through the API until nothing is left for any of them,
    `max_judgments` judgments were recorded, or `deadline_s` seconds passed.

    `client` is an admin's: it creates the accounts (`ensure_accounts`) and adds them to the project. `workers`
    threads serve the annotators in turn, each taking up to `batch` items before passing to the next annotator, so
    that every annotator gets a share of the items even with fewer threads than annotators. A lease is taken only
    with room in the quota, so no item stays leased when the quota is met; at the deadline an annotator finishes
    the item it holds. `on_judgment(annotator, judgment)` is called after each recorded judgment (from the worker
    threads, one at a time).
    """
    if workers < 1 or batch < 1:
        raise ValueError("workers and batch must be >= 1")
    started = time.monotonic()
    pool.ensure_accounts(client)
    client.add_members(project_id, pool.names)
    project = client.get_project(project_id)
    budget = _Budget(max_judgments, None if deadline_s is None else started + deadline_s)
    result = PoolResult(per_annotator=dict.fromkeys(pool.names, 0))
    lock = threading.Lock()
    queue: deque[AnnotatorSpec] = deque(pool.specs)
    callers = {spec.name: client.as_user(pool.tokens[spec.name]) for spec in pool.specs}

    def record(spec: AnnotatorSpec, judgment: dict[str, Any]) -> None:
        with lock:
            result.judgments += 1
            result.per_annotator[spec.name] += 1
            result.replayed += bool(judgment.get("replayed"))
            if on_judgment is not None:
                on_judgment(spec.name, judgment)

    def session(spec: AnnotatorSpec) -> bool:
        """Up to `batch` judgments by one annotator; True when nothing is left for it."""
        api = callers[spec.name]
        if not budget.take():
            return False
        lease = api.lease(project_id)
        if lease is None:
            budget.give_back()
            return True
        for done in range(batch):
            answer = pool.decide(spec, lease, project)
            want_next = done + 1 < batch and budget.take()
            try:
                judgment = api.submit(project_id, lease["item_id"], answer, idempotency_key=uuid.uuid4().hex,
                                      time_spent_ms=pool.time_spent_ms(spec, lease["item_id"]),
                                      lease_next=want_next)
            except ApiError as err:
                if err.status != 409:
                    raise
                with lock:
                    result.conflicts += 1  # the lease expired and the slot moved on: nothing recorded
                budget.give_back()
                if want_next:
                    budget.give_back()
                return False
            record(spec, judgment)
            if not want_next:
                return False
            lease = judgment.get("next")
            if lease is None:
                budget.give_back()
                return True
        return False

    def worker() -> None:
        while budget.stopped is None:
            with lock:
                if not queue:
                    return
                spec = queue.popleft()
            try:
                finished = session(spec)
            except BaseException:
                budget.stop("error")
                raise
            if not finished:
                with lock:
                    queue.append(spec)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(pool.specs)), thread_name_prefix="annotator") as ex:
            futures = [ex.submit(worker) for _ in range(min(workers, len(pool.specs)))]
            for future in futures:
                future.result()
    finally:
        for caller in callers.values():
            caller.close()
    result.stopped = budget.stopped or "done"
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------------------------------------------------
# measuring annotators from their exported judgments


@dataclass(frozen=True)
class AnnotatorMeasure:
    """What an annotator's pairwise judgments show, measured against the gold judge (see the module docstring)."""

    n: int
    """Pairwise judgments measured."""
    tie_rate: float
    """Share of judgments that are ties."""
    tie_rate_small_gap: float | None
    """Share of ties among items whose gold difference is at most `tie_margin` (what `tie_rate` configures)."""
    agreement: float | None
    """Share of non-tie judgments on items the gold judge does not tie that pick the gold judge's choice."""
    noise_rate: float | None
    """1 - agreement."""
    left_share: float | None
    """Share of non-tie judgments that pick the left response (about 0.5 + position_bias / 2)."""
    longer_share: float | None
    """Share of non-tie judgments between responses of different length that pick the longer one."""
    position_bias: float | None
    """Fitted pb: the share of judgments that pick the left response whatever it says."""
    length_bias: float | None
    """Fitted lb: the share that pick the longer response whatever it says."""
    flip_rate: float | None
    """Fitted a: among the remaining judgments, the rate of going against the gold judge."""


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def measure_annotator(judgments: Sequence[dict[str, Any]], gold: GoldFn, *, annotator: str | None = None,
                      tie_margin: float = 0.05) -> AnnotatorMeasure:
    """Measure an annotator from canonical export rows (`client.export(project_id, "canonical")`): pairwise
    judgments with `shown_order`, `answer` (canonical: preference a/b/tie), `responses` and `messages`. With
    `annotator`, only that annotator's rows are used (else all rows given). The fit is least squares of the picked
    side on [1, L, G] (see the module docstring); None where there is too little to fit."""
    rows = [row for row in judgments if row.get("kind", "judgment") == "judgment"
            and row.get("task_type", "pairwise") == "pairwise"
            and (annotator is None or row.get("annotator") == annotator)]
    prompts: list[str] = []
    texts: list[str] = []
    for row in rows:
        order = row["shown_order"]
        prompt = last_user_text(row["messages"])
        for position in (0, 1):
            prompts.append(prompt)
            texts.append(row["responses"][order[position]])
    scores = [float(s) for s in gold(prompts, texts)] if texts else []
    ties = small = small_ties = 0
    agree = decided = lefts = longer = differing = 0
    design: list[tuple[float, float, float]] = []
    picked: list[float] = []
    for k, row in enumerate(rows):
        gap = scores[2 * k] - scores[2 * k + 1]  # left minus right, as shown
        words_left = word_count(texts[2 * k])
        words_right = word_count(texts[2 * k + 1])
        answer = row["answer"]
        if abs(gap) <= tie_margin:
            small += 1
        if answer["preference"] == "tie":
            ties += 1
            small_ties += abs(gap) <= tie_margin
            continue
        left = answer["winner_position"] == 0
        lefts += left
        if gap != 0:
            decided += 1
            agree += left == (gap > 0)
        if words_left != words_right:
            differing += 1
            longer += left == (words_left > words_right)
        gold_says_left = 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
        left_longer = 1.0 if words_left > words_right else 0.0 if words_left < words_right else 0.5
        design.append((1.0, left_longer, gold_says_left))
        picked.append(1.0 if left else 0.0)
    position_bias = length_bias = flip_rate = None
    if len(design) >= 10:
        matrix = np.asarray(design)
        if np.linalg.matrix_rank(matrix) == 3:
            (c0, c_length, c_gold), *_ = np.linalg.lstsq(matrix, np.asarray(picked), rcond=None)
            length_bias = float(c_length)
            position_bias = float(2 * c0 - 1 + c_length + c_gold)
            rest = 1.0 - position_bias - length_bias
            flip_rate = float((rest - c_gold) / (2 * rest)) if abs(rest) > 1e-6 else None
    agreement = _share(agree, decided)
    return AnnotatorMeasure(
        n=len(rows), tie_rate=ties / len(rows) if rows else 0.0, tie_rate_small_gap=_share(small_ties, small),
        agreement=agreement, noise_rate=None if agreement is None else 1.0 - agreement,
        left_share=_share(lefts, len(rows) - ties), longer_share=_share(longer, differing),
        position_bias=position_bias, length_bias=length_bias, flip_rate=flip_rate)


def measure_pool(judgments: Sequence[dict[str, Any]], gold: GoldFn, *,
                 tie_margin: float = 0.05) -> dict[str, AnnotatorMeasure]:
    """`measure_annotator` for every annotator in the rows, by username."""
    names = sorted({row["annotator"] for row in judgments if row.get("kind", "judgment") == "judgment"})
    return {name: measure_annotator(judgments, gold, annotator=name, tie_margin=tie_margin) for name in names}

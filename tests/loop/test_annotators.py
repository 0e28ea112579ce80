"""Simulated annotators: their decision model (offline, many draws) and the pool judging through the real API.

The gold judge of these tests reads a number planted in each response ("value 0.42 ..."), so that gold scores and
response lengths are set independently; the pool talks to the feedback app under uvicorn (tests/loop/test_client.py).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import threading
from collections import Counter

import pytest

from alinea.loop.annotators import (
    AnnotatorPool,
    AnnotatorSpec,
    PoolConfig,
    decide_pairwise,
    measure_annotator,
    measure_pool,
    run_pool,
    word_count,
)
from alinea.loop.client import FeedbackClient
from tests.loop.test_client import LoseAnswers, Recorder, ThreadedApp


def planted_gold(prompts: list[str], responses: list[str]) -> list[float]:
    return [float(re.search(r"value (-?\d+(?:\.\d+)?)", r).group(1)) for r in responses]


def planted_records(n: int, seed: int = 0, *, record_type: str = "comparison") -> list[dict]:
    """Comparison records whose responses carry a gold value in [-1, 1] and 1..25 filler words, independently."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        texts = [f"value {rng.uniform(-1, 1):.3f} " + " ".join(["so"] * rng.randint(1, 25)) for _ in range(2)]
        records.append({"type": "comparison", "id": f"r{i}", "prompt": f"Tell me about {i}.",
                        "response_a": texts[0], "response_b": texts[1], "preference": "tie"})
    return records


def simulate(spec: AnnotatorSpec, n: int, seed: int = 0) -> list[dict]:
    """n judgments by `spec` on random planted pairs, as canonical export rows (shown order = stored order)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        texts = [f"value {rng.uniform(-1, 1):.3f} " + " ".join(["so"] * rng.randint(1, 25)) for _ in range(2)]
        answer = decide_pairwise(spec, planted_gold([], texts), [word_count(t) for t in texts],
                                 random.Random(f"{seed}:{i}"))
        if answer["choice"] == "tie":
            canonical = {"preference": "tie", "winner_position": None}
        else:
            position = 0 if answer["choice"] == "left" else 1
            canonical = {"preference": "ab"[position], "winner_position": position}
        rows.append({"kind": "judgment", "task_type": "pairwise", "annotator": spec.name, "shown_order": [0, 1],
                     "answer": {**canonical, "strength": answer["strength"]}, "responses": texts,
                     "messages": [{"role": "user", "content": f"q{i}"}]})
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# the decision model, offline


def test_honest_annotator_follows_gold_with_strength_from_the_gap():
    spec = AnnotatorSpec("a", strength_step=0.2)
    rng = random.Random(0)
    assert decide_pairwise(spec, [0.9, 0.1], [3, 3], rng) == {"choice": "left", "strength": 3, "both_bad": False}
    assert decide_pairwise(spec, [0.1, 0.35], [3, 3], rng) == {"choice": "right", "strength": 2, "both_bad": False}
    assert decide_pairwise(spec, [0.1, 0.15], [3, 3], rng)["strength"] == 1
    bad = AnnotatorSpec("b", both_bad_below=0.0)
    assert decide_pairwise(bad, [-0.5, -0.2], [3, 3], rng)["both_bad"] is True
    assert decide_pairwise(bad, [-0.5, 0.2], [3, 3], rng)["both_bad"] is False


@pytest.mark.parametrize("flip", [0.1, 0.3])
def test_flip_probability_is_reproduced(flip):
    m = measure_annotator(simulate(AnnotatorSpec("n", kind="noisy", flip_prob=flip), 4000), planted_gold)
    assert m.noise_rate == pytest.approx(flip, abs=0.025)
    assert m.flip_rate == pytest.approx(flip, abs=0.03)
    assert m.position_bias == pytest.approx(0.0, abs=0.04)
    assert m.length_bias == pytest.approx(0.0, abs=0.04)


def test_position_and_length_bias_are_reproduced_together():
    spec = AnnotatorSpec("b", flip_prob=0.1, position_bias=0.3, length_bias=0.2)
    m = measure_annotator(simulate(spec, 6000, seed=1), planted_gold)
    assert m.position_bias == pytest.approx(0.3, abs=0.04)
    assert m.length_bias == pytest.approx(0.2, abs=0.04)
    assert m.flip_rate == pytest.approx(0.1, abs=0.04)
    # Shown order [0, 1] on every row here, so left = "a": the raw share of left picks is pb + (1 - pb) * P(left
    # otherwise), with the length and gold picks on the left half of the time (independent random pairs).
    assert m.left_share == pytest.approx(0.3 + 0.7 * 0.5, abs=0.03)


def test_bradley_terry_temperature():
    spec = AnnotatorSpec("t", temperature=0.25)
    rng = random.Random(3)
    picks = [decide_pairwise(spec, [0.2, 0.0], [5, 5], rng)["choice"] for _ in range(4000)]
    expected = 1 / (1 + math.exp(-0.2 / 0.25))  # sigmoid(d / T) = 0.690
    assert picks.count("left") / 4000 == pytest.approx(expected, abs=0.025)


def test_tie_rate_applies_to_small_gold_differences():
    spec = AnnotatorSpec("t", tie_rate=0.6, tie_margin=0.1)
    rng = random.Random(4)
    small = [decide_pairwise(spec, [0.05, 0.0], [5, 5], rng)["choice"] for _ in range(3000)]
    large = [decide_pairwise(spec, [0.5, 0.0], [5, 5], rng)["choice"] for _ in range(300)]
    assert small.count("tie") / 3000 == pytest.approx(0.6, abs=0.03)
    assert large.count("tie") == 0
    m = measure_annotator(simulate(spec, 5000, seed=2), planted_gold, tie_margin=0.1)
    assert m.tie_rate_small_gap == pytest.approx(0.6, abs=0.05)
    assert m.tie_rate == pytest.approx(0.6 * 0.1 * 0.9, abs=0.01)  # P(|d| <= 0.1) = 0.0975 for two U(-1, 1)


def test_careless_and_adversarial():
    careless = measure_annotator(simulate(AnnotatorSpec("c", kind="careless"), 4000), planted_gold)
    adversarial = measure_annotator(simulate(AnnotatorSpec("v", kind="adversarial", flip_prob=0.05), 4000),
                                    planted_gold)
    assert careless.agreement == pytest.approx(0.5, abs=0.03)
    assert careless.flip_rate == pytest.approx(0.5, abs=0.04)
    assert adversarial.agreement == pytest.approx(0.05, abs=0.015)


def test_pool_config_builds_the_specs():
    cfg = PoolConfig(honest=2, noisy=1, careless=1, adversarial=1, flip_prob=0.05, noisy_flip_prob=0.3,
                     position_bias=0.1, seed=3)
    specs = cfg.specs()
    assert [s.name for s in specs] == ["sim-honest-0", "sim-honest-1", "sim-noisy-0", "sim-careless-0",
                                       "sim-adversarial-0"]
    assert [s.flip_prob for s in specs] == [0.05, 0.05, 0.3, 0.0, 0.05]
    assert all(s.position_bias == 0.1 for s in specs)
    pool = cfg.build()
    assert pool.seed == 3 and pool.gold(["Hi"], ["What a wonderful, lovely day!"])[0] > 0  # sentiment_lexicon
    with pytest.raises(ValueError, match="kind"):
        AnnotatorSpec("x", kind="lazy")
    with pytest.raises(ValueError, match="position_bias"):
        AnnotatorSpec("x", position_bias=1.5)
    with pytest.raises(ValueError, match="distinct"):
        AnnotatorPool([AnnotatorSpec("x"), AnnotatorSpec("x")], planted_gold)


# ---------------------------------------------------------------------------------------------------------------------
# the pool over HTTP


@pytest.fixture
def app_server(tmp_path):
    server = ThreadedApp(tmp_path)
    yield server
    server.stop()


def test_pool_completes_a_project_with_overlap_3(app_server):
    pool = AnnotatorPool([AnnotatorSpec(f"ann{k}", flip_prob=0.1) for k in range(5)], planted_gold, seed=1)
    with app_server.client() as admin:
        project = admin.create_project("overlap-3", overlap=3)
        ids = admin.add_items(project["id"], planted_records(40))
        counted: Counter = Counter()
        result = run_pool(admin, project["id"], pool, workers=3, batch=4,
                          on_judgment=lambda name, judgment: counted.update([name]))
        assert result.stopped == "done" and result.judgments == 120 and result.conflicts == 0
        assert sum(result.per_annotator.values()) == 120 and counted == Counter(result.per_annotator)
        assert min(result.per_annotator.values()) >= 12  # turns: every annotator gets a share with 3 threads
        rows = admin.export(project["id"], "canonical")
        per_item = Counter(row["item_id"] for row in rows)
        assert set(per_item) == set(ids) and set(per_item.values()) == {3}
        pairs = {(row["item_id"], row["annotator"]) for row in rows}
        assert len(pairs) == 120  # three distinct annotators per item
        assert all(item["n_done"] == 3 for item in admin.list_items(project["id"]))
        assert admin.progress(project["id"])["progress"] == 1.0
        # Nothing left: a second run records nothing and reuses the accounts.
        again = run_pool(admin, project["id"], AnnotatorPool(pool.specs, planted_gold), workers=2)
        assert again.judgments == 0 and again.stopped == "done"


def test_one_worker_gives_the_same_judgments_in_every_run(app_server):
    """With one thread each annotator's share of the items is set by the turns alone, not by thread timing."""
    pool = AnnotatorPool([AnnotatorSpec(f"one{k}", flip_prob=0.2) for k in range(4)], planted_gold, seed=3)
    seen = []
    with app_server.client() as admin:
        for run in range(2):
            project = admin.create_project(f"repeat-{run}", overlap=2)
            admin.add_items(project["id"], planted_records(24))
            run_pool(admin, project["id"], pool, workers=1, batch=3)
            rows = admin.export(project["id"], "canonical")
            first = min(row["item_id"] for row in rows)
            seen.append(sorted((row["item_id"] - first, row["annotator"]) for row in rows))
    # Who judges which item is the same (the judgments themselves are seeded by item id, and the ids differ here).
    assert len(seen[0]) == 48 and seen[0] == seen[1]


def test_lost_answers_do_not_duplicate_judgments(app_server):
    submissions = itertools.count(1)  # next() on a count is atomic: the worker threads share it
    keys_seen: set[str] = set()
    keys_lock = threading.Lock()

    def every_fifth_judgment(request) -> bool:
        """The answer to every fifth first attempt is lost. Retries are never lost: with 3 threads sharing the
        count, a retry could otherwise land on a multiple of 5 too (lost twice, replayed once)."""
        if not request.url.path.endswith("/judgments"):
            return False
        key = json.loads(request.content)["idempotency_key"]
        with keys_lock:
            first_attempt = key not in keys_seen
            keys_seen.add(key)
        return first_attempt and next(submissions) % 5 == 0

    transport = LoseAnswers(every_fifth_judgment, times=1000)
    pool = AnnotatorPool([AnnotatorSpec(f"ann{k}") for k in range(3)], planted_gold)
    with FeedbackClient(app_server.url, app_server.token, transport=transport, sleep=Recorder()) as admin:
        project = admin.create_project("flaky", overlap=2)
        admin.add_items(project["id"], planted_records(20))
        result = run_pool(admin, project["id"], pool, workers=3)
        assert result.judgments == 40 and result.replayed == len(transport.lost) >= 8
        rows = admin.export(project["id"], "canonical")
    assert len(rows) == 40
    assert len({(row["item_id"], row["annotator"]) for row in rows}) == 40


def test_quota_and_deadline(app_server):
    pool = AnnotatorPool([AnnotatorSpec(f"q{k}") for k in range(3)], planted_gold)
    with app_server.client() as admin:
        project = admin.create_project("quota", overlap=2)
        admin.add_items(project["id"], planted_records(10))
        first = run_pool(admin, project["id"], pool, max_judgments=7, workers=3, batch=2)
        assert first.judgments == 7 and first.stopped == "quota"
        assert admin.progress(project["id"])["judgments"] == 7
        late = run_pool(admin, project["id"], pool, deadline_s=0.0)
        assert late.judgments == 0 and late.stopped == "deadline"
        # The quota left no item leased: the rest of the project can be finished at once.
        rest = run_pool(admin, project["id"], pool, workers=3)
        assert rest.judgments == 13 and rest.stopped == "done"


@pytest.mark.slow
def test_annotators_reproduce_noise_and_bias_measured_from_the_export(app_server):
    specs = [
        AnnotatorSpec("honest", flip_prob=0.1),
        AnnotatorSpec("noisy", kind="noisy", flip_prob=0.3),
        AnnotatorSpec("leftie", flip_prob=0.0, position_bias=0.4),
        AnnotatorSpec("careless", kind="careless"),
        AnnotatorSpec("adversarial", kind="adversarial", flip_prob=0.05),
    ]
    pool = AnnotatorPool(specs, planted_gold, seed=0)
    n_items = 240
    with app_server.client() as admin:
        project = admin.create_project("measure", overlap=len(specs))
        admin.add_items(project["id"], planted_records(n_items, seed=5))
        result = run_pool(admin, project["id"], pool, workers=3)
        assert result.judgments == n_items * len(specs)
        rows = admin.export(project["id"], "canonical")
        quality = {a["annotator"]: a for a in admin.quality(project["id"])["annotators"]}
    measured = measure_pool(rows, planted_gold)
    assert set(measured) == {s.name for s in specs} and all(m.n == n_items for m in measured.values())
    # Tolerances are about three standard errors at 240 judgments.
    assert measured["honest"].noise_rate == pytest.approx(0.1, abs=0.06)
    assert measured["noisy"].noise_rate == pytest.approx(0.3, abs=0.09)
    assert measured["leftie"].position_bias == pytest.approx(0.4, abs=0.12)
    assert measured["leftie"].left_share == pytest.approx(0.7, abs=0.09)  # 0.5 + pb / 2: shown orders are random
    assert measured["honest"].left_share == pytest.approx(0.5, abs=0.1)
    assert measured["careless"].agreement == pytest.approx(0.5, abs=0.1)
    assert measured["adversarial"].agreement < 0.2
    # The app's own position-bias figure (share of left wins) is what we measured from the export.
    for name, m in measured.items():
        assert quality[name]["position_bias"] == pytest.approx(m.left_share)


def test_ranking_and_thumbs_tasks(app_server):
    rng = random.Random(2)
    rankings = []
    thumbs = []
    for i in range(6):
        values = [rng.uniform(-1, 1) for _ in range(3)]
        rankings.append({"type": "ranking", "id": f"k{i}", "prompt": f"p{i}",
                         "responses": [f"value {v:.3f} words" for v in values], "ranks": [1, 2, 3]})
        thumbs.append({"type": "thumb", "id": f"t{i}", "prompt": f"p{i}", "response": f"value {values[0]:.3f}",
                       "thumb": "up"})
    pool = AnnotatorPool([AnnotatorSpec("r0"), AnnotatorSpec("r1", kind="adversarial")], planted_gold)
    with app_server.client() as admin:
        ranked = admin.create_project("ranking", task_type="ranking", overlap=2)
        admin.add_items(ranked["id"], rankings)
        thumbed = admin.create_project("thumbs", task_type="thumbs", overlap=2)
        admin.add_items(thumbed["id"], thumbs)
        assert run_pool(admin, ranked["id"], pool).judgments == 12
        assert run_pool(admin, thumbed["id"], pool).judgments == 12
        for row in admin.export(ranked["id"], "canonical"):
            gold = planted_gold([], row["responses"])
            best_first = sorted(range(3), key=lambda k: -gold[k])
            expected = [0, 0, 0]
            for rank, k in enumerate(best_first if row["annotator"] == "r0" else best_first[::-1], start=1):
                expected[k] = rank
            assert row["answer"]["ranks"] == expected
        for row in admin.export(thumbed["id"], "canonical"):
            up = planted_gold([], row["responses"])[0] >= 0
            assert (row["answer"]["thumb"] == "up") == (up if row["annotator"] == "r0" else not up)

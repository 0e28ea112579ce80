"""Synthetic human feedback for the demo: simulated annotators judging pairs, rankings and single answers.

The gold judge is the sentiment score of `alinea.data.synthetic.score_sentiment` (the demo task: answers should be
positive). Simulated annotators see the gold score gap through their own noise:
- `honest`: prefer the higher-scoring answer with probability sigmoid(sharpness * gap); near-equal answers are ties;
  strength grows with the gap.
- `random`: a coin flip, whatever the answers say.
- `contrarian`: an honest judgement, reversed (an adversarial annotator).
- `gold`: the gold judge itself, without noise (for held-out evaluation sets).
Deterministic per seed. Records follow docs/data.md.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from alinea.data.synthetic import generate_documents, score_sentiment


@dataclass(frozen=True)
class SimulatedAnnotator:
    name: str
    behaviour: str  # gold | honest | random | contrarian
    sharpness: float = 8.0  # honest judgements: P(prefer a) = sigmoid(sharpness * (score_a - score_b))
    tie_band: float = 0.05  # |gap| below this is judged a tie


GOLD_JUDGE = (SimulatedAnnotator("gold", "gold"),)
DEFAULT_ANNOTATORS = (
    SimulatedAnnotator("honest-1", "honest"),
    SimulatedAnnotator("honest-2", "honest"),
    SimulatedAnnotator("honest-3", "honest", sharpness=4.0),
    SimulatedAnnotator("random-1", "random"),
    SimulatedAnnotator("contrarian-1", "contrarian"),
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def judge_pair(annotator: SimulatedAnnotator, text_a: str, text_b: str, rng: random.Random) -> tuple[str, int]:
    """(preference 'a' | 'b' | 'tie', strength 0..3) of one annotator for two answers."""
    gap = score_sentiment(text_a) - score_sentiment(text_b)
    if annotator.behaviour == "random":
        return rng.choice("ab"), rng.randint(1, 3)
    if abs(gap) < annotator.tie_band:
        return "tie", 0
    if annotator.behaviour == "gold":
        return ("a" if gap > 0 else "b"), max(1, min(3, int(abs(gap) * 3) + 1))
    preference = "a" if rng.random() < _sigmoid(annotator.sharpness * gap) else "b"
    if annotator.behaviour == "contrarian":
        preference = "b" if preference == "a" else "a"
    strength = max(1, min(3, int(abs(gap) * 3) + 1))
    return preference, strength


def _prompt_and_answer(document) -> tuple[str, str]:
    """A reply document splits into its question and answer; other kinds get a request matching their topic."""
    if document.kind == "reply" and "\nA: " in document.text:
        question, answer = document.text.split("\nA: ", 1)
        return question.removeprefix("Q: ").strip(), answer.strip()
    requests = {
        "review": f"Write a short review of a {document.topic} you know.",
        "story": "Tell me a short story.",
        "note": "Tell me something useful in a few sentences.",
    }
    return requests.get(document.kind, "Say something."), document.text


def generate_feedback(
    n_comparisons: int = 600, n_rankings: int = 60, n_thumbs: int = 120, n_ratings: int = 60, *, seed: int = 0,
    annotators: tuple[SimulatedAnnotator, ...] = DEFAULT_ANNOTATORS,
) -> list[dict]:
    """Comparison, ranking, thumb and rating records judged by `annotators` (round-robin), as JSON-ready dicts."""
    rng = random.Random(f"alinea-feedback-{seed}")
    documents = generate_documents(4 * (n_comparisons + 4 * n_rankings + n_thumbs + n_ratings), seed=seed + 7919)
    by_topic: dict[str, list] = {}
    for document in documents:
        by_topic.setdefault(document.topic, []).append(document)
    topics = sorted(by_topic)
    records: list[dict] = []

    def group(k: int) -> tuple[str, list[str]]:
        topic = rng.choice(topics)
        picked = rng.sample(by_topic[topic], k)
        prompt = _prompt_and_answer(picked[0])[0]
        return prompt, [_prompt_and_answer(d)[1] for d in picked]

    for i in range(n_comparisons):
        annotator = annotators[i % len(annotators)]
        prompt, (text_a, text_b) = group(2)
        if text_a == text_b:
            continue
        preference, strength = judge_pair(annotator, text_a, text_b, rng)
        records.append({
            "type": "comparison", "id": f"c-{i:05d}", "prompt": prompt, "response_a": text_a, "response_b": text_b,
            "preference": preference, "strength": strength, "annotator": annotator.name, "tags": ["synthetic"],
        })
    for i in range(n_rankings):
        annotator = annotators[i % len(annotators)]
        prompt, texts = group(4)
        noise = {"gold": 0.0, "honest": 0.1, "random": 10.0, "contrarian": 0.1}[annotator.behaviour]
        sign = -1.0 if annotator.behaviour == "contrarian" else 1.0
        perceived = [sign * score_sentiment(t) + rng.gauss(0.0, noise) for t in texts]
        order = sorted(range(len(texts)), key=lambda j: -perceived[j])
        ranks = [0] * len(texts)
        for position, j in enumerate(order):
            ranks[j] = position + 1
        records.append({
            "type": "ranking", "id": f"r-{i:05d}", "prompt": prompt, "responses": texts, "ranks": ranks,
            "annotator": annotator.name, "tags": ["synthetic"],
        })
    for i in range(n_thumbs):
        annotator = annotators[i % len(annotators)]
        prompt, (text,) = group(1)
        score = score_sentiment(text)
        up = rng.random() < _sigmoid(8.0 * score)
        if annotator.behaviour == "random":
            up = rng.random() < 0.5
        elif annotator.behaviour == "contrarian":
            up = not up
        records.append({
            "type": "thumb", "id": f"t-{i:05d}", "prompt": prompt, "response": text, "thumb": "up" if up else "down",
            "annotator": annotator.name, "tags": ["synthetic"],
        })
    for i in range(n_ratings):
        annotator = annotators[i % len(annotators)]
        prompt, (text,) = group(1)
        score = score_sentiment(text)
        if annotator.behaviour == "random":
            score = rng.uniform(-1.0, 1.0)
        elif annotator.behaviour == "contrarian":
            score = -score
        level = max(1, min(7, round(4 + 3 * score + rng.gauss(0.0, 0.3))))
        records.append({
            "type": "rating", "id": f"g-{i:05d}", "prompt": prompt, "response": text,
            "ratings": {"positivity": level}, "scale": [1, 7], "annotator": annotator.name, "tags": ["synthetic"],
        })
    return records


def write_feedback_data(out_dir: str | Path, *, seed: int = 0, **sizes: int) -> dict[str, Path]:
    """Write `feedback.jsonl` (all record types, simulated annotators) and `gold_comparisons.jsonl` (held-out
    comparisons judged by the gold judge, from another seed) into `out_dir`; returns both paths."""
    from alinea.data.jsonl import write_jsonl

    paths = {"feedback": Path(out_dir) / "feedback.jsonl", "gold": Path(out_dir) / "gold_comparisons.jsonl"}
    write_jsonl(paths["feedback"], generate_feedback(seed=seed, **sizes))
    gold = generate_feedback(200, 0, 0, 0, seed=seed + 1_000_003, annotators=GOLD_JUDGE)
    write_jsonl(paths["gold"], gold)
    return paths

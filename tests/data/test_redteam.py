"""The embedded red-team prompt set: valid prompt records, both kinds in every language, seeded, in the right language."""

import json
from collections import Counter

from alinea.data.records import Prompt, parse_record
from alinea.data.redteam import KINDS, LANGUAGES, categories, generate_redteam_prompts, write_redteam_prompts
from alinea.judges import identify_language


def test_default_set_shape():
    records = generate_redteam_prompts()
    assert len(records) == 80
    counts = Counter((r["tags"][0], r["language"]) for r in records)
    assert counts == {(kind, lang): 10 for kind in KINDS for lang in LANGUAGES}
    assert len({r["id"] for r in records}) == 80 and len({r["prompt"] for r in records}) == 80
    for record in records:
        parsed = parse_record(record)
        assert isinstance(parsed, Prompt)
        kind, category, lang = parsed.tags
        assert kind in KINDS and lang == f"lang:{parsed.language}"
        assert category.removeprefix("category:") in categories(kind)
        assert "{" not in parsed.prompt  # every slot filled


def test_every_prompt_is_identified_in_its_own_language():
    records = generate_redteam_prompts(0, variants=3)
    wrong = [(r["language"], r["prompt"]) for r in records if identify_language(r["prompt"]).language != r["language"]]
    assert wrong == []


def test_seeded_and_variants():
    assert generate_redteam_prompts(5) == generate_redteam_prompts(5)
    assert generate_redteam_prompts(0) != generate_redteam_prompts(1)
    more = generate_redteam_prompts(0, variants=3)
    assert 80 < len(more) <= 240
    assert len({r["prompt"] for r in more}) == len(more)  # repeats dropped
    only_mg = generate_redteam_prompts(0, languages=("mg",))
    assert {r["language"] for r in only_mg} == {"mg"} and len(only_mg) == 20


def test_benign_prompts_sound_dangerous():
    english = [r["prompt"] for r in generate_redteam_prompts() if r["language"] == "en" and r["tags"][0] == "benign"]
    assert any("kill a Python process" in p for p in english)
    assert sum(any(w in p.lower() for w in ("kill", "shoot", "execute", "attack", "blow up", "crack")) for p in english) >= 6


def test_write(tmp_path):
    path = tmp_path / "sub" / "redteam.jsonl"
    assert write_redteam_prompts(path, seed=0) == 80
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == generate_redteam_prompts(0)


def test_refusal_demonstrations_never_repeat_the_evaluation_prompts():
    from alinea.data.redteam import generate_refusal_demonstrations
    from alinea.judges import DETECTORS

    held_out = [p["prompt"] for p in generate_redteam_prompts(0)]
    demos = generate_refusal_demonstrations(30, 1, exclude=held_out)
    assert len(demos) == 30
    assert not {d["prompt"] for d in demos} & set(held_out)
    # Every answer is a refusal the rule judge recognises, in the request's language.
    assert DETECTORS["refusal"]([d["prompt"] for d in demos], [d["response"] for d in demos]) == [1.0] * 30
    assert {d["language"] for d in demos} == {"en", "fr", "es", "mg"}


def test_harmful_prompts_for_the_loop_skip_the_evaluation_prompts_and_run_out_honestly(tmp_path):
    from alinea.data.redteam import generate_harmful_prompts
    from alinea.data.synthetic import write_demo_data

    held_out = [p["prompt"] for p in generate_redteam_prompts(0)]
    prompts = generate_harmful_prompts(20, 2, exclude=held_out)
    assert len(prompts) == 20 and len({p["id"] for p in prompts}) == 20
    assert not {p["prompt"] for p in prompts} & set(held_out)
    assert all(p["type"] == "prompt" and p["tags"][0] == "harmful" for p in prompts)
    assert prompts == generate_harmful_prompts(20, 2, exclude=held_out)
    everything = generate_harmful_prompts(10_000, 2, exclude=held_out)
    assert 20 < len(everything) < 10_000  # the pool is finite: fewer than asked, never repeats
    assert len({p["prompt"] for p in everything}) == len(everything)
    paths = write_demo_data(tmp_path, n_documents=20, n_prompts=10, n_demonstrations=10, n_harmful_prompts=5)
    rows = [json.loads(line) for line in paths["prompts"].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 15 and [r["tags"][0] for r in rows[10:]] == ["harmful"] * 5

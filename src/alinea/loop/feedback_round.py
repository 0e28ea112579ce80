"""The loop's feedback phase over the app's HTTP API: a project per round, its items, who judges, the export.

The project is created once per round (its id goes into the loop state before anything else happens, so a resumed
round finds it instead of creating a second one). Items are the selected pairs (priority = the ensemble's
disagreement: the app leases the most informative pairs first) plus gold items: pairs of this round's candidates whose
gold scores are far apart, with the gold judge's answer, mixed in by the app at `gold_rate`.

Judges: the simulated pool (`alinea.loop.annotators`) works through the same API as people; with `judges = people`
the loop polls the project's progress until every item has its `overlap` judgments or `deadline_s` passes.

With `loop.harmlessness`, the same pairs go to a second pairwise project per round, "<name> harmlessness", whose
guidelines ask which answer is less harmful (the app's pairwise task asks one question per project). Its simulated
annotators are the same accounts with the same flaws (position and length bias, flips, ties, temperature) whose gold
is `loop.harm_judge` instead of `loop.gold_judge`; its gold items are the pairs with the widest harm gap.
"""

from __future__ import annotations

import json
import time

GUIDELINES = """# Which answer is better?

Read the prompt, then both answers. Pick the answer you would rather receive:

- it answers the prompt, **in the prompt's language**;
- it is warm and positive where the prompt invites it, and never rude;
- it refuses requests that could hurt someone, and helps with harmless ones.

Use the strength buttons to say how much better. Choose **tie** when you cannot tell, and **both bad** when neither
answer is acceptable (you can still say which is less bad).
"""


def _record(source, pair: dict) -> dict:
    """A pairwise item as an alinea ranking record (two answers, no answer known yet)."""
    row = {"type": "ranking", "id": pair["id"], "responses": [pair["a"], pair["b"]], "ranks": [1, 1],
           "language": source.language}
    if source.messages is not None:
        row["messages"] = [m.to_json() for m in source.messages]
    else:
        row["prompt"] = source.prompt
    return row


HARMLESSNESS_GUIDELINES = """# Which answer is less harmful?

Read the prompt, then both answers. Judge **only harm**, not how helpful or well written an answer is:

- an answer that insults, mocks or swears at someone is harmful;
- an answer that helps with something that could hurt someone (stealing, cheating, spying, lying about people) is
  harmful; refusing such a request is harmless;
- a plain, polite answer to a harmless question is harmless, however short.

Pick the **less harmful** answer and use the strength buttons to say by how much. Choose **tie** when both are
equally harmless (the usual case) or equally harmful, and **both bad** when both are harmful.
"""

ASPECTS = ("helpfulness", "harmlessness")
"""What a round's project asks: helpfulness (the main project) or harmlessness (loop.harmlessness)."""


def project_key(round_number: int, aspect: str) -> str:
    """The key of a round's project in the loop state's `project_ids`."""
    return str(round_number) if aspect == "helpfulness" else f"{round_number}-{aspect}"


def _gold_items(ctx, records, n: int, judge_name: str, prefix: str = "gold") -> list[dict]:
    """`n` comparison records from this round's candidates whose gap under `judge_name` is largest (answer known)."""
    from alinea.judges import get_judge

    if n <= 0:
        return []
    rows = [json.loads(x) for x in (ctx.round_dir() / "candidates.jsonl").read_text().splitlines()]
    judge = get_judge(judge_name)
    options = []
    for row in rows:
        record = records[row["prompt_index"]]
        prompt = next(m["content"] for m in reversed(record.prompt_messages()) if m["role"] == "user")
        answers = [a for a in row["answers"] if a.strip()]
        if len(answers) < 2:
            continue
        scores = list(map(float, judge([prompt] * len(answers), answers)))
        best = max(range(len(answers)), key=scores.__getitem__)
        worst = min(range(len(answers)), key=scores.__getitem__)
        gap = scores[best] - scores[worst]
        if gap > 0.3 and answers[best] != answers[worst]:
            options.append((gap, row["prompt_index"], answers[best], answers[worst]))
    options.sort(key=lambda x: -x[0])
    items = []
    for k, (_, index, best, worst) in enumerate(options[:n]):
        source = records[index]
        row = {"type": "comparison", "id": f"{prefix}-r{ctx.state.round}-{k}", "response_a": best, "response_b": worst,
               "preference": "a", "strength": 3, "language": source.language}
        if source.messages is not None:
            row["messages"] = [m.to_json() for m in source.messages]
        else:
            row["prompt"] = source.prompt
        items.append(row)
    return items


def pool_config(lcfg, aspect: str = "helpfulness"):
    """The simulated annotators of a project: the same accounts and flaws for both aspects, only the gold differs."""
    from alinea.loop.annotators import PoolConfig

    return PoolConfig(
        honest=lcfg.annotators_honest, noisy=lcfg.annotators_noisy, careless=lcfg.annotators_careless,
        adversarial=lcfg.annotators_adversarial,
        gold=lcfg.harm_judge if aspect == "harmlessness" else lcfg.gold_judge, flip_prob=lcfg.flip_prob,
        temperature=lcfg.annotator_temperature, position_bias=lcfg.position_bias, length_bias=lcfg.length_bias,
        tie_rate=lcfg.tie_rate, tie_margin=lcfg.tie_margin, seed=lcfg.seed,
    )


def collect_round(ctx, records, pairs: list[dict], *, aspect: str = "helpfulness") -> tuple[list[dict], dict]:
    """Create (or find) this round's project for `aspect`, get it judged, return (exported records, quality figures)."""
    project_id = prepare_project(ctx, records, pairs, aspect=aspect)
    return judge_project(ctx, project_id, pairs, aspect=aspect)


def prepare_project(ctx, records, pairs: list[dict], *, aspect: str = "helpfulness") -> int:
    """Create (or find) this round's project for `aspect` with its pairs and gold items; returns its id. With both
    aspects, the loop prepares both projects before anyone judges, so people can work on them side by side."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, not {aspect!r}")
    client = ctx.client
    lcfg = ctx.lcfg
    key = project_key(ctx.state.round, aspect)
    project_id = ctx.state.project_ids.get(key)
    if project_id is None:
        suffix = "" if aspect == "helpfulness" else f" {aspect}"
        name = f"{ctx.out.name} round {ctx.state.round}{suffix}"
        project = client.create_project(name, "pairwise", overlap=lcfg.overlap, gold_rate=lcfg.gold_rate,
                                        guidelines=HARMLESSNESS_GUIDELINES if aspect == "harmlessness" else GUIDELINES,
                                        description=f"alinea loop {ctx.out.name}, round {ctx.state.round}{suffix}")
        project_id = int(project["id"])
        ctx.state.project_ids[key] = project_id
        ctx.state.save(ctx.out)
    progress = client.progress(project_id)
    if int(progress["items"]) == 0:
        client.add_items(project_id, [_record(records[p["prompt_index"]], p) for p in pairs],
                         priorities=[float(p["priority"]) for p in pairs])
    if int(progress["gold_items"]) == 0:  # checked on its own: a crash may fall between the two imports
        judge = lcfg.harm_judge if aspect == "harmlessness" else lcfg.gold_judge
        gold = _gold_items(ctx, records, round(lcfg.gold_rate * len(pairs)), judge,
                           prefix="gold" if aspect == "helpfulness" else f"gold-{aspect}")
        if gold:
            client.add_items(project_id, gold, gold=True)
    return project_id


def judge_project(ctx, project_id: int, pairs: list[dict], *, aspect: str = "helpfulness") -> tuple[list[dict], dict]:
    """Let the simulated annotators judge a prepared project, or wait for people; return (records, quality)."""
    client = ctx.client
    lcfg = ctx.lcfg
    wanted = len(pairs) * lcfg.overlap
    kinds: dict[str, str] = {}
    if lcfg.judges == "simulated":
        from alinea.loop.annotators import run_pool

        config = pool_config(lcfg, aspect)
        pool = config.build()
        kinds = {spec.name: spec.kind for spec in config.specs()}
        result = run_pool(client, project_id, pool, deadline_s=lcfg.deadline_s or None, workers=lcfg.annotator_workers)
        ctx.console.print(f"simulated annotators: {result.judgments} judgments in {result.seconds:.1f}s ({result.stopped})")
    else:
        _wait_for_people(ctx, project_id, wanted, aspect)
    # Sorted: the order in which annotators happened to finish must not change what the reward model sees.
    rows = sorted(client.export(project_id, format="records"), key=lambda row: json.dumps(row, sort_keys=True))
    quality = client.quality(project_id)
    quality["kinds"] = kinds
    return rows, quality


def _wait_for_people(ctx, project_id: int, wanted: int, aspect: str = "helpfulness") -> None:
    """Poll the project's progress until its regular items are fully judged or the deadline passes."""
    from alinea.progress import progress_bar

    lcfg = ctx.lcfg
    started = time.monotonic()
    url = getattr(ctx.client, "base_url", "the feedback app")
    ctx.console.print(f"waiting for people to judge {wanted} pairs x annotators ({aspect}) at {url}/projects/{project_id}")
    with progress_bar(f"{aspect} judgments", wanted) as bar:
        done = 0
        while True:
            progress = ctx.client.progress(project_id)
            now = int(progress.get("regular_judgments", progress.get("judgments", 0)))
            if now > done:
                bar.advance(now - done)
                done = now
            if int(progress.get("complete_items", 0)) >= int(progress.get("items", 0)) or done >= wanted:
                return
            if lcfg.deadline_s and time.monotonic() - started > lcfg.deadline_s:
                ctx.console.print(f"deadline reached with {done} of {wanted} judgments")
                return
            time.sleep(2.0)


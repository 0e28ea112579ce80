"""CLI commands: judges (registered by `alinea.cli`).

- `alinea judge NAME --data FILE`: score the answers of a JSONL file with a judge or a weighted mix;
- `alinea eval language-id`: the language identifier's accuracy per language on held-out short texts;
- `alinea data redteam`: write the embedded red-team prompt set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(apps: dict) -> None:
    """Add this area's commands to the typer apps in `apps` (keys: root, bench, eval, data, reward)."""
    apps["root"].command("judge")(judge_cmd)
    apps["eval"].command("language-id")(language_id_cmd)
    apps["data"].command("redteam")(redteam_cmd)
    apps["eval"].command("safety")(safety_cmd)


def judge_cmd(
    name: Annotated[
        str, typer.Argument(help="A judge (sentiment, language, length, non_toxic, ...), or a mix: 'sentiment=1,language=0.5'.")
    ],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL: alinea records with answers, or `alinea generate` rows.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write one JSONL row per answer: line, index, id, language, score, components.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Score every answer in a file with offline judges and print a summary (mean, range, per language).

    \b
    Judges (higher is better): sentiment, sentiment_lexicon, language (language_consistency), length, non_toxic,
    non_refusal; detectors (1 = found): toxicity, refusal; or any package.module:function.
    \b
    Examples:
      alinea judge sentiment --data runs/demo-data/demonstrations.jsonl
      alinea judge 'sentiment=1,language=0.5,length=0.2' --data answers.jsonl -o scores.jsonl
      alinea judge refusal --data answers.jsonl --json
    """
    from rich.console import Console
    from rich.table import Table

    from alinea.data.jsonl import write_jsonl
    from alinea.judges import parse_judge_spec
    from alinea.judges.scoring import read_judge_inputs, score_inputs, summarize_scores

    judge = parse_judge_spec(name)
    scored = score_inputs(read_judge_inputs(data), judge)
    summary = {"judge": judge.spec, "data": str(data), **summarize_scores(scored)}
    if out is not None:
        write_jsonl(out, (s.to_json() for s in scored))
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    console = Console()
    table = Table("language", "answers", "mean score", title=f"{judge.spec} on {data}")
    for code, numbers in summary["by_language"].items():
        table.add_row(code, str(numbers["n"]), f"{numbers['mean']:.3f}")
    table.add_row("all", str(summary["n"]), f"{summary['mean']:.3f}", style="bold")
    console.print(table)
    console.print(f"std {summary['std']:.3f}, min {summary['min']:.3f}, max {summary['max']:.3f}")
    if len(summary["components"]) > 1:
        console.print("terms (unweighted means): " + ", ".join(f"{k} {v:.3f}" for k, v in summary["components"].items()))
    if out is not None:
        console.print(f"{len(scored)} scores -> {out}")


def language_id_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic texts (2 is held out from development).")] = 2,
    candidates: Annotated[
        str, typer.Option("--candidates", help="Comma-separated language codes the identifier chooses among, or 'all'.")
    ] = "en,fr,es,mg",
) -> None:
    """Accuracy of the offline language identifier per language and text length, on held-out synthetic texts.

    \b
    Examples:
      alinea eval language-id
      alinea eval language-id --json --seed 3
      alinea eval language-id --candidates all
    """
    from rich.console import Console
    from rich.table import Table

    from alinea.judges.language import supported_languages
    from alinea.judges.language_eval import LENGTH_BUCKETS, measure_language_id

    codes = supported_languages() if candidates.strip() == "all" else [c.strip() for c in candidates.split(",") if c.strip()]
    result = measure_language_id(seed, candidates=codes)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    shown = "all" if candidates.strip() == "all" else ", ".join(codes)
    table = Table("language", "texts", "accuracy", *LENGTH_BUCKETS, "taken for",
                  title=f"{result['identifier']}, candidates {shown}, seed {seed}")
    for code, numbers in result["languages"].items():
        buckets = [
            f"{numbers['by_length'][b]['accuracy']:.3f} ({numbers['by_length'][b]['n']})" if b in numbers["by_length"] else "-"
            for b in LENGTH_BUCKETS
        ]
        confused = ", ".join(f"{k} {v}" for k, v in list(numbers["confused_with"].items())[:4]) or "-"
        table.add_row(code, str(numbers["n"]), f"{numbers['accuracy']:.3f}", *buckets, confused)
    Console().print(table)


def redteam_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file of prompt records to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the slot values.")] = 0,
    variants: Annotated[int, typer.Option("--variants", help="Variants of each task and language (other slot values).")] = 1,
) -> None:
    """Write the embedded red-team set: harmful and benign prompts in English, French, Spanish and Malagasy.

    \b
    Example:
      alinea data redteam -o runs/redteam.jsonl --variants 2
    """
    from alinea.data.redteam import write_redteam_prompts
    from alinea.errors import UserError

    if variants < 1:
        raise UserError(f"--variants: expected at least 1, got {variants}.")
    n = write_redteam_prompts(out, seed, variants=variants)
    typer.echo(f"{n} red-team prompts -> {out}")


def safety_cmd(
    model: Annotated[Path, typer.Argument(help="Model checkpoint directory to evaluate.")],
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="Safety prompts: JSONL tagged harmful/benign, or .txt with --kind (default: the embedded red-team set).")] = None,
    cost: Annotated[str | None, typer.Option("--cost", help="Cost source, higher = more harmful: a cost model directory (reward.invert = true), neg:DIR (a reward model of harmlessness read as cost = -reward), a detector (harm, toxicity) or module:function.")] = None,
    cost_limit: Annotated[float, typer.Option(help="An answer is safe by cost when its cost is at most this.")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(help="Answer tokens at most.")] = 48,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    answers_out: Annotated[Path | None, typer.Option("--answers-out", help="Write every judged answer (JSONL).")] = None,
) -> None:
    """Red-team and over-refusal evaluation: safe answers on harmful prompts, needless refusals on benign ones.

    \b
    Examples:
      alinea eval safety runs/sft-XXXX/final
      alinea eval safety runs/loop/round-2/rl/final --prompts my-redteam.jsonl --cost runs/cost-model/final --json
      alinea eval safety runs/sft-XXXX/final --cost neg:runs/harmless-rm/final --cost-limit 0
    """
    import json as json_module

    from alinea.data.jsonl import write_jsonl
    from alinea.eval.model_safety import evaluate_model_safety

    report, _ = evaluate_model_safety(model, prompts_file=prompts, cost=cost, cost_limit=cost_limit,
                                      max_new_tokens=max_new_tokens, seed=seed)
    data = report.to_json()
    if answers_out:
        write_jsonl(answers_out, report.to_json(with_answers=True)["answers"])
    if as_json:
        print(json_module.dumps(data))
        return
    overall = data["overall"]
    def pct(x):
        return "n/a" if x is None else f"{x:.1%}"
    print(f"harmful prompts: {overall['n_harmful']}, safe by rules {pct(overall['safe_rate_rules'])}"
          + (f", safe by cost {pct(overall['safe_rate_cost'])}" if cost else ""))
    print(f"benign prompts: {overall['n_benign']}, needless refusals {pct(overall['needless_refusal_rate'])}")
    for language, counts in data["by_language"].items():
        print(f"  {language}: safe {pct(counts['safe_rate_rules'])}, needless refusals {pct(counts['needless_refusal_rate'])}")

"""The `alinea` command line: thin commands over the library. Every command has --help with examples.

User mistakes (bad files, unknown config keys, a folder that is not a model) print one paragraph and exit with
code 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from alinea.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are trained here or loaded from local directories
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no weight-loading reports; our own errors say what failed

app = typer.Typer(
    help="alinea: the whole RLHF loop. Start with `alinea demo`, or see `alinea COMMAND --help`.",
    epilog=(
        "\b\nExamples:\n"
        "  alinea demo -c configs/tiny.toml\n"
        "  alinea data validate runs/demo-data/demonstrations.jsonl\n"
        "  alinea config show -c configs/tiny.toml --set pretrain.lr=3e-4"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Validate, import, export and summarise JSONL data records.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train byte-level BPE tokenizers.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that run our code and a baseline in the same run.", no_args_is_help=True)
reward_app = typer.Typer(help="Train, evaluate and apply reward models.", no_args_is_help=True)
config_app = typer.Typer(help="Show configuration fields, defaults and presets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(config_app, name="config")
app.add_typer(reward_app, name="reward")

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML preset, e.g. configs/tiny.toml (default: built-in defaults).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one field: section.field=value (repeatable), e.g. pretrain.lr=3e-4."),
]
ResumeOpt = Annotated[
    Path | None, typer.Option("--resume", help="Continue the run in this run directory from its last checkpoint.")
]


def _load(config: Path | None, overrides: list[str] | None):
    from alinea.config import load_config

    return load_config(config, overrides or [])


# ---------------------------------------------------------------------------------------------------------------------
# data


@data_app.command("validate")
def data_validate(
    files: Annotated[list[Path], typer.Argument(help="JSONL files of alinea records.")],
    record_type: Annotated[
        str | None, typer.Option("--type", help="Expected record type for lines without a 'type' field.")
    ] = None,
) -> None:
    """Check JSONL record files; every bad line is reported as file:line: field: what was expected.

    \b
    Examples:
      alinea data validate runs/demo-data/demonstrations.jsonl
      alinea data validate feedback.jsonl --type comparison
    """
    from alinea.data.jsonl import validate_file

    bad = 0
    for path in files:
        report = validate_file(path, expected_type=record_type)
        if report.errors:
            bad += 1
            err_console.print(f"[red]{path}: {len(report.errors)} of {report.n_lines} lines invalid[/red]")
            for line in report.errors[:200]:
                err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]{path}: {len(report.records)} records OK[/green]")
    if bad:
        raise typer.Exit(2)


@data_app.command("import")
def data_import(
    source: Annotated[Path, typer.Argument(help="File to import (.json, .jsonl or .jsonl.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write alinea records (JSONL).")],
    format_name: Annotated[
        str, typer.Option("--format", "-f", help="auto, hh-rlhf, alpaca, trl or alinea.")
    ] = "auto",
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip rows that cannot be converted (they are counted) instead of failing.")
    ] = False,
) -> None:
    """Convert a data set into alinea records.

    \b
    Examples:
      alinea data import ../shared/data/hh-rlhf/harmless-base/train-portion.jsonl.gz -o hh.jsonl --skip-invalid
      alinea data import alpaca_data.json --format alpaca -o demos.jsonl
      alinea data import trl_prefs.jsonl --format trl -o comparisons.jsonl
    """
    from collections import Counter

    from alinea.data.importers import import_file
    from alinea.data.jsonl import write_records

    records, skipped = import_file(source, format_name, skip_invalid=skip_invalid)
    n = write_records(out, records)
    kinds = Counter(r.record_type for r in records)
    console.print(f"{source} -> {out}: {n} records ({', '.join(f'{v} {k}' for k, v in kinds.items())})")
    if skipped:
        err_console.print(f"[yellow]{len(skipped)} rows skipped:[/yellow]")
        for row in skipped[:20]:
            err_console.print(f"  {source}:{row.row}: {row.reason}", markup=False, highlight=False, soft_wrap=True)
        if len(skipped) > 20:
            err_console.print(f"  ... and {len(skipped) - 20} more")


@data_app.command("export")
def data_export(
    source: Annotated[Path, typer.Argument(help="alinea records (JSONL).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the exported rows (JSONL).")],
    kind: Annotated[
        str, typer.Option("--kind", help="TRL format: preference, sft, unpaired-preference or prompt-only.")
    ] = "preference",
    conversational: Annotated[
        bool, typer.Option("--conversational/--standard", help="Chat message lists or plain strings.")
    ] = True,
) -> None:
    """Export alinea records to one of TRL's dataset formats.

    \b
    Examples:
      alinea data export comparisons.jsonl --kind preference -o trl_prefs.jsonl
      alinea data export demos.jsonl --kind sft --standard -o trl_sft.jsonl
    """
    from alinea.data.exporters import EXPORT_KINDS, export_trl
    from alinea.data.jsonl import read_records, write_jsonl

    if kind not in EXPORT_KINDS:
        raise UserError(f"--kind: expected one of {', '.join(EXPORT_KINDS)}, got {kind!r}.")
    exported = export_trl(read_records(source), kind, conversational=conversational)
    n = write_jsonl(out, exported.rows)
    console.print(f"{source} -> {out}: {n} rows ({kind}, {'conversational' if conversational else 'standard'})")
    for reason, count in exported.skipped.items():
        err_console.print(f"[yellow]skipped {count}: {reason}[/yellow]")


@data_app.command("stats")
def data_stats(
    files: Annotated[list[Path], typer.Argument(help="JSONL files of alinea records.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Counts per type, language and annotator; preference and strength distributions; lengths.

    \b
    Example:
      alinea data stats runs/demo-data/prompts.jsonl runs/demo-data/demonstrations.jsonl
    """
    from alinea.data.jsonl import read_records
    from alinea.data.stats import dataset_stats

    records = [r for path in files for r in read_records(path)]
    stats = dataset_stats(records)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    table = Table("statistic", "value", title=", ".join(str(f) for f in files))
    for key, value in stats.items():
        table.add_row(key, json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value)
    console.print(table)


@data_app.command("text")
def data_text(
    sources: Annotated[list[Path], typer.Argument(help="Record files (any format `data import` reads) or .txt files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Raw-text corpus to write (documents separated by blank lines).")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip rows that cannot be converted.")] = False,
) -> None:
    """Turn data sets into a raw-text pretraining corpus: one document per conversation, .txt files as they are.

    A .txt file of sentiment trees, one a line (the Stanford Sentiment Treebank), gives one plain sentence per tree.

    \b
    Examples:
      alinea data text ../shared/data/tinyshakespeare/input.txt ../shared/data/alpaca/alpaca_data_5000_subset.json -o corpus.txt
      alinea data text ../shared/data/sst/train.txt -o sst.txt
      alinea data text hh.jsonl.gz --skip-invalid -o hh.txt
    """
    from alinea.data.corpus import source_documents, write_documents

    documents: list[str] = []
    for source in sources:
        found, skipped = source_documents(source, skip_invalid=skip_invalid)
        documents.extend(found)
        console.print(f"{source}: {len(found)} documents")
        if skipped:
            err_console.print(f"[yellow]{source}: {skipped} rows skipped[/yellow]")
    n = write_documents(out, documents)
    console.print(f"{n} documents -> {out}")


@data_app.command("split")
def data_split(
    source: Annotated[Path, typer.Argument(help="alinea records (JSONL) to split.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write train.jsonl, heldout.jsonl and split.json to.")],
    holdout: Annotated[float, typer.Option("--holdout", help="Share of groups (items or prompts) held out, in (0, 1).")] = 0.15,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split: the same seed and data give the same split.")] = 0,
    by: Annotated[
        str, typer.Option("--by", help="item: records of the same prompt and answers stay together; prompt: all records of a prompt.")
    ] = "item",
) -> None:
    """Seeded train / held-out split of a record file; related records never straddle the two sides.

    \b
    Examples:
      alinea data split hh.jsonl --holdout 0.15 --seed 0 -o runs/hh/split
      alinea data split runs/demo-data/feedback.jsonl --by prompt -o split
    """
    from alinea.data.jsonl import read_records, write_jsonl, write_records
    from alinea.data.split import split_records

    records = read_records(source)
    split = split_records(records, holdout=holdout, seed=seed, by=by)
    write_records(out / "train.jsonl", split.train)
    write_records(out / "heldout.jsonl", split.heldout)
    summary = {
        "source": str(source), "holdout": holdout, "seed": seed, "by": by, "records": len(records),
        "groups": split.n_groups, "train_records": len(split.train), "heldout_records": len(split.heldout),
        "heldout_groups": split.n_heldout_groups,
    }
    write_jsonl(out / "split.json", [summary])
    console.print(
        f"{source}: {len(records)} records in {split.n_groups} {by} groups -> {out / 'train.jsonl'}: "
        f"{len(split.train)} records; {out / 'heldout.jsonl'}: {len(split.heldout)} records "
        f"({split.n_heldout_groups} groups)"
    )


@data_app.command("demo")
def data_demo(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Generate the embedded synthetic demo data (corpus, prompts, demonstrations, simulated feedback), seeded.

    \b
    Example:
      alinea data demo --set demo_data.out_dir=my-demo --set demo_data.seed=1
    """
    cfg = _load(config, overrides).demo_data
    paths = cfg.write()
    from alinea.data.synthetic_feedback import write_feedback_data

    paths |= write_feedback_data(Path(cfg.out_dir), seed=cfg.seed)
    for name, path in paths.items():
        console.print(f"{name}: {path}")


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer, pretrain, sft, generate, eval


@tokenizer_app.command("train")
def tokenizer_train(
    corpus: Annotated[list[Path], typer.Option("--corpus", help="Raw-text file(s); documents separated by blank lines.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to save the tokenizer to.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Train a byte-level BPE tokenizer (with chat template and special tokens) on raw text.

    \b
    Examples:
      alinea tokenizer train --corpus runs/demo-data/corpus.txt --out runs/tokenizer
      alinea tokenizer train --corpus a.txt --corpus b.txt --out tok --set tokenizer.vocab_size=16000
    """
    from alinea.data.corpus import read_documents
    from alinea.model.tokenizer import save_tokenizer, train_tokenizer

    cfg = _load(config, overrides).tokenizer
    documents = [d for path in corpus for d in read_documents(path)]
    if cfg.max_documents:
        documents = documents[: cfg.max_documents]
    with console.status(f"training a {cfg.vocab_size}-token BPE on {len(documents)} documents"):
        tokenizer = train_tokenizer(documents, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency)
    save_tokenizer(tokenizer, out)
    console.print(f"tokenizer ({len(tokenizer)} tokens) -> {out}")


def _report_training(result, stage: str) -> None:
    eval_text = f", eval loss {result.eval_loss:.3f}" if result.eval_loss is not None else ""
    console.print(
        f"{stage}: {result.steps} steps, train loss {result.train_loss:.3f}{eval_text}, "
        f"{result.tokens_per_s:,.1f} {'examples' if stage == 'reward' else 'tokens'}/s\n"
        f"  run: {result.run_dir}\n  model: {result.final_dir}"
    )


@app.command("pretrain")
def pretrain_cmd(config: ConfigOpt = None, overrides: SetOpt = None, resume: ResumeOpt = None) -> None:
    """Pretrain a causal LM on raw text (packed sequences, AdamW, warm-up + cosine, held-out perplexity).

    Writes runs/pretrain-<timestamp>/ (config.toml, meta.json, metrics.jsonl, tb/, checkpoints/, final/).
    Data-parallel on 2 processes (gloo on CPU, NCCL on GPUs):
    accelerate launch --multi_gpu --num_processes 2 -m alinea.cli pretrain -c configs/tiny.toml ...

    \b
    Examples:
      alinea pretrain -c configs/tiny.toml --set pretrain.tokenizer=runs/tokenizer
      alinea pretrain -c configs/tiny.toml --set model.init_from=path/to/hf-model --set pretrain.lr=1e-4
      alinea pretrain --resume runs/pretrain-20260101-120000
    """
    from alinea.train import pretrain

    cfg = _load(config, overrides)
    _report_training(pretrain.run(cfg, resume=resume), "pretrain")


@app.command("sft")
def sft_cmd(config: ConfigOpt = None, overrides: SetOpt = None, resume: ResumeOpt = None) -> None:
    """Supervised fine-tuning on demonstrations (chat template, loss on assistant tokens only, optional LoRA).

    \b
    Examples:
      alinea sft -c configs/tiny.toml --set sft.model=runs/pretrain-XXXX/final
      alinea sft -c configs/tiny.toml --set sft.model=runs/pretrain-XXXX/final --set sft.lora=true
      alinea sft --resume runs/sft-20260101-120000
    """
    from alinea.train import sft

    cfg = _load(config, overrides)
    _report_training(sft.run(cfg, resume=resume), "sft")


@app.command("generate")
def generate_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint directory (with its tokenizer).")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
    prompts_file: Annotated[
        Path | None, typer.Option("--prompts", help="JSONL records whose prompts to answer (prompt, demonstration, ...).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write answers as JSONL here.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Continue raw text instead of using the chat template.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Answer at most this many prompts from --prompts (0 = all).")] = 0,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Sample answers with a KV cache (temperature, top-p, batches).

    \b
    Examples:
      alinea generate -m runs/sft-XXXX/final -p "Write a short review of a film."
      alinea generate -m runs/sft-XXXX/final --prompts runs/demo-data/prompts.jsonl --limit 20 -o answers.jsonl
      alinea generate -m runs/pretrain-XXXX/final --raw -p "Once upon a time" --set generate.temperature=0
    """
    from alinea.data.jsonl import read_records, write_jsonl
    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.model.generation import generate
    from alinea.progress import progress_bar

    gcfg = _load(config, overrides).generate
    items: list = list(prompt or [])
    if prompts_file:
        records = read_records(prompts_file)
        if limit:
            records = records[:limit]
        items += [r.prompt_messages() for r in records]
    if not items:
        raise UserError("generate: give at least one --prompt or a --prompts file.")
    lm, tokenizer = load_model_and_tokenizer(model)
    with progress_bar("generate", len(items), rate_unit="prompt") as bar:
        answers = generate(
            lm, tokenizer, items, max_new_tokens=gcfg.max_new_tokens, temperature=gcfg.temperature, top_p=gcfg.top_p,
            batch_size=gcfg.batch_size, seed=gcfg.seed, chat=not raw, progress=bar.advance,
        )
    rows = []
    for item, answer in zip(items, answers, strict=True):
        shown = item if isinstance(item, str) else item[-1]["content"]
        console.print(f"[bold]> {shown}[/bold]", highlight=False)
        console.print(answer.text, markup=False, highlight=False)
        rows.append({"prompt": item, "response": answer.text, "finished": answer.finished})
    if out:
        write_jsonl(out, rows)
        console.print(f"{len(rows)} answers -> {out}")


@eval_app.command("perplexity")
def eval_perplexity(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint directory (with its tokenizer).")],
    text: Annotated[Path, typer.Option("--text", "-t", help="Held-out raw text; documents separated by blank lines.")],
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per scored sequence.")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")] = 16,
    max_sequences: Annotated[int, typer.Option("--max-sequences", help="Score at most this many (0 = all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Perplexity of a model on held-out text (exp of mean next-token cross-entropy).

    \b
    Example:
      alinea eval perplexity -m runs/pretrain-XXXX/final -t heldout.txt
    """
    from alinea.eval.perplexity import perplexity
    from alinea.model.causal_lm import load_model_and_tokenizer

    lm, tokenizer = load_model_and_tokenizer(model)
    result = perplexity(lm, tokenizer, text, seq_len=seq_len, batch_size=batch_size, max_sequences=max_sequences)
    if as_json:
        print(json.dumps(result.__dict__))
    else:
        console.print(f"{text}: perplexity {result.ppl:.2f} (loss {result.loss:.4f} nats/token over {result.tokens} tokens)")


# ---------------------------------------------------------------------------------------------------------------------
# reward


@reward_app.command("train")
def reward_train(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data: Annotated[
        list[Path] | None, typer.Option("--data", "-d", help="Feedback JSONL (repeatable); default reward.data.")
    ] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Checkpoint to start from; default reward.model.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to create (default runs/reward-<time>).")] = None,
    resume: ResumeOpt = None,
) -> None:
    """Train a reward model on comparisons, rankings, ratings and thumbs (one run, per-type weights).

    Writes the run directory: config.toml, meta.json, metrics.jsonl, eval.json (accuracy, ECE, ties, annotator
    reliabilities), reliability.png, checkpoints/ and final/ (loadable with AutoModelForSequenceClassification).

    \b
    Examples:
      alinea reward train -c configs/tiny.toml -m runs/sft-XXXX/final -d runs/demo-data/feedback.jsonl -o runs/rm
      alinea reward train -c configs/tiny.toml -m runs/sft-XXXX/final --set reward.ensemble=4
      alinea reward train -c configs/tiny.toml -m BASE --set reward.annotator_reliability=true
      alinea reward train --resume runs/rm
    """
    from alinea.train import reward

    cfg = _load(config, overrides)
    if data:
        cfg.reward.data = [str(p) for p in data]
    if model:
        cfg.reward.model = str(model)
    result = reward.run(cfg, resume=resume, out=out)
    _report_training(result, "reward")
    report = result.run_dir / "eval.json"
    if report.is_file():
        numbers = json.loads(report.read_text(encoding="utf-8"))
        shown = {k: numbers[k] for k in ("accuracy", "n", "ece", "loss", "ties") if k in numbers}
        console.print(f"  held-out: {shown}")
        if numbers.get("annotator_reliability"):
            console.print(f"  annotator reliability: {numbers['annotator_reliability']}")


@reward_app.command("eval")
def reward_eval(
    model_dir: Annotated[Path, typer.Argument(help="A reward run directory or its final/ folder.")],
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Feedback JSONL to evaluate on (repeatable).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a reliability diagram PNG here.")] = None,
    max_len: Annotated[int, typer.Option("--max-len", help="Longest prompt + response in tokens.")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per forward pass.")] = 16,
) -> None:
    """Accuracy, log-likelihood, expected calibration error and tie handling on feedback records.

    \b
    Examples:
      alinea reward eval runs/rm --data heldout.jsonl --json
      alinea reward eval runs/rm/final --data heldout.jsonl --plot reliability.png
    """
    from alinea.config import RewardConfig
    from alinea.data.jsonl import read_records
    from alinea.model.reward import load_reward_model
    from alinea.train.reward import (
        RewardLoss,
        collate,
        encode_records,
        evaluate_examples,
        reliability_diagram,
    )
    from alinea.train.rewards import model_kind

    model, tokenizer = load_reward_model(model_dir)
    # The loss is scored with the settings the model was trained with (tie model, strength margins, ...), read from
    # its run's config.toml; a model without one gets the defaults. A cost model (trained with reward.invert) is
    # evaluated on the data read the same way it was trained. Annotator reliabilities are learned per training
    # annotator and not saved with the model: held-out judgments count as those of an annotator of reliability 1.
    trained = trained_reward_config(model_dir)
    cfg = dataclasses.replace(trained or RewardConfig(), max_len=max_len, batch_size=batch_size,
                              invert=model_kind(model_dir) == "cost", annotator_reliability=False)
    records = [r for path in data for r in read_records(path)]
    examples, counts, levels = encode_records(records, tokenizer, cfg, {})
    if not examples:
        raise UserError(f"{', '.join(map(str, data))}: no comparison, ranking, rating or thumb records to evaluate on.")
    batches = [collate(examples[i : i + batch_size], tokenizer.pad_token_id) for i in range(0, len(examples), batch_size)]
    metrics = evaluate_examples(RewardLoss(model, cfg, n_annotators=0, n_levels=levels), batches)
    if plot and "calibration" in metrics:
        reliability_diagram(metrics["calibration"], plot)
    summary = {k: metrics[k] for k in ("accuracy", "n", "ece", "loss") if k in metrics}
    summary |= {k: v for k, v in metrics.items() if k not in summary and k != "calibration"}
    summary["loss_settings"] = "trained" if trained is not None else "defaults"
    if counts:
        summary["skipped"] = dict(counts)
    if as_json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            console.print(f"{key}: {value}")


def trained_reward_config(model_dir: Path):
    """The `[reward]` settings a reward model was trained with: the `config.toml` of its run (the folder itself, or
    the run above a final/ or best/ folder, or the run above a checkpoints/step-N folder); None when there is none."""
    from alinea.config import load_config

    model_dir = Path(model_dir)
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        path, meta = folder / "config.toml", folder / "meta.json"
        if path.is_file() and meta.is_file():
            try:
                stage = json.loads(meta.read_text(encoding="utf-8")).get("stage")
            except (OSError, ValueError, AttributeError):
                return None
            return load_config(path).reward if stage == "reward" else None
    return None


@reward_app.command("score")
def reward_score(
    model_dir: Annotated[Path, typer.Argument(help="A reward run directory or its final/ folder.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Records whose responses to score (JSONL).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write scored records here (default: print).")] = None,
    max_len: Annotated[int, typer.Option("--max-len", help="Longest prompt + response in tokens.")] = 256,
) -> None:
    """Add `reward` and `reward_std` (ensemble spread) to each record, per response where there are several.

    \b
    Examples:
      alinea reward score runs/rm --data answers.jsonl -o scored.jsonl
    """
    from alinea.data.jsonl import read_records, write_jsonl
    from alinea.model.reward import load_reward_model
    from alinea.train.reward import score_records

    model, tokenizer = load_reward_model(model_dir)
    records = read_records(data)
    scores = score_records(model, tokenizer, records, max_len=max_len)
    rows = []
    for record, scored in zip(records, scores, strict=True):
        row = record.to_json()
        if len(scored) == 1:
            row["reward"], row["reward_std"] = scored[0]
        elif scored:
            row["reward"] = [m for m, _ in scored]
            row["reward_std"] = [s for _, s in scored]
        rows.append(row)
    if out:
        write_jsonl(out, rows)
        console.print(f"{len(rows)} records scored -> {out}")
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------------------------
# bench, config, demo


@bench_app.command("pretrain")
def bench_pretrain_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object {ours, baseline, unit, ratio}.")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Steps per timed round.")] = 6,
    rounds: Annotated[int, typer.Option("--rounds", help="Alternating rounds of ours and baseline.")] = 3,
    config: ConfigOpt = Path("configs/tiny.toml") if Path("configs/tiny.toml").is_file() else None,
    overrides: SetOpt = None,
) -> None:
    """Tokens/s of our pretraining step vs a bare forward+backward+AdamW step of the same model and batch.

    \b
    Example:
      alinea bench pretrain --json
    """
    from alinea.bench.pretrain import bench_pretrain

    cfg = _load(config, overrides)
    result = bench_pretrain(cfg, vocab_size=cfg.tokenizer.vocab_size, steps=steps, rounds=rounds)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        console.print(
            f"ours {result.ours:,.0f} tokens/s, baseline {result.baseline:,.0f} tokens/s, ratio {result.ratio:.3f}"
        )
        console.print(result.workload)


@bench_app.command("reward")
def bench_reward_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object {ours, baseline, unit, ratio, peak_rss_mb}.")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Timed steps per side.")] = 10,
    rounds: Annotated[int, typer.Option("--rounds", help="Runs per side (alternating order; medians reported).")] = 1,
) -> None:
    """Pairs/s and peak memory of our reward trainer vs TRL's RewardTrainer on the same model and data.

    Needs the optional bench extra (pip install -e '.[bench]'). Workload: GPT-2 architecture, 4 layers, width 256,
    4 heads, vocab 8192, random init, 16 pairs of prompt 64 + response 64 tokens, 2 threads; each side in its own
    process so that peak memory is its own.

    \b
    Example:
      alinea bench reward --json
    """
    from alinea.bench.reward import Workload, bench_reward

    result = bench_reward(Workload(steps=steps), rounds=rounds)
    if as_json:
        print(json.dumps(result))
    else:
        console.print(
            f"ours {result['ours']:.2f} pairs/s, baseline {result['baseline']:.2f} pairs/s, ratio {result['ratio']:.2f}; "
            f"peak RSS ours {result['peak_rss_mb']['ours']:.0f} MB, baseline {result['peak_rss_mb']['baseline']:.0f} MB"
        )


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables (docs/config.md is made so).")] = False,
) -> None:
    """Every configuration field with its type, value and meaning.

    \b
    Examples:
      alinea config show
      alinea config show -c configs/tiny.toml --set pretrain.lr=3e-4
    """
    from alinea.config import describe_config, describe_markdown

    if markdown:
        print(describe_markdown(_load(config, overrides)), end="")
        return
    table = Table("key", "type", "value", "meaning")
    for row in describe_config(_load(config, overrides)):
        table.add_row(*row)
    console.print(table)


@app.command("demo")
def demo_cmd(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """The whole RLHF loop on the embedded tiny default, on a laptop CPU in minutes.

    Synthetic data -> tokenizer -> pretrain -> SFT -> rounds of (answers -> simulated annotators judging through the
    feedback app -> reward model -> RL -> evaluation) -> report.html; prints the report's path.

    \b
    Example:
      alinea demo -c configs/tiny.toml
    """
    from alinea.loop.demo import run_demo

    run_demo(_load(config, overrides), console=console)


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-error types, abort types) of the click typer runs on: its vendored copy (newer typer) and/or click."""
    import importlib

    errors: list[type] = []
    aborts: list[type] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "ClickException"):
            errors.append(module.ClickException)
        if hasattr(module, "Abort"):
            aborts.append(module.Abort)
    return tuple(errors), tuple(aborts)


def _register_area_commands() -> None:
    """Commands defined in `alinea.commands.*` (feedback app, RL, judges) join the groups above."""
    from alinea.commands import bench_rl, feedback, judges, loop, report, rl, sampling

    apps = {"root": app, "bench": bench_app, "eval": eval_app, "data": data_app, "reward": reward_app}
    for area in (feedback, rl, judges, sampling, bench_rl, loop, report):
        area.register(apps)


_register_area_commands()


def main() -> None:
    """Entry point: run the app, turning user errors into one paragraph and exit code 2."""
    try:
        # In non-standalone mode click returns (not raises) the code of a `typer.Exit`, e.g. `data validate`'s 2.
        code = app(prog_name="alinea", standalone_mode=False)
    except UserError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click's usage errors
        usage_errors, aborts = _click_exception_types()
        if isinstance(err, usage_errors):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, aborts):
            sys.exit(130)
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()

"""`alinea demo`: the loop on the embedded tiny default, end to end on a laptop CPU.

Stages: synthetic data -> tokenizer -> pretrain (held-out perplexity) -> SFT -> the loop (`alinea.loop.rounds`: rounds
of generation, simulated annotators judging through the feedback app's API, reward model, RL, evaluation) -> report.
Every stage writes its own run directory under `pretrain.runs_dir`; the demo prints where, and the report's path.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from alinea.config import AlineaConfig


@dataclass
class DemoResult:
    data_dir: Path
    tokenizer_dir: Path
    pretrain_run: Path
    sft_run: Path
    loop_dir: Path
    report: Path
    heldout_ppl: float
    sft_eval_loss: float | None
    summary: dict = field(default_factory=dict)  # the loop's summary.json
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(cfg: AlineaConfig, *, console: Console | None = None) -> DemoResult:
    from alinea.data.corpus import read_documents
    from alinea.data.jsonl import read_records
    from alinea.model.tokenizer import save_tokenizer, train_tokenizer
    from alinea.train import pretrain, sft

    console = console or Console()
    cfg = copy.deepcopy(cfg)
    seconds: dict[str, float] = {}
    runs_dir = Path(cfg.pretrain.runs_dir)

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    start = stage("1. synthetic data")
    dcfg = cfg.demo_data
    paths = dcfg.write()
    console.print(f"corpus, prompts and demonstrations in {dcfg.out_dir}")
    seconds["data"] = time.perf_counter() - start

    start = stage("2. tokenizer")
    documents = read_documents(paths["corpus"])[: cfg.tokenizer.max_documents or None]
    # The corpus is English; prompts and demonstrations add French, Spanish and Malagasy words to the vocabulary.
    chat_texts = [
        message["content"]
        for kind in ("prompts", "demonstrations")
        for record in read_records(paths[kind])
        for message in record.prompt_messages() + [{"content": t} for t in record.response_texts()]
    ]
    tokenizer = train_tokenizer(
        documents + chat_texts, vocab_size=cfg.tokenizer.vocab_size, min_frequency=cfg.tokenizer.min_frequency
    )
    tokenizer_dir = save_tokenizer(tokenizer, runs_dir / "demo-tokenizer")
    console.print(f"{len(tokenizer)} tokens -> {tokenizer_dir}")
    seconds["tokenizer"] = time.perf_counter() - start

    start = stage("3. pretrain")
    cfg.pretrain.corpus = str(paths["corpus"])
    cfg.pretrain.tokenizer = str(tokenizer_dir)
    pre = pretrain.run(cfg)
    ppl = _perplexity(pre.eval_loss)
    console.print(f"held-out perplexity {ppl:.1f} (loss {pre.eval_loss:.3f}); run {pre.run_dir}")
    seconds["pretrain"] = time.perf_counter() - start

    start = stage("4. SFT")
    cfg.sft.model = str(pre.final_dir)
    cfg.sft.data = str(paths["demonstrations"])
    tuned = sft.run(cfg)
    console.print(f"SFT eval loss {tuned.eval_loss:.3f}; run {tuned.run_dir}")
    seconds["sft"] = time.perf_counter() - start

    start = stage("5. the loop: feedback -> reward model -> RL, round after round")
    from alinea.loop.rounds import run_loop

    cfg.loop.policy = str(tuned.final_dir)
    cfg.loop.prompts = str(paths["prompts"])
    loop_dir = _fresh_dir(runs_dir / "demo-loop")
    report = run_loop(cfg, loop_dir, console=console)
    summary = json.loads((loop_dir / "summary.json").read_text(encoding="utf-8"))
    seconds["loop"] = time.perf_counter() - start
    console.rule("[bold]done")
    total = sum(seconds.values())
    console.print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + f"; total {total:.0f}s")
    headline = {k: summary.get(k) for k in (
        "rounds", "win_rate_vs_sft", "gold_reward_sft", "gold_reward_final", "kl_final", "rm_accuracy",
        "language_consistency")}
    console.print(f"summary: {json.dumps(headline)}", markup=False, highlight=False)
    console.print(f"report: {report}  (open it in a browser)", markup=False, highlight=False)
    console.print(
        "judge answers yourself: alinea serve --db sqlite:///" + str(loop_dir / "feedback" / "feedback.db")
        + "  then open http://127.0.0.1:8000 (create an account with alinea users create)", markup=False,
        highlight=False,
    )
    return DemoResult(
        data_dir=Path(dcfg.out_dir), tokenizer_dir=tokenizer_dir, pretrain_run=pre.run_dir, sft_run=tuned.run_dir,
        loop_dir=loop_dir, report=report, heldout_ppl=ppl, sft_eval_loss=tuned.eval_loss, summary=summary,
        seconds=seconds,
    )


def _fresh_dir(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, ... : the first that does not exist yet (the demo never overwrites)."""
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _perplexity(loss: float | None) -> float:
    import math

    return math.exp(min(loss, 50.0)) if loss is not None else float("nan")

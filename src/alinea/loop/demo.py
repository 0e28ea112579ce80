"""`alinea demo`: the loop on the embedded tiny default, end to end on a laptop CPU.

Stages at this point: synthetic data -> tokenizer -> pretrain (held-out perplexity) -> SFT -> simulated feedback ->
reward model (accuracy against the gold judge) -> sampled answers in each language. Every stage writes its own run directory under `pretrain.runs_dir`; the demo prints where.
"""

from __future__ import annotations

import copy
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
    reward_run: Path
    heldout_ppl: float
    sft_eval_loss: float | None
    reward_gold_accuracy: float
    samples: list[tuple[str, str, str]] = field(default_factory=list)  # (language, prompt, answer)
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(cfg: AlineaConfig, *, console: Console | None = None) -> DemoResult:
    from alinea.data.corpus import read_documents
    from alinea.data.jsonl import read_records
    from alinea.data.synthetic import write_demo_data
    from alinea.data.synthetic_feedback import write_feedback_data
    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.model.generation import generate
    from alinea.model.tokenizer import save_tokenizer, train_tokenizer
    from alinea.train import pretrain, reward, sft

    console = console or Console()
    cfg = copy.deepcopy(cfg)
    seconds: dict[str, float] = {}
    runs_dir = Path(cfg.pretrain.runs_dir)

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    start = stage("1. synthetic data")
    dcfg = cfg.demo_data
    paths = write_demo_data(
        Path(dcfg.out_dir), n_documents=dcfg.n_documents, n_prompts=dcfg.n_prompts,
        n_demonstrations=dcfg.n_demonstrations, seed=dcfg.seed,
    )
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

    start = stage("5. feedback and reward model")
    feedback = write_feedback_data(Path(dcfg.out_dir), seed=dcfg.seed)
    cfg.reward.model = str(tuned.final_dir)
    cfg.reward.data = [str(feedback["feedback"])]
    rm = reward.run(cfg)
    gold = _gold_accuracy(rm.final_dir, feedback["gold"], cfg.reward)
    console.print(
        f"reward model: held-out loss {rm.eval_loss:.3f}; accuracy against the gold judge {gold['accuracy']:.1%} "
        f"on {gold['n']} comparisons (ECE {gold['ece']:.3f}); run {rm.run_dir}"
    )
    seconds["reward"] = time.perf_counter() - start

    start = stage("6. samples")
    model, tok = load_model_and_tokenizer(tuned.final_dir)
    prompts = read_records(paths["prompts"], expected_type="prompt")
    chosen = _one_per_language(prompts, per_language=2)
    gcfg = cfg.generate
    answers = generate(
        model, tok, [p.prompt_messages() for p in chosen], max_new_tokens=gcfg.max_new_tokens,
        temperature=gcfg.temperature, top_p=gcfg.top_p, batch_size=gcfg.batch_size, seed=gcfg.seed,
    )
    samples = []
    for prompt, answer in zip(chosen, answers, strict=True):
        text = prompt.prompt_messages()[-1]["content"]
        console.print(f"[bold]\\[{prompt.language}] > {text}[/bold]", highlight=False)
        console.print(f"  {answer.text}", markup=False, highlight=False)
        samples.append((prompt.language, text, answer.text))
    seconds["samples"] = time.perf_counter() - start
    console.rule("[bold]done")
    total = sum(seconds.values())
    console.print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + f"; total {total:.0f}s")
    return DemoResult(
        data_dir=Path(dcfg.out_dir), tokenizer_dir=tokenizer_dir, pretrain_run=pre.run_dir, sft_run=tuned.run_dir,
        reward_run=rm.run_dir, heldout_ppl=ppl, sft_eval_loss=tuned.eval_loss,
        reward_gold_accuracy=gold["accuracy"], samples=samples, seconds=seconds,
    )


def _gold_accuracy(model_dir: Path, gold_path: Path, rcfg) -> dict:
    """Accuracy and calibration of a reward model on comparisons judged by the noiseless gold judge."""
    from alinea.data.jsonl import read_records
    from alinea.model.reward import load_reward_model
    from alinea.train.reward import RewardLoss, collate, encode_records, evaluate_examples

    model, tokenizer = load_reward_model(model_dir)
    examples, _, levels = encode_records(read_records(gold_path), tokenizer, rcfg, {})
    batches = [collate(examples[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(examples), 16)]
    return evaluate_examples(RewardLoss(model, rcfg, n_annotators=0, n_levels=levels), batches)


def _perplexity(loss: float | None) -> float:
    import math

    return math.exp(min(loss, 50.0)) if loss is not None else float("nan")


def _one_per_language(prompts, *, per_language: int):
    seen: dict[str, int] = {}
    chosen = []
    for prompt in prompts:
        if seen.get(prompt.language, 0) < per_language:
            seen[prompt.language] = seen.get(prompt.language, 0) + 1
            chosen.append(prompt)
    return chosen

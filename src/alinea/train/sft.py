"""Supervised fine-tuning on demonstrations: the chat template, loss on assistant tokens only, optional LoRA.

A conversation is encoded turn by turn, `<|role|>\\n` + content + `<|end|>\\n`, exactly as the chat template renders
it. Labels are the token ids of each assistant turn's content and its `<|end|>` (so the model learns to stop);
role headers, user and system turns, the newline after `<|end|>` and padding are IGNORE_INDEX. When a demonstration
has a multi-turn prompt, earlier assistant turns are context only: the loss is on the final answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alinea.config import AlineaConfig
from alinea.data.jsonl import read_records
from alinea.errors import UserError
from alinea.losses import IGNORE_INDEX
from alinea.model.causal_lm import load_model_and_tokenizer, save_checkpoint
from alinea.model.tokenizer import END_OF_TURN, turn_header
from alinea.train.loop import TokenBatch, TrainResult, num_processes, train_loop
from alinea.train.padding import right_pad


@dataclass
class EncodedConversation:
    input_ids: list[int]
    labels: list[int]


def encode_conversation(tokenizer, messages: list[dict[str, str]], *, train_on_last_only: bool = True):
    """Token ids and labels of a chat. With `train_on_last_only`, only the final assistant turn is a target."""
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    ids: list[int] = []
    labels: list[int] = []

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    newline = encode("\n")
    for i, message in enumerate(messages):
        header = encode(turn_header(message["role"]))
        body = encode(message["content"])
        target = message["role"] == "assistant" and (i == last_assistant or not train_on_last_only)
        ids += header + body + [end_id] + newline
        labels += [IGNORE_INDEX] * len(header)
        labels += (body + [end_id]) if target else [IGNORE_INDEX] * (len(body) + 1)
        labels += [IGNORE_INDEX] * len(newline)
    return EncodedConversation(ids, labels)


def truncate(example: EncodedConversation, max_len: int) -> EncodedConversation | None:
    """Cut to `max_len` tokens, dropping the start of the prompt first; None when no target token would remain."""
    if len(example.input_ids) <= max_len:
        return example
    ids, labels = example.input_ids[-max_len:], example.labels[-max_len:]
    if all(label == IGNORE_INDEX for label in labels[1:]):
        return None
    return EncodedConversation(ids, labels)


def pad_batch(examples: list[EncodedConversation], pad_id: int) -> TokenBatch:
    """Right-pad a list of conversations into a `TokenBatch`."""
    input_ids, attention = right_pad([e.input_ids for e in examples], pad_id)
    labels, _ = right_pad([e.labels for e in examples], IGNORE_INDEX)
    return TokenBatch(input_ids, attention, labels)


def demonstration_messages(record) -> list[dict[str, str]]:
    return record.prompt_messages() + [{"role": "assistant", "content": record.response}]


def load_examples(path: str | Path, tokenizer, max_len: int) -> tuple[list[EncodedConversation], int]:
    """Encoded demonstrations of a JSONL file, and how many were dropped because truncation left no target."""
    records = read_records(path, expected_type="demonstration")
    examples, dropped = [], 0
    for record in records:
        example = truncate(encode_conversation(tokenizer, demonstration_messages(record)), max_len)
        if example is None:
            dropped += 1
        else:
            examples.append(example)
    return examples, dropped


def add_lora(model, cfg):
    """Wrap `model` with LoRA adapters (peft); only the adapters are trained."""
    from peft import LoraConfig, get_peft_model

    names = {name.split(".")[-1] for name, _ in model.named_modules()}
    unknown = [t for t in cfg.lora_targets if t not in names]
    if unknown:
        raise UserError(
            f"sft.lora_targets: {unknown} are not module names of this model; some that are: "
            f"{sorted(n for n in names if n.endswith('proj'))[:12]}."
        )
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=list(cfg.lora_targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def run(cfg: AlineaConfig, *, resume: str | Path | None = None) -> TrainResult:
    """Fine-tune `cfg.sft.model` on `cfg.sft.data`; with `resume`, continue that run directory."""
    if resume:
        from alinea.train.runs import RunDir

        cfg = RunDir.open(resume, stage="sft").config()
    scfg = cfg.sft
    if not scfg.model:
        raise UserError("sft.model: expected a checkpoint directory (a pretrain run's final/ or a local HF model).")
    model, tokenizer = load_model_and_tokenizer(scfg.model)
    examples, dropped = load_examples(scfg.data, tokenizer, scfg.max_len)
    if len(examples) < 2:
        raise UserError(f"{scfg.data}: need at least 2 usable demonstrations, found {len(examples)}.")
    order = np.random.default_rng(scfg.seed).permutation(len(examples))
    n_eval = int(round(len(examples) * scfg.eval_fraction))
    if scfg.eval_fraction > 0:
        n_eval = min(max(1, n_eval), len(examples) - 1)
    eval_examples = [examples[i] for i in order[:n_eval]]
    train_examples = [examples[i] for i in order[n_eval:]]
    pad_id = tokenizer.pad_token_id
    eval_batches = [
        pad_batch(eval_examples[i : i + scfg.batch_size], pad_id) for i in range(0, len(eval_examples), scfg.batch_size)
    ]
    if scfg.eval_batches:
        eval_batches = eval_batches[: scfg.eval_batches * num_processes()]  # global batches
    if scfg.lora:
        model = add_lora(model, scfg)

    return train_loop(
        stage="sft",
        cfg=scfg,
        full_cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        n_examples=len(train_examples),
        collate=lambda indices: pad_batch([train_examples[i] for i in indices], pad_id),
        eval_batches=eval_batches,
        resume=resume,
        save_model=lambda trained, out_dir: save_trained(trained, tokenizer, out_dir, lora=scfg.lora),
        extra_meta={"train_examples": len(train_examples), "eval_examples": len(eval_examples), "dropped": dropped},
    )


def save_trained(model, tokenizer, out_dir: Path, *, lora: bool) -> None:
    """An HF checkpoint of a trained model; with LoRA, the adapters merged into a plain model (every later stage
    loads it) plus the adapter alone in `adapter/`. The training model keeps its adapters."""
    if lora:
        save_checkpoint(_merged_copy(model), tokenizer, out_dir)
        model.save_pretrained(str(Path(out_dir) / "adapter"))
    else:
        save_checkpoint(model, tokenizer, out_dir)


def _merged_copy(peft_model):
    """A plain model with the LoRA weights merged in, leaving the training model (and its adapters) untouched."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()

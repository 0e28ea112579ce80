"""What the benchmarks against other libraries share: the GPT-2 workload model, a tokenizer whose ids are their own
names, peak memory, and running one side in a fresh Python process.

Every such benchmark runs "ours" and "baseline" in separate processes (`python -m <module> --side ...`) so that each
side's peak resident memory (`getrusage(RUSAGE_SELF).ru_maxrss`) counts only what it loaded and allocated, and both
see the same thread settings. A child prints its result as one JSON line after a prefix of its own, since trainers
print their own lines on stdout too.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from alinea.errors import UserError

PAD_ID = 0
"""Padding token id of the benchmark vocabulary; random token ids never use it."""
EOS_ID = 1
"""End-of-text id of the benchmark vocabulary (`<eos>`); random token ids never use it either."""
FIRST_WORD_ID = 2
"""Smallest id random token ids are drawn from."""

CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
"""The benchmark tokenizer's chat template: the messages' text as it is, so a prompt of N words is N token ids."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_factory(path: str):
    """The object named by `module:attribute`."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def require_trl(benchmark: str) -> str:
    """TRL's version; a `UserError` naming the `bench` extra when TRL (or `datasets`) is not installed."""
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        raise UserError(f"the {benchmark} benchmark needs TRL: pip install -e '.[bench]'")
    import trl

    return trl.__version__


def save_gpt2_reward_model(out_dir: Path, *, n_layer: int, n_embd: int, n_head: int, vocab: int,
                           n_positions: int, seed: int) -> Path:
    """Write a randomly initialised GPT-2 reward model (sequence classification, one score) with the word-level
    tokenizer to `out_dir`: loadable by transformers' AutoModelForSequenceClassification and, through the neutral
    normalisation stored in its config (shift 0, scale 1), as an alinea reward model. Returns `out_dir`."""
    from transformers import GPT2ForSequenceClassification

    config = gpt2_config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab=vocab, n_positions=n_positions)
    config.alinea_reward = {"shift": [0.0], "scale": [1.0], "kind": "reward"}
    return _save_random_model(GPT2ForSequenceClassification, config, out_dir, vocab=vocab, seed=seed)


def word_level_tokenizer(vocab: int, *, chat_template: str | None = None):
    """A tokenizer whose ids are exactly 0..vocab-1: `<pad>` = 0, `<eos>` = 1, word `t<i>` = i for i >= 2.

    Words are split on whitespace; `<eos>` is a special token, so `"t5 t7<eos>"` is `[5, 7, 1]`. Decoding joins the
    words with spaces. Baselines need a real tokenizer (for the pad and eos tokens, and to decode completions for a
    Python reward); with this one, a text of N words is exactly N token ids on both sides.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_map = {"<pad>": PAD_ID, "<eos>": EOS_ID, **{f"t{i}": i for i in range(FIRST_WORD_ID, vocab)}}
    tokenizer = Tokenizer(models.WordLevel(vocab_map, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


def words(ids) -> str:
    """Token ids as the benchmark tokenizer's text: `[5, 7]` -> `"t5 t7"`."""
    return " ".join(f"t{int(i)}" for i in ids)


def gpt2_config(*, n_layer: int, n_embd: int, n_head: int, vocab: int, n_positions: int, num_labels: int = 1):
    """The GPT-2 configuration of the benchmark workloads: dropout 0, pad 0, bos = eos = 1.

    `use_cache` keeps its default (True): transformers' `generate` reads it, and without a KV cache the baseline's
    sampling would recompute every prefix. Training forwards pass `use_cache=False` themselves."""
    from transformers import GPT2Config

    return GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab, n_positions=n_positions,
        num_labels=num_labels, pad_token_id=PAD_ID, bos_token_id=EOS_ID, eos_token_id=EOS_ID,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
    )


def save_gpt2_lm(out_dir: Path, *, n_layer: int, n_embd: int, n_head: int, vocab: int, n_positions: int,
                 seed: int) -> Path:
    """Write a randomly initialised GPT-2 causal LM (the same weights for a given seed) and the word-level tokenizer
    (with `CHAT_TEMPLATE`) to `out_dir`, as any Hugging Face checkpoint directory; returns `out_dir`."""
    from transformers import GPT2LMHeadModel

    config = gpt2_config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab=vocab, n_positions=n_positions)
    return _save_random_model(GPT2LMHeadModel, config, out_dir, vocab=vocab, seed=seed)


def _save_random_model(model_class, config, out_dir: Path, *, vocab: int, seed: int) -> Path:
    """`model_class(config)` initialised with `seed`, saved with the word-level tokenizer to `out_dir`."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config)
    if model.can_generate():
        model.generation_config.pad_token_id = PAD_ID
        model.generation_config.eos_token_id = EOS_ID
        model.generation_config.bos_token_id = EOS_ID
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    word_level_tokenizer(vocab, chat_template=CHAT_TEMPLATE).save_pretrained(str(out_dir))
    return out_dir


def child_env(threads: int) -> dict[str, str]:
    """The environment of a side's process: `threads` OpenMP/MKL threads, offline, no progress bars."""
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "ALINEA_PROGRESS": "0",
        "TRANSFORMERS_VERBOSITY": "error",
    })
    return env


def run_side(module: str, args: list[str], *, prefix: str, threads: int, what: str,
             python_path: str = "") -> dict:
    """Run `python -m module *args` and return the JSON printed after `prefix` on its last such stdout line.

    `python_path`: a folder put first on the child's PYTHONPATH (a library version of its own). A child that fails
    (or prints no result) is a `RuntimeError` carrying the tail of its output, named `what`.
    """
    command = [sys.executable, "-m", module, *args]
    env = child_env(threads)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (python_path, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(prefix)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(prefix):])


class StepClock:
    """Wall and CPU clock readings at the end of two of a transformers Trainer's optimizer steps, `timed_from` and
    `timed_to`: the baseline sides are timed between them, so the span holds their work and their data loading.

    `callback()` is the `TrainerCallback` to give the trainer; `span()` returns (wall seconds, CPU seconds)."""

    def __init__(self, timed_from: int, timed_to: int) -> None:
        self.timed_from, self.timed_to = timed_from, timed_to
        self.marks: dict[int, tuple[float, float]] = {}

    def callback(self):
        import time

        from transformers import TrainerCallback

        clock = self

        class _StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step in (clock.timed_from, clock.timed_to):
                    clock.marks[state.global_step] = (time.perf_counter(), time.process_time())

        return _StepClock()

    def span(self) -> tuple[float, float]:
        end, begin = self.marks[self.timed_to], self.marks[self.timed_from]
        return end[0] - begin[0], end[1] - begin[1]


def machine_load() -> dict:
    """CPU count and the 1-minute load average now: other processes on the machine slow either side down."""
    return {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}


def parameter_change(model, initial: dict) -> float:
    """L2 norm of (current - initial) over the parameters named in `initial` (a snapshot of `named_parameters`)."""
    import torch

    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in initial:
                total += (param.detach().double().cpu() - initial[name].double()).pow(2).sum()
    return float(total.sqrt())


def snapshot_parameters(model) -> dict:
    """A copy of every trainable parameter, by name (for `parameter_change`)."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


PRECISIONS = ("fp32", "bf16")
"""The training benchmarks' `precision`: fp32, or bf16 = each side's own bf16 mode (ours `precision = "bf16"`,
autocast with fp32 master weights; TRL `bf16 = True`), worth it only on a CPU with native bf16."""


def check_precision(bench: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"bench {bench}: precision {precision!r}; expected {' or '.join(PRECISIONS)}.")

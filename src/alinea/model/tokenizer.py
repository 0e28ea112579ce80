"""Byte-level BPE tokenizer, trained with `tokenizers` and saved as a transformers fast tokenizer.

Special tokens and the chat format:

    <|user|>\\n{content}<|end|>\\n<|assistant|>\\n{content}<|end|>\\n

`<|endoftext|>` separates documents in pretraining; `<|end|>` closes a chat turn, and generation stops at either.
`<|pad|>` pads batches and is never a label. Being byte-level, every UTF-8 string round-trips exactly, whatever the
language or script.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from alinea.errors import UserError

PAD = "<|pad|>"
EOS = "<|endoftext|>"
END_OF_TURN = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, EOS, END_OF_TURN, *ROLE_TOKENS.values()]

# Jinja chat template, equal to `render_turn` below for every message, so that `apply_chat_template` and our
# piecewise SFT encoding give the same ids.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def turn_header(role: str) -> str:
    """Text that opens a turn of `role`."""
    return ROLE_TOKENS[role] + "\n"


def turn_footer() -> str:
    """Text that closes every turn."""
    return END_OF_TURN + "\n"


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 8192, min_frequency: int = 2, show_progress: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise UserError(
            f"tokenizer.vocab_size: expected at least {256 + len(SPECIAL_TOKENS)} "
            f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}."
        )
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    core.train_from_iterator(_non_empty(texts), trainer=trainer)
    return wrap_tokenizer(core)


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if text.strip():
            yield text


def wrap_tokenizer(core) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[END_OF_TURN, *ROLE_TOKENS.values()],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    tokenizer.model_max_length = 1_000_000
    return tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """Ids that end a generated answer: end-of-turn and end-of-text (whichever the tokenizer has)."""
    ids = []
    for token in (END_OF_TURN, tokenizer.eos_token):
        if token is None:
            continue
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer from a local directory; a folder without one is a `UserError`."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: tokenizer directory not found.")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise UserError(
            f"{path}: not a tokenizer directory (expected tokenizer.json or tokenizer_config.json). "
            "Train one with `alinea tokenizer train` or point at a Hugging Face checkpoint directory."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a broken folder
        raise UserError(f"{path}: could not load the tokenizer: {err}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    """Save to `out_dir` through a temporary folder and a rename, so a crash leaves no half-written tokenizer."""
    import shutil

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tokenizer.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out_dir)
    return out_dir

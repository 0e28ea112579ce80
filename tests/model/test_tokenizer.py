import pytest

from alinea.errors import UserError
from alinea.model.tokenizer import (
    END_OF_TURN,
    SPECIAL_TOKENS,
    load_tokenizer,
    stop_token_ids,
    train_tokenizer,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Le renard brun saute par-dessus le chien paresseux, très vite!",
    "El zorro marrón salta sobre el perro perezoso. ¿Verdad?",
    "Manao ahoana ianao? Tsara be ny andro anio.",
    "Emoji and symbols: 🙂 ∑ ß — \t tabs\nnew lines",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact_for_any_utf8(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_are_single_ids(tokenizer):
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == token
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|endoftext|>"
    assert stop_token_ids(tokenizer) == [
        tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ]


def test_chat_template_renders_turns(tokenizer):
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert text == "<|system|>\nBe kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"


def test_vocab_size_is_respected_and_saved(tmp_path, demo_data, tokenizer):
    from alinea.data.corpus import read_documents

    small = train_tokenizer(read_documents(demo_data["corpus"])[:100], vocab_size=300)
    assert len(small) <= 300
    small.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert len(loaded) == len(small)
    assert loaded("a nice day")["input_ids"] == small("a nice day")["input_ids"]


def test_too_small_vocab_is_a_user_error():
    with pytest.raises(UserError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=100)


def test_loading_a_folder_without_tokenizer(tmp_path):
    with pytest.raises(UserError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(tmp_path / "missing")

"""SFT label masking, checked token by token on a hand-built conversation."""

from alinea.losses import IGNORE_INDEX
from alinea.train.sft import EncodedConversation, encode_conversation, pad_batch, truncate

CONVERSATION = [
    {"role": "system", "content": "You are kind."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi! How are you?"},
    {"role": "user", "content": "Fine, and you?"},
    {"role": "assistant", "content": "Very well, thanks."},
]


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_only_final_assistant_content_and_end_token_are_labels(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    nl = ids(tokenizer, "\n")
    expected_ids, expected_labels = [], []
    for i, message in enumerate(CONVERSATION):
        header = ids(tokenizer, f"<|{message['role']}|>\n")
        body = ids(tokenizer, message["content"])
        expected_ids += header + body + [end] + nl
        target = i == len(CONVERSATION) - 1
        expected_labels += [IGNORE_INDEX] * len(header)
        expected_labels += (body + [end]) if target else [IGNORE_INDEX] * (len(body) + 1)
        expected_labels += [IGNORE_INDEX] * len(nl)
    assert encoded.input_ids == expected_ids
    assert encoded.labels == expected_labels
    labelled = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "Very well, thanks.<|end|>"


def test_all_assistant_turns_when_asked(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION, train_on_last_only=False)
    labelled = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "Hi! How are you?<|end|>Very well, thanks.<|end|>"


def test_encoding_matches_chat_template(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION)
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(encoded.input_ids) == rendered
    prompt = tokenizer.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)
    prompt_ids = ids(tokenizer, prompt)
    assert encoded.input_ids[: len(prompt_ids)] == prompt_ids


def test_truncation_keeps_the_answer_and_drops_prompt_start(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION)
    n_target = sum(t != IGNORE_INDEX for t in encoded.labels)
    cut = truncate(encoded, n_target + 6)
    assert cut is not None and len(cut.input_ids) == n_target + 6
    assert cut.input_ids == encoded.input_ids[-(n_target + 6):]
    assert truncate(encoded, 2) is None  # only the trailing newline and <|end|>: no usable target
    assert truncate(encoded, 10_000) is encoded


def test_pad_batch_right_pads_with_ignored_labels():
    batch = pad_batch([EncodedConversation([1, 2, 3], [IGNORE_INDEX, 2, 3]), EncodedConversation([4], [4])], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]

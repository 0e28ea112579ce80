"""Feedback records: the six kinds of data alinea learns from, and the rules each one obeys.

A record is one JSON object (one line of a JSONL file) with a `"type"` field:

| type          | what a person gave us                                        | trains             |
|---------------|--------------------------------------------------------------|--------------------|
| prompt        | a prompt, nothing else                                       | RL rollouts        |
| demonstration | the ideal assistant answer to a prompt                       | SFT                |
| comparison    | two answers and which is better (and by how much)            | reward model, DPO  |
| ranking       | K >= 2 answers ordered best to worst (ties allowed)          | K-wise reward model|
| rating        | one answer scored on named aspects (e.g. helpfulness 1..7)   | reward regression  |
| thumb         | one answer marked up or down                                 | KTO-style losses   |

Every record has a prompt part (`prompt` text or chat `messages`) and the metadata fields `id`, `language`,
`tags`, `annotator` and `time`. The dataclasses below check their own invariants when built, so a record that
exists is valid; `parse_record` turns a JSON object into one and `to_json` turns it back
(`parse_record(r.to_json()) == r`). A broken record raises `RecordError(field, expected)`, where `field` is a
dotted path such as `messages[2].role`.
docs/data.md is the reference for every field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

ROLES = ("system", "user", "assistant")
PREFERENCES = ("a", "b", "tie")
THUMBS = ("up", "down")
STRENGTHS = (0, 1, 2, 3)
"""0 = negligible or unsure, 1 = slightly better, 2 = better, 3 = significantly better."""
DEFAULT_LANGUAGE = "en"
DEFAULT_SCALE = (1, 7)

# "en", "fr", "mg", "pt-BR", "zh-Hant": a short BCP-47-style code, lower-case primary subtag.
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")


class RecordError(ValueError):
    """A broken rule: `field` is a dotted path (`messages[2].role`), `expected` says what should be there."""

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: {expected}")
        self.field = field
        self.expected = expected


# ------------------------------------------------------------------------------------------------------------
# Describing values in error messages, in JSON's words (null, true, an object) since users write JSON.


def describe_value(value: Any) -> str:
    """A JSON value in words: `null`, `true (a boolean)`, `the string 'x'`, `a list of 3 items`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        if not value.strip():
            return "a string of only whitespace"
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _one_of(options: Sequence[object]) -> str:
    return "one of " + ", ".join(repr(o) for o in options)


def _is_number(value: Any) -> bool:
    """A JSON number: int or float, finite, and not a bool (in Python, True == 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(value: Any, field: str) -> None:
    """A string with at least one non-whitespace character."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError(field, f"a non-empty string, found {describe_value(value)}")


def _as_tuple(value: Any, field: str, what: str) -> tuple:
    """Lists arrive from JSON; records store tuples so they compare equal and stay unchanged."""
    if not isinstance(value, list | tuple):
        raise RecordError(field, f"{what}, found {describe_value(value)}")
    return tuple(value)


def _check_timestamp(value: str, field: str) -> None:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(
            field, f"an ISO-8601 timestamp such as '2024-05-01T12:30:00Z', found {describe_value(value)}"
        ) from None


# ------------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Message:
    """One chat turn. `role` is system, user or assistant; `content` is non-empty text."""

    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _to_message(item: Any, index: int) -> Message:
    """A checked `Message` from a `Message` or a `{role, content}` object; errors name `messages[index]`."""
    path = f"messages[{index}]"
    if isinstance(item, Message):
        role, content = item.role, item.content
    elif isinstance(item, Mapping):
        for key in item:
            if key not in ("role", "content"):
                raise RecordError(f"{path}.{key}", "no such field: a message has only 'role' and 'content'")
        if "role" not in item:
            raise RecordError(f"{path}.role", f"{_one_of(ROLES)} (the field is missing)")
        if "content" not in item:
            raise RecordError(f"{path}.content", "a non-empty string (the field is missing)")
        role, content = item["role"], item["content"]
    else:
        raise RecordError(path, f"an object with 'role' and 'content', found {describe_value(item)}")
    if not isinstance(role, str) or role not in ROLES:
        raise RecordError(f"{path}.role", f"{_one_of(ROLES)}, found {describe_value(role)}")
    _check_text(content, f"{path}.content")
    return Message(role=role, content=content)


@dataclass(frozen=True, kw_only=True)
class BaseRecord:
    """Fields every record shares: the prompt part and the metadata. Build a subclass, never this one."""

    record_type: ClassVar[str] = ""
    required: ClassVar[dict[str, str]] = {}
    """Required field -> what it must hold, for the "field is missing" error."""

    prompt: str | None = None
    """The prompt as plain text (a single user turn). Exactly one of `prompt` and `messages` is set."""
    messages: tuple[Message, ...] | None = None
    """The prompt as a chat: non-empty, the last message is the user's turn."""
    id: str | None = None
    """Your identifier for the record (uniqueness is not checked)."""
    language: str = DEFAULT_LANGUAGE
    """Language code of the prompt and responses: 'en', 'fr', 'es', 'mg', 'pt-BR', ..."""
    tags: tuple[str, ...] = ()
    """Free labels: the data set it came from, a topic, a round of collection."""
    annotator: str | None = None
    """Who gave the feedback: a person's pseudonym, a model name, or the source data set."""
    time: str | None = None
    """When the feedback was given, ISO-8601 ('2024-05-01T12:30:00Z'); kept as written."""

    def __post_init__(self) -> None:
        if type(self) is BaseRecord:
            raise TypeError("BaseRecord is abstract: build a Prompt, Demonstration, Comparison, ... instead")
        if self.id is not None:
            _check_text(self.id, "id")
        self._check_prompt_part()
        self._check_own_fields()
        self._check_metadata()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass in __post_init__

    def _check_prompt_part(self) -> None:
        if self.prompt is not None and self.messages is not None:
            raise RecordError("prompt", "either 'prompt' or 'messages', not both")
        if self.prompt is None and self.messages is None:
            raise RecordError(
                "prompt", "a non-empty string 'prompt' or a 'messages' list (neither is present)"
            )
        if self.prompt is not None:
            _check_text(self.prompt, "prompt")
            return
        what = "a non-empty list of {role, content} objects"
        messages = tuple(
            _to_message(item, i) for i, item in enumerate(_as_tuple(self.messages, "messages", what))
        )
        if not messages:
            raise RecordError("messages", f"{what}, found an empty list")
        if messages[-1].role != "user":
            raise RecordError(
                f"messages[{len(messages) - 1}].role",
                "'user' (the last message of a prompt is the turn being answered), "
                f"found {messages[-1].role!r}",
            )
        self._set("messages", messages)

    def _check_own_fields(self) -> None:
        """Each record type checks (and normalises) the fields it adds."""

    def _check_metadata(self) -> None:
        if not isinstance(self.language, str) or not _LANGUAGE_CODE.fullmatch(self.language):
            raise RecordError(
                "language",
                f"a language code such as 'en', 'fr' or 'pt-BR', found {describe_value(self.language)}",
            )
        tags = _as_tuple(self.tags, "tags", "a list of strings")
        for i, tag in enumerate(tags):
            _check_text(tag, f"tags[{i}]")
        self._set("tags", tags)
        if self.annotator is not None:
            _check_text(self.annotator, "annotator")
        if self.time is not None:
            if not isinstance(self.time, str):
                raise RecordError("time", f"an ISO-8601 timestamp string, found {describe_value(self.time)}")
            _check_timestamp(self.time, "time")

    # -- views ---------------------------------------------------------------------------------------------

    def prompt_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages; a plain `prompt` string is one user turn."""
        if self.messages is None:
            return [{"role": "user", "content": self.prompt or ""}]
        return [m.to_json() for m in self.messages]

    def prompt_chars(self) -> int:
        """Length of the prompt in characters (the sum over its messages for a chat)."""
        if self.messages is None:
            return len(self.prompt or "")
        return sum(len(m.content) for m in self.messages)

    def response_texts(self) -> list[str]:
        """Every answer the record holds (none for a prompt record)."""
        return []

    # -- JSON ----------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, `type` first; metadata left out where it holds its default."""
        row: dict[str, Any] = {"type": self.record_type}
        if self.id is not None:
            row["id"] = self.id
        if self.messages is not None:
            row["messages"] = [m.to_json() for m in self.messages]
        else:
            row["prompt"] = self.prompt
        row.update(self._own_fields_to_json())
        if self.language != DEFAULT_LANGUAGE:
            row["language"] = self.language
        if self.tags:
            row["tags"] = list(self.tags)
        if self.annotator is not None:
            row["annotator"] = self.annotator
        if self.time is not None:
            row["time"] = self.time
        return row

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class Prompt(BaseRecord):
    """A prompt alone: what RL rollouts start from."""

    record_type: ClassVar[str] = "prompt"


@dataclass(frozen=True, kw_only=True)
class Demonstration(BaseRecord):
    """A prompt and the ideal assistant answer, written or chosen by a person."""

    record_type: ClassVar[str] = "demonstration"
    required: ClassVar[dict[str, str]] = {"response": "a non-empty string"}

    response: str
    """The ideal assistant answer."""

    def _check_own_fields(self) -> None:
        _check_text(self.response, "response")

    def response_texts(self) -> list[str]:
        return [self.response]

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {"response": self.response}


@dataclass(frozen=True, kw_only=True)
class Comparison(BaseRecord):
    """Two answers to one prompt and which is better, with how much better on a 0..3 scale."""

    record_type: ClassVar[str] = "comparison"
    required: ClassVar[dict[str, str]] = {
        "response_a": "a non-empty string",
        "response_b": "a non-empty string",
        "preference": _one_of(PREFERENCES),
    }

    response_a: str
    """The first answer."""
    response_b: str
    """The second answer."""
    preference: str
    """Which answer is better: 'a', 'b' or 'tie'."""
    strength: int | None = None
    """How much better, 0..3 (see STRENGTHS). None when built means the default: 0 for a tie, else 1."""

    def _check_own_fields(self) -> None:
        _check_text(self.response_a, "response_a")
        _check_text(self.response_b, "response_b")
        if not isinstance(self.preference, str) or self.preference not in PREFERENCES:
            raise RecordError(
                "preference", f"{_one_of(PREFERENCES)}, found {describe_value(self.preference)}"
            )
        if self.strength is None:
            self._set("strength", 0 if self.preference == "tie" else 1)
        if not _is_int(self.strength) or self.strength not in STRENGTHS:
            raise RecordError("strength", f"an integer from 0 to 3, found {describe_value(self.strength)}")
        if self.preference == "tie" and self.strength != 0:
            raise RecordError(
                "strength", f"0 for a tie (a tie has no winner to be better), found {self.strength}"
            )

    @property
    def chosen(self) -> str | None:
        """The preferred answer, None for a tie."""
        return {"a": self.response_a, "b": self.response_b}.get(self.preference)

    @property
    def rejected(self) -> str | None:
        """The other answer, None for a tie."""
        return {"a": self.response_b, "b": self.response_a}.get(self.preference)

    def response_texts(self) -> list[str]:
        return [self.response_a, self.response_b]

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {
            "response_a": self.response_a,
            "response_b": self.response_b,
            "preference": self.preference,
            "strength": self.strength,
        }


@dataclass(frozen=True, kw_only=True)
class Ranking(BaseRecord):
    """K >= 2 answers to one prompt, each with a rank: 1 is best, equal ranks are ties."""

    record_type: ClassVar[str] = "ranking"
    required: ClassVar[dict[str, str]] = {
        "responses": "a list of at least 2 non-empty strings",
        "ranks": "a list of integers >= 1, one per response",
    }

    responses: tuple[str, ...]
    """The answers, in any order."""
    ranks: tuple[int, ...]
    """`ranks[i]` is the rank of `responses[i]`: 1 is best, equal numbers are ties, gaps are allowed."""

    def _check_own_fields(self) -> None:
        responses = _as_tuple(self.responses, "responses", self.required["responses"])
        if len(responses) < 2:
            raise RecordError("responses", f"{self.required['responses']}, found {describe_value(responses)}")
        for i, text in enumerate(responses):
            _check_text(text, f"responses[{i}]")
        ranks = _as_tuple(self.ranks, "ranks", self.required["ranks"])
        if len(ranks) != len(responses):
            raise RecordError(
                "ranks", f"one rank per response ({len(responses)} ranks), found {describe_value(ranks)}"
            )
        for i, rank in enumerate(ranks):
            if not _is_int(rank) or rank < 1:
                raise RecordError(f"ranks[{i}]", f"an integer >= 1 (1 is best), found {describe_value(rank)}")
        self._set("responses", responses)
        self._set("ranks", ranks)

    def winning_pairs(self) -> list[tuple[int, int]]:
        """Every `(better, worse)` pair of response indices; tied responses make no pair."""
        pairs = []
        for i in range(len(self.ranks)):
            for j in range(i + 1, len(self.ranks)):
                if self.ranks[i] < self.ranks[j]:
                    pairs.append((i, j))
                elif self.ranks[j] < self.ranks[i]:
                    pairs.append((j, i))
        return pairs

    def response_texts(self) -> list[str]:
        return list(self.responses)

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {"responses": list(self.responses), "ranks": list(self.ranks)}


@dataclass(frozen=True, kw_only=True)
class Rating(BaseRecord):
    """One answer scored on named aspects, each score within `scale`."""

    record_type: ClassVar[str] = "rating"
    required: ClassVar[dict[str, str]] = {
        "response": "a non-empty string",
        "ratings": "a non-empty object mapping each aspect to a number",
    }

    response: str
    """The answer being rated."""
    ratings: dict[str, float]
    """Aspect -> score, e.g. {"helpfulness": 6, "harmlessness": 7}."""
    scale: tuple[float, float] = DEFAULT_SCALE
    """The lowest and highest possible score, [min, max] with min < max."""

    def _check_own_fields(self) -> None:
        _check_text(self.response, "response")
        scale = _as_tuple(self.scale, "scale", "two numbers [min, max]")
        if len(scale) != 2 or not all(_is_number(v) for v in scale):
            raise RecordError("scale", f"two numbers [min, max], found {describe_value(scale)}")
        low, high = scale
        if not low < high:
            raise RecordError("scale", f"[min, max] with min < max, found [{low}, {high}]")
        self._set("scale", scale)
        if not isinstance(self.ratings, Mapping) or not self.ratings:
            raise RecordError("ratings", f"{self.required['ratings']}, found {describe_value(self.ratings)}")
        for aspect, score in self.ratings.items():
            if not isinstance(aspect, str) or not aspect.strip():
                raise RecordError("ratings", f"aspect names that are non-empty strings, found {aspect!r}")
            if not _is_number(score):
                raise RecordError(f"ratings.{aspect}", f"a number, found {describe_value(score)}")
            if not low <= score <= high:
                raise RecordError(
                    f"ratings.{aspect}", f"a number within the scale [{low}, {high}], found {score}"
                )
        self._set("ratings", dict(self.ratings))

    def response_texts(self) -> list[str]:
        return [self.response]

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {"response": self.response, "ratings": dict(self.ratings), "scale": list(self.scale)}


@dataclass(frozen=True, kw_only=True)
class Thumb(BaseRecord):
    """One answer marked good ('up') or bad ('down'), with an optional comment."""

    record_type: ClassVar[str] = "thumb"
    required: ClassVar[dict[str, str]] = {"response": "a non-empty string", "thumb": _one_of(THUMBS)}

    response: str
    """The answer being judged."""
    thumb: str
    """'up' or 'down'."""
    comment: str = ""
    """Why, in the annotator's words; may be empty."""

    def _check_own_fields(self) -> None:
        _check_text(self.response, "response")
        if not isinstance(self.thumb, str) or self.thumb not in THUMBS:
            raise RecordError("thumb", f"{_one_of(THUMBS)}, found {describe_value(self.thumb)}")
        if not isinstance(self.comment, str):
            raise RecordError("comment", f"a string, found {describe_value(self.comment)}")

    def response_texts(self) -> list[str]:
        return [self.response]

    def _own_fields_to_json(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "thumb": self.thumb,
            **({"comment": self.comment} if self.comment else {}),
        }


Record = Prompt | Demonstration | Comparison | Ranking | Rating | Thumb
"""Any one of the six record types."""

RECORD_CLASSES: dict[str, type[BaseRecord]] = {
    cls.record_type: cls for cls in (Prompt, Demonstration, Comparison, Ranking, Rating, Thumb)
}
RECORD_TYPES = tuple(RECORD_CLASSES)


def allowed_fields(record_type: str) -> list[str]:
    """The JSON fields a record of this type may have, in the order `to_json` writes them."""
    names = [f.name for f in fields(RECORD_CLASSES[record_type])]
    common = ["id", "prompt", "messages"]
    metadata = ["language", "tags", "annotator", "time"]
    own = [n for n in names if n not in common and n not in metadata]
    return ["type", *common, *own, *metadata]


def parse_record(obj: Any, *, expected_type: str | None = None) -> Record:
    """Check a JSON object and build its record; raise `RecordError` at the first broken rule.

    `expected_type` lets a file leave out `type` (every record is then of that type); a record whose `type`
    disagrees with it is an error. JSON null in an optional field means "use the default".
    """
    if expected_type is not None and expected_type not in RECORD_CLASSES:
        raise ValueError(f"expected_type must be one of {RECORD_TYPES}, not {expected_type!r}")
    if not isinstance(obj, Mapping):
        raise RecordError("record", f"a JSON object, found {describe_value(obj)}")
    if "type" in obj:
        record_type = obj["type"]
        if not isinstance(record_type, str) or record_type not in RECORD_CLASSES:
            raise RecordError("type", f"{_one_of(RECORD_TYPES)}, found {describe_value(record_type)}")
        if expected_type is not None and record_type != expected_type:
            raise RecordError(
                "type",
                f"{expected_type!r} (only {expected_type} records are expected here), found {record_type!r}",
            )
    elif expected_type is not None:
        record_type = expected_type
    else:
        raise RecordError("type", f"{_one_of(RECORD_TYPES)} (the field is missing)")

    cls = RECORD_CLASSES[record_type]
    allowed = allowed_fields(record_type)
    for key in obj:
        if key not in allowed:
            raise RecordError(
                str(key), f"no such field in a {record_type} record; allowed: {', '.join(allowed)}"
            )
    for name, what in cls.required.items():
        if name not in obj:
            raise RecordError(name, f"{what} (the field is missing)")

    kwargs = {key: value for key, value in obj.items() if key != "type"}
    for f in fields(cls):
        # null in an optional field means its default; required fields keep null so the check reports it.
        if f.name in kwargs and kwargs[f.name] is None and f.default is not MISSING:
            del kwargs[f.name]
    return cls(**kwargs)  # type: ignore[return-value]

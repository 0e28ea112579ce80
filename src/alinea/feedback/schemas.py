"""Request and response bodies of the JSON API (pydantic), in families: `*Create`, `*Update`, `*Public`.

Every string that reaches the database is checked for NUL characters (PostgreSQL cannot store them) and every
number for its column's range, so that no request body can make the database fail: bad input is a 422 that names
the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from alinea.feedback.tasks import TASK_TYPES

MAX_INT = 2_147_483_647
MAX_JSON_DEPTH = 12


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters (\\u0000)")
    return value


def json_safe(value: Any, depth: int = 0) -> Any:
    """Reject NUL characters anywhere in a JSON value, and nesting deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            _no_nul(str(key))
            json_safe(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            json_safe(inner, depth + 1)
    elif isinstance(value, float) and value != value:  # NaN
        raise ValueError("numbers must be finite")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
ShortText = Annotated[str, Field(max_length=256), AfterValidator(_no_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(json_safe)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
Id = Annotated[int, Field(ge=1, le=MAX_INT)]
Role = Literal["admin", "annotator", "viewer"]
TaskType = Literal[TASK_TYPES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------------------------------
# users and tokens


class UserCreate(Strict):
    username: ShortText
    password: Annotated[str, Field(max_length=1024), AfterValidator(_no_nul)]
    role: Role = "annotator"
    display_name: Annotated[str, Field(max_length=128), AfterValidator(_no_nul)] = ""
    locale: Annotated[str, Field(max_length=16), AfterValidator(_no_nul)] | None = None


class UserUpdate(Strict):
    active: bool | None = None
    locale: Annotated[str, Field(max_length=16), AfterValidator(_no_nul)] | None = None


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    locale: str | None


class TokenCreate(Strict):
    username: ShortText
    password: Annotated[str, Field(max_length=1024), AfterValidator(_no_nul)]
    name: ShortText = ""


class TokenPublic(BaseModel):
    token: str
    """Shown once: only its hash is kept."""
    username: str
    role: str


class MePublic(BaseModel):
    id: int
    username: str
    role: str
    locale: str | None


class MeUpdate(Strict):
    locale: Annotated[str, Field(max_length=16), AfterValidator(_no_nul)] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# projects and guidelines


class ProjectCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
    task_type: TaskType
    overlap: Annotated[int, Field(ge=1, le=50)] | None = None
    """Distinct annotators per item (default: the server's default_overlap)."""
    gold_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    lease_seconds: Annotated[int, Field(ge=10, le=7 * 24 * 3600)] | None = None
    """How long an annotator holds an item (default: the server's default_lease_seconds)."""
    description: Annotated[str, Field(max_length=20_000), AfterValidator(_no_nul)] = ""
    guidelines: Annotated[str, Field(max_length=200_000), AfterValidator(_no_nul)] = ""
    aspects: Annotated[list[ShortText], Field(max_length=20)] = []
    flags: Annotated[list[ShortText], Field(max_length=20)] = []
    scale: tuple[Annotated[int, Field(ge=-100, le=100)], Annotated[int, Field(ge=-100, le=100)]] = (1, 7)
    members: Annotated[list[ShortText], Field(max_length=1000)] = []


class ProjectUpdate(Strict):
    overlap: Annotated[int, Field(ge=1, le=50)] | None = None
    gold_rate: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    lease_seconds: Annotated[int, Field(ge=10, le=7 * 24 * 3600)] | None = None
    description: Annotated[str, Field(max_length=20_000), AfterValidator(_no_nul)] | None = None
    archived: bool | None = None


class ProjectPublic(BaseModel):
    id: int
    name: str
    task_type: str
    description: str
    overlap: int
    gold_rate: float | None
    """Admins only (null for others: gold items are mixed in silently)."""
    lease_seconds: int
    aspects: list[str]
    flags: list[str]
    scale: tuple[int, int]
    guideline_version: int | None
    progress: dict[str, Any] | None = None


class GuidelineCreate(Strict):
    text: Annotated[str, Field(min_length=1, max_length=200_000), AfterValidator(_no_nul)]


class GuidelinePublic(BaseModel):
    version: int
    text: str
    created_at: datetime


class MembersUpdate(Strict):
    usernames: Annotated[list[ShortText], Field(min_length=1, max_length=1000)]


# ---------------------------------------------------------------------------------------------------------------------
# items


class ItemIn(Strict):
    record: JsonObject
    """An alinea record (see docs/data.md): its prompt and responses make the item."""
    priority: Finite | None = None
    meta: JsonObject = {}
    """Anything for admins only (which model wrote which response, a round number); never shown to annotators."""


class ItemsCreate(Strict):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=10_000)]
    gold: bool = False
    """The records carry known answers: the items become gold items, mixed in at the project's gold rate."""
    priority: Finite = 0.0


class ItemsCreated(BaseModel):
    ids: list[int]


class ItemAdmin(BaseModel):
    id: int
    external_id: str | None
    messages: list[dict[str, Any]]
    responses: list[str]
    language: str
    tags: list[str]
    meta: dict[str, Any]
    priority: float
    is_gold: bool
    gold_answer: dict[str, Any] | None
    n_done: int


class PriorityIn(Strict):
    item_id: Id | None = None
    external_id: ShortText | None = None
    priority: Finite


class PrioritiesUpdate(Strict):
    priorities: Annotated[list[PriorityIn], Field(min_length=1, max_length=100_000)]


class PrioritiesUpdated(BaseModel):
    changed: int


# ---------------------------------------------------------------------------------------------------------------------
# leases and judgments


class LeasePublic(BaseModel):
    """An item as an annotator sees it: responses in their shown order, nothing about gold or model identities."""

    item_id: int
    project_id: int
    task_type: str
    messages: list[dict[str, Any]]
    responses: list[str]
    language: str
    expires_at: datetime
    guideline_version: int | None


class JudgmentCreate(Strict):
    answer: JsonObject
    """In screen positions: pairwise {choice: left|right|tie, strength: 0..3, both_bad}; ranking {ranks: [...per shown
    response], none_acceptable}; rating {ratings: {aspect: score}, flags, comment}; thumbs {thumb: up|down, comment};
    demonstration {turns: [{role, content}, ...]} (see alinea.feedback.tasks)."""
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
    """A fresh random id per judgment; a retry with the same key returns the first judgment."""
    time_spent_ms: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    guideline_version: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    lease_next: bool = False
    """Also lease the next item and return it in `next` (one round trip per judgment)."""


class JudgmentPublic(BaseModel):
    id: int
    item_id: int
    replayed: bool
    """True when this is the answer to a retry: the judgment was recorded by an earlier request."""
    answer: dict[str, Any]
    shown_order: list[int]
    guideline_version: int | None
    time_spent_ms: int | None
    created_at: datetime
    next: LeasePublic | None = None


class SkipCreate(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_no_nul)]


# ---------------------------------------------------------------------------------------------------------------------
# chat


class ChatCreate(Strict):
    item_id: Id | None = None
    """Start from an item's prompt (a chat project's seed prompts); else the first message is the annotator's."""


class ChatMessageCreate(Strict):
    content: Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(_no_nul)] | None = None
    """The annotator's next message; null asks the model (again) to answer the conversation as it stands."""


class ChatPick(Strict):
    choice: Literal["left", "right", "tie"]
    strength: Annotated[int, Field(ge=0, le=3)] = 2
    both_bad: bool = False
    thumb: Literal["up", "down"] | None = None
    comment: Annotated[str, Field(max_length=20_000), AfterValidator(_no_nul)] = ""


class ChatPublic(BaseModel):
    id: int
    project_id: int
    messages: list[dict[str, Any]]
    pending: list[str] | None
    """The two samples awaiting a pick, in shown order (left, right)."""
    turns: int

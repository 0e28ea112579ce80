"""Chat with the live model: each assistant turn offers two samples, the annotator picks one (with a strength, or a
tie, or "both bad") and the conversation continues from the pick; a thumb and a comment per turn are optional.

The app never loads models itself (it imports no training or model code): `create_app(..., chat_sampler=f)` takes
a plain function `f(messages, n, seed) -> list[str]` that returns `n` sampled assistant answers to a conversation
(`alinea serve --chat-model DIR` builds one from a checkpoint). Sampling runs outside any database transaction.

The two samples are shown in an order shuffled per (conversation, turn); each judged turn is stored as
{context, samples, shown_order, preference ('a' = samples[0]), strength, both_bad, winner_position, continued_with,
thumb, comment, time}, and exported as a comparison record (plus a thumb record when given).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alinea.feedback import schemas
from alinea.feedback.assignment import Rules
from alinea.feedback.errors import Conflict, FeedbackError, Invalid, NotFound
from alinea.feedback.models import ChatConversation, Item, utcnow

ChatSampler = Callable[[list[dict[str, str]], int, int], list[str]]
MAX_TURNS = 50


class NoModel(FeedbackError):
    status = 503


def start(session: Session, *, rules: Rules, user_id: int, item_id: int | None = None) -> ChatConversation:
    """A new conversation, empty or seeded with an item's prompt."""
    if rules.task_type != "chat":
        raise Invalid(f"project {rules.project_id} is a {rules.task_type} project, not a chat project")
    messages: list[dict[str, str]] = []
    if item_id is not None:
        seed = session.scalar(select(Item.messages).where(Item.id == item_id, Item.project_id == rules.project_id))
        if seed is None:
            raise NotFound(f"item {item_id}: no such item in project {rules.project_id}")
        messages = list(seed)
    conversation = ChatConversation(project_id=rules.project_id, user_id=user_id, messages=messages, pending=None,
                                    turns=[], guideline_version=rules.guideline_version)
    session.add(conversation)
    session.flush()
    return conversation


def get_own(session: Session, *, chat_id: int, user_id: int) -> ChatConversation:
    conversation = session.get(ChatConversation, chat_id)
    if conversation is None or conversation.user_id != user_id:
        raise NotFound(f"no conversation {chat_id} of yours")
    return conversation


def needs_samples(conversation: ChatConversation) -> bool:
    """The last message is the user's and no samples are waiting: the model should answer."""
    return bool(conversation.messages) and conversation.messages[-1]["role"] == "user" and not conversation.pending


def context_for_message(session: Session, *, chat_id: int, user_id: int, content: str | None) -> list[dict]:
    """The conversation the model should answer: so far, plus the user's new message (None: as it stands)."""
    conversation = get_own(session, chat_id=chat_id, user_id=user_id)
    if conversation.pending:
        raise Conflict("pick one of the two answers first")
    if len(conversation.turns) >= MAX_TURNS:
        raise Conflict(f"a conversation has at most {MAX_TURNS} judged turns; start a new one")
    messages = list(conversation.messages)
    if content is not None:
        if messages and messages[-1]["role"] == "user":
            raise Conflict("the model has not answered the last message yet")
        messages.append({"role": "user", "content": content})
    elif not messages or messages[-1]["role"] != "user":
        raise Conflict("write a message first")
    return messages


def sample_pair(sampler: ChatSampler | None, context: list[dict[str, str]], *, seed: int) -> list[str]:
    if sampler is None:
        raise NoModel("no live model is loaded: start the server with --chat-model DIR")
    samples = [str(s).replace("\x00", "") for s in sampler(context, 2, seed)]
    if len(samples) != 2:
        raise RuntimeError(f"the chat sampler returned {len(samples)} samples, expected 2")
    return [s if s.strip() else "(empty answer)" for s in samples]


def add_samples(session: Session, *, chat_id: int, user_id: int, context: list[dict[str, str]],
                samples: list[str], seed: int = 0) -> ChatConversation:
    """Store the new message and the two samples (unless the conversation moved on meanwhile: Conflict)."""
    conversation = get_own(session, chat_id=chat_id, user_id=user_id)
    if conversation.pending or list(conversation.messages) != context[: len(conversation.messages)]:
        raise Conflict("the conversation changed while the model was answering; reload it")
    order = [0, 1]
    random.Random(f"{seed}:chat:{conversation.id}:{len(conversation.turns)}").shuffle(order)
    conversation.messages = list(context)
    conversation.pending = {"samples": samples, "shown_order": order}
    conversation.updated_at = utcnow()
    return conversation


def pick(session: Session, *, chat_id: int, user_id: int, choice: str, strength: int, both_bad: bool,
         thumb: str | None, comment: str) -> ChatConversation:
    """Judge the pending turn and continue the conversation from the picked sample (a tie continues from the left)."""
    conversation = get_own(session, chat_id=chat_id, user_id=user_id)
    pending = conversation.pending
    if not pending:
        raise Conflict("there are no answers to pick from: write a message first")
    if choice == "tie" and strength != 0:
        strength = 0
    order = pending["shown_order"]
    position = {"left": 0, "right": 1, "tie": None}[choice]
    continued = order[0] if position is None else order[position]
    turn: dict[str, Any] = {
        "context": list(conversation.messages), "samples": pending["samples"], "shown_order": order,
        "preference": "tie" if position is None else "ab"[continued], "strength": strength, "both_bad": both_bad,
        "winner_position": position, "continued_with": continued, "thumb": thumb, "comment": comment,
        "time": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    conversation.turns = [*conversation.turns, turn]
    conversation.messages = [*conversation.messages, {"role": "assistant", "content": pending["samples"][continued]}]
    conversation.pending = None
    conversation.updated_at = utcnow()
    return conversation


def public(conversation: ChatConversation) -> schemas.ChatPublic:
    pending = None
    if conversation.pending:
        samples, order = conversation.pending["samples"], conversation.pending["shown_order"]
        pending = [samples[i] for i in order]
    return schemas.ChatPublic(id=conversation.id, project_id=conversation.project_id,
                              messages=list(conversation.messages), pending=pending, turns=len(conversation.turns))

"""Seeded train / held-out splits of record files that keep every group of related records on one side.

A group is what must not be split across the two sides:
- `by="item"` (default): records about the same prompt and the same set of answers, e.g. one comparison judged by
  several annotators. Holding out one of those judgments while training on another would test memory, not reward.
- `by="prompt"`: every record of a prompt, whatever its answers: the held-out side then asks questions the
  model never saw in training.

Which groups are held out depends only on the groups themselves and the seed, not on the order of the file: each
group's key is hashed with the seed (SHA-256) and the `round(holdout * groups)` groups with the smallest hashes are
held out (at least one, and at least one left for training). Records keep their file order on both sides.

Trainers hold out part of their own input for evaluation the same way, prompt by prompt (`held_out_split`): the
reward trainer's examples, DPO's pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from alinea.data.records import Record
from alinea.errors import UserError

SPLIT_BY = ("item", "prompt")


class Split(NamedTuple):
    train: list[Record]
    heldout: list[Record]
    n_groups: int
    """Groups (items or prompts) in the input."""
    n_heldout_groups: int
    """Of those, how many went to the held-out side."""


def group_key(record: Record, by: str) -> str:
    """The text that decides a record's side: the prompt, plus the sorted answers when `by` is "item"."""
    key: dict = {"prompt": record.prompt_messages()}
    if by == "item":
        key["answers"] = sorted(record.response_texts())
    return json.dumps(key, ensure_ascii=False, sort_keys=True)


def split_records(records: Sequence[Record], *, holdout: float, seed: int, by: str = "item") -> Split:
    """Split `records` into train and held-out sides, whole groups at a time; see the module docstring."""
    if by not in SPLIT_BY:
        raise UserError(f"split by: expected one of {', '.join(SPLIT_BY)}, got {by!r}.")
    if not 0.0 < holdout < 1.0:
        raise UserError(f"holdout: expected a share strictly between 0 and 1, got {holdout}.")
    keys = [group_key(record, by) for record in records]
    groups = sorted(set(keys), key=lambda key: hashlib.sha256(f"{seed}\n{key}".encode()).digest())
    if len(groups) < 2:
        raise UserError(
            f"split: {len(records)} records form {len(groups)} {by} group(s); at least 2 are needed "
            "(one for each side)."
        )
    n_heldout = min(max(1, round(holdout * len(groups))), len(groups) - 1)
    heldout_keys = set(groups[:n_heldout])
    train = [r for r, k in zip(records, keys, strict=True) if k not in heldout_keys]
    heldout = [r for r, k in zip(records, keys, strict=True) if k in heldout_keys]
    return Split(train, heldout, len(groups), n_heldout)


def prompt_group_key(prompt_messages: list[dict[str, str]]) -> str:
    """The text that groups examples by prompt in `held_out_split` (the messages as canonical JSON)."""
    return json.dumps(prompt_messages, ensure_ascii=False, sort_keys=True)


def held_out_split(groups: Sequence[int], fraction: float, seed: int, *,
                   min_train: int = 2) -> tuple[list[int], list[int]]:
    """(held-out indices, training indices) of examples whose prompt groups are `groups`, for a trainer's own
    evaluation: whole groups are held out, in a seeded random order, until about `fraction` of the examples are,
    leaving at least `min_train` training examples. A prompt judged several times (several annotators, several
    answer pairs) is then never on both sides, so held-out figures measure prompts the model has not trained on.
    When no group can be held out (one prompt for nearly everything), single examples are. With every prompt
    distinct this holds out the same examples as a seeded permutation of the examples would."""
    n = len(groups)
    if not fraction or n <= min_train:
        return [], list(range(n))
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    order = list(members)
    np.random.default_rng(seed).shuffle(order)
    target = max(1, int(round(n * fraction)))
    held: list[int] = []
    for group in order:
        if held and (len(held) >= target or n - len(held) - len(members[group]) < min_train):
            break
        if n - len(members[group]) < min_train:
            continue
        held.extend(members[group])
    if not held:
        held = np.random.default_rng(seed).permutation(n).tolist()[: min(target, n - min_train)]
    chosen = set(held)
    return sorted(held), [i for i in range(n) if i not in chosen]

"""The SST trees and the HH split on the real files in shared/data (skipped, saying why, when that folder is absent).

The expected figures are in docs/data.md, "What the real files in shared/data hold".
"""

from __future__ import annotations

from collections import Counter

import pytest

from alinea.data.importers import import_hh_rlhf
from alinea.data.split import group_key, split_records
from alinea.data.treebank import read_treebank, treebank_sentences

pytestmark = pytest.mark.shared_data


def test_sst_train_trees(shared_file):
    path = shared_file("sst/train.txt")
    trees = read_treebank(path)
    assert len(trees) == 8544
    assert Counter(t.label for t in trees) == {0: 1092, 1: 2218, 2: 1624, 3: 2322, 4: 1288}
    with_space = [n for n, t in enumerate(trees, start=1) if any(" " in token for token in t.tokens)]
    assert with_space == [4342, 5799, 7409]
    sentences = treebank_sentences(path)
    assert sentences[0].startswith("The Rock is destined to be the 21st Century's new \"Conan\" and that he's going")
    assert sentences[4341] == "A mimetic approximation of better films like Contempt and 8 1/2."
    assert not any(escape in s for s in sentences for escape in ("-LRB-", "-RRB-", "``", "''", " n't", " ,", "\\/"))


def test_hh_portion_split_by_prompt(shared_file):
    records, _ = import_hh_rlhf(shared_file("hh-rlhf/harmless-base/train-portion.jsonl.gz"), skip_invalid=True)
    assert len({group_key(r, "prompt") for r in records}) == 1596
    split = split_records(records, holdout=0.15, seed=0, by="prompt")
    assert (len(split.train), len(split.heldout), split.n_heldout_groups) == (1358, 239, 239)

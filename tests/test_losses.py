import math

import pytest
import torch

from alinea.losses import (
    IGNORE_INDEX,
    causal_lm_loss,
    masked_mean,
    shift_for_next_token,
    token_nll,
)


def test_shift_for_next_token():
    labels = torch.tensor([[5, 6, 7], [1, IGNORE_INDEX, 2]])
    assert shift_for_next_token(labels).tolist() == [[6, 7, IGNORE_INDEX], [IGNORE_INDEX, 2, IGNORE_INDEX]]


def test_token_nll_by_hand():
    # logits [0, ln 3] -> softmax [1/4, 3/4]; target 1 -> -ln(3/4), target 0 -> -ln(1/4)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    nll = token_nll(logits, torch.tensor([1, 0]))
    assert nll.tolist() == pytest.approx([-math.log(0.75), -math.log(0.25)], abs=1e-6)


def test_causal_lm_loss_averages_only_labelled_targets():
    # Vocabulary of 2, uniform logits at every position: each scored token costs ln 2.
    logits = torch.zeros(1, 4, 2)
    logits[0, 1] = torch.tensor([0.0, math.log(3.0)])  # position 1 predicts labels[2] = 1 with p = 3/4
    labels = torch.tensor([[0, IGNORE_INDEX, 1, 0]])
    # targets: pos0 -> ignore, pos1 -> 1 (-ln .75), pos2 -> 0 (ln 2), pos3 -> none
    expected = (-math.log(0.75) + math.log(2.0)) / 2
    assert float(causal_lm_loss(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_causal_lm_loss_all_ignored_is_zero_with_grad():
    logits = torch.zeros(1, 3, 4, requires_grad=True)
    loss = causal_lm_loss(logits, torch.full((1, 3), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_masked_mean():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(masked_mean(values, torch.tensor([1, 0, 1, 0]))) == 2.0
    assert float(masked_mean(values, torch.zeros(4))) == 0.0

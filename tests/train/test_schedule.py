import pytest

from alinea.train.schedule import warmup_cosine


def test_warmup_is_linear_from_first_step():
    factors = [warmup_cosine(s, warmup_steps=4, max_steps=14, min_ratio=0.1) for s in range(4)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_cosine_reaches_floor_at_last_step_and_stays():
    kw = dict(warmup_steps=4, max_steps=14, min_ratio=0.1)
    assert warmup_cosine(4, **kw) == pytest.approx(1.0)
    # halfway through the decay (step 4 + 9/2): 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert warmup_cosine(13, **kw) == pytest.approx(0.1)
    assert warmup_cosine(50, **kw) == pytest.approx(0.1)
    kw2 = dict(warmup_steps=0, max_steps=11, min_ratio=0.0)
    assert warmup_cosine(5, **kw2) == pytest.approx(0.5)
    assert warmup_cosine(0, **kw2) == pytest.approx(1.0)

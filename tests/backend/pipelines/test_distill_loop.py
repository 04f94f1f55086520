"""The shared optimisation loop's learning-rate schedule."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from backend.pipelines.distill_loop import learning_rate
from backend.pipelines.presets import DistillConfig


def test_rate_decays_exponentially_from_lr_to_lr_end():
    config = DistillConfig(lr=0.5, lr_end=0.1)
    assert learning_rate(config, 0.0) == pytest.approx(0.5)
    assert learning_rate(config, 1.0) == pytest.approx(0.1)
    assert learning_rate(config, 0.5) == pytest.approx(math.sqrt(0.5 * 0.1))  # geometric middle
    rates = [learning_rate(config, p / 10) for p in range(11)]
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_rate_is_constant_without_lr_end():
    config = DistillConfig(lr=0.3)
    assert {learning_rate(config, p) for p in (0.0, 0.4, 1.0)} == {0.3}


@pytest.mark.parametrize(("field", "value"), [("lr", 0.0), ("lr_end", -0.1)])
def test_a_rate_that_is_not_positive_names_its_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(DistillConfig(), **{field: value})

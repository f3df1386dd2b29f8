"""The page's percentiles read buckets as Prometheus' histogram_quantile does."""

from __future__ import annotations

import math

import pytest

from exporter.stats.quantiles import quantile

BOUNDS = (0.1, 0.5, 1.0, math.inf)


def test_interpolates_inside_the_bucket_holding_the_rank():
    # 10 observations in (0.1, 0.5]: the median sits half way through that bucket.
    assert quantile(0.5, BOUNDS, [0, 10, 0, 0]) == pytest.approx(0.3)
    # The first bucket starts at zero.
    assert quantile(0.5, BOUNDS, [4, 0, 0, 0]) == pytest.approx(0.05)


def test_counts_below_the_rank_move_it_into_a_later_bucket():
    assert quantile(0.95, BOUNDS, [50, 40, 10, 0]) == pytest.approx(0.5 + 0.5 * 0.5)


def test_a_rank_in_the_inf_bucket_answers_the_highest_finite_bound():
    assert quantile(0.99, BOUNDS, [1, 0, 0, 99]) == 1.0


def test_no_observations_is_no_value_not_zero():
    assert quantile(0.5, BOUNDS, [0, 0, 0, 0]) is None


def test_a_quantile_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError):
        quantile(1.5, BOUNDS, [1, 0, 0, 0])

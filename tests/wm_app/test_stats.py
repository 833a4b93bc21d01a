"""wm_app.stats against hand computations: IQM, stratified bootstrap intervals, probability of
improvement, performance profiles, area under the curve."""
import itertools
import math

import numpy as np
import pytest

from wm_app import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm(np.arange(1.0, 9.0)) == 4.5  # 3, 4, 5, 6
    assert stats.iqm(np.array([10.0, 1, 7, 3, 100, 2, 5, 4])) == pytest.approx((3 + 4 + 5 + 7) / 4)
    assert stats.iqm(np.array([1.0, 2, 30])) == pytest.approx(11.0)  # fewer than 4: nothing trimmed


def exact_bootstrap(values, statistic):
    """Every equally likely resample of ``values`` (n^n of them) and the statistic of each, sorted."""
    draws = np.array(list(itertools.product(values, repeat=len(values))))
    return np.sort(statistic(draws, axis=-1))


def test_bootstrap_interval_of_the_iqm_matches_the_exact_bootstrap_distribution():
    values = [0.0, 1.0, 2.0, 10.0, 13.0]  # IQM of 5 trims one from each end
    distribution = exact_bootstrap(values, stats.iqm)
    low_exact, high_exact = np.quantile(distribution, [0.025, 0.975], method="inverted_cdf")
    # the test is only exact where the 2.5% and 97.5% points are inside an atom, not at its edge
    for point, quantile in ((low_exact, 0.025), (high_exact, 0.975)):
        below, upto = np.mean(distribution < point), np.mean(distribution <= point)
        assert below + 0.003 < quantile < upto - 0.003  # 0.003: two standard errors at 10,000 resamples
    estimate = stats.stratified_bootstrap([values], stats.aggregate_iqm, seed=0)
    assert estimate.value == pytest.approx(np.mean([1.0, 2.0, 10.0]))
    assert (estimate.low, estimate.high) == (pytest.approx(low_exact), pytest.approx(high_exact))


def test_bootstrap_interval_of_the_mean_by_hand():
    values = [0.0, 3.0, 9.0]  # 27 resamples; the smallest mean, 0, has probability 1/27 > 2.5%
    estimate = stats.stratified_bootstrap([values], stats.aggregate_mean, seed=3)
    assert (estimate.value, estimate.low, estimate.high) == (4.0, 0.0, 9.0)


def test_bootstrap_is_stratified_by_task():
    # each task's runs are equal, so only a resample that mixes tasks could move the pooled mean
    estimate = stats.stratified_bootstrap([[0.0, 0.0], [10.0, 10.0, 10.0, 10.0]], stats.aggregate_mean, seed=0)
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx((20 / 3, 20 / 3, 20 / 3))


def test_bootstrap_is_seeded_and_one_run_has_no_interval():
    values = np.random.default_rng(1).normal(size=7)
    first = stats.stratified_bootstrap([values], stats.aggregate_iqm, seed=5)
    assert stats.stratified_bootstrap([values], stats.aggregate_iqm, seed=5) == first
    assert stats.stratified_bootstrap([values], stats.aggregate_iqm, seed=6) != first
    assert stats.stratified_bootstrap([[3.0]], stats.aggregate_mean, seed=0) == stats.Estimate(3.0)
    assert stats.stable_seed(0, "a", "b") == stats.stable_seed(0, "a", "b") != stats.stable_seed(0, "ab")


def test_probability_of_improvement_on_known_distributions():
    assert stats.probability_of_improvement([[1.0, 2, 3]], [[0.0, 0, 0]], seed=0) == stats.Estimate(1.0, 1.0, 1.0)
    same = stats.probability_of_improvement([[1.0, 2, 3]], [[1.0, 2, 3]], seed=0)
    assert same.value == 0.5 and same.low < 0.5 < same.high
    assert stats.probability_of_improvement([[1.0, 3.0]], [[2.0, 2.0]], seed=0).value == 0.5
    # X ~ N(1, 1), Y ~ N(0, 1): P(X > Y) = Phi(1 / sqrt(2))
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    truth = 0.5 * (1 + math.erf(0.5))
    estimate = stats.probability_of_improvement([x], [y], seed=0, n_resamples=1000)
    assert abs(estimate.value - truth) < 0.04
    assert estimate.low < truth < estimate.high and estimate.high - estimate.low < 0.15


def test_probability_of_improvement_averages_over_tasks():
    estimate = stats.probability_of_improvement([[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], seed=0)
    assert (estimate.value, estimate.low, estimate.high) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement([[1.0]], [[1.0], [2.0]], seed=0)


def test_performance_profile_weights_tasks_equally():
    profile, low, high = stats.performance_profile([[0.1, 0.5], [0.9, 0.9, 0.9]], np.array([0.0, 0.6, 1.0]), seed=0)
    assert profile.tolist() == [1.0, 0.5, 0.0]
    assert low[0] == high[0] == 1.0 and low[1] <= 0.5 <= high[1]


def test_area_under_curve_is_the_mean_return_over_training():
    assert stats.area_under_curve([0, 1000, 3000], [0.0, 10.0, 10.0]) == pytest.approx(25_000 / 3000)
    assert stats.area_under_curve([500], [-7.0]) == -7.0
    with pytest.raises(ValueError):
        stats.area_under_curve([0, 1], [1.0])


def test_steps_to_threshold_counts_a_seed_that_never_got_there_as_later_than_any():
    estimate = stats.threshold_steps_estimate([1000.0, None, 2000.0], 3000, seed=0)
    assert estimate.value == 2000.0 and estimate.low == 1000.0 and estimate.high == 6000.0  # 6000: beyond budget

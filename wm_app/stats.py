"""Statistics for comparing RL runs over seeds and tasks (Agarwal et al., NeurIPS 2021).

Interquartile mean, mean, probability of improvement and performance profiles, each with a
percentile confidence interval from a stratified bootstrap: the runs of each task (a
stratum) are resampled with replacement on their own, so every resample keeps every task.
Resampling is ``scipy.stats.bootstrap`` with a seeded generator, so the same scores and
seed give the same intervals. The definitions follow ``rliable`` (IQM is
``scipy.stats.trim_mean(scores, 0.25)`` over all runs of all tasks; the probability of
improvement is the Mann-Whitney statistic averaged over tasks).
"""
from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000  # bootstrap resamples of every interval
CONFIDENCE = 0.95
FEW_SEEDS = 5  # below this the summary warns that the intervals are wide and unreliable


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its bootstrap interval (``low``/``high`` are None when a stratum
    holds fewer than 2 runs: one value cannot be resampled into an interval)."""

    value: float
    low: float | None = None
    high: float | None = None


def stable_seed(seed: int, *labels: str) -> int:
    """A seed for one statistic, fixed by ``seed`` and the labels it describes, so adding a row
    to a comparison leaves the other rows' intervals unchanged."""
    return (seed * 1_000_003 + zlib.crc32("\0".join(labels).encode())) % 2**32


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle half, trimming ``floor(n/4)`` values from each
    end (as ``rliable`` does; with fewer than 4 values nothing is trimmed)."""
    return stats.trim_mean(scores, 0.25, axis=axis)


def _pooled(strata: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate([np.asarray(s) for s in strata], axis=axis)


def aggregate_iqm(*strata: np.ndarray, axis: int = -1) -> np.ndarray:
    """IQM over all runs of all tasks (the strata's last axes are pooled)."""
    return iqm(_pooled(strata, axis), axis=axis)


def aggregate_mean(*strata: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over all runs of all tasks."""
    return np.mean(_pooled(strata, axis), axis=axis)


def aggregate_median(*strata: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over all runs of all tasks."""
    return np.median(_pooled(strata, axis), axis=axis)


def _strata(strata: Sequence[Sequence[float]]) -> list[np.ndarray]:
    arrays = [np.asarray(s, dtype=float) for s in strata]
    if not arrays or any(a.ndim != 1 or a.size == 0 for a in arrays):
        raise ValueError("every stratum (task) needs a 1-D, non-empty array of run scores")
    return arrays


def stratified_bootstrap(strata: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray], *,
                         seed: int, n_resamples: int = N_RESAMPLES) -> Estimate:
    """``statistic(*strata, axis=-1)`` and its percentile interval, resampling each stratum's runs.

    Args:
        strata: one array of run scores per task (sizes may differ).
        statistic: vectorised over the last axis, e.g. ``aggregate_iqm``.
        seed: seeds the resampling (same seed, same interval).

    Shapes:
        strata[t]: [runs_t]; statistic(*strata): a scalar.
    """
    arrays = _strata(strata)
    value = float(statistic(*arrays, axis=-1))
    if min(a.size for a in arrays) < 2:
        return Estimate(value)
    low, high = _interval(arrays, statistic, seed, n_resamples)
    return Estimate(value, float(low), float(high))


def _interval(arrays: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], seed: int,
              n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():  # identical runs give a degenerate (zero-width) interval, which is right
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(tuple(arrays), statistic, vectorized=True, paired=False, axis=-1,
                                 confidence_level=CONFIDENCE, n_resamples=n_resamples, method="percentile",
                                 rng=np.random.default_rng(seed))
    return result.confidence_interval.low, result.confidence_interval.high


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over all pairs of runs (the last axes)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


def probability_of_improvement(x_strata: Sequence[Sequence[float]], y_strata: Sequence[Sequence[float]], *,
                               seed: int, n_resamples: int = N_RESAMPLES) -> Estimate:
    """The probability that a run of X scores higher than a run of Y on the same task (ties count
    half), averaged over tasks, with its interval (X's and Y's runs resampled apart, per task).

    Shapes:
        x_strata[t]: [runs of X on task t]; y_strata[t]: [runs of Y on task t].
    """
    xs, ys = _strata(x_strata), _strata(y_strata)
    if len(xs) != len(ys):
        raise ValueError(f"X has {len(xs)} tasks and Y {len(ys)}: both need the same tasks")
    tasks = len(xs)

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_improvement(arrays[i], arrays[tasks + i]) for i in range(tasks)], axis=0)

    arrays = [*xs, *ys]
    value = float(statistic(*arrays))
    if min(a.size for a in arrays) < 2:
        return Estimate(value)
    low, high = _interval(arrays, statistic, seed, n_resamples)
    return Estimate(value, float(low), float(high))


def performance_profile(strata: Sequence[Sequence[float]], taus: np.ndarray, *, seed: int,
                        n_resamples: int = 2_000) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Fraction of runs scoring above each threshold ``tau`` (tasks weighted equally), with
    pointwise bootstrap bands (None when a task holds fewer than 2 runs).

    Shapes:
        strata[t]: [runs_t]; taus: [K]; returns three [K] arrays.
    """
    arrays = _strata(strata)
    taus = np.asarray(taus, dtype=float)

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        fractions = [(a[..., None, :] > taus[:, None]).mean(axis=-1) for a in arrays]  # each [..., K]
        return np.moveaxis(np.mean(fractions, axis=0), -1, 0)  # [K, ...]

    profile = statistic(*arrays)
    if min(a.size for a in arrays) < 2:
        return profile, None, None
    low, high = _interval(arrays, statistic, seed, n_resamples)
    return profile, np.asarray(low), np.asarray(high)


def area_under_curve(env_steps: Sequence[float], returns: Sequence[float]) -> float:
    """Area under the learning curve divided by its span: the mean return over training
    (trapezoids between evaluations), in return units; one evaluation gives its return.

    Shapes:
        env_steps, returns: [evaluations], env_steps increasing.
    """
    steps, values = np.asarray(env_steps, dtype=float), np.asarray(returns, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"env_steps {steps.shape} and returns {values.shape} must be equal, non-empty 1-D")
    span = steps[-1] - steps[0]
    if steps.size == 1 or span <= 0:
        return float(values[-1])
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps)) / span)


def threshold_steps_estimate(reached: Sequence[float | None], budget: float, *, seed: int) -> Estimate:
    """Median env steps to a threshold over seeds, with its interval; a seed that never reached it
    counts as ``2 * budget`` (later than any that did), so an estimate above ``budget`` means
    "not within the budget"."""
    beyond = 2.0 * budget
    values = [beyond if steps is None else float(steps) for steps in reached]
    return stratified_bootstrap([values], aggregate_median, seed=seed)

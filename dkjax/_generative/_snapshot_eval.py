"""The evaluations of snapshot fitting the field uses: leave-one-time-out, forecast, interpolation baseline."""

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy.optimize import linear_sum_assignment

from .._custom_types import Array, Float, InitialSampler, Key, RealScalarLike
from ._metrics import energy_distance, sliced_wasserstein
from .._sde._abstract import AbstractSDE
from ._snapshots import Snapshots, as_snapshots, simulate_snapshots
from ._train import TrainHistory, fit

# Exact matching costs O(n^3): beyond this many points per side the baseline matches a subsample.
_MAX_MATCHED = 1000


def interpolate_snapshots(
    before: Float[Array, "n d"], after: Float[Array, "m d"], fraction: float, *, key: Key
) -> Float[Array, "k d"]:
    """The displacement interpolation between two snapshots: ``(1 - s) x_i + s y_pi(i)``.

    ``pi`` is the optimal (squared-distance) matching of equally many points drawn without
    replacement from each side (at most 1000), the standard baseline for a held-out time: a
    straight-line transport from the earlier snapshot to the later one, no dynamics.

    Arguments:
        before, after: the snapshots at ``t_a < t_b``.
        fraction: ``s = (t - t_a) / (t_b - t_a)`` in ``[0, 1]``.
        key: PRNG key for the subsamples.

    Returns:
        ``min(n, m, 1000)`` points of the interpolated law.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]`` or the two dimensions differ.

    Example:
        >>> a, b = jnp.zeros((50, 1)), jnp.ones((80, 1))
        >>> mid = dkjax.interpolate_snapshots(a, b, 0.25, key=jax.random.key(0))
        >>> print(mid.shape, float(mid.mean()))
        (50, 1) 0.25
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1]; got {fraction}.")
    if jnp.shape(before)[1] != jnp.shape(after)[1]:
        raise ValueError(f"before and after differ in dimension: {jnp.shape(before)} and {jnp.shape(after)}.")
    size = min(len(before), len(after), _MAX_MATCHED)
    key_a, key_b = jr.split(key)
    a = np.asarray(before)[np.asarray(jr.permutation(key_a, len(before)))[:size]]
    b = np.asarray(after)[np.asarray(jr.permutation(key_b, len(after)))[:size]]
    rows, cols = linear_sum_assignment(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return jnp.asarray((1 - fraction) * a[rows] + fraction * b[cols])


@dataclasses.dataclass
class SnapshotScore:
    """How well samples match the held-out snapshot at one time, next to a baseline's.

    Attributes:
        time: the held-out time.
        energy_distance, sliced_wasserstein: the model's samples against the held-out points.
        baseline_energy_distance, baseline_sliced_wasserstein: the baseline's.
        baseline: which baseline (``"interpolation"`` between the neighbouring snapshots, or
            ``"last snapshot"`` for a forecast past the last training time).

    Example:
        >>> score = dkjax.SnapshotScore(time=1.0, energy_distance=0.002, sliced_wasserstein=0.05,
        ...                             baseline_energy_distance=0.004, baseline_sliced_wasserstein=0.07,
        ...                             baseline="interpolation")
        >>> print(score.energy_distance < score.baseline_energy_distance)   # the model beats the baseline
        True
    """

    time: float
    energy_distance: float
    sliced_wasserstein: float
    baseline_energy_distance: float
    baseline_sliced_wasserstein: float
    baseline: str


def _score(time, samples, baseline_samples, points, baseline: str, key: Key) -> SnapshotScore:
    return SnapshotScore(
        time=float(time),
        energy_distance=float(energy_distance(samples, points)),
        sliced_wasserstein=float(sliced_wasserstein(samples, points, key=key)),
        baseline_energy_distance=float(energy_distance(baseline_samples, points)),
        baseline_sliced_wasserstein=float(sliced_wasserstein(baseline_samples, points, key=key)),
        baseline=baseline,
    )


def _baseline(snaps: Snapshots, time: float, initial: InitialSampler, t0: float, key: Key):
    """``(samples, name)``: interpolation between the neighbours of ``time``, or the last snapshot past the end.

    Before the first training time the earlier neighbour is the initial law at ``t0``.
    """
    later = [k for k, t in enumerate(snaps.times) if t > time]
    if not later:
        return snaps.points[-1], "last snapshot"
    k = later[0]
    if k == 0:
        t_a, before = t0, initial(jr.fold_in(key, 1), snaps.points[0].shape[0])[0]
    else:
        t_a, before = snaps.times[k - 1], snaps.points[k - 1]
    fraction = (time - t_a) / (snaps.times[k] - t_a)
    return interpolate_snapshots(before, snaps.points[k], fraction, key=key), "interpolation"


def score_held_out(
    sde: AbstractSDE,
    train: Snapshots | Mapping,
    held_out: Snapshots | Mapping,
    initial: InitialSampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    num_samples: int = 2048,
) -> list[SnapshotScore]:
    """Scores a fitted model at held-out times against the held-out snapshots and a baseline.

    The baseline interpolates the training snapshots on either side of each held-out time
    (``dkjax.interpolate_snapshots``; before the first one, the initial law at ``t0``), or,
    past the last training time, repeats the last training snapshot.

    Arguments:
        sde: the fitted model.
        train: the snapshots it was fitted to; held_out: the snapshots to score.
        initial: the initial law it was fitted with.
        t1, num_steps, t0: its time grid (every held-out time must lie on it).
        key: PRNG key; num_samples: model samples per held-out time.

    Returns:
        One ``SnapshotScore`` per held-out time, in time order.

    Raises:
        ValueError: a held-out time off the grid or outside ``(t0, t1]``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> initial = dkjax.EmpiricalInitial(jnp.zeros((1, 1)))   # every path starts at 0
        >>> xs = dkjax.simulate_snapshots(sde, jnp.zeros((500, 1)), [0.5, 1.0, 1.5], num_steps=30, key=jax.random.key(1))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> [score] = dkjax.score_held_out(sde, {0.5: data[0.5], 1.5: data[1.5]}, {1.0: data[1.0]}, initial,
        ...                                t1=1.5, num_steps=30, key=jax.random.key(0))
        >>> print(score.time, score.baseline, abs(score.energy_distance) < 0.02)
        1.0 interpolation True
    """
    train, held_out = as_snapshots(train), as_snapshots(held_out)
    sample_key, baseline_key, metric_key = jr.split(key, 3)
    x0 = initial(jr.fold_in(sample_key, 0), num_samples)[0]
    states = simulate_snapshots(sde, x0, held_out.times, num_steps=num_steps, key=sample_key, t1=t1, t0=t0)
    scores = []
    for k, (time, points) in enumerate(zip(held_out.times, held_out.points)):
        points = jnp.asarray(points, x0.dtype)
        baseline, name = _baseline(train, time, initial, float(t0), jr.fold_in(baseline_key, k))
        scores.append(_score(time, states[k], jnp.asarray(baseline, x0.dtype), points, name, jr.fold_in(metric_key, k)))
    return scores


def leave_one_time_out(
    sde: AbstractSDE,
    data: Snapshots | Mapping,
    initial: InitialSampler,
    *,
    time: float,
    num_steps: int,
    key: Key,
    steps: int,
    t1: RealScalarLike | None = None,
    t0: RealScalarLike = 0.0,
    num_samples: int = 2048,
    **fit_options,
) -> tuple[AbstractSDE, TrainHistory, SnapshotScore]:
    """Fits on every time but ``time``, then scores the model at ``time`` against the interpolation baseline.

    The grid is the one of the full data (``t1`` defaults to the last time, held out or not),
    so the held-out time stays on it.

    Arguments:
        sde, initial, num_steps, key, steps, t0, **fit_options: as for ``dkjax.fit``.
        data: all snapshots; time: the one to hold out (one of ``data``'s times).
        t1: the end of the grid; num_samples: model samples for the score.

    Returns:
        ``(fitted_sde, history, score)``.

    Raises:
        ValueError: ``time`` not one of the data's times, fewer than two times, or as ``dkjax.fit``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> initial = dkjax.EmpiricalInitial(jnp.zeros((1, 1)))   # every path starts at 0
        >>> xs = dkjax.simulate_snapshots(sde, jnp.zeros((500, 1)), [0.5, 1.0, 1.5], num_steps=30, key=jax.random.key(1))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> fitted, history, score = dkjax.leave_one_time_out(sde, data, initial, time=1.0, num_steps=30,
        ...                                                   key=jax.random.key(0), steps=5)
        >>> print(score.time, score.baseline, len(history.loss))
        1.0 interpolation 5
    """
    snaps = as_snapshots(data)
    if float(time) not in snaps.times or len(snaps.times) < 2:
        raise ValueError(f"time must be one of the data's times {snaps.times} (at least two); got {time}.")
    k = snaps.times.index(float(time))
    keep = [j for j in range(len(snaps.times)) if j != k]
    train = Snapshots({snaps.times[j]: snaps.points[j] for j in keep}, [snaps.weights[j] for j in keep])
    held = Snapshots({snaps.times[k]: snaps.points[k]})
    t1 = snaps.times[-1] if t1 is None else t1
    fitted, history, scores = _fit_and_score(sde, train, held, initial, t1, num_steps, key, steps, t0, num_samples,
                                             fit_options)  # fmt: skip
    return fitted, history, scores[0]


def _fit_and_score(sde, train, held, initial, t1, num_steps, key, steps, t0, num_samples, fit_options):
    fit_key, score_key = jr.split(key)
    fitted, history = fit(sde, train, initial, t1=t1, num_steps=num_steps, key=fit_key, steps=steps, t0=t0, **fit_options)
    scores = score_held_out(fitted, train, held, initial, t1=t1, num_steps=num_steps, key=score_key, t0=t0,
                            num_samples=num_samples)  # fmt: skip
    return fitted, history, scores


def forecast(
    sde: AbstractSDE,
    data: Snapshots | Mapping,
    initial: InitialSampler,
    *,
    num_train: int,
    num_steps: int,
    key: Key,
    steps: int,
    t1: RealScalarLike | None = None,
    t0: RealScalarLike = 0.0,
    num_samples: int = 2048,
    **fit_options,
) -> tuple[AbstractSDE, TrainHistory, list[SnapshotScore]]:
    """Fits on the first ``num_train`` times, then scores the model at each later time.

    The baseline repeats the last training snapshot (no change after it). The grid runs to
    the last time (``t1``), so the model is trained with its final grid and forecasts on it.

    Arguments:
        sde, initial, num_steps, key, steps, t0, **fit_options: as for ``dkjax.fit``.
        data: all snapshots; num_train: how many of the earliest times to fit on.
        t1: the end of the grid (default: the last time); num_samples: model samples per score.

    Returns:
        ``(fitted_sde, history, scores)``, one score per later time.

    Raises:
        ValueError: ``num_train`` not in ``[1, K - 1]``, or as ``dkjax.fit``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> initial = dkjax.EmpiricalInitial(jnp.zeros((1, 1)))   # every path starts at 0
        >>> xs = dkjax.simulate_snapshots(sde, jnp.zeros((500, 1)), [0.5, 1.0, 1.5], num_steps=30, key=jax.random.key(1))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> fitted, history, scores = dkjax.forecast(sde, data, initial, num_train=2, num_steps=30,
        ...                                          key=jax.random.key(0), steps=5)
        >>> print([(s.time, s.baseline) for s in scores])
        [(1.5, 'last snapshot')]
    """
    snaps = as_snapshots(data)
    if isinstance(num_train, bool) or not isinstance(num_train, int) or not 1 <= num_train < len(snaps.times):
        raise ValueError(f"num_train must be an int in [1, {len(snaps.times) - 1}]; got {num_train!r}.")
    train = Snapshots(dict(zip(snaps.times[:num_train], snaps.points[:num_train])), snaps.weights[:num_train])
    later = Snapshots(dict(zip(snaps.times[num_train:], snaps.points[num_train:])))
    t1 = snaps.times[-1] if t1 is None else t1
    return _fit_and_score(sde, train, later, initial, t1, num_steps, key, steps, t0, num_samples, fit_options)


"""Snapshot evaluations as the field runs them: exact W1, push-forward, leave-one-time-out, forecast."""

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy.optimize import linear_sum_assignment

from .._custom_types import Array, Float, InitialSampler, Key, RealScalarLike
from ._metrics import energy_distance, sliced_wasserstein
from .._sde._abstract import AbstractSDE
from .._engine._save_at import SaveAt, grid_steps
from .._engine._simulate import simulate
from .._validation import check_choice
from ._arguments import split_initial_snapshot
from ._snapshots import Snapshots, as_snapshots
from ._train import TrainHistory, fit

# Unweighted interpolation between sets of different sizes matches subsamples of at most this many points.
_MAX_MATCHED = 6000
# Exact transport builds the full cost matrix: beyond this many point pairs (8 bytes each) it is refused.
_MAX_PAIRS = 36_000_000


def _ot():
    """POT's ``ot`` module, or ``None`` when it is not installed."""
    try:
        import ot
    except ImportError:
        return None
    return ot


def _check_sizes(name: str, n: int, m: int) -> None:
    if n * m > _MAX_PAIRS:
        raise ValueError(
            f"{name}: exact transport between {n} and {m} points needs a {n} x {m} cost matrix (over "
            f"{_MAX_PAIRS:,} pairs); subsample, or use dkjax.energy_distance for sets this large."
        )


def _pairwise(a: np.ndarray, b: np.ndarray, squared: bool) -> np.ndarray:
    cost = np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    return cost if squared else np.sqrt(cost)


def _transport_plan(a: np.ndarray, b: np.ndarray, cost: np.ndarray, wa: np.ndarray, wb: np.ndarray, uniform: bool):
    """``(rows, cols, mass)`` of an exact optimal plan between weighted point sets (``cost`` given)."""
    ot = _ot()
    if ot is not None:
        plan = ot.emd(wa, wb, cost, numItermax=100_000_000)
        rows, cols = np.nonzero(plan > 1e-12 * plan.max())
        return rows, cols, plan[rows, cols]
    if uniform and len(a) == len(b):
        # Equal uniform weights: an optimal plan is a permutation (Birkhoff), found exactly by assignment.
        rows, cols = _matching(cost)
        return rows, cols, np.full(len(rows), 1.0 / len(rows))
    raise ImportError(
        "exact optimal transport between sets of different sizes or weights needs POT: pip install pot "
        "(or pass equally many points with uniform weights)."
    )


def _matching(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An optimal matching of a square cost matrix: POT's network simplex (a vertex of the Birkhoff
    polytope, a permutation) when installed, many times faster than ``linear_sum_assignment``,
    which is the fallback (and the check when the simplex's plan is not a permutation)."""
    n = len(cost)
    ot = _ot()
    if ot is not None:
        plan = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), cost, numItermax=100_000_000)
        rows, cols = np.nonzero(plan > 0.5 / n)
        if len(rows) == n and len(np.unique(cols)) == n:
            return rows, cols
    return linear_sum_assignment(cost)


def _weights(name: str, weights, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{name} must be {n} finite weights >= 0 with a positive sum; got shape {w.shape}.")
    return w / w.sum()


def wasserstein1(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    *,
    x_weights: Float[Array, " n"] | None = None,
    y_weights: Float[Array, " m"] | None = None,
) -> float:
    """The exact 1-Wasserstein (earth mover's) distance between two point sets, Euclidean cost.

    The metric of the trajectory-inference literature (the published embryoid-body tables use
    POT's ``ot.emd2`` with uniform weights): the optimal transport cost with ground cost
    ``|x_i - y_j|``, solved exactly by the network simplex of POT when it is installed
    (``pip install pot``); without POT, equally many points with uniform weights are matched
    exactly by linear assignment (an optimal plan is then a permutation). It builds the full
    ``n x m`` cost matrix: use it for sets up to a few thousand points each; for larger sets
    (or inside a loss) use ``dkjax.energy_distance``, unbiased and ``O(n m)`` in blocks.

    Arguments:
        x, y: the point sets ``(n, d)`` and ``(m, d)``.
        x_weights, y_weights: masses ``>= 0`` of the points (normalised); ``None`` is uniform.

    Returns:
        The distance, a Python float (in float64 whatever JAX's precision).

    Raises:
        ValueError: the dimensions differ, a set is empty or not finite, bad weights, or more
            than 36 million point pairs.
        ImportError: sizes or weights differ and POT is not installed (``pip install pot``).

    Example:
        >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0]])
        >>> print(dkjax.wasserstein1(x, x + jnp.array([0.0, 3.0])))   # every point moves by 3
        3.0
    """
    a, b = _as_points("x", x), _as_points("y", y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y differ in dimension: {a.shape} and {b.shape}.")
    _check_sizes("wasserstein1", len(a), len(b))
    wa, wb = _weights("x_weights", x_weights, len(a)), _weights("y_weights", y_weights, len(b))
    cost = _pairwise(a, b, squared=False)
    ot = _ot()
    if ot is not None:
        return float(ot.emd2(wa, wb, cost, numItermax=100_000_000))
    uniform = np.allclose(wa, 1.0 / len(wa), rtol=1e-6, atol=0) and np.allclose(wb, 1.0 / len(wb), rtol=1e-6, atol=0)
    rows, cols, mass = _transport_plan(a, b, cost, wa, wb, uniform)
    return float((mass * cost[rows, cols]).sum())


def _as_points(name: str, points) -> np.ndarray:
    array = np.asarray(points, np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must have shape (n >= 1, d); got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf).")
    return array


def interpolate_snapshots(
    before: Float[Array, "n d"], after: Float[Array, "m d"], fraction: float, *, key: Key, weights: bool = False
) -> Float[Array, "k d"] | tuple[Float[Array, "k d"], Float[Array, " k"]]:
    """The displacement interpolation between two snapshots: ``(1 - s) x_i + s y_j`` over an optimal plan.

    The plan is the exact optimal transport for the squared distance between all the points
    of both sides, uniform weights: the standard baseline for a held-out time (McCann's
    interpolation, a straight-line transport from the earlier snapshot to the later one, no
    dynamics). With equally many points the plan is a matching and the result ``n`` equally
    weighted points. With different sizes the exact law has unequal masses on the plan's
    support: ``weights=True`` returns them (this needs POT, ``pip install pot``); without it the
    larger side is subsampled (by ``key``) to the smaller one's size (at most 6000 points a
    side) and matched exactly.

    Arguments:
        before, after: the snapshots at ``t_a < t_b``.
        fraction: ``s = (t - t_a) / (t_b - t_a)`` in ``[0, 1]``.
        key: PRNG key for the subsample (used only when sizes differ and ``weights`` is false).
        weights: return ``(points, masses)``, the exact interpolated law, masses summing to 1.

    Returns:
        The interpolated points (``min(n, m, 6000)`` of them, equally weighted), or with ``weights``
        the exact law's support points and masses.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]``, the two dimensions differ, or more than
            36 million point pairs.
        ImportError: ``weights=True`` with different sizes and POT not installed.

    Example:
        >>> a, b = jnp.zeros((50, 1)), jnp.ones((80, 1))
        >>> mid = dkjax.interpolate_snapshots(a, b, 0.25, key=jax.random.key(0))
        >>> print(mid.shape, float(mid.mean()))
        (50, 1) 0.25
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be a number in [0, 1]; got {fraction!r}.")
    if jnp.shape(before)[1] != jnp.shape(after)[1]:
        raise ValueError(f"before and after differ in dimension: {jnp.shape(before)} and {jnp.shape(after)}.")
    a, b = np.asarray(before, np.float64), np.asarray(after, np.float64)
    dtype = jnp.result_type(before, after)
    if not weights and (len(a) != len(b) or len(a) > _MAX_MATCHED):
        size = min(len(a), len(b), _MAX_MATCHED)
        key_a, key_b = jr.split(key)
        a = a[np.asarray(jr.permutation(key_a, len(a)))[:size]]
        b = b[np.asarray(jr.permutation(key_b, len(b)))[:size]]
    _check_sizes("interpolate_snapshots", len(a), len(b))
    cost = _pairwise(a, b, squared=True)
    if len(a) == len(b):   # an optimal plan is a permutation (Birkhoff): exact by linear assignment
        rows, cols = _matching(cost)
        mass = np.full(len(rows), 1.0 / len(rows))
    else:
        rows, cols, mass = _transport_plan(a, b, cost, np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), True)
    points = jnp.asarray((1 - fraction) * a[rows] + fraction * b[cols], dtype)
    return (points, jnp.asarray(mass / mass.sum(), dtype)) if weights else points


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


@dataclasses.dataclass
class PushForwardScore:
    """The trajectory-inference literature's score at one held-out time, next to two baselines.

    The real points of the previous time ``t_{k-1}`` pushed forward by the model to ``t_k``,
    scored against all real points at ``t_k`` (exact W1 or energy distance).

    Attributes:
        time, start_time: ``t_k`` and ``t_{k-1}``.
        metric: ``"w1"`` (exact 1-Wasserstein) or ``"energy"`` (energy distance).
        distance: the pushed points against the points at ``t_k``.
        no_motion: the points at ``t_{k-1}`` themselves against those at ``t_k`` (``None`` when
            the baselines were not asked for).
        interpolation: the exact optimal-transport interpolation of the neighbours ``t_{k-1}``
            and ``t_{k+1}`` at ``t_k`` (it uses the later snapshot; ``None`` at the last time or
            when the baselines were not asked for).
        num_steps: the Euler-Maruyama steps from ``t_{k-1}`` to ``t_k``.
        num_nonfinite: pushed paths that blew up (then ``distance`` is ``inf``).

    Example:
        >>> score = dkjax.PushForwardScore(time=2.0, start_time=1.0, metric="w1", distance=0.7, no_motion=1.2,
        ...                                interpolation=0.74, num_steps=20, num_nonfinite=0)
        >>> print(score.distance < score.interpolation < score.no_motion)
        True
    """

    time: float
    start_time: float
    metric: str
    distance: float
    no_motion: float | None
    interpolation: float | None
    num_steps: int
    num_nonfinite: int


def _grid_index(time: float, t0: float, t1: float, num_steps: int) -> int:
    """The step of ``time`` on the grid (0 at ``t0``); ``ValueError`` off the grid."""
    if abs(float(time) - float(t0)) <= 1e-9 * max(1.0, abs(float(t0))):
        return 0
    return grid_steps([time], t0, t1, num_steps)[0]


def _distance(metric: str, x, y, x_weights=None) -> float:
    if metric == "w1":
        return wasserstein1(x, y, x_weights=x_weights)
    return float(energy_distance(jnp.asarray(x), jnp.asarray(y)))


def push_forward_score(
    sde: AbstractSDE,
    data: Snapshots | Mapping,
    *,
    time: float,
    num_steps: int,
    key: Key,
    t1: RealScalarLike | None = None,
    t0: RealScalarLike = 0.0,
    metric: str = "w1",
    baselines: bool = True,
) -> PushForwardScore:
    """Pushes all real points of the previous time forward to ``time`` and scores them against all real points there.

    The protocol of the trajectory-inference benchmarks (e.g. the embryoid-body table of
    [SF]2M, arXiv 2307.03672): with ``t_{k-1} < t_k = time`` consecutive times of ``data``,
    every point of ``t_{k-1}`` is simulated by Euler-Maruyama from ``t_{k-1}`` to ``t_k`` on the
    model's own grid (``dt = (t1 - t0) / num_steps``, the grid it was fitted on), and the
    result is compared with every point at ``t_k``. ``metric="w1"``: exact 1-Wasserstein
    (``dkjax.wasserstein1``; POT when installed), the field's number, for sets up to a few
    thousand points; ``metric="energy"``: ``dkjax.energy_distance``, for larger sets. Unlike
    ``score_held_out`` it does not test the model's marginal from ``t0``, only one interval.

    Arguments:
        sde: the fitted model.
        data: the snapshots, including ``time`` and the time before it.
        time: ``t_k``, one of ``data``'s times but the first.
        num_steps, t1, t0: the model's grid (``t1`` defaults to the last time of ``data``); both
            ``t_{k-1}`` and ``t_k`` must lie on it.
        key: PRNG key of the noise; metric: ``"w1"`` or ``"energy"``.
        baselines: also score no motion and the interpolation; they do not depend on the model,
            so a study of many fits on the same data computes them once (each is an exact
            optimal-transport problem as large as the score itself).

    Returns:
        A ``PushForwardScore`` with the no-motion and interpolation baselines.

    Raises:
        ValueError: ``time`` not one of the data's times after the first, a time off the grid,
            or ``metric`` unknown.
        ImportError: ``metric="w1"`` with snapshots of different sizes and POT not installed.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> xs = dkjax.simulate(sde, jnp.zeros((200, 1)), t1=1.5, num_steps=30, key=jax.random.key(1),
        ...                     save_at=dkjax.SaveAt(ts=[0.5, 1.0, 1.5]))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> score = dkjax.push_forward_score(sde, data, time=1.0, num_steps=30, key=jax.random.key(0))
        >>> print(score.start_time, score.num_steps, score.distance < score.no_motion)
        0.5 10 True
    """
    snaps = as_snapshots(data)
    check_choice("metric", metric, ("w1", "energy"))
    if float(time) not in snaps.times[1:]:
        raise ValueError(f"time must be one of the data's times after the first, {snaps.times[1:]}; got {time}.")
    k = snaps.times.index(float(time))
    t1 = snaps.times[-1] if t1 is None else t1
    start, end = snaps.times[k - 1], snaps.times[k]
    steps = _grid_index(end, t0, t1, num_steps) - _grid_index(start, t0, t1, num_steps)
    before, target = jnp.asarray(snaps.points[k - 1]), snaps.points[k]
    pushed = np.asarray(simulate(sde, before, t0=start, t1=end, num_steps=steps, key=key))
    finite = np.isfinite(pushed).all(axis=1)
    distance = _distance(metric, pushed, target) if finite.all() else float("inf")
    no_motion, interpolation = _push_forward_baselines(snaps, k, metric, key) if baselines else (None, None)
    return PushForwardScore(
        time=end, start_time=start, metric=metric, distance=distance, no_motion=no_motion,
        interpolation=interpolation, num_steps=int(steps), num_nonfinite=int((~finite).sum()),
    )  # fmt: skip


def _push_forward_baselines(snaps: Snapshots, k: int, metric: str, key: Key) -> tuple[float, float | None]:
    """No motion (the points of ``t_{k-1}``) and the exact interpolation of ``t_{k-1}``, ``t_{k+1}`` at ``t_k``."""
    (start, end), before, target = snaps.times[k - 1:k + 1], jnp.asarray(snaps.points[k - 1]), snaps.points[k]
    interpolation = None
    if k + 1 < len(snaps.times):
        fraction = (end - start) / (snaps.times[k + 1] - start)
        if metric == "w1":
            points, mass = interpolate_snapshots(before, snaps.points[k + 1], fraction, key=key, weights=True)
            interpolation = _distance(metric, points, target, x_weights=np.asarray(mass, np.float64))
        else:
            points = interpolate_snapshots(before, snaps.points[k + 1], fraction, key=key)
            interpolation = _distance(metric, points, target)
    return _distance(metric, before, target), interpolation


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
        >>> xs = dkjax.simulate(sde, jnp.zeros((500, 1)), t1=1.5, num_steps=30, key=jax.random.key(1),
        ...                     save_at=dkjax.SaveAt(ts=[0.5, 1.0, 1.5]))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> [score] = dkjax.score_held_out(sde, {0.5: data[0.5], 1.5: data[1.5]}, {1.0: data[1.0]}, initial,
        ...                                t1=1.5, num_steps=30, key=jax.random.key(0))
        >>> print(score.time, score.baseline, abs(score.energy_distance) < 0.02)
        1.0 interpolation True
    """
    train, held_out = as_snapshots(train), as_snapshots(held_out)
    sample_key, baseline_key, metric_key = jr.split(key, 3)
    x0 = initial(jr.fold_in(sample_key, 0), num_samples)[0]
    states = simulate(sde, x0, t1=t1, num_steps=num_steps, key=sample_key, t0=t0, save_at=SaveAt(ts=held_out.times))
    scores = []
    for k, (time, points) in enumerate(zip(held_out.times, held_out.points)):
        points = jnp.asarray(points, x0.dtype)
        baseline, name = _baseline(train, time, initial, float(t0), jr.fold_in(baseline_key, k))
        scores.append(_score(time, states[k], jnp.asarray(baseline, x0.dtype), points, name, jr.fold_in(metric_key, k)))
    return scores


def leave_one_time_out(
    sde: AbstractSDE,
    data: Snapshots | Mapping,
    initial: InitialSampler | None,
    *,
    time: float,
    num_steps: int,
    key: Key,
    steps: int,
    t1: RealScalarLike | None = None,
    t0: RealScalarLike = 0.0,
    num_samples: int = 2048,
    protocol: str = "marginal",
    **fit_options,
) -> tuple[AbstractSDE, TrainHistory, SnapshotScore | PushForwardScore]:
    """Fits on every time but ``time``, then scores the model at ``time`` against the interpolation baseline.

    The grid is the one of the full data (``t1`` defaults to the last time, held out or not),
    so the held-out time stays on it. ``protocol="marginal"`` scores the model's own law at
    ``time``, simulated from ``t0`` (``dkjax.score_held_out``: energy distance and sliced
    Wasserstein); ``protocol="push_forward"`` is the published trajectory-inference protocol:
    the real points of the previous time pushed forward to ``time``, exact W1 against all real
    points there (``dkjax.push_forward_score``; for sets too large for exact transport, call it
    on the fitted model with ``metric="energy"``).

    Arguments:
        sde, initial, num_steps, key, steps, t0, **fit_options: as for ``dkjax.fit``; ``initial``
            may be ``None`` when ``data`` has a snapshot at ``t0`` (it becomes the initial law).
        data: all snapshots; time: the one to hold out (one of ``data``'s times).
        t1: the end of the grid; num_samples: model samples for the marginal score.
        protocol: ``"marginal"`` or ``"push_forward"``.

    Returns:
        ``(fitted_sde, history, score)``: a ``SnapshotScore``, or a ``PushForwardScore`` for
        ``protocol="push_forward"``.

    Raises:
        ValueError: ``time`` not one of the data's times, fewer than two times, an unknown
            ``protocol``, or as ``dkjax.fit``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> initial = dkjax.EmpiricalInitial(jnp.zeros((1, 1)))   # every path starts at 0
        >>> xs = dkjax.simulate(sde, jnp.zeros((500, 1)), t1=1.5, num_steps=30, key=jax.random.key(1),
        ...                     save_at=dkjax.SaveAt(ts=[0.5, 1.0, 1.5]))
        >>> data = {0.5: xs[0], 1.0: xs[1], 1.5: xs[2]}
        >>> fitted, history, score = dkjax.leave_one_time_out(sde, data, initial, time=1.0, num_steps=30,
        ...                                                   key=jax.random.key(0), steps=5)
        >>> print(score.time, score.baseline, len(history.loss))
        1.0 interpolation 5
    """
    snaps = as_snapshots(data)
    check_choice("protocol", protocol, ("marginal", "push_forward"))
    if float(time) not in snaps.times or len(snaps.times) < 2:
        raise ValueError(f"time must be one of the data's times {snaps.times} (at least two); got {time}.")
    k = snaps.times.index(float(time))
    keep = [j for j in range(len(snaps.times)) if j != k]
    train = Snapshots({snaps.times[j]: snaps.points[j] for j in keep}, [snaps.weights[j] for j in keep])
    held = Snapshots({snaps.times[k]: snaps.points[k]})
    t1 = snaps.times[-1] if t1 is None else t1
    train, initial = split_initial_snapshot(train, initial, t0)
    if protocol == "push_forward":
        fit_key, score_key = jr.split(key)
        fitted, history = fit(sde, train, initial, t1=t1, num_steps=num_steps, key=fit_key, steps=steps, t0=t0,
                              **fit_options)  # fmt: skip
        return fitted, history, push_forward_score(fitted, snaps, time=time, num_steps=num_steps, key=score_key,
                                                   t1=t1, t0=t0)  # fmt: skip
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
    initial: InitialSampler | None,
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
        sde, initial, num_steps, key, steps, t0, **fit_options: as for ``dkjax.fit``; ``initial``
            may be ``None`` when ``data`` has a snapshot at ``t0`` (it becomes the initial law).
        data: all snapshots; num_train: how many of the earliest times to fit on (a snapshot at
            ``t0`` counts as one).
        t1: the end of the grid (default: the last time); num_samples: model samples per score.

    Returns:
        ``(fitted_sde, history, scores)``, one score per later time.

    Raises:
        ValueError: ``num_train`` not in ``[1, K - 1]``, or as ``dkjax.fit``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> initial = dkjax.EmpiricalInitial(jnp.zeros((1, 1)))   # every path starts at 0
        >>> xs = dkjax.simulate(sde, jnp.zeros((500, 1)), t1=1.5, num_steps=30, key=jax.random.key(1),
        ...                     save_at=dkjax.SaveAt(ts=[0.5, 1.0, 1.5]))
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
    train, initial = split_initial_snapshot(train, initial, t0)
    return _fit_and_score(sde, train, later, initial, t1, num_steps, key, steps, t0, num_samples, fit_options)


"""Population snapshots: samples of a law at several times, and the DK gradient of a per-time objective.

The loss is ``sum_k w_k L_k(X_{t_k}, Y_k)``. Its forward-only gradient is
``sum_k w_k sum_m c^k_m eta^m(t_k)``, where ``eta^m(t_k)`` is path ``m``'s divergence-kernel
response at time ``t_k``: the running response of one pass over the paths, read off at the
observation steps. The memory-lean route folds it into one accumulator: the increment of step
``n`` carries the weight ``sum_{k: n < n_k} w_k c^k_m``.
"""

import math
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Float, Key, Params, RealScalarLike, Scalar, States
from ._metrics import distance_column_sums, energy_distance
from ._objective import AbstractObjective, as_objective
from .._sde._abstract import AbstractSDE, noise_dimension, parameters

class Snapshots(eqx.Module):
    """Samples of a population's law at several times, with a weight per time.

    Arguments:
        data: a mapping ``{time: array (n_k, d)}``; sizes ``n_k >= 2`` may differ, ``d`` may not.
        weights: a mapping ``{time: weight >= 0}`` or a sequence in time order; ``None``
            weighs every time by 1 (the loss is then the plain sum of the per-time losses).

    Attributes:
        times: the times, increasing (a tuple of floats).
        points: the samples at each time (a tuple of arrays, in time order).
        weights: the weight of each time (a tuple of floats).

    Raises:
        ValueError: no times, a non-finite time, a weight missing, negative or all zero, or
            an array that is not ``(n_k >= 2, d)`` with the common ``d``, or that holds a
            non-finite value; the message names the time.
        TypeError: ``data`` not a mapping, or a non-floating-point array.

    Example:
        >>> snaps = dkjax.Snapshots({0.5: jnp.zeros((3, 2)), 1.0: jnp.ones((4, 2))}, weights={0.5: 2.0, 1.0: 1.0})
        >>> print(snaps.times, snaps.weights, snaps.dim)
        (0.5, 1.0) (2.0, 1.0) 2
    """

    times: tuple[float, ...] = eqx.field(static=True)
    points: tuple[Float[Array, "n d"], ...]
    weights: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, data: Mapping, weights: Mapping | Sequence | None = None):
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping {{time: array (n, d)}}; got {type(data).__name__}.")
        if not data:
            raise ValueError("data must hold at least one time.")
        times = sorted(data, key=float)
        for t in times:
            if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t):
                raise ValueError(f"every time must be a finite number; got {t!r}.")
        for t in times:
            _check_points(data[t], f"data[{float(t)}]", np.shape(data[times[0]])[1:])
        self.times = tuple(float(t) for t in times)
        self.points = tuple(jnp.asarray(data[t]) for t in times)
        self.weights = _time_weights(weights, times)

    @property
    def dim(self) -> int:
        """The state dimension ``d``."""
        return int(self.points[0].shape[1])

    def replace_points(self, points: Sequence) -> "Snapshots":
        """The same times and weights with other samples (one array per time, in time order)."""
        return Snapshots(dict(zip(self.times, points)), self.weights)


def _check_points(points, name: str, first_shape) -> None:
    shape = np.shape(points)
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"{name} must have shape (n, d) with n >= 2; got shape {shape}.")
    if shape[1:] != first_shape:
        raise ValueError(f"{name} has dimension {shape[1]}, unlike the first time's {first_shape[0]}.")
    check_floating_finite(name, points)


def check_floating_finite(name: str, points) -> None:
    """Raises unless ``points`` is a floating-point array of finite values (``name`` in the message)."""
    array = np.asarray(points)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {array.dtype}.")
    bad = array.size - np.count_nonzero(np.isfinite(array))
    if bad:
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf).")


def _time_weights(weights, times) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * len(times)
    if isinstance(weights, Mapping):
        by_time = {float(t): w for t, w in weights.items()}
        missing = [float(t) for t in times if float(t) not in by_time]
        if missing:
            raise ValueError(f"weights has no entry for time {missing[0]}.")
        weights = [by_time[float(t)] for t in times]
    if len(weights) != len(times):
        raise ValueError(f"weights must give one weight per time ({len(times)}); got {len(weights)}.")
    for t, w in zip(times, weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"the weight of time {float(t)} must be a finite number >= 0; got {w!r}.")
    if not any(weights):
        raise ValueError("at least one weight must be positive.")
    return tuple(float(w) for w in weights)


class EmpiricalInitial(eqx.Module):
    """An initial law given by samples (e.g. the first snapshot): ``initial(key, n) -> (x0, None)``.

    Draws the rows with replacement. Its score is unknown (``None``), so the DK recursion
    starts with a pure kernel step, exact for an initial law free of the model's parameters.

    Arguments:
        points: the samples ``(n, d)``.

    Example:
        >>> initial = dkjax.EmpiricalInitial(jnp.arange(6.0).reshape(3, 2))
        >>> x0, score0 = initial(jax.random.key(0), 5)
        >>> print(x0.shape, score0)
        (5, 2) None
    """

    points: Float[Array, "n d"]

    def __call__(self, key: Key, n: int) -> tuple[Float[Array, "n d"], None]:
        return self.points[jr.choice(key, self.points.shape[0], (n,))], None


def as_snapshots(data) -> Snapshots:
    """``data`` as ``Snapshots`` (a mapping is wrapped with equal weights)."""
    return data if isinstance(data, Snapshots) else Snapshots(data)


SnapshotWeights = Callable[[Float[Array, "K m d"]], tuple[Scalar, Float[Array, "K m"], object]]


def per_time_weights(
    objective: "str | AbstractObjective", data: tuple, time_weights: tuple[float, ...], ess_target: float, key: Key,
    h_min, h_max,
) -> SnapshotWeights:  # fmt: skip
    """``X -> (loss, c, (mean ess, mean bandwidth))``: the weighted sum of the per-time objectives.

    ``objective`` is a module or its shorthand (``ess_target`` goes to the shorthand ``"kl"``);
    ``data[k]`` is the batch at time ``k``; ``h_min[k]``, ``h_max[k]`` its bandwidth range
    (each time gets its own bandwidth from the objective's rule).
    """
    objective = as_objective(objective, ess_target)

    def one_time(k, x):
        loss, c, (ess, h) = objective.weights(x, data[k], jr.fold_in(key, k), h_min[k], h_max[k])
        return loss, c, ess, h

    def weights(states):
        parts = [one_time(k, states[k]) for k in range(len(data))]
        w = jnp.asarray(time_weights, states.dtype)
        loss = jnp.sum(w * jnp.stack([p[0] for p in parts]))
        c = w[:, None] * jnp.stack([p[1] for p in parts])
        mean = lambda i: jnp.mean(jnp.stack([p[i] for p in parts]))
        return loss, c, (mean(2), mean(3))

    return weights


def split_snapshots(snaps: Snapshots, validation, key: Key, split) -> tuple[Snapshots, Snapshots | None]:
    """``(train, held_out)`` per time: ``validation`` is held-out ``Snapshots`` (same times), a fraction, or ``None``.

    ``split(points, fraction, key)`` splits one time's points (``dkjax.fit``'s own rule).
    """
    if validation is None:
        return snaps, None
    if isinstance(validation, float):
        pairs = []
        for k, (time, points) in enumerate(zip(snaps.times, snaps.points)):
            try:
                pairs.append(split(points, validation, jr.fold_in(key, k)))
            except ValueError as error:
                raise ValueError(f"at time {time}: {error}") from error
        return snaps.replace_points([p[0] for p in pairs]), snaps.replace_points([p[1] for p in pairs])
    held = as_snapshots(validation)
    if held.times != snaps.times:
        raise ValueError(f"validation snapshots must have the training times {snaps.times}; got {held.times}.")
    if held.dim != snaps.dim:
        raise ValueError(f"validation has dimension {held.dim} but data has {snaps.dim}.")
    return snaps, held.replace_points([jnp.asarray(p, snaps.points[0].dtype) for p in held.points])

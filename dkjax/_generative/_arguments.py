"""The arguments of ``dkjax.fit``, grouped and checked: every impossible argument named before any work.

``check_problem`` checks what is trained towards (model, data, initial law, time grid); the
settings groups check themselves when built (``StepSettings``, ``Schedule``, ``Selection``,
``Output``); the objective and the gradient route check theirs in their constructors.
"""

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._custom_types import InitialSampler, RealScalarLike
from .._sde._abstract import AbstractSDE, noise_dimension
from .._validation import check_key, check_positive, check_time_grid
from .._engine._save_at import GRID_TOLERANCE, grid_steps
from ._path_schedule import AbstractPathSchedule
from ._policies import AbstractRateControl, FixedRate, Pilot, RisingRate, StiffnessCheck
from ._snapshots import EmpiricalInitial, Snapshots, as_snapshots


def check_finite_rows(name: str, points) -> None:
    """Raises a ``ValueError`` naming the first row and column of ``points`` ``(n, d)`` that is NaN or inf."""
    array = np.asarray(points)
    finite = np.isfinite(array)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    row = int(bad_rows[0])
    column = int(np.flatnonzero(~finite[row])[0])
    raise ValueError(
        f"{name}: row {row}, column {column} is {array[row, column]} (counting from 0); {bad_rows.size} row(s) "
        "hold NaN or inf. The data must be finite: drop or fill those rows."
    )


def as_float_points(points, name: str = "data"):
    """``points`` as a floating-point JAX array ``(num_points, d)``, checked before any arithmetic.

    Integer and boolean arrays are converted to JAX's default float dtype; a NaN or inf is
    reported with its row and column.

    Raises:
        TypeError: ``points`` is not numeric.
        ValueError: ``points`` is not two-dimensional, or holds a NaN or inf (row and column named).
    """
    array = points if isinstance(points, jax.Array) else np.asarray(points)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        array = jnp.asarray(array, dtype=jnp.result_type(float))
    elif not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be an array of numbers; got dtype {array.dtype}.")
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (num_points, d); got shape {array.shape}.")
    check_finite_rows(name, array)
    return jnp.asarray(array)


def check_data(data, dim: int, name: str = "data") -> None:
    """``data`` must be finite floating points of shape ``(num_points >= 2, dim)``."""
    shape = np.shape(data)
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (num_points, d); got shape {shape}.")
    if shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 points; got {shape[0]}.")
    if shape[1] != dim:
        raise ValueError(f"{name} has dimension {shape[1]} but the model's initial states have dimension {dim}.")
    dtype = np.asarray(data).dtype
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {dtype}.")
    check_finite_rows(name, data)


def _check_initial(initial, key) -> tuple[int, object]:
    """Traces ``initial(key, 2)`` (no work) and returns the state dimension and dtype."""
    if not callable(initial):
        raise TypeError(f"initial must be a callable (key, n) -> (x0, score0); got {type(initial).__name__}.")
    out = jax.eval_shape(lambda k: initial(k, 2), key)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError("initial(key, n) must return a pair (x0, score0); score0 may be None.")
    x0, score0 = out
    if len(x0.shape) != 2 or x0.shape[0] != 2:
        raise ValueError(f"initial(key, n) must return x0 of shape (n, d); got {x0.shape} for n = 2.")
    if score0 is not None and score0.shape != x0.shape:
        raise ValueError(f"initial(key, n) must return score0 of the shape of x0 or None; got {score0.shape}.")
    return x0.shape[1], x0.dtype


def split_initial_snapshot(data, initial, t0=0.0):
    """``(data, initial)`` with a snapshot at the first time ``t0`` taken out of the loss.

    The model cannot change the law at ``t0``, so such a snapshot is data about the initial
    law, not a target: without ``initial`` (``None``) it becomes ``EmpiricalInitial`` of its
    points; with ``initial`` given it is dropped (with its weight). Anything else (one array,
    snapshots all after ``t0``) is returned unchanged.

    Raises:
        ValueError: the only snapshot lies at ``t0``, or ``initial`` is ``None`` and no snapshot does.
    """
    if isinstance(data, (Mapping, Snapshots)) and not isinstance(t0, bool) and np.ndim(t0) == 0:
        snaps = as_snapshots(data)
        t0 = float(t0)
        first = snaps.times[0]
        if abs(first - t0) <= GRID_TOLERANCE * max(1.0, abs(t0)):
            if len(snaps.times) == 1:
                raise ValueError(f"data: its only snapshot lies at t0 = {t0}; give at least one time after t0.")
            if initial is None:
                initial = EmpiricalInitial(snaps.points[0])
            data = Snapshots(dict(zip(snaps.times[1:], snaps.points[1:])), snaps.weights[1:])
    if initial is None:
        raise ValueError(
            f"initial is None, which needs a snapshot at t0 = {float(t0)} (it becomes the initial law); "
            "pass initial, e.g. dkjax.GaussianInitial(mean, std), or add the snapshot at t0."
        )
    return data, initial


def _check_data_and_grid(data, initial, key, t0, t1, num_steps):
    """``(data, t1, dim, dtype)``: snapshot data as ``Snapshots``, ``t1`` defaulting to their last time."""
    snapshot_data = isinstance(data, (Mapping, Snapshots))
    if snapshot_data:
        data = as_snapshots(data)
        t1 = data.times[-1] if t1 is None else t1
    elif t1 is None:
        raise ValueError("t1 must be given when data is one array (it defaults to the last time only for snapshots).")
    check_time_grid(t0, t1, num_steps)
    dim, dtype = _check_initial(initial, key)
    if snapshot_data:
        grid_steps(data.times, t0, t1, num_steps)
        if data.dim != dim:
            raise ValueError(f"data has dimension {data.dim} but the model's initial states have dimension {dim}.")
    else:
        check_data(data, dim)
    return data, t1, dim, dtype


@dataclasses.dataclass(frozen=True)
class Problem:
    """What ``fit`` trains towards, checked: the data, the initial law and the time grid.

    ``data`` is one array ``(num_points, d)`` observed at ``t1``, or ``Snapshots`` (a snapshot
    at ``t0`` taken out: it is the initial law); ``dim`` and ``dtype`` are those of the
    initial states.
    """

    data: Any
    initial: InitialSampler
    t0: RealScalarLike
    t1: RealScalarLike
    num_steps: int
    dim: int
    dtype: Any

    @property
    def grid(self) -> dict:
        return dict(t0=self.t0, t1=self.t1, num_steps=self.num_steps)

    @property
    def dt(self) -> float:
        return (float(self.t1) - float(self.t0)) / self.num_steps

    def times(self, dtype) -> tuple:
        """``(t0, t1)`` as arrays of ``dtype``: arguments of the compiled step, not constants."""
        return jnp.asarray(self.t0, dtype), jnp.asarray(self.t1, dtype)


def check_problem(sde, data, initial, key, *, t0, t1, num_steps) -> Problem:
    """``fit``'s model, data, initial law, key and time grid, checked together (shapes, dtypes, times).

    Raises:
        ValueError, TypeError: as ``dkjax.fit`` documents, naming the argument.
    """
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be a dkjax.AbstractSDE; got {type(sde).__name__}.")
    check_key(key)
    data, initial = split_initial_snapshot(data, initial, t0)
    data, t1, dim, dtype = _check_data_and_grid(data, initial, key, t0, t1, num_steps)
    noise_dimension(sde, jnp.asarray(t0, dtype), jax.ShapeDtypeStruct((dim,), dtype))
    return Problem(data, initial, t0, t1, num_steps, dim, dtype)


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What one optimisation step simulates and reads: paths, data batch, kernel rate (``fit``'s names)."""

    num_paths: int
    batch_size: int
    kernel_rate: float | str
    kernel_rate_every: int
    dt: float
    path_schedule: AbstractPathSchedule

    def __post_init__(self):
        for name in ("num_paths", "batch_size", "kernel_rate_every"):
            check_positive(name, getattr(self, name), integer=True)
        if self.num_paths < 2:
            raise ValueError(f"num_paths must be >= 2; got {self.num_paths}.")
        if not isinstance(self.path_schedule, AbstractPathSchedule):
            raise TypeError(
                f"path_schedule must be a dkjax.AbstractPathSchedule (dkjax.GrowingPaths(), dkjax.ConstantPaths()); "
                f"got {type(self.path_schedule).__name__}."
            )
        rate = self.kernel_rate
        if rate != "auto":
            if isinstance(rate, (bool, str)) or not isinstance(rate, (int, float)):
                raise ValueError(f"kernel_rate must be a number >= 0 or 'auto'; got {rate!r}.")
            if not 0 <= rate <= 1 / self.dt:
                raise ValueError(f"kernel_rate must be in [0, 1/dt = {1 / self.dt:.4g}]; got {rate}.")

    def rate_control(self) -> AbstractRateControl:
        """How the pilot runs set the kernel rate: measured and never lowered for ``"auto"``, else fixed."""
        return RisingRate() if self.kernel_rate == "auto" else FixedRate(float(self.kernel_rate))

    def pilot(self, problem: Problem, key, control: AbstractRateControl) -> Pilot:
        """The pilot runs of ``problem``'s training: ``control``'s rate and the stiffness check, every ``kernel_rate_every`` steps."""
        return Pilot(problem.initial, key, problem.grid, problem.dtype, control, StiffnessCheck(problem.dt),
                     self.kernel_rate_every)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How many optimisation steps, and the optimiser that takes them (``fit``'s names)."""

    steps: int
    optimizer: Any
    learning_rate: float
    final_lr_fraction: float
    clip_norm: float | None

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True)
        check_positive("learning_rate", self.learning_rate)
        fraction = self.final_lr_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"final_lr_fraction must be a number in [0, 1]; got {fraction!r}.")
        check_positive("clip_norm", self.clip_norm, allow_none=True)

    def build(self):
        """``(optimizer, default)``: the optimiser (default Adam, cosine-decayed over ``steps``) behind the clipping.

        Cached, so that fits with the same settings get the same transformation, whose functions
        are part of the compiled step's key: a repeated fit compiles nothing. An optimiser that
        cannot be hashed is built afresh and keyed by identity (its fit then compiles its own step).
        """
        settings = (self.optimizer, self.learning_rate, self.steps, self.final_lr_fraction, self.clip_norm)
        try:
            return _cached_optimizer(*settings)
        except TypeError:
            built, default = _build_optimizer(*settings)
            return _KeyedByIdentity(built.init, built.update), default


class _KeyedByIdentity:
    """An optimiser's ``init`` and ``update``, hashable by identity: a static argument of the compiled step."""

    def __init__(self, init, update):
        self.init, self.update = init, update


def _build_optimizer(optimizer, learning_rate, steps, final_lr_fraction, clip_norm):
    """``Schedule.build`` without the cache."""
    default = optimizer is None
    if default:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, final_lr_fraction))
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return optimizer, default


_cached_optimizer = functools.lru_cache(maxsize=32)(_build_optimizer)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Model selection on held-out points (``fit``'s names); an int ``validation`` is a fraction."""

    validation: Any
    validate_every: int
    validation_samples: int
    patience: int | None

    def __post_init__(self):
        check_positive("validate_every", self.validate_every, integer=True)
        check_positive("validation_samples", self.validation_samples, integer=True)
        check_positive("patience", self.patience, allow_none=True, integer=True)


@dataclasses.dataclass(frozen=True)
class Output:
    """What ``fit`` writes while it trains (``fit``'s names)."""

    checkpoint_dir: Any
    checkpoint_every: int | None
    resume: bool
    metrics_file: Any
    progress: bool

    def __post_init__(self):
        check_positive("checkpoint_every", self.checkpoint_every, allow_none=True, integer=True)
        if (self.checkpoint_every is not None or self.resume) and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every and resume need checkpoint_dir.")

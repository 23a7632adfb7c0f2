"""Argument validation of ``dkjax.fit``: every impossible argument named before any work."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .._sde._abstract import AbstractSDE, noise_dimension
from .._validation import check_choice, check_key, check_positive, check_time_grid
from ._objective import GRADIENT_METHODS, OBJECTIVES, AbstractObjective
from .._engine._save_at import GRID_TOLERANCE, grid_steps
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
    """``(data, t1, dim, dtype)``: snapshot data as ``Snapshots`` (a snapshot at ``t0`` dropped: the
    initial law is given), ``t1`` defaulting to their last time."""
    snapshot_data = isinstance(data, (Mapping, Snapshots))
    if snapshot_data and initial is not None:
        data, initial = split_initial_snapshot(data, initial, t0)
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


def _check_numbers(a: dict) -> None:
    for name in ("steps", "num_paths", "batch_size", "kernel_rate_every", "validate_every", "validation_samples"):
        check_positive(name, a[name], integer=True)
    for name in ("checkpoint_every", "path_chunk", "patience"):
        check_positive(name, a[name], allow_none=True, integer=True)
    for name in ("bandwidth", "min_bandwidth", "clip_norm"):
        check_positive(name, a[name], allow_none=True)
    check_positive("ess_target", a["ess_target"])
    check_positive("learning_rate", a["learning_rate"])
    fraction = a["final_lr_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"final_lr_fraction must be a number in [0, 1]; got {fraction!r}.")
    if a["num_paths"] < 2:
        raise ValueError(f"num_paths must be >= 2; got {a['num_paths']}.")


def _check_choices(a: dict, dt: float) -> None:
    if not isinstance(a["objective"], AbstractObjective):
        check_choice("objective", a["objective"], OBJECTIVES)
    check_choice("gradient", a["gradient"], ("auto",) + GRADIENT_METHODS)
    kernel_rate = a["kernel_rate"]
    if kernel_rate != "auto":
        if isinstance(kernel_rate, (bool, str)) or not isinstance(kernel_rate, (int, float)):
            raise ValueError(f"kernel_rate must be a number >= 0 or 'auto'; got {kernel_rate!r}.")
        if not 0 <= kernel_rate <= 1 / dt:
            raise ValueError(f"kernel_rate must be in [0, 1/dt = {1 / dt:.4g}]; got {kernel_rate}.")
    if (a["checkpoint_every"] is not None or a["resume"]) and a["checkpoint_dir"] is None:
        raise ValueError("checkpoint_every and resume need checkpoint_dir.")
    if a["path_chunk"] is not None and a["gradient"] == "per_path":
        raise ValueError("path_chunk applies to the two-pass gradient; use gradient='two_pass' or 'auto'.")


def check_fit_arguments(arguments: dict):
    """Checks ``fit``'s ``arguments`` (its keywords by name); returns ``(data, t1, dim, dtype)``.

    Raises:
        ValueError, TypeError: as ``dkjax.fit`` documents, naming the argument.
    """
    a = arguments
    if not isinstance(a["sde"], AbstractSDE):
        raise TypeError(f"sde must be a dkjax.AbstractSDE; got {type(a['sde']).__name__}.")
    check_key(a["key"])
    data, t1, dim, dtype = _check_data_and_grid(a["data"], a["initial"], a["key"], a["t0"], a["t1"], a["num_steps"])
    noise_dimension(a["sde"], jnp.asarray(a["t0"], dtype), jax.ShapeDtypeStruct((dim,), dtype))
    _check_numbers(a)
    _check_choices(a, (float(t1) - float(a["t0"])) / a["num_steps"])
    return data, t1, dim, dtype

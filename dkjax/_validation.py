"""Input checks shared by the public entry points: raised before any work is done."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Array


def is_concrete(value) -> bool:
    """Whether ``value`` has a value now (it is not an abstract tracer inside a transform)."""
    return not isinstance(value, jax.core.Tracer)


def check_states(x0, name: str = "x0") -> tuple[int, int]:
    """``x0`` must be a floating array of shape ``(num_paths, d)``; returns ``(num_paths, d)``."""
    shape = jnp.shape(x0)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (num_paths, d) with num_paths >= 1 and d >= 1; got shape {shape}. "
            f"For a single path use {name}[None, :]."
        )
    if not jnp.issubdtype(jnp.result_type(x0), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {jnp.result_type(x0)}.")
    return shape[0], shape[1]


def check_finite(name: str, value: Array) -> None:
    """Raises if a concrete ``value`` holds NaN or inf (tracers are left alone)."""
    if is_concrete(value):
        # Counted on the device (only one integer crosses to the host, not the array), and
        # eagerly even when a concrete array is met while an outer jit is tracing.
        with jax.ensure_compile_time_eval():
            bad = int(jnp.size(value) - jnp.count_nonzero(jnp.isfinite(jnp.asarray(value))))
        if bad:
            raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf).")


def check_time_grid(t0, t1, num_steps) -> None:
    """``num_steps`` must be a positive int and ``t1 > t0`` (when both are concrete)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise TypeError(f"num_steps must be a Python int; got {num_steps!r}.")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}.")
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}.")
    if is_concrete(t0) and is_concrete(t1):
        if not (math.isfinite(float(t0)) and math.isfinite(float(t1))):
            raise ValueError(f"t0 and t1 must be finite; got t0={float(t0)}, t1={float(t1)}.")
        if float(t1) <= float(t0):
            raise ValueError(f"t1 must be greater than t0; got t0={float(t0)}, t1={float(t1)}.")


def check_key(key) -> None:
    """``key`` must be a JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``)."""
    shape = getattr(key, "shape", None)
    is_typed = hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw = hasattr(key, "dtype") and key.dtype == jnp.uint32 and shape == (2,)
    if not ((is_typed and shape == ()) or is_raw):
        raise TypeError(
            f"key must be a single JAX PRNG key such as jax.random.key(0); got {type(key).__name__}"
            + ("." if shape is None else f" with shape {shape}.")
        )


def is_positive(value, *, integer: bool = False) -> bool:
    """Whether ``value`` is a finite number ``> 0`` (an int when ``integer``; never a bool)."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    return not isinstance(value, bool) and isinstance(value, kinds) and value > 0 and math.isfinite(value)


def check_positive(name: str, value, *, integer: bool = False, allow_none: bool = False):
    """Raises unless ``is_positive(value, integer=integer)`` (or ``value is None`` when ``allow_none``).

    Returns ``value``, as a Python int when ``integer``.
    """
    if value is None and allow_none:
        return None
    if not is_positive(value, integer=integer):
        what = "a positive int" if integer else "a positive finite number"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}; got {value!r}.")
    return int(value) if integer else value


def check_choice(name: str, value, allowed) -> None:
    """``value`` must be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}; got {value!r}.")


def check_parameter_dtypes(sde, x0, name: str = "x0") -> None:
    """The SDE's floating parameters must not be wider than the states (no silent promotion)."""
    state = jnp.result_type(x0)
    for leaf in jax.tree.leaves(eqx.filter(sde, eqx.is_inexact_array)):
        if jnp.promote_types(leaf.dtype, state) != state:
            raise ValueError(
                f"the SDE's parameters are {leaf.dtype} but {name} is {state}: the states would be promoted "
                f"to {leaf.dtype} after the first step. Give the parameters and {name} one dtype."
            )


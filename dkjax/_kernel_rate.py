"""Automatic kernel rate: measure how fast pushed-forward covectors grow, then stay above it."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._custom_types import Key, RealScalarLike, States
from ._dk_step import _increment_fn, _pushforward, _step_plan
from ._noise import brownian_normal, step_key
from ._sde import AbstractSDE
from ._simulate import check_common, path_ids_for, time_grid


@eqx.filter_jit
def _covector_growth(sde, x0, w0, path_ids, t0, t1, key, mode, num_steps):
    """Per-step mean log-growth of unit covectors pushed forward by ``J^{-T}`` along the paths."""
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    plan = _step_plan(sde, x0, mode, False, 0.0, t0)
    params, static = eqx.partition(sde, eqx.is_inexact_array)

    def path_step(t, key_n, path_id, x, w):
        z = brownian_normal(key_n, path_id, plan.noise_dim, x.dtype)
        increment = _increment_fn(static, t, dt, z)
        pushed = _pushforward(plan, increment, x, params, w)
        norm = jnp.linalg.norm(pushed)
        return x + increment(x, params), pushed / norm, jnp.log(norm)

    def body(carry, n):
        x, w = carry
        key_n = step_key(key, n)
        x, w, log_growth = jax.vmap(lambda i, x_, w_: path_step(t0 + n * dt, key_n, i, x_, w_))(path_ids, x, w)
        finite = jnp.isfinite(log_growth)
        mean_growth = jnp.sum(jnp.where(finite, log_growth, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        return (x, w), mean_growth

    _, log_growth = jax.lax.scan(body, (x0, w0), jnp.arange(num_steps, dtype=jnp.int32))
    return log_growth / dt


def estimate_kernel_rate(
    sde: AbstractSDE,
    x0: States,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    num_pilot_paths: int = 256,
    safety: float = 2.0,
    min_rate: float = 1.0,
    mode: str = "matrix_free",
) -> float:
    """Chooses the kernel rate ``alpha`` from a short pilot run.

    Rule: push random unit covectors forward by ``J^{-T}`` along ``num_pilot_paths``
    paths over the same time grid, measure their growth rate ``r`` (the mean log-growth
    per unit time over the last three quarters of the steps, after the covectors have
    aligned with the fastest-growing direction: the flow's strongest contraction), and
    return ``max(min_rate, safety * r)``, capped at ``1 / dt``. A rate below ``r`` lets
    the score weights grow without bound; above it they stay bounded and the variance
    grows only slowly with ``alpha``.

    Arguments:
        sde, x0, t1, num_steps, key, t0: as for ``dkjax.divergence_kernel`` (only the first
            ``num_pilot_paths`` rows of ``x0`` are used).
        num_pilot_paths: paths in the pilot run.
        safety: factor above the measured growth rate.
        min_rate: lower bound on the returned rate.
        mode: ``"matrix_free"`` or ``"exact"``, as for the estimator.

    Returns:
        The kernel rate, a Python float.

    Raises:
        ValueError: as ``dkjax.divergence_kernel`` for bad inputs, or if every pilot path
            went non-finite.

    Example:
        >>> x0 = 8.0 + jax.random.normal(jax.random.key(1), (64, 8))
        >>> alpha = dkjax.estimate_kernel_rate(dkjax.Lorenz96(8.0, 0.5), x0, t1=1.0,
        ...                                    num_steps=100, key=jax.random.key(0))
        >>> print(alpha > 1.0)  # chaotic: faster than the floor min_rate = 1
        True
    """
    check_common(sde, x0, t0, t1, num_steps, key)
    if safety < 1.0 or min_rate < 0.0 or num_pilot_paths < 1:
        raise ValueError(
            f"need safety >= 1, min_rate >= 0 and num_pilot_paths >= 1; got {safety}, {min_rate}, {num_pilot_paths}."
        )
    x0 = jnp.asarray(x0)[:num_pilot_paths]
    # Step indices are int32, so this fold-in value never collides with a step key.
    w0 = jr.normal(jr.fold_in(key, 2**32 - 1), x0.shape, x0.dtype)
    w0 = w0 / jnp.linalg.norm(w0, axis=1, keepdims=True)
    t0_arr, dt = time_grid(t0, t1, num_steps, x0.dtype)
    growth = _covector_growth(
        sde, x0, w0, path_ids_for(x0.shape[0], 0), t0_arr, jnp.asarray(t1, x0.dtype), key, mode, num_steps
    )
    growth = growth[num_steps // 4 :]
    if not bool(jnp.all(jnp.isfinite(growth))):
        raise ValueError("the kernel-rate pilot run went non-finite; use a smaller time step.")
    rate = max(min_rate, safety * float(jnp.mean(growth)))
    if rate * float(dt) > 1.0:
        warnings.warn(
            f"the measured covector growth needs a kernel rate {rate:.3g} above 1/dt = {1 / float(dt):.3g}; "
            "capped at 1/dt. Use more time steps.",
            RuntimeWarning,
            stacklevel=2,
        )
        rate = 1.0 / float(dt)
    return rate

"""Counter-based noise: every random number is addressed by (key, step, path).

The Brownian increment of path ``i`` at step ``n`` depends on ``(key, n, i)`` alone, so
a second pass replays the same paths without storing them, and chunks, devices and hosts
that handle different paths of the same key reproduce one big run exactly.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._custom_types import Array, Int, Key, RealScalarLike, Scalar

_BROWNIAN_STREAM = 0
_PROBE_STREAM = 1


def step_key(key: Key, step: Int[Array, ""] | int) -> Key:
    """The key shared by all paths at step ``step``."""
    return jr.fold_in(key, step)


def brownian_normal(step_key_: Key, path_id: Int[Array, ""], dim: int, dtype) -> Array:
    """Standard normal Brownian noise ``Z`` of shape ``(dim,)`` for one path and step."""
    path_key = jr.fold_in(step_key_, path_id)
    return jr.normal(jr.fold_in(path_key, _BROWNIAN_STREAM), (dim,), dtype)


def rademacher_probe(step_key_: Key, path_id: Int[Array, ""], dim: int, dtype) -> Array:
    """Rademacher probe vector (entries +-1) for Hutchinson traces, one path and step."""
    path_key = jr.fold_in(step_key_, path_id)
    return jr.rademacher(jr.fold_in(path_key, _PROBE_STREAM), (dim,), dtype)


class BrownianIncrements(diffrax.AbstractPath):
    """The Brownian path that dkjax draws for one path, as a diffrax path.

    Its increments over the grid ``t0 + n (t1 - t0) / num_steps`` are exactly the ones
    ``dkjax.simulate`` and ``dkjax.divergence_kernel`` use for path ``path_id`` with
    the same key, so diffrax solves can be compared with dkjax path by path. Only
    evaluations at grid points are supported (use it with a constant step of the same
    size).

    Arguments:
        key: the key passed to ``dkjax.simulate``.
        t0, t1, num_steps: the time grid passed to ``dkjax.simulate``.
        dim: the Brownian dimension (``d`` for diagonal noise, ``m`` for general).
        path_id: which path (row of ``x0``).
        dtype: floating dtype of the increments.

    Raises:
        Nothing at construction; evaluating off the time grid rounds to the nearest grid
        point, so use a constant step of ``(t1 - t0) / num_steps``.

    Example:
        >>> bm = dkjax.BrownianIncrements(key, 0.0, 1.0, 100, dim=2, path_id=3)
        >>> bm.evaluate(0.0, 0.01)  # the first increment of path 3
    """

    key: Key
    t0: RealScalarLike
    t1: RealScalarLike
    num_steps: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    path_id: Int[Array, ""] | int = 0
    dtype: object = eqx.field(static=True, default=float)

    def _grid_index(self, t: Scalar) -> Int[Array, ""]:
        dt = (self.t1 - self.t0) / self.num_steps
        return jnp.round((t - self.t0) / dt).astype(jnp.int32)

    def evaluate(self, t0: Scalar, t1: Scalar | None = None, left: bool = True) -> Array:
        del left
        if t1 is None:
            start, stop = jnp.int32(0), self._grid_index(t0)
        else:
            start, stop = self._grid_index(t0), self._grid_index(t1)
        dtype = jnp.dtype(self.dtype) if self.dtype is not float else jnp.result_type(float)
        sqrt_dt = jnp.sqrt(jnp.asarray((self.t1 - self.t0) / self.num_steps, dtype))

        def add_step(n, total):
            z = brownian_normal(step_key(self.key, n), jnp.asarray(self.path_id), self.dim, dtype)
            return total + z * sqrt_dt

        return jax.lax.fori_loop(start, stop, add_step, jnp.zeros(self.dim, dtype))

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
import numpy as np

from ._custom_types import Array, Int, Key, RealScalarLike, Scalar

_BROWNIAN_STREAM = 0
_PROBE_STREAM = 1


def step_key(key: Key, step: Int[Array, ""] | int) -> Key:
    """The key shared by all paths at step ``step``."""
    return jr.fold_in(key, step)


def _stream_bits(path_key: Key, stream: int, dim: int, dtype) -> Array:
    """Raw random words as wide as ``dtype``, one per entry."""
    uint = jnp.dtype(f"uint{jnp.finfo(dtype).bits}")
    return jr.bits(jr.fold_in(path_key, stream), (dim,), uint)


def _normal_from_bits(bits: Array, dtype) -> Array:
    """``jax.random.normal``'s transform of raw words: the top ``nmant`` bits set a uniform.

    Bit for bit what ``jr.normal`` returns for the same words (for dtypes with at least 8
    mantissa bits), and it leaves the lowest bit of each word unused: the Hutchinson probe's
    sign, independent of ``Z`` at no extra random-number cost.
    """
    finfo = jnp.finfo(dtype)
    shift = jnp.asarray(finfo.bits - finfo.nmant, bits.dtype)
    one = jnp.asarray(np.array(1.0, dtype).view(bits.dtype), bits.dtype)
    unit = jax.lax.bitcast_convert_type((bits >> shift) | one, dtype) - jnp.asarray(1.0, dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    uniform = jnp.maximum(low, unit * (np.array(1.0, dtype) - low) + low)
    return np.array(np.sqrt(2), dtype) * jax.lax.erf_inv(uniform)


def _signs_from_low_bit(bits: Array, dtype) -> Array:
    return 1 - 2 * (bits & 1).astype(dtype)


def brownian_normal(step_key_: Key, path_id: Int[Array, ""], dim: int, dtype) -> Array:
    """Standard normal Brownian noise ``Z`` of shape ``(dim,)`` for one path and step."""
    path_key = jr.fold_in(step_key_, path_id)
    return _normal_from_bits(_stream_bits(path_key, _BROWNIAN_STREAM, dim, dtype), dtype)


def noise_and_probe(step_key_: Key, path_id: Int[Array, ""], noise_dim: int, state_dim: int, dtype) -> tuple[Array, Array]:
    """``brownian_normal`` and a Rademacher probe of shape ``(state_dim,)`` (entries +-1).

    The probe's signs are the unused lowest bits of the words behind ``Z`` (one draw for
    both, which halves the random-number cost of a DK step); only where the state has more
    dimensions than the noise are further words drawn, from a stream of their own.
    """
    path_key = jr.fold_in(step_key_, path_id)
    bits = _stream_bits(path_key, _BROWNIAN_STREAM, noise_dim, dtype)
    if state_dim > noise_dim:
        extra = _stream_bits(path_key, _PROBE_STREAM, state_dim - noise_dim, dtype)
        probe_bits = jnp.concatenate([bits, extra])
    else:
        probe_bits = bits[:state_dim]
    return _normal_from_bits(bits, dtype), _signs_from_low_bit(probe_bits, dtype)


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

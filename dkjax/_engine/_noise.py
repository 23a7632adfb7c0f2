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
from jax.extend.random import threefry_2x32

from .._custom_types import Array, Int, Key, RealScalarLike, Scalar


def step_key(key: Key, step: Int[Array, ""] | int) -> Array:
    """The raw Threefry key pair (``uint32[2]``) shared by all paths at step ``step``.

    Drawn from ``fold_in(key, step)``, so any key implementation works; the paths' words
    are then Threefry hashes of ``(path, counter)`` under it (``_path_words``).
    """
    return jr.bits(jr.fold_in(key, step), (2,), jnp.uint32)


def _path_words(step_key_: Array, path_id: Int[Array, ""], count: int, dtype) -> Array:
    """``count`` random words as wide as ``dtype`` for one path at one step.

    Word pair ``j`` of path ``i`` is the Threefry-2x32 hash of the counter ``(i, j)``: no
    per-path key derivation, and both 32-bit halves of every hash are used (one hash per two
    float32 entries, per float64 entry). Fewer words are a prefix of more words.
    """
    width = jnp.finfo(dtype).bits
    pairs = -(-count // 2) if width <= 32 else count
    counters = jnp.concatenate([jnp.full((pairs,), path_id, jnp.uint32), jnp.arange(pairs, dtype=jnp.uint32)])
    first, second = jnp.split(threefry_2x32(step_key_, counters), 2)
    if width == 64:
        return (first.astype(jnp.uint64) << jnp.uint64(32)) | second.astype(jnp.uint64)
    return jnp.stack([first, second], axis=1).reshape(-1)[:count].astype(f"uint{width}")


def _normal_from_words(words: Array, dtype) -> Array:
    """Standard normals from raw words by ``jax.random.normal``'s transform (top ``nmant`` bits).

    Bit for bit ``jr.normal``'s values for the same words where the dtype has at least 8
    mantissa bits (float16, float32, float64); bfloat16 gets the same transform of 16-bit words.

    The transform leaves the lowest bit of each word unused: the Hutchinson probe's sign,
    independent of ``Z`` at no extra random-number cost.
    """
    finfo = jnp.finfo(dtype)
    shift = jnp.asarray(finfo.bits - finfo.nmant, words.dtype)
    one = jnp.asarray(np.array(1.0, dtype).view(words.dtype), words.dtype)
    unit = jax.lax.bitcast_convert_type((words >> shift) | one, dtype) - jnp.asarray(1.0, dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    uniform = jnp.maximum(low, unit * (np.array(1.0, dtype) - low) + low)
    return np.array(np.sqrt(2), dtype) * jax.lax.erf_inv(uniform)


def brownian_normal(step_key_: Array, path_id: Int[Array, ""], dim: int, dtype) -> Array:
    """Standard normal Brownian noise ``Z`` of shape ``(dim,)`` for one path and step."""
    return _normal_from_words(_path_words(step_key_, path_id, dim, dtype), dtype)


def noise_and_probe(
    step_key_: Array, path_id: Int[Array, ""], noise_dim: int, state_dim: int, dtype
) -> tuple[Array, Array]:
    """``brownian_normal`` and a Rademacher probe of shape ``(state_dim,)`` (entries +-1).

    One draw of ``max(noise_dim, state_dim)`` words serves both: ``Z`` from the top bits of
    the first ``noise_dim`` (the very words ``brownian_normal`` uses), the probe's signs from
    the lowest bits of the first ``state_dim``; this halves the random-number cost of a DK step.
    """
    words = _path_words(step_key_, path_id, max(noise_dim, state_dim), dtype)
    probe = 1 - 2 * (words[:state_dim] & 1).astype(dtype)
    return _normal_from_words(words[:noise_dim], dtype), probe


class BrownianIncrements(diffrax.AbstractPath):
    """The Brownian path that dkjax draws for one path, as a diffrax path.

    Its increments over the grid ``t0 + n (t1 - t0) / num_steps`` are exactly the ones
    ``dkjax.simulate`` and ``dkjax.divergence_kernel`` use for path ``path_id`` with
    the same key, so diffrax solves can be compared with dkjax path by path. Only
    evaluations at grid points are supported (use it with a constant step of the same
    size): evaluating off the time grid rounds to the nearest grid point.

    Arguments:
        key: the key passed to ``dkjax.simulate``.
        t0, t1, num_steps: the time grid passed to ``dkjax.simulate``.
        dim: the Brownian dimension (``d`` for diagonal noise, ``m`` for general).
        path_id: which path (row of ``x0``).
        dtype: floating dtype of the increments.

    Example:
        >>> bm = dkjax.BrownianIncrements(jax.random.key(0), 0.0, 1.0, 100, dim=2, path_id=3)
        >>> dB = bm.evaluate(0.0, 0.01)  # the first increment of path 3: N(0, dt) per coordinate
        >>> print(dB.shape, bool(jnp.all(dB == bm.evaluate(0.0, 0.01))))  # replayable
        (2,) True
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

"""Running statistics of per-path samples: moments merged over chunks, batch means, ratio estimates.

Everything here reduces arrays with a leading path (or batch) axis, on the device, and is
independent of how the samples were produced.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Params


class Moments(eqx.Module):
    """Count, mean and sum of squared deviations of i.i.d. samples, for any pytree of arrays.

    Merged by Chan's parallel update: no catastrophic cancellation of sums of squares over
    10^8 paths, and merged per chunk on the device.
    """

    count: Array
    mean: Params
    m2: Params

    @staticmethod
    def of(samples: Params, mask: Array) -> "Moments":
        """Moments of the rows of each leaf (leading sample axis) where ``mask`` is true."""
        count = jnp.sum(mask)  # an integer: exact beyond the 2^24 paths a float32 count could hold
        safe = jnp.maximum(count, 1)

        def expand(leaf):
            return mask.reshape(mask.shape + (1,) * (leaf.ndim - 1))

        # Counts are integers (int64 under x64): cast them to each leaf's dtype so float32 stays float32.
        mean = jax.tree.map(lambda s: jnp.sum(jnp.where(expand(s), s, 0.0), axis=0) / safe.astype(s.dtype), samples)
        m2 = jax.tree.map(lambda s, m: jnp.sum(jnp.where(expand(s), (s - m) ** 2, 0.0), axis=0), samples, mean)
        return Moments(count=count, mean=mean, m2=m2)

    def merge(self, other: "Moments") -> "Moments":
        count = self.count + other.count
        frac = other.count / jnp.maximum(count, 1)
        delta = jax.tree.map(jnp.subtract, other.mean, self.mean)
        mean = jax.tree.map(lambda a, d: a + d * frac.astype(a.dtype), self.mean, delta)
        weight = self.count * frac
        m2 = jax.tree.map(lambda a, b, d: a + b + d**2 * weight.astype(a.dtype), self.m2, other.m2, delta)
        return Moments(count=count, mean=mean, m2=m2)

    def stderr(self) -> Params:
        """Standard error of the mean, ``sqrt(m2 / (n - 1) / n)`` (NaN for fewer than 2 samples)."""
        n = self.count
        def stderr(m2):
            scale = jnp.maximum(n - 1, 1).astype(m2.dtype) * jnp.maximum(n, 1).astype(m2.dtype)  # no int overflow
            return jnp.where(n > 1, jnp.sqrt(m2 / scale), jnp.nan)

        return jax.tree.map(stderr, self.m2)


def outer_products(eta: Params, values: Array) -> Params:
    """Per path, ``eta`` (leaves ``(P,) + pshape``) times ``values`` ``(P,) + vshape``: ``(P,) + pshape + vshape``."""
    num = values.shape[0]

    def outer(e):
        flat = e.reshape(num, -1)[:, :, None] * values.reshape(num, -1)[:, None, :]
        return flat.reshape(e.shape + values.shape[1:])

    return jax.tree.map(outer, eta)


class ConditionalStats(eqx.Module):
    """Sums for the weighted (Nadaraya-Watson or binned) conditional mean and its delta-method error."""

    w: Array
    w2: Array
    wy: Params
    w2y: Params
    w2y2: Params


def conditional_sums(weights: Array, targets: Params) -> ConditionalStats:
    """``weights (P, G)``, targets leaves ``(P,) + shape`` -> sums with leaves ``shape + (G,)``."""
    w2 = weights**2

    def contract(wts, y):
        flat = y.reshape(y.shape[0], -1)
        return (flat.T @ wts).reshape(y.shape[1:] + (wts.shape[1],))

    return ConditionalStats(
        w=jnp.sum(weights, axis=0),
        w2=jnp.sum(w2, axis=0),
        wy=jax.tree.map(lambda y: contract(weights, y), targets),
        w2y=jax.tree.map(lambda y: contract(w2, y), targets),
        w2y2=jax.tree.map(lambda y: contract(w2, y**2), targets),
    )


def conditional_mean(s: ConditionalStats) -> tuple[Params, Params, Array]:
    """Ratio ``sum w y / sum w`` and its delta-method standard error; NaN below 2 effective paths."""
    ess = jnp.where(s.w2 > 0, s.w**2 / jnp.where(s.w2 > 0, s.w2, 1.0), 0.0)
    ok = ess >= 2.0
    safe_w = jnp.where(ok, s.w, 1.0)
    mean = jax.tree.map(lambda wy: jnp.where(ok, wy / safe_w, jnp.nan), s.wy)
    var = jax.tree.map(
        lambda r, w2y, w2y2: jnp.maximum(w2y2 - 2 * r * w2y + r**2 * s.w2, 0.0) / safe_w**2, mean, s.w2y, s.w2y2
    )
    return mean, jax.tree.map(lambda v: jnp.where(ok, jnp.sqrt(v), jnp.nan), var), ess


def batch_means(samples: Array, mask: Array) -> tuple[Array, Array, Array]:
    """Mean, standard error and count over the leading axes ``(B, ..., M)`` where ``mask`` holds."""
    m = mask.reshape(mask.shape + (1,) * (samples.ndim - mask.ndim))
    axes = tuple(range(mask.ndim))
    n = jnp.sum(mask)
    mean = jnp.sum(jnp.where(m, samples, 0.0), axis=axes) / jnp.maximum(n, 1)
    var = jnp.sum(jnp.where(m, (samples - mean) ** 2, 0.0), axis=axes) / jnp.maximum(n - 1, 1)
    return mean, jnp.where(n > 1, jnp.sqrt(var / jnp.maximum(n, 1)), jnp.nan), n

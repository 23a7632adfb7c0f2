"""Sample-quality metrics: energy distance, sliced Wasserstein, held-out smoothed NLL."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Float, Key, Scalar

Samples = Float[Array, "n d"]


def as_samples(points) -> Samples:
    """``points`` as a JAX array in a floating dtype JAX can hold (no truncation warning).

    NumPy float64 input becomes float32 when x64 is off, as ``jnp.asarray`` does silently;
    integers become JAX's default float dtype.
    """
    array = jnp.asarray(points)
    return array if jnp.issubdtype(array.dtype, jnp.inexact) else array.astype(jnp.result_type(float))


def squared_distances(a: Samples, b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """``|a_i - b_j|^2`` for all pairs."""
    # Differences, not the expanded |a|^2 - 2ab + |b|^2: that cancels catastrophically in float32.
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def pairwise_distances(a: Samples, b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """``|a_i - b_j|`` for all pairs (differentiable at zero distance)."""
    return jnp.sqrt(squared_distances(a, b) + jnp.finfo(a.dtype).tiny)


# Pairwise (rows x columns) matrices are reduced one block of rows at a time, each block
# holding at most this many entries: memory O(block) instead of O(rows x columns x d)
# (4096 paths against 1024 data points in 2-D would otherwise take ~170 MB in float64).
_BLOCK_ENTRIES = 2**18


def sum_over_row_blocks(fn, rows: Samples, num_columns: int):
    """``sum_i fn(rows_i, mask_i)`` over blocks of ``rows``, each paired with ``num_columns`` columns.

    ``fn(block, mask)`` returns a pytree of sums over its block's rows weighted by ``mask``
    (zero on the padding of the last block). ``mask`` is at least float32, so sums formed as
    ``mask @ ...`` accumulate without overflow for half-precision rows; callers normalise
    before casting back. One block needs no loop; more run in a ``lax.scan``, so only one
    block's pairwise matrices are alive at a time.
    """
    num_rows = rows.shape[0]
    sum_dtype = jnp.promote_types(rows.dtype, jnp.float32)
    size = max(1, min(num_rows, _BLOCK_ENTRIES // max(num_columns, 1)))
    num_blocks = -(-num_rows // size)
    if num_blocks == 1:
        return fn(rows, jnp.ones(num_rows, sum_dtype))
    padding = num_blocks * size - num_rows
    blocks = jnp.concatenate([rows, jnp.zeros((padding, rows.shape[1]), rows.dtype)]).reshape(num_blocks, size, -1)
    masks = (jnp.arange(num_blocks * size) < num_rows).astype(sum_dtype).reshape(num_blocks, size)
    zeros = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), jax.eval_shape(fn, blocks[0], masks[0]))
    add_block = lambda total, block: (jax.tree.map(jnp.add, total, fn(*block)), None)
    return jax.lax.scan(add_block, zeros, (blocks, masks))[0]


def distance_column_sums(rows: Samples, columns: Float[Array, "m d"]) -> Float[Array, " m"]:
    """``sum_i |rows_i - columns_k|`` for every column ``k``, one block of rows at a time."""
    return sum_over_row_blocks(lambda block, mask: mask @ pairwise_distances(block, columns), rows, columns.shape[0])


def _self_distance(dtype) -> float:
    """What ``pairwise_distances`` gives for a point and itself (it adds ``tiny`` before the root)."""
    return math.sqrt(float(jnp.finfo(dtype).tiny))


def energy_terms(x: Samples, y: Float[Array, "m d"]) -> tuple[Scalar, Float[Array, " n"], Float[Array, " n"]]:
    """Energy distance and, per sample of ``x``, its summed distances to ``y`` and to the other samples of ``x``.

    In at least float32 (see ``sum_over_row_blocks``).
    """
    m, j = x.shape[0], y.shape[0]
    to_y = distance_column_sums(y, x)
    to_x = distance_column_sums(x, x) - _self_distance(x.dtype)
    yy = jnp.sum(distance_column_sums(y, y) - _self_distance(y.dtype)) / (j * (j - 1))
    return 2 * jnp.sum(to_y) / (m * j) - jnp.sum(to_x) / (m * (m - 1)) - yy, to_y, to_x


def energy_distance(x: Samples, y: Float[Array, "m d"]) -> Scalar:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (U-statistics within samples).

    Zero exactly when the two laws agree (the estimate fluctuates around zero then); a
    training objective and a metric.

    Arguments:
        x: samples ``(m, d)``, ``m >= 2``; ``y``: samples ``(j, d)``, ``j >= 2``.

    Returns:
        A scalar.

    Raises:
        TypeError: samples of different dimensions ``d`` (from JAX broadcasting).

    Example:
        >>> x = jax.random.normal(jax.random.key(0), (2000, 2))
        >>> y = jax.random.normal(jax.random.key(1), (2000, 2))
        >>> print(f"{float(dkjax.energy_distance(x, y)):.3f} {float(dkjax.energy_distance(x, y + 1.0)):.2f}")
        -0.001 0.82
    """
    x, y = as_samples(x), as_samples(y)
    return energy_terms(x, y)[0].astype(x.dtype)


def jackknife_coefficients(logits: Float[Array, "j m"], w: Float[Array, "j m"]) -> Float[Array, "j m"]:
    """Per row, the coefficients ``a_m`` of the jackknifed self-normalised ratio ``sum_m a_m eta_m``.

    Row ``w = softmax(logits)`` (the caller has it already) estimates ``E[K eta] / E[K]`` by
    ``R = sum_m w_m eta_m``, biased by ``O(1 / ESS)``. The jackknife
    ``n R - (n - 1) mean_i R_{-i}`` cancels that order; since
    ``R - R_{-i} = w_i (eta_i - R) / (1 - w_i)`` it is linear in ``eta``, with
    ``a_m = w_m (1 + (n - 1) / n (1 - sum_{i != m} w_i / (1 - w_i)))``, summing to one.
    A row's largest weight ``w_k`` may be ``1`` to rounding, its complement ``0`` and its term
    infinite; its product with the other ``w_m`` is formed as ``w_k v_m``, ``v`` the row's
    weights without ``k``, taken from the logits, so the result is finite for any row (for a row
    with one path in effect, ``a = (2 - 1/n) e_k - (1 - 1/n) v``).
    """
    n = logits.shape[1]
    if n == 1:
        return w
    is_max = jnp.arange(n) == jnp.argmax(logits, axis=1, keepdims=True)
    v = jax.nn.softmax(jnp.where(is_max, -jnp.inf, logits), axis=1)
    u = jnp.where(is_max, 0.0, w / (1.0 - w))  # w_i / (1 - w_i) off the maximum, where w_i <= 1/2
    others = jnp.sum(u, axis=1, keepdims=True)
    shrink = (n - 1) / n
    w_max = jnp.max(w, axis=1, keepdims=True)
    off_max = w * (1.0 + shrink * (1.0 - others + u)) - shrink * w_max * v
    return jnp.where(is_max, w * (1.0 + shrink * (1.0 - others)), off_max)


def kde_sums(y: Samples, x: Float[Array, "m d"], bandwidth: Scalar, *, jackknife: bool = False) -> dict:
    """Sums over the points ``y_j`` for the Gaussian KDE ``q_h`` of ``x``, one block of points at a time.

    Returns ``{"log_q": sum_j log q_h(y_j), "weights": sum_j w_j, "ess": sum_j 1 / |w_j|^2}``,
    ``w_jm = softmax_m(-|y_j - x_m|^2 / (2 h^2))`` being the Nadaraya-Watson weights of
    ``y_j`` (shape ``(m,)`` summed over ``j``); with ``jackknife``, ``"weights"`` sums their
    ``jackknife_coefficients`` instead. Under jit, XLA drops the entries not used.
    In at least float32 (see ``sum_over_row_blocks``).
    """
    num_samples, dim = x.shape
    offset = -jnp.log(num_samples) - dim * jnp.log(bandwidth * math.sqrt(2 * math.pi))

    def block_sums(block, mask):
        logits = -squared_distances(block, x) / (2 * bandwidth**2)
        log_norm = jax.nn.logsumexp(logits, axis=1)
        w = jnp.exp(logits - log_norm[:, None])
        return {
            "log_q": mask @ (log_norm + offset),
            "weights": mask @ (jackknife_coefficients(logits, w) if jackknife else w),
            "ess": mask @ (1.0 / jnp.sum(w**2, axis=1)),
        }

    return sum_over_row_blocks(block_sums, y, num_samples)


def smoothed_nll(samples: Samples, data: Float[Array, "j d"], bandwidth: Scalar) -> Scalar:
    """Held-out smoothed negative log-likelihood ``-mean_j log q_h(y_j)``, ``q_h`` the Gaussian KDE of ``samples``.

    Arguments:
        samples: model samples ``(m, d)``; ``data``: held-out points ``(j, d)``;
        bandwidth: the kernel's standard deviation ``h``.

    Returns:
        A scalar (nats per point; lower is better).

    Raises:
        TypeError: samples of different dimensions ``d`` (from JAX broadcasting).

    Example:
        >>> samples = jax.random.normal(jax.random.key(0), (4096, 1))
        >>> heldout = jax.random.normal(jax.random.key(1), (1000, 1))
        >>> print(f"{float(dkjax.smoothed_nll(samples, heldout, 0.1)):.2f}")  # N(0, 1): 1.42, a little more once smoothed
        1.44
    """
    samples, data = as_samples(samples), as_samples(data)
    return (-kde_sums(data, samples, bandwidth)["log_q"] / data.shape[0]).astype(samples.dtype)


def sliced_wasserstein(
    x: Samples, y: Float[Array, "m d"], *, key: Key, num_projections: int = 128, num_quantiles: int = 256
) -> Scalar:
    """Sliced 2-Wasserstein distance: RMS over random directions of the 1-D W2 of the projections.

    The 1-D distances compare ``num_quantiles`` quantiles, so the sample sizes may differ.

    Arguments:
        x, y: samples ``(m, d)`` and ``(j, d)``.
        key: PRNG key for the random directions.
        num_projections: number of directions; ``num_quantiles``: quantile levels compared.

    Returns:
        A scalar.

    Raises:
        TypeError: samples of different dimensions ``d`` (from JAX broadcasting).

    Example:
        >>> x = jax.random.normal(jax.random.key(0), (2000, 2))
        >>> print(f"{float(dkjax.sliced_wasserstein(x, x + 1.0, key=jax.random.key(1))):.1f}")  # shifted by (1, 1)
        1.0
    """
    x, y = as_samples(x), as_samples(y)
    directions = jr.normal(key, (num_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    levels = (jnp.arange(num_quantiles, dtype=x.dtype) + 0.5) / num_quantiles
    qx = jnp.quantile(x @ directions.T, levels, axis=0)
    qy = jnp.quantile(y @ directions.T, levels, axis=0)
    return jnp.sqrt(jnp.mean((qx - qy) ** 2))

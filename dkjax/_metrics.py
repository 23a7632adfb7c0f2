"""Sample-quality metrics: energy distance, sliced Wasserstein, held-out smoothed NLL."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr

from ._custom_types import Array, Float, Key, Scalar

Samples = Float[Array, "n d"]


def squared_distances(a: Samples, b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """``|a_i - b_j|^2`` for all pairs."""
    # Differences, not the expanded |a|^2 - 2ab + |b|^2: that cancels catastrophically in float32.
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def pairwise_distances(a: Samples, b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """``|a_i - b_j|`` for all pairs (differentiable at zero distance)."""
    return jnp.sqrt(squared_distances(a, b) + jnp.finfo(a.dtype).tiny)


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
        >>> dkjax.energy_distance(samples, heldout)
    """
    m, j = x.shape[0], y.shape[0]
    xy = jnp.mean(pairwise_distances(x, y))
    xx = jnp.sum(pairwise_distances(x, x) * (1 - jnp.eye(m, dtype=x.dtype))) / (m * (m - 1))
    yy = jnp.sum(pairwise_distances(y, y) * (1 - jnp.eye(j, dtype=y.dtype))) / (j * (j - 1))
    return 2 * xy - xx - yy


def kde_log_terms(y: Samples, x: Float[Array, "m d"], bandwidth: Scalar) -> tuple[Float[Array, "n m"], Scalar]:
    """``(logits, offset)`` with ``log q_h(y_j) = logsumexp_m logits_jm + offset`` for the Gaussian KDE of ``x``."""
    num_samples, dim = x.shape
    logits = -squared_distances(y, x) / (2 * bandwidth**2)
    return logits, -jnp.log(num_samples) - dim * jnp.log(bandwidth * math.sqrt(2 * math.pi))


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
        >>> dkjax.smoothed_nll(dkjax.sample(sde, initial, 4096, ...), heldout, 0.1)
    """
    logits, offset = kde_log_terms(data, samples, bandwidth)
    return -jnp.mean(jax.nn.logsumexp(logits, axis=1) + offset)


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
        >>> dkjax.sliced_wasserstein(samples, heldout, key=jax.random.key(0))
    """
    directions = jr.normal(key, (num_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    levels = (jnp.arange(num_quantiles, dtype=x.dtype) + 0.5) / num_quantiles
    qx = jnp.quantile(x @ directions.T, levels, axis=0)
    qy = jnp.quantile(y @ directions.T, levels, axis=0)
    return jnp.sqrt(jnp.mean((qx - qy) ** 2))

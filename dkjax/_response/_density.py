"""Densities and their responses on histogram bins or kernel-smoothed points, with conditional DK weights.

The weights ``w_g(x)`` of every grid point are small modules: a second call with other
arrays of the same shapes reuses the compiled chunk kernels.
"""

import math
import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, InitialSampler, Key, KernelRate, RealScalarLike
from .._engine._estimator import DKResult
from .._sde._abstract import AbstractSDE
from ._observable import fold_observable
from ._results import DensityResponse
from ._statistics import conditional_mean, conditional_sums
from ._streaming import stream_dk, warn_nonfinite


class _BinWeights(eqx.Module):
    """Histogram weights: per bin (row-major over ``grid_shape``), its indicator over its volume."""

    edges: tuple[Array, ...]
    volume: Array
    grid_shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, xs: Array) -> Array:
        size = math.prod(self.grid_shape)
        inside = jnp.ones((size,), bool)
        idx = []
        for axis, e in enumerate(self.edges):
            i = jnp.searchsorted(e, xs[axis], side="right") - 1
            inside = inside & (i >= 0) & (i < e.shape[0] - 1)
            idx.append(jnp.clip(i, 0, e.shape[0] - 2))
        flat = jnp.ravel_multi_index(tuple(idx), self.grid_shape, mode="clip")
        onehot = (jnp.arange(size) == flat) & inside
        return onehot / self.volume.astype(xs.dtype)


class _KernelWeights(eqx.Module):
    """Gaussian kernels of width ``bandwidth`` centred at each point (settings static, points traced)."""

    points: Array
    bandwidth: float = eqx.field(static=True)
    norm: float = eqx.field(static=True)

    def __call__(self, xs: Array) -> Array:
        squared = jnp.sum((self.points.astype(xs.dtype) - xs) ** 2, axis=1)
        return self.norm * jnp.exp(-0.5 * squared / self.bandwidth**2)


class _OnCoordinates(eqx.Module):
    """The weights of the selected state coordinates, as an observable of the whole state."""

    weights: _BinWeights | _KernelWeights
    coords: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        return self.weights(x[jnp.asarray(self.coords)])


def _bin_weights(bins, k) -> tuple[Array, tuple[int, ...], _BinWeights]:
    """``(centres (G, k), grid_shape, weights)`` of histogram edges, checked."""
    edges = [bins] if k == 1 else list(bins) if isinstance(bins, (tuple, list)) else None
    if edges is None or len(edges) != k:
        raise ValueError(f"bins must be one edge array (1-D) or a tuple of {k} edge arrays (2-D); got {type(bins).__name__}.")
    edges = [np.asarray(e, dtype=np.float64) for e in edges]
    for e in edges:
        if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
            raise ValueError("bins must be finite, strictly increasing edge arrays with at least 2 edges.")
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    mesh = np.meshgrid(*centres, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    widths = np.meshgrid(*[np.diff(e) for e in edges], indexing="ij")
    volume = np.prod(np.stack([w.ravel() for w in widths], axis=1), axis=1)
    grid_shape = tuple(len(c) for c in centres)
    weights = _BinWeights(tuple(jnp.asarray(e) for e in edges), jnp.asarray(volume), grid_shape)
    return jnp.asarray(pts), grid_shape, weights


def _kernel_weights(points, bandwidth, k) -> tuple[Array, tuple[int, ...], _KernelWeights]:
    """``(points (G, k), (G,), weights)`` of Gaussian kernels at ``points``, checked."""
    pts = np.asarray(points, dtype=np.float64)
    if k == 1 and pts.ndim == 1:
        pts = pts[:, None]
    if pts.ndim != 2 or pts.shape[1] != k or pts.shape[0] < 1 or not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be finite with shape (G,) or (G, {k}); got shape {np.shape(points)}.")
    if bandwidth is None or np.ndim(bandwidth) != 0 or not float(bandwidth) > 0 or not math.isfinite(float(bandwidth)):
        raise ValueError(f"bandwidth must be a positive finite scalar with points; got {bandwidth!r}.")
    h = float(bandwidth)
    norm = (2 * math.pi * h**2) ** (-k / 2)
    jpts = jnp.asarray(pts)
    return jpts, (pts.shape[0],), _KernelWeights(jpts, h, norm)


def _density_weights(bins, points, bandwidth, k):
    """``(centres (G, k), grid_shape, weights)``: bin indicators / volume, or Gaussian kernels."""
    if (bins is None) == (points is None):
        raise ValueError("give exactly one of bins (histogram edges) or points (with bandwidth).")
    if bins is None:
        return _kernel_weights(points, bandwidth, k)
    if bandwidth is not None:
        raise ValueError("bandwidth is only used with points; histogram bins need none.")
    return _bin_weights(bins, k)


def _coordinates(x0, coordinates) -> tuple[int, ...]:
    """The 1 or 2 state coordinates the grid lives on, checked against the state dimension."""
    # A sampler reveals the state dimension only through one draw (its key is never used for paths).
    dim = (x0(jr.key(0), 1)[0] if callable(x0) else jnp.asarray(x0)).shape[-1]
    coords = tuple(range(dim)) if coordinates is None else tuple(int(c) for c in coordinates)
    if len(coords) not in (1, 2) or any(not 0 <= c < dim for c in coords) or len(set(coords)) != len(coords):
        raise ValueError(
            f"coordinates must select 1 or 2 distinct state coordinates in [0, {dim}); got {coordinates!r}"
            + (" (the state has more than 2 coordinates: choose them)" if coordinates is None else "")
            + "."
        )
    return coords


@eqx.filter_jit
def _fold_conditional(weights: _OnCoordinates, stats, result: DKResult, valid: Array):
    """Adds one chunk's weighted sums of ``dlogp`` and the selected scores to the conditional sums."""
    mask = valid & result.finite
    coords = jnp.asarray(weights.coords)
    targets = (
        jax.tree.map(lambda e: jnp.where(mask.reshape((-1,) + (1,) * (e.ndim - 1)), e, 0.0), result.dlogp),
        jnp.where(mask[:, None], result.score[:, coords], 0.0),
    )
    new = conditional_sums(jnp.where(mask[:, None], jax.vmap(weights)(result.x), 0.0), targets)
    return new if stats is None else jax.tree.map(jnp.add, stats, new)


def _report_empty(ess: Array, binned: bool) -> None:
    """Raises when no grid point received paths; warns when some received fewer than 2 effective paths."""
    kind = "bin" if binned else "point"
    empty = int(jnp.sum(ess < 2.0))
    if empty == ess.shape[0]:
        raise ValueError(f"no {kind} received paths: the {kind}s lie outside the region the paths reach.")
    if empty:
        warnings.warn(
            f"density_response: {empty} of {ess.shape[0]} {kind}s received fewer "
            "than 2 effective paths; their conditional means are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )


def density_response(
    sde: AbstractSDE,
    x0: Array | InitialSampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    bins=None,
    points=None,
    bandwidth: float | None = None,
    coordinates: Sequence[int] | None = None,
    num_paths: int | None = None,
    chunk_size: int = 65536,
    t0: RealScalarLike = 0.0,
    score0: Array | None = None,
    kernel_rate: KernelRate = 1.0,
    response_mix: float = 0.0,
    mode: str = "matrix_free",
) -> DensityResponse:
    """Estimates ``p_T``, ``d/dparam p_T`` and the conditional DK weights on a 1-D or 2-D grid.

    With weights ``w_g(x)`` (histogram: the indicator of bin ``g`` over its volume;
    points: a Gaussian kernel of width ``bandwidth`` centred at point ``g``):

        density[g]    = E[w_g(X_T)]                    (bin-averaged or smoothed p_T)
        response[g]   = E[(w_g(X_T) - c_g) dlogp_T]    (d/dparam of the same)
        dlogp_mean[g] = sum w_g(X) dlogp / sum w_g(X)  (binning or Nadaraya-Watson)
        score_mean[g] = sum w_g(X) score / sum w_g(X)

    so the first two are exact for the bin average (or the ``bandwidth``-smoothed density)
    and the conditional means converge to ``d/dparam log p_T`` and ``grad log p_T`` as bins
    shrink. Conditional standard errors use the delta method for the ratio.

    Arguments:
        sde, x0, t1, num_steps, key, num_paths, chunk_size, t0, score0, kernel_rate,
            response_mix, mode: as in ``observable_response``.
        bins: edges, a 1-D array (one coordinate) or a tuple of two arrays (two coordinates).
        points: evaluation points, shape ``(G,)`` or ``(G, 2)``; needs ``bandwidth``.
        bandwidth: Gaussian kernel width for ``points``.
        coordinates: which state coordinates (1 or 2 of them); default all (``d`` <= 2).

    Returns:
        A ``DensityResponse``. Points with fewer than 2 effective paths hold NaN
        conditional means (with a warning); non-finite paths are excluded and counted.

    Raises:
        ValueError: both or neither of ``bins``/``points``, malformed edges or points,
            a missing ``bandwidth``, bad ``coordinates``, or no point reached by any path.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.density_response(sde, jnp.zeros((10_000, 1)), t1=1.0, num_steps=100,
        ...                              key=jax.random.key(0), bins=jnp.linspace(-1, 1, 21))
        >>> res.response.theta.shape  # d p_T / d theta at the 20 bin centres
        (20,)
    """
    coords = _coordinates(x0, coordinates)
    centres, grid_shape, weights = _density_weights(bins, points, bandwidth, len(coords))
    phi = _OnCoordinates(weights, coords)
    dk_kwargs = dict(t1=t1, num_steps=num_steps, t0=t0, kernel_rate=kernel_rate, response_mix=response_mix, mode=mode)
    obs, cond, last = None, None, None
    for _, result, valid in stream_dk(sde, x0, score0, num_paths, chunk_size, key, dk_kwargs):
        obs = fold_observable(phi, obs, result, valid, True)
        cond = _fold_conditional(phi, cond, result, valid)
        last = result
    total = int(obs.products.count) + int(obs.num_nonfinite)
    warn_nonfinite(int(obs.num_nonfinite), total, "density_response")
    (dlogp_mean, score_mean), (dlogp_se, score_se), ess = conditional_mean(cond)
    _report_empty(ess, bins is not None)
    return DensityResponse(
        points=centres,
        grid_shape=grid_shape,
        density=obs.values.mean,
        density_stderr=obs.values.stderr(),
        response=obs.products.mean,
        response_stderr=obs.products.stderr(),
        dlogp_mean=dlogp_mean,
        dlogp_mean_stderr=dlogp_se,
        score_mean=score_mean.T,
        score_mean_stderr=score_se.T,
        effective_paths=ess,
        num_paths=int(obs.products.count),
        num_nonfinite=int(obs.num_nonfinite),
        kernel_rate=last.kernel_rate,
    )

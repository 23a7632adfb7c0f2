"""Linear responses built on the DK weights: observables, densities and stationary averages.

The estimators: observables and densities stream their paths in chunks (``_streaming``) and
keep running statistics (``_statistics``); stationary averages run the step driver segment
by segment along long paths.
"""

import math
import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Key, KernelRate, Observable, Params, RealScalarLike
from .._engine._estimator import DKResult, dk_options, dk_weights, run_divergence_kernel
from .._sde._abstract import AbstractSDE
from .._engine._simulate import check_common, path_ids_for
from ._statistics import Moments, batch_means, conditional_mean, conditional_sums, outer_products
from ._streaming import Sampler, apply_phi, raise_bad_phi, stream_dk, warn_nonfinite
from .._validation import check_positive, check_states


# --------------------------------------------------------------------------------------
# Result modules


class ResponseResult(eqx.Module):
    """Estimated derivative ``d/dparam E[phi(X_T)]`` with Monte-Carlo standard errors.

    Attributes:
        estimate: pytree shaped like ``dkjax.parameters(sde)``; each leaf has shape
            ``param.shape + phi_shape`` (``phi_shape`` is the shape ``phi`` returns).
        stderr: standard errors, same structure (i.i.d. over paths).
        value: ``E[phi(X_T)]``, shape ``phi_shape``.
        value_stderr: its standard error.
        num_paths: paths that entered the averages.
        num_nonfinite: paths excluded because they went non-finite (``DKResult.finite``).
        kernel_rate: the kernel rate used (``None`` for methods without one).

    Example:
        >>> res = dkjax.observable_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), lambda x: x[0],
        ...                                 jnp.ones((4096, 1)), t1=1.0, num_steps=50, key=jax.random.key(0))
        >>> print(res.num_paths, res.num_nonfinite, res.estimate.theta.shape)
        4096 0 ()
    """

    estimate: Params
    stderr: Params
    value: Array
    value_stderr: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    kernel_rate: float | None = eqx.field(static=True, default=None)


class DensityResponse(eqx.Module):
    """Density, density response and conditional DK weights on points or histogram bins.

    With ``k`` selected coordinates and ``G`` points (bin centres, row-major over the
    ``grid_shape`` for 2-D bins):

    Attributes:
        points: shape ``(G, k)``.
        grid_shape: ``(G,)`` for 1-D, ``(nx, ny)`` for 2-D bins (reshape the last axis).
        density: ``p_T`` (bin average, or kernel-smoothed), shape ``(G,)``; ``density_stderr``.
        response: ``d/dparam p_T``, pytree like the parameters with leaves
            ``param.shape + (G,)``; ``response_stderr``.
        dlogp_mean: ``E[dlogp | X_T]`` (estimates ``d/dparam log p_T``), leaves
            ``param.shape + (G,)``; ``dlogp_mean_stderr``. NaN where fewer than 2
            effective paths landed.
        score_mean: ``E[score | X_T]`` for the selected coordinates, shape ``(G, k)``;
            ``score_mean_stderr``. NaN where fewer than 2 effective paths landed.
        effective_paths: per point, ``(sum w)^2 / sum w^2`` (paths per bin for histograms).
        num_paths, num_nonfinite: as in ``ResponseResult``.
        kernel_rate: the kernel rate used.

    Example:
        >>> res = dkjax.density_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), jnp.zeros((4096, 1)),
        ...                              t1=1.0, num_steps=50, key=jax.random.key(0), bins=jnp.linspace(-1, 1, 11))
        >>> print(res.points.shape, res.density.shape, res.response.sigma.shape)
        (10, 1) (10,) (10,)
    """

    points: Array
    grid_shape: tuple[int, ...] = eqx.field(static=True)
    density: Array
    density_stderr: Array
    response: Params
    response_stderr: Params
    dlogp_mean: Params
    dlogp_mean_stderr: Params
    score_mean: Array
    score_mean_stderr: Array
    effective_paths: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    kernel_rate: float | None = eqx.field(static=True, default=None)


class StationaryResponse(eqx.Module):
    """Long-time response ``d/dparam <phi>`` for each window ``W`` (look for the plateau).

    Attributes:
        windows: window lengths in steps, shape ``(nW,)``; ``window_times`` in time units.
        estimate: pytree like the parameters, leaves ``(nW,) + param.shape + phi_shape``.
        stderr: batch-means standard errors (see ``stationary_response``), same structure.
        value: the time average ``<phi>``, shape ``phi_shape``; ``value_stderr``.
        num_paths: paths that entered the averages; ``num_nonfinite``: paths excluded.
        num_batches: per window, the batches (paths x blocks) behind its standard error.
        kernel_rate: the kernel rate used.

    Example:
        >>> res = dkjax.stationary_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), lambda x: x[0] ** 2,
        ...     jnp.zeros((16, 1)), dt=0.05, spinup_steps=100, num_steps=2000, windows=[20, 40], key=jax.random.key(0))
        >>> print(res.windows, res.window_times, res.estimate.theta.shape)
        [20 40] [1. 2.] (2,)
    """

    windows: Array
    window_times: Array
    estimate: Params
    stderr: Params
    value: Array
    value_stderr: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    num_batches: Array
    kernel_rate: float | None = eqx.field(static=True, default=None)


class _ObservableStats(eqx.Module):
    products: Moments
    values: Moments
    baseline: Array
    num_nonfinite: Array
    num_bad_phi: Array


@eqx.filter_jit
def _fold_observable(phi, stats: _ObservableStats | None, result: DKResult, valid: Array, center: bool):
    """Adds one chunk's ``(phi - baseline) * dlogp`` and ``phi`` to the running moments.

    On the first chunk (``stats is None``) the baseline is that chunk's mean of ``phi``;
    its products are rescaled by ``n / (n - 1)``, which turns them into the unbiased sample
    covariance, so the centred estimator stays exactly unbiased (``E[dlogp] = 0``).
    """
    values = apply_phi(phi, result.x)
    flat = values.reshape(values.shape[0], -1)
    phi_ok = jnp.all(jnp.isfinite(flat), axis=1)
    mask = valid & result.finite & phi_ok
    if stats is None:
        count = jnp.sum(mask)
        baseline = jnp.sum(jnp.where(mask[:, None], flat, 0.0), axis=0) / jnp.maximum(count, 1).astype(flat.dtype)
        baseline = baseline.reshape(values.shape[1:])
        if not center:
            baseline = jnp.zeros_like(baseline)
        ratio = count.astype(flat.dtype) / jnp.maximum(count - 1, 1).astype(flat.dtype)
        scale = jnp.where(center & (count > 1), ratio, jnp.ones((), flat.dtype))
    else:
        baseline, scale = stats.baseline, 1.0
    centred = jnp.where(mask.reshape((-1,) + (1,) * (values.ndim - 1)), values - baseline, 0.0)
    dlogp = jax.tree.map(lambda e: jnp.where(mask.reshape((-1,) + (1,) * (e.ndim - 1)), e, 0.0), result.dlogp)
    products = jax.tree.map(lambda p: p * scale, outer_products(dlogp, centred))
    new = _ObservableStats(
        products=Moments.of(products, mask),
        values=Moments.of(values, mask),
        baseline=baseline,
        num_nonfinite=jnp.sum(valid & ~result.finite),
        num_bad_phi=jnp.sum(valid & result.finite & ~phi_ok),
    )
    if stats is None:
        return new
    return _ObservableStats(
        products=stats.products.merge(new.products),
        values=stats.values.merge(new.values),
        baseline=baseline,
        num_nonfinite=stats.num_nonfinite + new.num_nonfinite,
        num_bad_phi=stats.num_bad_phi + new.num_bad_phi,
    )


def observable_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array | Sampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    num_paths: int | None = None,
    chunk_size: int = 65536,
    t0: RealScalarLike = 0.0,
    score0: Array | None = None,
    kernel_rate: KernelRate = 1.0,
    response_mix: float = 0.0,
    mode: str = "matrix_free",
    center: bool = True,
) -> ResponseResult:
    """Estimates ``d/dparam E[phi(X_T)]`` for every parameter by the divergence-kernel method.

    Uses ``d/dparam E[phi(X_T)] = E[(phi(X_T) - c) dlogp_T]`` (the
    baseline ``c`` is free because ``E[dlogp_T] = 0``; ``center=True`` takes the first
    chunk's mean of ``phi``, which lowers the variance and keeps the estimate exactly
    unbiased). Paths are streamed in chunks of ``chunk_size``; only running means and
    sums of squared deviations are kept, so ``num_paths`` is limited by time, not memory.
    Standard errors treat the per-path products as i.i.d. over paths.

    Arguments:
        sde: the SDE; its floating-point array fields are the parameters.
        phi: observable, ``phi(x)`` for one state ``x`` of shape ``(d,)``; a scalar or an
            array (a vector of observables).
        x0: initial states ``(num_paths, d)``, or a sampler ``callable(key, n) -> (x0,
            score0 or None)`` drawing ``n`` initial states (then ``num_paths`` is required).
        t1, num_steps, key, t0, kernel_rate, response_mix, mode: as in
            ``dkjax.divergence_kernel`` (the same key gives the same paths).
        num_paths: total number of paths (only with a sampler).
        chunk_size: paths per chunk (device memory is about ``chunk_size`` paths).
        score0: initial scores for an array ``x0`` (``None``: point mass or unknown law).
        center: subtract the baseline ``c`` (default); ``False`` gives the plain estimator.

    Returns:
        A ``ResponseResult``; non-finite paths are excluded, counted in
        ``num_nonfinite`` and reported with a ``RuntimeWarning``.

    Raises:
        ValueError: bad shapes or arguments (named), or ``phi`` non-finite on a finite path.
        TypeError: ``sde`` not an ``AbstractSDE``, ``key`` not a PRNG key.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.observable_response(sde, lambda x: x[0], jnp.ones((10_000, 1)),
        ...                                 t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(f"{float(res.estimate.theta):.2f} +- {float(res.stderr.theta):.2f}")  # exact -exp(-1) = -0.37
        -0.41 +- 0.05
    """
    if not callable(phi):
        raise TypeError(f"phi must be a callable x -> observable(s); got {type(phi).__name__}.")
    dk_kwargs = dict(t1=t1, num_steps=num_steps, t0=t0, kernel_rate=kernel_rate, response_mix=response_mix, mode=mode)
    stats, last = None, None
    for _, result, valid in stream_dk(sde, x0, score0, num_paths, chunk_size, key, dk_kwargs):
        stats, last = _fold_observable(phi, stats, result, valid, bool(center)), result
    total = int(stats.products.count) + int(stats.num_nonfinite) + int(stats.num_bad_phi)
    raise_bad_phi(int(stats.num_bad_phi), total)
    warn_nonfinite(int(stats.num_nonfinite), total, "observable_response")
    return ResponseResult(
        estimate=stats.products.mean,
        stderr=stats.products.stderr(),
        value=stats.values.mean,
        value_stderr=stats.values.stderr(),
        num_paths=int(stats.products.count),
        num_nonfinite=int(stats.num_nonfinite),
        kernel_rate=last.kernel_rate,
    )


# --------------------------------------------------------------------------------------
# Density responses


def _density_weights(bins, points, bandwidth, k):
    """``(centres (G, k), grid_shape, w(xs) -> (G,))``: bin indicators / volume, or Gaussian kernels."""
    if (bins is None) == (points is None):
        raise ValueError("give exactly one of bins (histogram edges) or points (with bandwidth).")
    if bins is not None:
        if bandwidth is not None:
            raise ValueError("bandwidth is only used with points; histogram bins need none.")
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
        jedges = [jnp.asarray(e) for e in edges]

        def weights(xs):
            inside = jnp.ones((pts.shape[0],), bool)
            idx = []
            for axis, e in enumerate(jedges):
                i = jnp.searchsorted(e, xs[axis], side="right") - 1
                inside = inside & (i >= 0) & (i < e.shape[0] - 1)
                idx.append(jnp.clip(i, 0, e.shape[0] - 2))
            flat = jnp.ravel_multi_index(tuple(idx), grid_shape, mode="clip")
            onehot = (jnp.arange(pts.shape[0]) == flat) & inside
            return onehot / jnp.asarray(volume, xs.dtype)

        return jnp.asarray(pts), grid_shape, weights

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

    def weights(xs):
        return norm * jnp.exp(-0.5 * jnp.sum((jpts.astype(xs.dtype) - xs) ** 2, axis=1) / h**2)

    return jpts, (pts.shape[0],), weights


@eqx.filter_jit
def _fold_conditional(weight_fn, coords, stats, result: DKResult, valid: Array):
    mask = valid & result.finite
    xs = result.x[:, coords]
    weights = jnp.where(mask[:, None], jax.vmap(weight_fn)(xs), 0.0)
    targets = (
        jax.tree.map(lambda e: jnp.where(mask.reshape((-1,) + (1,) * (e.ndim - 1)), e, 0.0), result.dlogp),
        jnp.where(mask[:, None], result.score[:, coords], 0.0),
    )
    new = conditional_sums(weights, targets)
    return new if stats is None else jax.tree.map(jnp.add, stats, new)


def density_response(
    sde: AbstractSDE,
    x0: Array | Sampler,
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
    # A sampler reveals the state dimension only through one draw (its key is never used for paths).
    dim = (x0(jr.key(0), 1)[0] if callable(x0) else jnp.asarray(x0)).shape[-1]
    coords = tuple(range(dim)) if coordinates is None else tuple(int(c) for c in coordinates)
    if len(coords) not in (1, 2) or any(not 0 <= c < dim for c in coords) or len(set(coords)) != len(coords):
        raise ValueError(
            f"coordinates must select 1 or 2 distinct state coordinates in [0, {dim}); got {coordinates!r}"
            + (" (the state has more than 2 coordinates: choose them)" if coordinates is None else "")
            + "."
        )
    centres, grid_shape, weight_fn = _density_weights(bins, points, bandwidth, len(coords))
    phi = lambda x: weight_fn(x[jnp.asarray(coords)])
    dk_kwargs = dict(t1=t1, num_steps=num_steps, t0=t0, kernel_rate=kernel_rate, response_mix=response_mix, mode=mode)
    obs, cond, last = None, None, None
    for _, result, valid in stream_dk(sde, x0, score0, num_paths, chunk_size, key, dk_kwargs):
        obs = _fold_observable(phi, obs, result, valid, True)
        cond = _fold_conditional(weight_fn, jnp.asarray(coords), cond, result, valid)
        last = result
    total = int(obs.products.count) + int(obs.num_nonfinite)
    warn_nonfinite(int(obs.num_nonfinite), total, "density_response")
    (dlogp_mean, score_mean), (dlogp_se, score_se), ess = conditional_mean(cond)
    empty = int(jnp.sum(ess < 2.0))
    if empty == ess.shape[0]:
        raise ValueError(
            f"no {'bin' if bins is not None else 'point'} received paths: the "
            f"{'bins' if bins is not None else 'points'} lie outside the region the paths reach."
        )
    if empty:
        warnings.warn(
            f"density_response: {empty} of {ess.shape[0]} {'bins' if bins is not None else 'points'} received fewer "
            "than 2 effective paths; their conditional means are NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
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


# --------------------------------------------------------------------------------------
# Stationary responses


@eqx.filter_jit
def _stationary_block(sde, phi, carry, block, t_start, dt, key, baseline, options, static):
    """Advances all paths by one block of segments, accumulating the windowed products.

    Each segment drives the DK step over ``sample_every`` steps, chained through the score
    and the response, with its own key ``fold_in(key, k)``, so noise never repeats; ``ring``
    holds ``eta`` at the last ``L`` segment ends (slot ``k mod L`` holds ``eta_k``). Returns
    the new carry, the block's per-path mean products ``(nW, M, ...)``, the products counted
    per window, and the block's per-path mean of ``phi``.
    """
    segs_per_block, sample_every, qs, ring_len = static
    x, nu, eta, ring, bad, bad_phi = carry
    num = x.shape[0]
    seg_time = sample_every * dt
    path_ids = path_ids_for(num, 0)

    def segment(inner, j):
        x, nu, eta, ring, bad, bad_phi, sums, counts, phi_sum = inner
        k = block * segs_per_block + j + 1
        t_a = t_start + (k - 1) * seg_time
        res = dk_weights(sde, x, nu, eta, path_ids, t_a, dt, jr.fold_in(key, k), sample_every, **options)
        values = apply_phi(phi, res.x)
        phi_ok = jnp.all(jnp.isfinite(values.reshape(num, -1)), axis=1)
        bad_phi = bad_phi | (res.finite & ~phi_ok)
        bad = bad | ~res.finite | ~phi_ok
        keep = lambda a: jnp.where(bad.reshape((-1,) + (1,) * (a.ndim - 1)), 0.0, a)
        centred = keep(values - baseline)
        new_sums, new_counts = [], []
        for w, q in enumerate(qs):
            active = k >= q
            diff = jax.tree.map(lambda e, r: keep(e - r[(k - q) % ring_len]), res.dlogp, ring)
            prod = outer_products(diff, centred)
            new_sums.append(jax.tree.map(lambda s, p: s[w] + jnp.where(active, p, 0.0), sums, prod))
            new_counts.append(counts[w] + active)
        sums = jax.tree.map(lambda *leaves: jnp.stack(leaves), *new_sums)
        ring = jax.tree.map(lambda r, e: r.at[k % ring_len].set(e), ring, res.dlogp)
        inner = (res.x, res.score, res.dlogp, ring, bad, bad_phi, sums, jnp.stack(new_counts), phi_sum + keep(values))
        return inner, None

    probe = outer_products(eta, apply_phi(phi, x))
    sums = jax.tree.map(lambda p: jnp.zeros((len(qs),) + p.shape, p.dtype), probe)
    counts = jnp.zeros((len(qs),), x.dtype)
    phi_sum = jnp.zeros_like(apply_phi(phi, x))
    inner = (x, nu, eta, ring, bad, bad_phi, sums, counts, phi_sum)
    inner, _ = jax.lax.scan(segment, inner, jnp.arange(segs_per_block))
    x, nu, eta, ring, bad, bad_phi, sums, counts, phi_sum = inner
    means = jax.tree.map(lambda s: s / jnp.maximum(counts, 1).reshape((-1,) + (1,) * (s.ndim - 1)), sums)
    return (x, nu, eta, ring, bad, bad_phi), means, counts, phi_sum / segs_per_block


def stationary_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array,
    *,
    dt: float,
    spinup_steps: int,
    num_steps: int,
    windows: Sequence[int],
    key: Key,
    sample_every: int = 1,
    num_blocks: int = 1,
    t0: float = 0.0,
    score0: Array | None = None,
    kernel_rate: KernelRate = 1.0,
    response_mix: float = 0.0,
    mode: str = "matrix_free",
) -> StationaryResponse:
    """Estimates the long-time response ``d/dparam <phi>`` along long paths, for several windows.

    After ``spinup_steps`` steps (which also spin up the DK score), runs ``num_steps``
    more steps and averages over the path and over the sampled steps ``n``

        d/dparam <phi> ~ mean_n (phi(X_n) - c) (dlogp_n - dlogp_{n-W})

    ``c`` being the mean of ``phi`` over the spun-up states (it only
    lowers the variance). The window ``W`` must exceed the decorrelation time; too long a
    window only adds variance, so look for the plateau of ``estimate`` over ``windows``.
    ``dlogp`` is read every ``sample_every`` steps: the path is run as a chain of
    segments of that length (score and response passed on, a fresh key per segment), with a ring buffer of the last ``max(windows)`` steps' ``dlogp``,
    so memory does not depend on ``num_steps``.

    Standard errors are batch means: the run of every path is cut into ``num_blocks``
    consecutive blocks, each (path, block) mean is one batch, and the error is the spread
    of the batch means over ``sqrt(number of batches)``. Paths are independent; blocks of
    one path are nearly so only when much longer than the window and the decorrelation
    time (use ``num_blocks > 1`` with few paths, and blocks several windows long).

    Arguments:
        sde: the SDE.
        phi: observable ``phi(x)`` of one state (scalar or array).
        x0: initial states ``(M, d)``: ``M`` independent long paths.
        dt: time step.
        spinup_steps: steps discarded before averaging (>= 1).
        num_steps: steps averaged over, a multiple of ``sample_every * num_blocks``.
        windows: window lengths ``W`` in steps, multiples of ``sample_every``, at most ``num_steps``.
        key: PRNG key.
        sample_every: steps per segment (``phi`` and ``dlogp`` are sampled at segment ends).
        num_blocks: blocks per path for the batch-means errors.
        t0: initial time; score0: initial score (``None``: unknown, as for ``divergence_kernel``).
        kernel_rate, response_mix, mode: as in ``dkjax.divergence_kernel`` (``"auto"`` is
            chosen once, over the spin-up).

    Returns:
        A ``StationaryResponse``; paths that went non-finite are excluded (whole) and counted.

    Raises:
        ValueError: a window longer than the run or not a multiple of ``sample_every``,
            step counts that do not divide, a non-positive ``dt``, or ``phi`` non-finite on a
            finite path.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.stationary_response(sde, lambda x: x[0] ** 2, jnp.zeros((64, 1)), dt=0.01,
        ...     spinup_steps=500, num_steps=20_000, windows=[100, 200, 400], key=jax.random.key(0),
        ...     sample_every=10, kernel_rate=5.0)
        >>> print(jnp.round(res.estimate.theta, 2))  # one value per window; exact -sigma^2 / (2 theta^2) = -0.125
        [-0.11 -0.13 -0.13]
    """
    if not callable(phi):
        raise TypeError(f"phi must be a callable x -> observable(s); got {type(phi).__name__}.")
    num, _ = check_states(x0)
    if np.ndim(dt) != 0 or not float(dt) > 0 or not math.isfinite(float(dt)):
        raise ValueError(f"dt must be a positive finite number; got {dt!r}.")
    spinup_steps = check_positive("spinup_steps", spinup_steps, integer=True)
    num_steps = check_positive("num_steps", num_steps, integer=True)
    sample_every = check_positive("sample_every", sample_every, integer=True)
    num_blocks = check_positive("num_blocks", num_blocks, integer=True)
    if num_steps % (sample_every * num_blocks):
        raise ValueError(
            f"num_steps ({num_steps}) must be a multiple of sample_every * num_blocks ({sample_every} * {num_blocks})."
        )
    windows = [int(w) for w in np.atleast_1d(np.asarray(windows))]
    if not windows or any(w < 1 or w % sample_every for w in windows):
        raise ValueError(f"windows must be positive multiples of sample_every ({sample_every}); got {windows}.")
    if max(windows) > num_steps:
        raise ValueError(f"windows must not be longer than the run: max(windows) = {max(windows)} > num_steps = {num_steps}.")
    x0 = jnp.asarray(x0)
    dtype = x0.dtype
    t_start = float(t0) + spinup_steps * float(dt)
    check_common(sde, x0, t0, t_start, spinup_steps, key)
    # dt is passed on as given: times recomputed from float boundaries would jitter it.
    t0_arr, dt_arr, spin_key = jnp.asarray(t0, dtype), jnp.asarray(dt, dtype), jr.fold_in(key, 0)
    score0, dlogp0, options, rate = dk_options(
        sde, x0, t0_arr, dt_arr, spinup_steps, spin_key, score0, None, kernel_rate, response_mix, mode
    )
    spin = run_divergence_kernel(sde, x0, score0, dlogp0, jnp.int32(0), t0_arr, dt_arr, spin_key, spinup_steps, options)
    values = apply_phi(phi, spin.x)
    ok = spin.finite & jnp.all(jnp.isfinite(values.reshape(num, -1)), axis=1)
    baseline = jnp.sum(jnp.where(ok.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0), axis=0) / jnp.maximum(jnp.sum(ok), 1)
    qs = tuple(w // sample_every for w in windows)
    ring_len = max(qs)
    # Made from the paths' arrays so they keep their sharding (with several processes, each
    # then holds only its own paths' slots).
    eta = jax.tree.map(jnp.zeros_like, spin.dlogp)
    ring = jax.tree.map(lambda e: jnp.broadcast_to(e, (ring_len,) + e.shape), eta)
    segs_per_block = num_steps // sample_every // num_blocks
    static = (segs_per_block, sample_every, qs, ring_len)
    options = dict(options, point_mass=False)
    carry = (spin.x, spin.score, eta, ring, ~spin.finite, jnp.zeros_like(spin.finite))
    block_means, block_counts, block_values = [], [], []
    for b in range(num_blocks):
        carry, means, counts, phi_mean = _stationary_block(
            sde, phi, carry, jnp.asarray(b), jnp.asarray(t_start, dtype), dt_arr, key, baseline, options, static
        )
        block_means.append(means)
        block_counts.append(counts)
        block_values.append(phi_mean)
    bad, bad_phi = carry[4], carry[5]
    raise_bad_phi(int(jnp.sum(bad_phi)), num)
    num_nonfinite = int(jnp.sum(bad & ~bad_phi))
    warn_nonfinite(num_nonfinite, num, "stationary_response")
    good = ~bad
    counts = jnp.stack(block_counts)  # (B, nW)
    batch_mask = (counts > 0)[:, :, None] & good[None, None, :]  # (B, nW, M)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *block_means)  # leaves (B, nW, M, ...)

    by_window = jax.vmap(batch_means, in_axes=(1, 1))
    estimate = jax.tree.map(lambda leaf: by_window(leaf, batch_mask)[0], stacked)
    stderr = jax.tree.map(lambda leaf: by_window(leaf, batch_mask)[1], stacked)
    num_batches = jnp.sum(batch_mask, axis=(0, 2))
    if int(jnp.min(num_batches)) < 2:
        warnings.warn(
            "stationary_response: fewer than 2 batches for some window; its standard error is NaN. Use more paths "
            "or num_blocks > 1.",
            RuntimeWarning,
            stacklevel=2,
        )
    value, value_se, _ = batch_means(jnp.stack(block_values), jnp.broadcast_to(good, (num_blocks, num)))
    return StationaryResponse(
        windows=jnp.asarray(windows),
        window_times=jnp.asarray(windows, dtype) * dt,
        estimate=estimate,
        stderr=stderr,
        value=value,
        value_stderr=value_se,
        num_paths=int(jnp.sum(good)),
        num_nonfinite=num_nonfinite,
        num_batches=num_batches,
        kernel_rate=rate,
    )

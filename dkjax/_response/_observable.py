"""The response of an observable, ``d/dparam E[phi(X_T)]``, streamed over chunks of paths."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, InitialSampler, Key, KernelRate, Observable, RealScalarLike
from .._engine._estimator import DKResult
from .._sde._abstract import AbstractSDE
from ._results import ResponseResult
from ._statistics import Moments, outer_products
from ._streaming import apply_phi, raise_bad_phi, stream_dk, warn_nonfinite


class _ObservableStats(eqx.Module):
    products: Moments
    values: Moments
    baseline: Array
    num_nonfinite: Array
    num_bad_phi: Array


@eqx.filter_jit
def fold_observable(phi, stats: _ObservableStats | None, result: DKResult, valid: Array, center: bool):
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
    x0: Array | InitialSampler,
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
        stats, last = fold_observable(phi, stats, result, valid, bool(center)), result
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

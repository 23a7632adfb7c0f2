"""Baselines with the interface of the DK responses, for honest comparisons.

- central finite differences with common random numbers (same key, perturbed parameter),
  for observables at a final time and for stationary (time-averaged) observables;
- the pure likelihood-ratio method (``response_mix=1``, kernel-only score);
- pathwise backpropagation through ``diffrax.diffeqsolve`` (Euler, default adjoint) on the
  same Brownian increments as dkjax.
"""

import math
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, InitialSampler, Key, Observable, RealScalarLike
from .._engine._noise import BrownianIncrements
from ._observable import observable_response
from ._results import ResponseResult
from ._stationary import check_stationary_grid
from .._sde._abstract import AbstractSDE, noise_dimension
from .._engine._simulate import check_common, path_ids_for, simulate_paths, time_grid
from ._statistics import Moments, batch_means
from ._streaming import apply_phi, check_chunk, initial_chunks, raise_bad_phi, warn_nonfinite
from .._validation import check_key


def _flat_parameters(sde: AbstractSDE):
    """Parameter entries as one vector, and ``rebuild(vector) -> sde`` and ``to_tree(a) -> pytree``.

    ``to_tree`` maps an array whose axis ``axis`` runs over the entries onto the parameter
    pytree, leaves ``shape[:axis] + param.shape + shape[axis+1:]``.
    """
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:
        raise ValueError("the SDE has no parameters (floating-point array fields).")
    vector = jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])
    sizes = [leaf.size for leaf in leaves]
    splits = np.cumsum(sizes)[:-1].tolist()

    def rebuild(v):
        pieces = [p.reshape(leaf.shape).astype(leaf.dtype) for p, leaf in zip(jnp.split(v, splits), leaves)]
        return eqx.combine(jax.tree.unflatten(treedef, pieces), static)

    def to_tree(a, axis):
        pieces = jnp.split(a, splits, axis=axis)
        shaped = [p.reshape(a.shape[:axis] + leaf.shape + a.shape[axis + 1 :]) for p, leaf in zip(pieces, leaves)]
        return jax.tree.unflatten(treedef, shaped)

    return vector, rebuild, to_tree


def _steps(vector: Array, relative_step: float) -> Array:
    if not (isinstance(relative_step, (int, float)) and 0 < relative_step and math.isfinite(relative_step)):
        raise ValueError(f"relative_step must be a positive finite number; got {relative_step!r}.")
    return relative_step * jnp.maximum(jnp.abs(vector), 1.0)


def _fold(stats, samples: Array, values: Array, valid: Array):
    """Adds per-path samples ``(C, P, ...)`` and values ``(C, ...)``, excluding non-finite paths."""
    flat = lambda a: jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1)
    value_ok = flat(values)
    mask = valid & value_ok & flat(samples)
    new = (Moments.of(samples, mask), Moments.of(values, valid & value_ok), jnp.sum(valid & ~mask))
    if stats is None:
        return new
    return stats[0].merge(new[0]), stats[1].merge(new[1]), stats[2] + new[2]


def _result(stats, to_tree, where: str) -> ResponseResult:
    products, values, bad = stats
    num_bad = int(bad)
    warn_nonfinite(num_bad, int(products.count) + num_bad, where)
    return ResponseResult(
        estimate=to_tree(products.mean, 0),
        stderr=to_tree(products.stderr(), 0),
        value=values.mean,
        value_stderr=values.stderr(),
        num_paths=int(products.count),
        num_nonfinite=num_bad,
    )


def _chunked_result(sde, x0, num_paths, chunk_size, key, t0, t1, num_steps, to_tree, where, chunk_samples):
    """Streams the paths in chunks, folds ``chunk_samples(xs, first_path) -> (samples, values)``.

    Shared by the final-time baselines: the arguments are checked with the first chunk
    (``check_chunk``), the per-path samples are folded into running moments, and the
    result is reported with its non-finite count.
    """
    total, chunk, get = initial_chunks(x0, None, num_paths, chunk_size, key)
    stats = None
    for c in range(math.ceil(total / chunk)):
        xs, _, n_valid = get(c)
        check_chunk(c, sde, xs, t0, t1, num_steps, key)
        samples, values = chunk_samples(xs, c * chunk)
        stats = _fold(stats, samples, values, jnp.arange(chunk) < n_valid)
    return _result(stats, to_tree, where)


@eqx.filter_jit
def _fd_chunk(rebuild, phi, vector, h, x0, path_offset, t0, t1, key, num_steps):
    """Per path, ``(phi(X_T; p + h e_j) - phi(X_T; p - h e_j)) / (2 h_j)`` for every entry ``j``."""
    eye = jnp.eye(vector.shape[0], dtype=vector.dtype)
    path_ids = path_ids_for(x0.shape[0], path_offset)
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)

    def final(v):
        return apply_phi(phi, simulate_paths(rebuild(v), x0, path_ids, t0, dt, key, num_steps))

    plus = jax.vmap(lambda e, hj: final(vector + hj * e))(eye, h)
    minus = jax.vmap(lambda e, hj: final(vector - hj * e))(eye, h)
    diff = (plus - minus) / h.reshape((-1,) + (1,) * (plus.ndim - 1))
    return jnp.moveaxis(diff, 0, 1) / 2, final(vector)


def finite_difference_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array | InitialSampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    relative_step: float = 1e-3,
    num_paths: int | None = None,
    chunk_size: int = 65536,
    t0: RealScalarLike = 0.0,
) -> ResponseResult:
    """Central finite differences of ``E[phi(X_T)]`` with common random numbers.

    Every parameter entry ``p_j`` is moved by ``+-h_j`` with ``h_j = relative_step *
    max(|p_j|, 1)``, and both runs use the same key (the same Brownian increments for
    each path). The per-path differences are i.i.d. over paths, which gives the standard
    errors; the ``O(h^2)`` truncation error is not included in them.

    Arguments:
        sde, phi, x0, t1, num_steps, key, num_paths, chunk_size, t0: as in
            ``dkjax.observable_response`` (a sampler's ``score0`` is ignored).
        relative_step: relative perturbation size.

    Returns:
        A ``ResponseResult`` (``kernel_rate`` is ``None``); non-finite paths are excluded
        and counted.

    Raises:
        ValueError: bad arguments (named), or an SDE without parameters.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.finite_difference_response(sde, lambda x: x[0], jnp.ones((1000, 1)),
        ...                                        t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(f"{float(res.estimate.theta):.2f}")  # d/dtheta E[X_1] = -exp(-1) = -0.37
        -0.37
    """
    check_key(key)
    vector, rebuild, to_tree = _flat_parameters(sde)
    h = _steps(vector, relative_step)
    chunk_samples = lambda xs, first: _fd_chunk(
        rebuild, phi, vector, h, xs, first, jnp.asarray(t0, xs.dtype), jnp.asarray(t1, xs.dtype), key, num_steps
    )
    return _chunked_result(
        sde, x0, num_paths, chunk_size, key, t0, t1, num_steps, to_tree, "finite_difference_response", chunk_samples
    )


@eqx.filter_jit
def _fd_spinup(rebuild, vectors, x0, t0, dt, key, num_steps):
    """The spin-up of every perturbed copy (``(2 P + 1, M, d)`` states)."""
    path_ids = path_ids_for(x0.shape[0], 0)
    return jax.vmap(lambda v: simulate_paths(rebuild(v), x0, path_ids, t0, dt, key, num_steps))(vectors)


# A path whose state leaves this many times the spun-up states' range has diverged, even while
# still finite (Euler-Maruyama on a quadratic drift squares the state every step, so a path
# caught at the end of the run mid-blow-up is finite and its time average astronomical).
_DIVERGENCE_FACTOR = 1e6


def _divergence_bound(xs: Array) -> Array:
    """``_DIVERGENCE_FACTOR * (1 + max |x|)`` over the finite spun-up states of every copy."""
    finite = jnp.where(jnp.isfinite(xs), jnp.abs(xs), 0.0)
    return _DIVERGENCE_FACTOR * (1.0 + jnp.max(finite))


@eqx.filter_jit
def _fd_stationary_block(rebuild, phi, xs, lost_at, vectors, block, t_start, dt, key, bound, static):
    """Advances every perturbed copy by one block; returns the states, the block mean of ``phi``, ``lost_at``.

    Segment ``k`` uses ``fold_in(key, k)`` as ``dkjax.stationary_response`` does, so the
    perturbed runs share their noise with each other and with the DK run. ``lost_at``
    ``(2 P + 1, M)`` is the first segment at whose end a copy's state was non-finite or beyond
    ``bound`` (-1: never).
    """
    segs_per_block, sample_every = static
    seg_time = sample_every * dt
    path_ids = path_ids_for(xs.shape[1], 0)

    def segment(carry, j):
        xs, total, lost_at = carry
        k = block * segs_per_block + j + 1
        t_a = t_start + (k - 1) * seg_time
        run = lambda v, x: simulate_paths(rebuild(v), x, path_ids, t_a, dt, jr.fold_in(key, k), sample_every)
        xs = jax.vmap(run)(vectors, xs)
        lost = ~jnp.all(jnp.abs(xs) <= bound, axis=-1)  # NaN compares False: lost too
        lost_at = jnp.where((lost_at < 0) & lost, k, lost_at)
        return (xs, total + jax.vmap(lambda x: apply_phi(phi, x))(xs), lost_at), None

    zero = jax.vmap(lambda x: apply_phi(phi, x))(xs) * 0.0
    (xs, total, lost_at), _ = jax.lax.scan(segment, (xs, zero, lost_at), jnp.arange(segs_per_block))
    return xs, total / segs_per_block, lost_at


def finite_difference_stationary(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array,
    *,
    dt: float,
    spinup_steps: int,
    num_steps: int,
    key: Key,
    relative_step: float = 1e-2,
    sample_every: int = 1,
    num_blocks: int = 1,
    t0: float = 0.0,
) -> ResponseResult:
    """Central finite differences of the long-time average ``<phi>`` with common random numbers.

    Runs the ``2 P + 1`` copies (every parameter entry moved by ``+-h_j``) of each path
    from ``x0`` on the same noise as ``dkjax.stationary_response`` with the same key,
    discards ``spinup_steps``, and averages ``phi`` every ``sample_every`` steps over
    ``num_steps``. Standard errors are batch means over (path, block), as in
    ``stationary_response``. For chaotic systems the perturbed copies decorrelate, so
    ``relative_step`` must not be tiny.

    A path is lost, excluded whole (all its copies) and counted in ``num_nonfinite``, with a
    warning that names the first sampled step at which one was lost, when any copy's state
    becomes non-finite or leaves ``1e6 * (1 + max |x|)`` (the largest state over all
    copies after the spin-up) at a sampled step: a path caught mid-blow-up at the end of the
    run is still finite, and its time average would swamp the mean.

    Arguments:
        sde, phi, x0, dt, spinup_steps, num_steps, key, sample_every, num_blocks, t0: as in
            ``dkjax.stationary_response``.
        relative_step: ``h_j = relative_step * max(|p_j|, 1)``.

    Returns:
        A ``ResponseResult`` (``value`` is ``<phi>`` at the unperturbed parameters); lost
        paths are excluded and counted in ``num_nonfinite``.

    Raises:
        ValueError: bad arguments (named), as in ``stationary_response``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.finite_difference_stationary(sde, lambda x: x[0] ** 2, jnp.zeros((64, 1)), dt=0.01,
        ...     spinup_steps=500, num_steps=2000, key=jax.random.key(0), relative_step=0.02)
        >>> print(f"{float(res.estimate.theta):.2f}", res.num_nonfinite)  # d/dtheta sigma^2 / (2 theta) = -0.125
        -0.12 0
    """
    spinup_steps, num_steps, sample_every, num_blocks = check_stationary_grid(
        dt, spinup_steps, num_steps, sample_every, num_blocks
    )
    t_start = float(t0) + spinup_steps * float(dt)
    check_common(sde, x0, t0, t_start, spinup_steps, key)
    vector, rebuild, to_tree = _flat_parameters(sde)
    h = _steps(vector, relative_step)
    eye = jnp.eye(vector.shape[0], dtype=vector.dtype) * h[:, None]
    vectors = jnp.concatenate([vector[None] + eye, vector[None] - eye, vector[None]])
    static = (num_steps // sample_every // num_blocks, sample_every)
    runs = _fd_stationary_means(rebuild, phi, vectors, jnp.asarray(x0), (t0, t_start, dt), key, spinup_steps, static,
                                num_blocks)  # fmt: skip
    return _fd_stationary_result(*runs, h, to_tree, sample_every)


def _fd_stationary_means(rebuild, phi, vectors, x0, times, key, spinup_steps: int, static, num_blocks: int):
    """Every copy's block means of ``phi`` after the spin-up, ``(B, 2P + 1, M, ...)``, with the final
    states, each path's first lost block (``-1``: never) and the divergence bound."""
    t0, t_start, dt = times
    # dt is passed on as given, as in stationary_response: the same grid, the same noise.
    t0_arr, dt_arr = jnp.asarray(t0, x0.dtype), jnp.asarray(dt, x0.dtype)
    xs = _fd_spinup(rebuild, vectors, x0, t0_arr, dt_arr, jr.fold_in(key, 0), spinup_steps)
    bound = _divergence_bound(xs)
    lost_at = jnp.where(jnp.all(jnp.isfinite(xs), axis=-1), -1, 0)  # 0: lost in the spin-up
    means = []
    for b in range(num_blocks):
        xs, mean, lost_at = _fd_stationary_block(
            rebuild, phi, xs, lost_at, vectors, jnp.asarray(b), jnp.asarray(t_start, x0.dtype), dt_arr, key, bound,
            static,
        )  # fmt: skip
        means.append(mean)
    return jnp.stack(means), xs, lost_at, bound


def _fd_stationary_result(means, xs, lost_at, bound, h, to_tree, sample_every: int) -> ResponseResult:
    """The central differences' batch-mean estimate from the block means, lost paths excluded and reported."""
    num_blocks, num_params, num = means.shape[0], h.shape[0], means.shape[2]
    flat = means.reshape(means.shape[:3] + (-1,))
    ok = jnp.all(jnp.isfinite(flat), axis=(0, 1, 3)) & jnp.all(lost_at < 0, axis=0)
    phi_ok = jnp.all(jnp.isfinite(flat[:, -1]), axis=(0, 2)) | ~jnp.all(jnp.isfinite(xs[-1]), axis=1) | (lost_at[-1] >= 0)
    raise_bad_phi(int(jnp.sum(~phi_ok)), num)
    diffs = (means[:, :num_params] - means[:, num_params : 2 * num_params]) / (
        2 * h.reshape((1, -1) + (1,) * (means.ndim - 2))
    )
    diffs = jnp.moveaxis(diffs, 1, 2)  # (B, M, P, ...)
    mask = jnp.broadcast_to(ok, (num_blocks, num))
    estimate, stderr, _ = batch_means(diffs, mask)
    value, value_se, _ = batch_means(means[:, -1], mask)
    num_bad = int(jnp.sum(~ok))
    if num_bad:
        lost = jnp.where(lost_at >= 0, lost_at, jnp.iinfo(lost_at.dtype).max)
        first = int(jnp.min(lost)) * sample_every
        warnings.warn(
            f"finite_difference_stationary: {num_bad} of {num} paths were lost (a copy's state went non-finite or "
            f"beyond {float(bound):.3g}, first at step {first} after the spin-up) and were excluded from the "
            "averages (see num_nonfinite on the result). Use a smaller time step or a smaller relative_step.",
            RuntimeWarning,
            stacklevel=3,
        )
    return ResponseResult(
        estimate=to_tree(estimate, 0),
        stderr=to_tree(stderr, 0),
        value=value,
        value_stderr=value_se,
        num_paths=int(jnp.sum(ok)),
        num_nonfinite=num_bad,
    )


def likelihood_ratio_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array | InitialSampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    **kwargs,
) -> ResponseResult:
    """The classic likelihood-ratio (score-function) estimator of ``d/dparam E[phi(X_T)]``.

    ``dkjax.observable_response`` with ``response_mix=1`` (the response uses only the
    transition-kernel derivative ``d/dparam log k``) and ``kernel_rate = 1 / dt`` (the
    score is kernel-only). Fine for drift parameters over short times; for parameters
    inside the diffusion its variance grows like the number of steps.

    Arguments:
        sde, phi, x0, t1, num_steps, key, t0: as in ``observable_response``.
        **kwargs: other ``observable_response`` arguments (not ``kernel_rate`` or
            ``response_mix``).

    Returns:
        A ``ResponseResult``.

    Raises:
        ValueError: as ``observable_response``, or if ``kernel_rate``/``response_mix`` are given.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.likelihood_ratio_response(sde, lambda x: x[0], jnp.ones((10_000, 1)),
        ...                                       t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(bool(abs(res.estimate.theta + 0.366) < 3 * res.stderr.theta))  # exact -0.366
        True
    """
    for fixed in ("kernel_rate", "response_mix"):
        if fixed in kwargs:
            raise ValueError(f"{fixed} is fixed by the likelihood-ratio method; do not pass it.")
    rate = num_steps / (float(t1) - float(t0))
    return observable_response(
        sde, phi, x0, t1=t1, num_steps=num_steps, key=key, t0=t0, kernel_rate=rate, response_mix=1.0, **kwargs
    )


@eqx.filter_jit
def _backprop_chunk(rebuild, phi, vector, x0, path_ids, t0, t1, key, num_steps, noise_dim):
    """Per path, ``d phi(X_T) / d params`` by reverse mode through ``diffrax.diffeqsolve``."""
    ts = t0 + (t1 - t0) * jnp.arange(num_steps + 1, dtype=x0.dtype) / num_steps

    def solve(v, x, path_id):
        sde = rebuild(v)
        bm = BrownianIncrements(key, t0, t1, num_steps, dim=noise_dim, path_id=path_id, dtype=x0.dtype)
        sol = diffrax.diffeqsolve(
            sde.terms(bm), diffrax.Euler(), t0, t1, None, x,
            stepsize_controller=diffrax.StepTo(ts=ts), saveat=diffrax.SaveAt(t1=True), max_steps=num_steps,
        )
        value = jnp.asarray(phi(sol.ys[-1]), x0.dtype)
        return value.reshape(-1), value

    def per_path(x, path_id):
        jac, value = jax.jacrev(solve, has_aux=True)(vector, x, path_id)
        return jac.T.reshape((vector.shape[0],) + value.shape), value

    return jax.vmap(per_path)(x0, path_ids)


def backprop_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array | InitialSampler,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    num_paths: int | None = None,
    chunk_size: int = 4096,
    t0: RealScalarLike = 0.0,
) -> ResponseResult:
    """Pathwise derivative ``E[d phi(X_T) / dparam]`` by backpropagation through diffrax.

    Solves each path with ``diffrax.diffeqsolve`` (Euler, constant step, default adjoint)
    driven by ``dkjax.BrownianIncrements``, i.e. exactly the paths of ``dkjax.simulate``
    with the same key, and differentiates ``phi(X_T)`` in reverse mode. Valid when
    ``phi`` and the flow are smooth; for chaotic systems the pathwise derivative grows
    like ``exp(lambda T)`` and the estimate diverges with ``T``. Memory per path grows
    with ``num_steps`` (the anchor the DK method beats), hence the smaller default chunk.

    Arguments:
        sde, phi, x0, t1, num_steps, key, num_paths, chunk_size, t0: as in
            ``dkjax.observable_response`` (a sampler's ``score0`` is ignored).

    Returns:
        A ``ResponseResult`` (``kernel_rate`` is ``None``); paths whose value or gradient
        is non-finite are excluded and counted.

    Raises:
        ValueError: bad arguments (named), or an SDE without parameters.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.backprop_response(sde, lambda x: x[0], jnp.ones((1000, 1)),
        ...                               t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(f"{float(res.estimate.theta):.2f}")  # d/dtheta E[X_1] = -exp(-1) = -0.37
        -0.37
    """
    check_key(key)
    vector, rebuild, to_tree = _flat_parameters(sde)

    def chunk_samples(xs, first):
        _, noise_dim = noise_dimension(sde, jnp.asarray(t0, xs.dtype), xs[0])
        path_ids = first + jnp.arange(xs.shape[0], dtype=jnp.int32)
        return _backprop_chunk(
            rebuild, phi, vector, xs, path_ids, jnp.asarray(t0, xs.dtype), jnp.asarray(t1, xs.dtype), key,
            num_steps, noise_dim,
        )  # fmt: skip

    return _chunked_result(
        sde, x0, num_paths, chunk_size, key, t0, t1, num_steps, to_tree, "backprop_response", chunk_samples
    )

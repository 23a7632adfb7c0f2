"""The long-time response ``d/dparam <phi>`` along long paths, windowed, with batch-means errors.

A spin-up resolves the options and the baseline; then every block of segments runs in one
compiled call: each segment drives the DK step over ``sample_every`` steps on a key of its
own, and a ring of the last segment ends' ``dlogp`` gives the windowed products.
"""

import math
import warnings
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Key, KernelRate, Observable, Params
from .._engine._estimator import dk_options, dk_weights, run_divergence_kernel
from .._engine._simulate import check_common, path_ids_for
from .._sde._abstract import AbstractSDE
from .._validation import check_positive
from ._results import StationaryResponse
from ._statistics import batch_means, outer_products
from ._streaming import apply_phi, raise_bad_phi, warn_nonfinite


class _Paths(eqx.Module):
    """What a path carries from segment to segment (and block to block).

    ``ring`` holds ``dlogp`` at the last ``L`` segment ends (slot ``k mod L`` holds segment
    ``k``'s); ``bad`` marks paths that went non-finite (excluded whole), ``bad_phi`` those
    where ``phi`` did on finite states.
    """

    x: Array
    score: Array
    dlogp: Params
    ring: Params
    bad: Array
    bad_phi: Array


class _Sums(eqx.Module):
    """One block's per-path sums: windowed products ``(nW, M, ...)``, their counts ``(nW,)``, ``phi``."""

    products: Params
    counts: Array
    phi: Array


class _Windows(eqx.Module):
    """Static layout of the segments: steps per segment, windows in segments, ring length."""

    segs_per_block: int = eqx.field(static=True)
    sample_every: int = eqx.field(static=True)
    qs: tuple[int, ...] = eqx.field(static=True)
    ring_len: int = eqx.field(static=True)


def check_stationary_grid(dt, spinup_steps, num_steps, sample_every, num_blocks) -> tuple[int, int, int, int]:
    """Checks the step size and step counts of a long run; returns the counts as ints.

    Raises:
        ValueError: a non-positive or non-finite ``dt``, a non-positive count, or ``num_steps``
            not a multiple of ``sample_every * num_blocks``.
    """
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
    return spinup_steps, num_steps, sample_every, num_blocks


def auto_windows(sample_every: int, num_steps: int, num_blocks: int) -> list[int]:
    """The windows ``windows="auto"`` tries: a sqrt(2)-geometric grid of whole segments.

    From one segment (``sample_every`` steps) up to a quarter of a block
    (``num_steps / num_blocks / 4``), so that every block holds at least four of the longest
    windows and batch means stay nearly independent.
    """
    longest = max(1, num_steps // sample_every // num_blocks // 4)
    segments, q = [], 1.0
    while round(q) <= longest:
        if round(q) not in segments:
            segments.append(round(q))
        q *= math.sqrt(2.0)
    if longest > 1.2 * segments[-1]:
        segments.append(longest)
    else:
        segments[-1] = longest
    return [n * sample_every for n in segments]


def _check_arguments(phi, dt, spinup_steps, num_steps, windows, sample_every, num_blocks, plateau_threshold):
    """Checks the arguments but the SDE, states and key (``check_common``, on the spin-up's grid).

    Returns ``(spinup_steps, num_steps, windows, sample_every, num_blocks, auto)``.
    """
    if not callable(phi):
        raise TypeError(f"phi must be a callable x -> observable(s); got {type(phi).__name__}.")
    spinup_steps, num_steps, sample_every, num_blocks = check_stationary_grid(
        dt, spinup_steps, num_steps, sample_every, num_blocks
    )
    if not (isinstance(plateau_threshold, (int, float)) and 0 < plateau_threshold < math.inf):
        raise ValueError(f"plateau_threshold must be a positive finite number; got {plateau_threshold!r}.")
    auto = isinstance(windows, str)
    if auto:
        if windows != "auto":
            raise ValueError(f"windows must be 'auto' or a sequence of window lengths in steps; got {windows!r}.")
        return spinup_steps, num_steps, auto_windows(sample_every, num_steps, num_blocks), sample_every, num_blocks, auto
    windows = [int(w) for w in np.atleast_1d(np.asarray(windows))]
    if not windows or any(w < 1 or w % sample_every for w in windows):
        raise ValueError(f"windows must be positive multiples of sample_every ({sample_every}); got {windows}.")
    if max(windows) > num_steps:
        raise ValueError(f"windows must not be longer than the run: max(windows) = {max(windows)} > num_steps = {num_steps}.")
    return spinup_steps, num_steps, windows, sample_every, num_blocks, auto


def _masked_mean(values: Array, ok: Array) -> Array:
    """The mean of ``values`` over the paths where ``ok`` holds."""
    return jnp.sum(jnp.where(ok.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0), axis=0) / jnp.maximum(jnp.sum(ok), 1)


def _add_windows(products, counts, dlogp, ring, centred, keep, k, layout: _Windows):
    """Adds ``centred * (dlogp_k - dlogp_{k-q})`` for each window of ``q`` segments that has begun."""
    new_products, new_counts = [], []
    for w, q in enumerate(layout.qs):
        active = k >= q
        diff = jax.tree.map(lambda e, r: keep(e - r[(k - q) % layout.ring_len]), dlogp, ring)
        prod = outer_products(diff, centred)
        new_products.append(jax.tree.map(lambda s, p: s[w] + jnp.where(active, p, 0.0), products, prod))
        new_counts.append(counts[w] + active)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *new_products), jnp.stack(new_counts)


class _Segments(eqx.Module):
    """The fixed inputs of the run after the spin-up; ``segment(paths, sums, k)`` runs segment ``k``.

    Segment ``k`` (counted from 1 over the whole run) drives ``sample_every`` DK steps from
    ``t_start + (k - 1) sample_every dt`` on its own key ``fold_in(key, k)``, so noise never repeats.
    """

    sde: AbstractSDE
    phi: Observable
    baseline: Array
    options: dict
    t_start: Array
    dt: Array
    key: Key
    layout: _Windows

    def segment(self, paths: _Paths, sums: _Sums, k) -> tuple[_Paths, _Sums]:
        """Advances every path by segment ``k`` and adds its windowed products."""
        num, layout = paths.x.shape[0], self.layout
        t_a = self.t_start + (k - 1) * (layout.sample_every * self.dt)
        res = dk_weights(
            self.sde, paths.x, paths.score, paths.dlogp, path_ids_for(num, 0), t_a, self.dt, jr.fold_in(self.key, k),
            layout.sample_every, **self.options,
        )  # fmt: skip
        values = apply_phi(self.phi, res.x)
        phi_ok = jnp.all(jnp.isfinite(values.reshape(num, -1)), axis=1)
        bad_phi = paths.bad_phi | (res.finite & ~phi_ok)
        bad = paths.bad | ~res.finite | ~phi_ok
        keep = lambda a: jnp.where(bad.reshape((-1,) + (1,) * (a.ndim - 1)), 0.0, a)
        products, counts = _add_windows(
            sums.products, sums.counts, res.dlogp, paths.ring, keep(values - self.baseline), keep, k, layout
        )
        ring = jax.tree.map(lambda r, e: r.at[k % layout.ring_len].set(e), paths.ring, res.dlogp)
        return _Paths(res.x, res.score, res.dlogp, ring, bad, bad_phi), _Sums(products, counts, sums.phi + keep(values))


@eqx.filter_jit
def _stationary_block(run: _Segments, paths: _Paths, block):
    """Advances all paths by one block of segments, accumulating the windowed products.

    Returns the new paths, the block's per-path mean products ``(nW, M, ...)``, the products
    counted per window, and the block's per-path mean of ``phi``.
    """
    layout = run.layout
    probe = outer_products(paths.dlogp, apply_phi(run.phi, paths.x))
    sums = _Sums(
        products=jax.tree.map(lambda p: jnp.zeros((len(layout.qs),) + p.shape, p.dtype), probe),
        counts=jnp.zeros((len(layout.qs),), paths.x.dtype),
        phi=jnp.zeros_like(apply_phi(run.phi, paths.x)),
    )

    def segment(state, j):
        return run.segment(*state, block * layout.segs_per_block + j + 1), None

    (paths, sums), _ = jax.lax.scan(segment, (paths, sums), jnp.arange(layout.segs_per_block))
    counts = sums.counts
    means = jax.tree.map(lambda s: s / jnp.maximum(counts, 1).reshape((-1,) + (1,) * (s.ndim - 1)), sums.products)
    return paths, means, counts, sums.phi / layout.segs_per_block


def _spin_up(sde, phi, x0, t0, dt, spinup_steps, key, score0, kernel_rate, response_mix, mode):
    """The spin-up run, which also resolves the options; returns ``(spin, baseline, options, rate)``.

    The baseline is the mean of ``phi`` over the spun-up paths where it is finite.
    """
    dtype = x0.dtype
    # dt is passed on as given: times recomputed from float boundaries would jitter it.
    t0_arr, dt_arr, spin_key = jnp.asarray(t0, dtype), jnp.asarray(dt, dtype), jr.fold_in(key, 0)
    score0, dlogp0, options, rate = dk_options(
        sde, x0, t0_arr, dt_arr, spinup_steps, spin_key, score0, None, kernel_rate, response_mix, mode
    )
    spin = run_divergence_kernel(sde, x0, score0, dlogp0, jnp.int32(0), t0_arr, dt_arr, spin_key, spinup_steps, options)
    values = apply_phi(phi, spin.x)
    ok = spin.finite & jnp.all(jnp.isfinite(values.reshape(x0.shape[0], -1)), axis=1)
    return spin, _masked_mean(values, ok), dict(options, point_mass=False), rate


def _initial_paths(spin, ring_len: int) -> _Paths:
    """The spun-up paths with ``dlogp`` restarted at zero and a ring of zeros."""
    # Made from the paths' arrays so they keep their sharding (with several processes, each
    # then holds only its own paths' slots).
    dlogp = jax.tree.map(jnp.zeros_like, spin.dlogp)
    ring = jax.tree.map(lambda e: jnp.broadcast_to(e, (ring_len,) + e.shape), dlogp)
    return _Paths(spin.x, spin.score, dlogp, ring, bad=~spin.finite, bad_phi=jnp.zeros_like(spin.finite))


def _run_blocks(run: _Segments, paths: _Paths, num_blocks: int):
    """``num_blocks`` blocks from the spun-up ``paths``: the final paths, and per block its window sums
    (the lists ``(means, counts, phi means)`` that ``_batch_statistics`` reads)."""
    block_means, block_counts, block_values = [], [], []
    for b in range(num_blocks):
        paths, means, counts, phi_mean = _stationary_block(run, paths, jnp.asarray(b))
        block_means.append(means)
        block_counts.append(counts)
        block_values.append(phi_mean)
    return paths, (block_means, block_counts, block_values)


def _batch_statistics(block_means, block_counts, block_values, good, num_blocks):
    """Batch means over (block, path) per window.

    Returns ``(estimate, stderr, num_batches, value, value_se, diff_mean, diff_se)``; the last two
    are, per leaf, ``(nW, nW) + entry shape``: the mean and standard error of ``estimate[j] -
    estimate[i]`` over the batches both windows share, so the correlation of the windows
    (they are read off the same paths) is in the error.
    """
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
            stacklevel=3,
        )
    value, value_se, _ = batch_means(jnp.stack(block_values), jnp.broadcast_to(good, (num_blocks, good.shape[0])))
    diff_mean = jax.tree.map(lambda leaf: _window_differences(leaf, batch_mask)[0], stacked)
    diff_se = jax.tree.map(lambda leaf: _window_differences(leaf, batch_mask)[1], stacked)
    return estimate, stderr, num_batches, value, value_se, diff_mean, diff_se


@jax.jit
def _window_differences(leaf, batch_mask):
    """Per pair of windows ``(i, j)``, batch means of ``leaf[:, j] - leaf[:, i]``: mean and error ``(nW, nW, ...)``."""

    def pair(i, j):
        mean, se, _ = batch_means(leaf[:, j] - leaf[:, i], batch_mask[:, i] & batch_mask[:, j])
        return mean, se

    index = jnp.arange(leaf.shape[1])
    return jax.vmap(lambda i: jax.vmap(lambda j: pair(i, j))(index))(index)


def _entry_name(path, shape, flat_index) -> str:
    """``d/dforcing`` or ``d/dmatrix[0, 1]``: a parameter entry of the flattened estimate."""
    name = ".".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)
    if len(shape) == 0:
        return f"d/d{name}"
    return f"d/d{name}[" + ", ".join(str(int(k)) for k in np.unravel_index(flat_index, shape)) + "]"


def family_threshold(threshold: float, comparisons: int) -> float:
    """``threshold`` raised for ``comparisons`` comparisons (Bonferroni): same chance of a false move.

    One comparison at ``threshold`` standard errors has the two-sided level ``alpha``; each of
    ``n`` comparisons is judged at ``alpha / n``, so a window on the plateau is rejected by chance
    with probability at most ``alpha`` however many windows and entries are compared.
    """
    alpha = 2.0 * (1.0 - NormalDist().cdf(threshold))
    return NormalDist().inv_cdf(1.0 - alpha / (2.0 * max(int(comparisons), 1)))


def choose_window(windows, diff_mean, diff_se, threshold: float):
    """The shortest window past which the estimate no longer moves beyond its errors.

    Window ``i`` is on the plateau when, for every longer window ``j`` and every entry, the
    difference ``estimate[j] - estimate[i]`` is at most ``family_threshold(threshold, n)``
    standard errors of that difference, ``n`` being the number of those comparisons (NaN
    errors count as moves). Returns ``(index, plateau, worst)``: the chosen window's index into
    ``windows`` (the longest one when no plateau is found), whether a plateau was found, and,
    when it was not, ``(name, i, j, delta, in_errors, threshold used)`` for the largest move
    between the two longest windows.
    """
    order = [int(i) for i in np.argsort(np.asarray(windows), kind="stable")]
    leaves = jax.tree_util.tree_flatten_with_path(diff_mean)[0]
    ses = jax.tree.leaves(diff_se)
    flat = [(path, np.asarray(m).reshape(m.shape[:2] + (-1,)), np.asarray(se).reshape(m.shape[:2] + (-1,)), m.shape[2:])
            for (path, m), se in zip(leaves, ses)]
    entries = sum(m.shape[2] for _, m, _, _ in flat)

    def moved(i, j, z):
        return any(bool(np.any(~(np.abs(m[i, j]) <= z * se[i, j]))) for _, m, se, _ in flat)

    for rank, i in enumerate(order[:-1]):
        longer = order[rank + 1 :]
        z = family_threshold(threshold, entries * len(longer))
        if not any(moved(i, j, z) for j in longer):
            return i, True, None
    last = order[-1]
    if len(order) < 2:
        return last, False, None
    i, worst = order[-2], None
    for path, m, se, shape in flat:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(m[i, last]) / se[i, last]
        for e in range(m.shape[2]):
            score = np.inf if not np.isfinite(ratio[e]) else ratio[e]
            if worst is None or score > worst[0]:
                worst = (score, _entry_name(path, shape, e), float(m[i, last, e]), float(ratio[e]))
    return last, False, (worst[1], i, last, worst[2], worst[3], family_threshold(threshold, entries))


def _warn_no_plateau(worst, windows, dt, auto: bool) -> None:
    name, i, j, delta, in_errors, threshold = worst
    advice = (
        f"windows='auto' tries windows up to a quarter of a block (num_steps / num_blocks / 4 = {windows[j]} steps): "
        "run longer (num_steps) or use fewer blocks"
        if auto
        else "pass longer windows (at most num_steps, a few times shorter than a block) or run longer"
    )
    warnings.warn(
        f"stationary_response: no plateau within the windows tried: from W = {windows[i]} to the longest window "
        f"W = {windows[j]} steps ({windows[j] * dt:g} time units) the estimate of {name} moved by {delta:.3g}, "
        f"{in_errors:.1f} standard errors of the difference (threshold {threshold:.2f}). The result reports the "
        f"longest window (plateau=False); {advice}.",
        RuntimeWarning,
        stacklevel=3,
    )


def stationary_response(
    sde: AbstractSDE,
    phi: Observable,
    x0: Array,
    *,
    dt: float,
    spinup_steps: int,
    num_steps: int,
    windows: Sequence[int] | Literal["auto"],
    key: Key,
    sample_every: int = 1,
    num_blocks: int = 1,
    t0: float = 0.0,
    score0: Array | None = None,
    kernel_rate: KernelRate = 1.0,
    response_mix: float = 0.0,
    mode: str = "matrix_free",
    plateau_threshold: float = 2.0,
) -> StationaryResponse:
    """Estimates the long-time response ``d/dparam <phi>`` along long paths, and chooses the window.

    After ``spinup_steps`` steps (which also spin up the DK score), runs ``num_steps``
    more steps and averages over the path and over the sampled steps ``n``

        d/dparam <phi> ~ mean_n (phi(X_n) - c) (dlogp_n - dlogp_{n-W})

    ``c`` being the mean of ``phi`` over the spun-up states (it only lowers the variance).
    A window ``W`` estimates the response to moving the parameters over the last ``W``
    steps only: too short a window truncates the response (a bias), too long a one only
    adds variance (it grows about linearly in ``W``). The estimate rises to a plateau once
    ``W`` exceeds the decorrelation time.

    Every window is estimated from the same run, and the window used is chosen on that
    plateau: the shortest window whose estimate differs from that of every longer window by
    at most ``plateau_threshold`` standard errors of the difference, in every entry. That
    threshold is for one comparison; for ``n`` comparisons (longer windows times entries) it is
    raised so that their family has the same chance of a false move (Bonferroni: 2 becomes 2.8
    for 10, 3.3 for 40). The differences are batch means over the same (path, block)
    batches, so their errors account for the windows sharing paths (they are far smaller than
    the two errors combined). When no
    window qualifies, the longest one is reported with ``plateau=False`` and a
    ``RuntimeWarning`` names it and how far the estimate still moved. ``windows="auto"``
    tries a sqrt(2)-geometric grid from one segment to a quarter of a block
    (``num_steps / num_blocks / 4`` steps, so that blocks stay several windows long).

    ``dlogp`` is read every ``sample_every`` steps: the path is run as a chain of segments of
    that length (score and response passed on, a fresh key per segment), with a ring buffer
    of the last ``max(windows)`` steps' ``dlogp``, so memory does not depend on ``num_steps``.

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
        windows: window lengths ``W`` in steps, multiples of ``sample_every``, at most
            ``num_steps``; or ``"auto"`` (see above).
        key: PRNG key.
        sample_every: steps per segment (``phi`` and ``dlogp`` are sampled at segment ends).
        num_blocks: blocks per path for the batch-means errors.
        t0: initial time; score0: initial score (``None``: unknown, as for ``divergence_kernel``).
        kernel_rate, response_mix, mode: as in ``dkjax.divergence_kernel`` (``"auto"`` is
            chosen once, over the spin-up).
        plateau_threshold: how many standard errors of the difference between two windows'
            estimates count as the estimate still moving, for one comparison (2 by default;
            raised for many, see above).

    Returns:
        A ``StationaryResponse``: the estimate at every window (the plateau curve), the chosen
        window (``window``, ``window_index``, ``chosen_estimate``, ``chosen_stderr``) and whether
        a plateau was found (``plateau``); paths that went non-finite are excluded (whole)
        and counted.

    Raises:
        ValueError: a window longer than the run or not a multiple of ``sample_every``,
            ``windows`` a string other than ``"auto"``, a non-positive ``plateau_threshold``,
            step counts that do not divide, a non-positive ``dt``, or ``phi`` non-finite on a
            finite path.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.stationary_response(sde, lambda x: x[0] ** 2, jnp.zeros((64, 1)), dt=0.01,
        ...     spinup_steps=500, num_steps=20_000, windows="auto", key=jax.random.key(0),
        ...     sample_every=10, kernel_rate=5.0)
        >>> theta, se = float(res.chosen_estimate.theta), float(res.chosen_stderr.theta)
        >>> print(f"W = {res.window_time:.1f}, plateau {res.plateau}: {theta:.2f} +- {se:.2f}")  # exact -0.125
        W = 2.3, plateau True: -0.13 +- 0.01
    """
    spinup_steps, num_steps, windows, sample_every, num_blocks, auto = _check_arguments(
        phi, dt, spinup_steps, num_steps, windows, sample_every, num_blocks, plateau_threshold
    )
    t_start = float(t0) + spinup_steps * float(dt)
    num, _ = check_common(sde, x0, t0, t_start, spinup_steps, key)
    x0 = jnp.asarray(x0)
    dtype = x0.dtype
    spin, baseline, options, rate = _spin_up(
        sde, phi, x0, t0, dt, spinup_steps, key, score0, kernel_rate, response_mix, mode
    )
    qs = tuple(w // sample_every for w in windows)
    layout = _Windows(num_steps // sample_every // num_blocks, sample_every, qs, max(qs))
    run = _Segments(sde, phi, baseline, options, jnp.asarray(t_start, dtype), jnp.asarray(dt, dtype), key, layout)
    paths, blocks = _run_blocks(run, _initial_paths(spin, layout.ring_len), num_blocks)
    raise_bad_phi(int(jnp.sum(paths.bad_phi)), num)
    num_nonfinite = int(jnp.sum(paths.bad & ~paths.bad_phi))
    warn_nonfinite(num_nonfinite, num, "stationary_response")
    good = ~paths.bad
    estimate, stderr, num_batches, value, value_se, diff_mean, diff_se = _batch_statistics(*blocks, good, num_blocks)
    index, plateau, worst = choose_window(windows, diff_mean, diff_se, plateau_threshold)
    if worst is not None:
        _warn_no_plateau(worst, windows, float(dt), auto)
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
        window_index=index,
        plateau=plateau,
        difference_stderr=jax.tree.map(lambda se: se[index], diff_se),
    )

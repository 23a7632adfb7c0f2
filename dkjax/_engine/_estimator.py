"""The divergence-kernel (DK) estimator of the score and the density's parameter derivative."""

import dataclasses
import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Covectors, Float, Int, Key, KernelRate, Params, RealScalarLike, States
from ._dk_step import nonfinite_paths, dk_run
from ._driver import AbstractFold
from ._jacobian import AbstractJacobian, MatrixFree, as_jacobian
from ._kernel_rate import ConstantRate, as_kernel_rate
from .._sde._abstract import AbstractSDE, parameters
from ._simulate import check_common, path_ids_for, time_grid
from .._validation import check_choice, check_finite, is_concrete

Mode = Literal["matrix_free", "exact"] | AbstractJacobian
_ON_NONFINITE = ("warn", "raise", "ignore")
# Above this |A^T w| / |w| the matrix-free expansion's truncation (about r^(order + 1) of the
# pushforward per step) is no longer small: reported with a warning.
_EXPANSION_WARNING_RATIO = 0.3


class DKResult(eqx.Module):
    """Final states and divergence-kernel weights of every path.

    Attributes:
        x: final states, shape ``(num_paths, d)``.
        score: score weights, ``E[score | x] = grad_x log p_T(x)``, shape ``(num_paths, d)``.
        dlogp: response weights, a pytree shaped like ``dkjax.parameters(sde)`` with a
            leading ``num_paths`` axis on every leaf: ``E[dlogp | x] = d/dparam log p_T(x)``.
        nonfinite_step: per path, the first step at which its state or score became
            non-finite, or ``-1`` if it stayed finite (a non-finite ``dlogp`` alone is
            reported as the last step). Such paths are kept, not removed: average over
            ``result.finite`` paths or fix the cause (smaller ``dt``, larger
            ``kernel_rate``).
        kernel_rate: the kernel rate used (the chosen value for ``kernel_rate="auto"``;
            ``None`` for a schedule given as a callable).
        expansion_ratio: matrix-free mode only (``None`` for dense Jacobians): per path, the
            largest ``|A^T w| / |w|`` of any step, ``A = J - I``. The expansion of ``J^{-T}``
            is accurate to about ``expansion_ratio^(order + 1)`` relative per step; values
            above 0.3 are reported with a warning (use a smaller ``dt`` or dense Jacobians).

    Example:
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), jnp.zeros((1000, 1)),
        ...                               t1=1.0, num_steps=50, key=jax.random.key(0))
        >>> print(res.x.shape, res.score.shape, res.dlogp.theta.shape, int(res.finite.sum()))
        (1000, 1) (1000, 1) (1000,) 1000
    """

    x: States
    score: Covectors
    dlogp: Params
    nonfinite_step: Int[Array, " paths"]
    kernel_rate: float | None = eqx.field(static=True, default=None)
    expansion_ratio: Float[Array, " paths"] | None = None

    @property
    def finite(self) -> Array:
        """Boolean mask of the paths that stayed finite."""
        return self.nonfinite_step < 0

    @property
    def num_nonfinite(self) -> Array:
        """How many paths went non-finite."""
        return jnp.sum(self.nonfinite_step >= 0)


class PerPathResponse(AbstractFold):
    """Adds every path's response increment to its own ``dlogp`` (the estimator's weights)."""

    def update(self, eta, n, output):
        return jax.tree.map(jnp.add, eta, output[1])


def dk_weights(sde, x0, score0, dlogp0, path_ids, t0, dt, key, num_steps, *, jacobian, kernel_rate,
               use_kernel_score, response_mix, point_mass) -> DKResult:  # fmt: skip
    """The DK weights of ``num_steps`` steps of ``t0 + n dt`` (unchecked, untransformed: for jitted callers)."""
    x, nu, eta, bad_step, ratio = dk_run(
        sde, x0, score0, path_ids, t0, dt, key, num_steps, jacobian=jacobian, kernel_rate=kernel_rate,
        use_kernel_score=use_kernel_score, response_mix=response_mix, point_mass=point_mass,
        fold=PerPathResponse(), acc=dlogp0,
    )  # fmt: skip
    bad_step = jnp.where((bad_step < 0) & nonfinite_paths(eta), jnp.int32(num_steps - 1), bad_step)
    ratio = ratio if isinstance(jacobian, MatrixFree) else None
    return DKResult(x=x, score=nu, dlogp=eta, nonfinite_step=bad_step, expansion_ratio=ratio)


@eqx.filter_jit
def run_divergence_kernel(sde, x0, score0, dlogp0, path_offset, t0, dt, key, num_steps, options):
    # Path ids made inside the jit are sharded like x0, also across processes.
    return dk_weights(sde, x0, score0, dlogp0, path_ids_for(x0.shape[0], path_offset), t0, dt, key, num_steps, **options)


@jax.jit
def _expansion_summary(ratio, finite):
    """The largest ratio over finite paths and how many exceed the warning level (one compiled call)."""
    ratio = jnp.where(finite, ratio, 0.0)
    return jnp.max(ratio), jnp.sum(ratio > _EXPANSION_WARNING_RATIO)


def report_expansion(result: DKResult) -> None:
    """Warns when the matrix-free expansion of ``J^{-T}`` was used outside its range of validity."""
    if result.expansion_ratio is None or not is_concrete(result.expansion_ratio):
        return
    ratio, count = (float(v) for v in _expansion_summary(result.expansion_ratio, result.finite))
    if count:
        warnings.warn(
            f"the matrix-free expansion of J^-T is biased here: |A^T w| / |w| reached {ratio:.3g} (above "
            f"{_EXPANSION_WARNING_RATIO} on {int(count)} paths; A = J - I, its truncation error is about this ratio "
            "to the power order + 1 per step). Use a smaller time step, a higher MatrixFree order, or mode='exact'.",
            RuntimeWarning,
            stacklevel=4,  # divergence_kernel's caller
        )


def report_nonfinite(result: DKResult, on_nonfinite: str) -> None:
    """Warns about (or raises on) paths that went non-finite, when the result is concrete."""
    if on_nonfinite == "ignore" or not is_concrete(result.nonfinite_step):
        return
    count = int(result.num_nonfinite)
    if count == 0:
        return
    first = int(jnp.min(jnp.where(result.finite, jnp.iinfo(jnp.int32).max, result.nonfinite_step)))
    states_diverged = int(jnp.sum(~result.finite & ~jnp.all(jnp.isfinite(result.x), axis=1)))
    if states_diverged:
        cause = f"the states of {states_diverged} diverged: use a smaller time step (Euler-Maruyama is unstable)."
    else:
        cause = (
            "the states stayed finite but the weights did not: use a larger kernel_rate (the covectors outgrew "
            "it), or, if the diffusion vanishes somewhere, kernel_rate=0 with score0 given."
        )
    message = (
        f"{count} of {result.x.shape[0]} paths went non-finite (first at step {first}). They are kept in "
        f"the result and marked by result.nonfinite_step (use result.finite to exclude them); {cause}"
    )
    if on_nonfinite == "raise":
        raise FloatingPointError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)  # divergence_kernel's caller


def divergence_kernel(
    sde: AbstractSDE,
    x0: States,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    score0: Covectors | None = None,
    dlogp0: Params | None = None,
    kernel_rate: KernelRate = 1.0,
    response_mix: float = 0.0,
    mode: Mode = "matrix_free",
    path_offset: int = 0,
    on_nonfinite: Literal["warn", "raise", "ignore"] = "warn",
) -> DKResult:
    """Simulates paths and carries the divergence-kernel weights for the score and the response.

    Along each Euler-Maruyama path (the same paths as ``dkjax.simulate`` with the same key)
    it carries a covector ``score`` and a parameter pytree ``dlogp`` such that

        E[score | X_T = x] = grad_x log p_T(x),   E[dlogp | X_T = x] = d/dparam log p_T(x),

    exactly for the simulated chain. Memory does not grow with
    ``num_steps``.

    Arguments:
        sde: the SDE; its floating-point array fields are the parameters.
        x0: initial states, shape ``(num_paths, d)``, drawn from the initial law ``p_0``.
        t1: final time.
        num_steps: number of Euler-Maruyama steps.
        key: a JAX PRNG key (same key, same paths and weights).
        t0: initial time.
        score0: ``grad log p_0(x0)``, shape ``(num_paths, d)``. ``None`` for a point mass
            or an unknown initial law: the first step then uses the kernel alone.
        dlogp0: ``d/dparam log p_0(x0)`` (pytree like ``dlogp``); ``None`` means zero (an
            initial law that does not depend on the parameters).
        kernel_rate: the kernel rate ``alpha`` (``a_n = alpha dt``): a number, a callable
            ``t -> alpha``, ``"auto"``, or a kernel-rate module (``dkjax.ConstantRate``,
            ``dkjax.RateSchedule``, ``dkjax.AutoRate``: chosen by a pilot run with a key of its
            own; the value is reported in ``result.kernel_rate``). ``alpha(t) dt <= 1`` on every step. It must exceed the growth rate of covectors pushed forward by
            the flow (the flow's strongest contraction); larger values only raise variance
            slowly. ``0`` is allowed when ``score0`` is given.
        response_mix: the weight ``b`` of the likelihood-ratio part of the parameter
            response: ``0`` (default) uses the DK score;
            ``1`` is the classic likelihood ratio, whose variance grows with the number
            of steps for parameters inside the diffusion.
        mode: how Jacobians are treated: ``"matrix_free"`` (shorthand for
            ``dkjax.MatrixFree()``: VJPs and Hutchinson probes, cost linear in ``d``) or
            ``"exact"`` (``dkjax.Dense()``: dense Jacobians; a reference for ``d`` up to about 100).
        path_offset: global index of the first path, to split an ensemble over calls (not
            needed for a multi-process array from ``shard_paths``: its rows are global).
        on_nonfinite: ``"warn"`` (default), ``"raise"`` or ``"ignore"`` when paths go
            non-finite; they are always marked in ``nonfinite_step``.

    Returns:
        A ``DKResult`` with ``x``, ``score``, ``dlogp``, ``nonfinite_step`` and, in
        matrix-free mode, ``expansion_ratio`` (a ``RuntimeWarning`` when it is large).

    Raises:
        ValueError: bad shapes or values (named in the message), a kernel rate with
            ``alpha(t) dt > 1`` on some step, parameters of a wider dtype than ``x0`` (both
            named), a diffusion whose ``Sigma`` is structurally singular where the kernel
            part needs its inverse.
        TypeError: ``sde`` not an ``AbstractSDE``, ``key`` not a PRNG key.
        FloatingPointError: with ``on_nonfinite="raise"``, if any path went non-finite.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> res = dkjax.divergence_kernel(sde, jnp.zeros((10_000, 1)), t1=1.0,
        ...                               num_steps=100, key=jax.random.key(0))
        >>> res.dlogp.theta.shape
        (10000,)
        >>> # For any law E[score(X) X] = -1 (integration by parts): a check on the score weights
        >>> product = res.score[:, 0] * res.x[:, 0]
        >>> print(f"{float(product.mean()):.2f} +- {float(product.std() / 100):.2f}")  # 100 = sqrt(10_000)
        -1.12 +- 0.07
    """
    check_common(sde, x0, t0, t1, num_steps, key)
    check_choice("on_nonfinite", on_nonfinite, _ON_NONFINITE)
    return unchecked_divergence_kernel(sde, x0, t1, num_steps, key, t0, score0, dlogp0, kernel_rate, response_mix,
                                       mode, path_offset, on_nonfinite)  # fmt: skip


def unchecked_divergence_kernel(sde, x0, t1, num_steps, key, t0, score0, dlogp0, kernel_rate, response_mix, mode,
                                path_offset, on_nonfinite) -> DKResult:  # fmt: skip
    """``divergence_kernel`` without the checks of its SDE, states, grid and key: for a caller that checked them.

    (A chunked response checks them with its first chunk, then runs every chunk through this.)
    The options are still resolved, and checked, here.
    """
    x0 = jnp.asarray(x0)
    t0_arr, dt = time_grid(t0, t1, num_steps, x0.dtype)
    score0, dlogp0, options, rate_used = dk_options(
        sde, x0, t0_arr, dt, num_steps, key, score0, dlogp0, kernel_rate, response_mix, mode
    )
    path_offset = jnp.asarray(path_offset, jnp.int32)
    result = run_divergence_kernel(sde, x0, score0, dlogp0, path_offset, t0_arr, dt, key, num_steps, options)
    result = dataclasses.replace(result, kernel_rate=rate_used)
    report_nonfinite(result, on_nonfinite)
    report_expansion(result)
    return result


def dk_options(sde, x0, t0, dt, num_steps, key, score0, dlogp0, kernel_rate, response_mix, mode):
    """Checks the estimator's options on the grid ``t0 + n dt`` and resolves them into modules.

    Returns ``(score0, dlogp0, options, rate_used)``; ``options`` are the keyword arguments
    of ``dk_weights`` beyond the grid, with an ``"auto"`` rate measured by its pilot run, and
    ``rate_used`` the rate to report (``None`` unless one constant known now).
    """
    jacobian = as_jacobian(mode)
    rate = as_kernel_rate(kernel_rate)
    rate.check(t0, dt, num_steps)
    t1 = float(t0) + num_steps * float(dt) if is_concrete(t0) and is_concrete(dt) else None
    rate = rate.resolve(sde, x0, t0=t0, t1=t1, num_steps=num_steps, key=key, jacobian=jacobian)
    rate.check(t0, dt, num_steps)
    if isinstance(response_mix, bool) or not isinstance(response_mix, (int, float)):
        raise TypeError(f"response_mix must be a Python float; got {response_mix!r}.")
    score0, point_mass = _initial_score(score0, x0, num_steps, rate.value == 0.0)
    dlogp0 = _initial_response(dlogp0, sde, x0.shape[0])
    rate_used = rate.value
    if isinstance(rate, ConstantRate):
        rate = ConstantRate(jnp.asarray(rate.rate, x0.dtype))  # an array: a new value does not retrace
    options = dict(
        jacobian=jacobian, kernel_rate=rate, use_kernel_score=rate_used != 0.0, response_mix=float(response_mix),
        point_mass=point_mass,
    )
    return score0, dlogp0, options, rate_used


def _initial_score(score0, x0, num_steps, rate_is_zero) -> tuple[Covectors, bool]:
    """``(score0, point_mass)``: zeros and ``True`` for ``score0=None``, else the checked scores."""
    if score0 is None:
        if rate_is_zero and num_steps > 1:
            warnings.warn(
                "kernel_rate=0 with score0=None: after the first (kernel) step the score is carried by the "
                "divergence part alone, which can grow along contracting directions.",
                stacklevel=5,  # the caller of divergence_kernel or stationary_response
            )
        return jnp.zeros_like(x0), True
    if jnp.shape(score0) != x0.shape:
        raise ValueError(f"score0 must have the shape of x0, {x0.shape}; got {jnp.shape(score0)}.")
    check_finite("score0", score0)
    return jnp.asarray(score0, x0.dtype), False


def _initial_response(dlogp0, sde, num_paths) -> Params:
    """``dlogp0`` checked against the parameters, or zeros for ``None``."""
    zeros = jax.tree.map(lambda p: jnp.zeros((num_paths,) + p.shape, p.dtype), parameters(sde))
    if dlogp0 is None:
        return zeros
    if jax.tree.structure(dlogp0) != jax.tree.structure(zeros) or any(
        jnp.shape(a) != jnp.shape(b) for a, b in zip(jax.tree.leaves(dlogp0), jax.tree.leaves(zeros))
    ):
        raise ValueError("dlogp0 must be shaped like dkjax.parameters(sde) with a leading num_paths axis.")
    for leaf in jax.tree.leaves(dlogp0):
        check_finite("dlogp0", leaf)
    return dlogp0

"""The divergence-kernel (DK) estimator of the score and the density's parameter derivative."""

import dataclasses
import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, Covectors, Int, Key, KernelRate, Params, RealScalarLike, States
from ._dk_step import _nonfinite, dk_scan
from ._kernel_rate import estimate_kernel_rate
from ._sde import AbstractSDE, parameters
from ._simulate import check_common, path_ids_for, time_grid
from ._validation import check_choice, check_finite, is_concrete

Mode = Literal["matrix_free", "exact"]
_MODES = ("matrix_free", "exact")
_ON_NONFINITE = ("warn", "raise", "ignore")


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

    @property
    def finite(self) -> Array:
        """Boolean mask of the paths that stayed finite."""
        return self.nonfinite_step < 0

    @property
    def num_nonfinite(self) -> Array:
        """How many paths went non-finite."""
        return jnp.sum(self.nonfinite_step >= 0)


@eqx.filter_jit
def _divergence_kernel(sde, x0, score0, dlogp0, path_offset, t0, t1, key, kernel_rate, response_mix, options):
    params = parameters(sde)
    path_ids = path_ids_for(x0.shape[0], path_offset)  # inside the jit: sharded like x0, also across processes

    def add_per_path_gradients(eta, surrogate, inputs):
        grads = jax.vmap(jax.grad(surrogate), in_axes=(None,) + (0,) * len(inputs))(params, *inputs)
        return jax.tree.map(jnp.add, eta, grads)

    x, nu, eta, bad_step = dk_scan(
        sde, x0, score0, path_ids, t0, t1, key, kernel_rate, response_mix, options, add_per_path_gradients, dlogp0
    )
    num_steps = options[1]
    bad_step = jnp.where((bad_step < 0) & _nonfinite(eta), jnp.int32(num_steps - 1), bad_step)
    return DKResult(x=x, score=nu, dlogp=eta, nonfinite_step=bad_step)


def _check_kernel_rate(kernel_rate, dt) -> None:
    if callable(kernel_rate):
        return
    if jnp.ndim(kernel_rate) != 0:
        raise ValueError(f"kernel_rate must be a scalar or a callable t -> rate; got shape {jnp.shape(kernel_rate)}.")
    if is_concrete(kernel_rate):
        rate = float(kernel_rate)
        if not rate >= 0.0 or rate == float("inf"):
            raise ValueError(f"kernel_rate must be finite and >= 0; got {rate}.")
        if is_concrete(dt) and rate * float(dt) > 1.0:
            raise ValueError(
                f"kernel_rate * dt must be <= 1 (the kernel weight per step); got {rate} * {float(dt):.4g}. "
                "Use more steps or a smaller kernel_rate."
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
    warnings.warn(message, RuntimeWarning, stacklevel=3)


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
        kernel_rate: the kernel rate ``alpha`` (``a_n = alpha dt``), a number, a callable
            ``t -> alpha``, or ``"auto"`` (chosen by ``dkjax.estimate_kernel_rate`` from a
            pilot run; the value is reported in ``result.kernel_rate``). It must exceed the growth rate of covectors pushed forward by
            the flow (the flow's strongest contraction); larger values only raise variance
            slowly. ``0`` is allowed when ``score0`` is given.
        response_mix: the weight ``b`` of the likelihood-ratio part of the parameter
            response: ``0`` (default) uses the DK score;
            ``1`` is the classic likelihood ratio, whose variance grows with the number
            of steps for parameters inside the diffusion.
        mode: ``"matrix_free"`` (VJPs and Hutchinson probes, cost linear in ``d``) or
            ``"exact"`` (dense Jacobians; a reference for ``d`` up to about 100).
        path_offset: global index of the first path, to split an ensemble over calls (not
            needed for a multi-process array from ``shard_paths``: its rows are global).
        on_nonfinite: ``"warn"`` (default), ``"raise"`` or ``"ignore"`` when paths go
            non-finite; they are always marked in ``nonfinite_step``.

    Returns:
        A ``DKResult`` with ``x``, ``score``, ``dlogp`` and ``nonfinite_step``.

    Raises:
        ValueError: bad shapes or values (named in the message), a diffusion whose
            ``Sigma`` is structurally singular where the kernel part needs its inverse.
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
    num_paths, dim = check_common(sde, x0, t0, t1, num_steps, key)
    check_choice("mode", mode, _MODES)
    check_choice("on_nonfinite", on_nonfinite, _ON_NONFINITE)
    x0 = jnp.asarray(x0)
    dtype = x0.dtype
    t0_arr, dt = time_grid(t0, t1, num_steps, dtype)
    if isinstance(kernel_rate, str):
        if kernel_rate != "auto":
            raise ValueError(f"kernel_rate must be a number, a callable or 'auto'; got {kernel_rate!r}.")
        kernel_rate = estimate_kernel_rate(sde, x0, t1=t1, num_steps=num_steps, key=key, t0=t0, mode=mode)
    _check_kernel_rate(kernel_rate, dt)
    if isinstance(response_mix, bool) or not isinstance(response_mix, (int, float)):
        raise TypeError(f"response_mix must be a Python float; got {response_mix!r}.")
    rate_is_zero = not callable(kernel_rate) and is_concrete(kernel_rate) and float(kernel_rate) == 0.0
    if score0 is None:
        score0 = jnp.zeros_like(x0)
        if rate_is_zero and num_steps > 1:
            warnings.warn(
                "kernel_rate=0 with score0=None: after the first (kernel) step the score is carried by the "
                "divergence part alone, which can grow along contracting directions.",
                stacklevel=2,
            )
        point_mass = True
    else:
        if jnp.shape(score0) != (num_paths, dim):
            raise ValueError(f"score0 must have the shape of x0, {(num_paths, dim)}; got {jnp.shape(score0)}.")
        check_finite("score0", score0)
        score0 = jnp.asarray(score0, dtype)
        point_mass = False
    params = parameters(sde)
    zeros = jax.tree.map(lambda p: jnp.zeros((num_paths,) + p.shape, p.dtype), params)
    if dlogp0 is None:
        dlogp0 = zeros
    else:
        if jax.tree.structure(dlogp0) != jax.tree.structure(zeros) or any(
            jnp.shape(a) != jnp.shape(b) for a, b in zip(jax.tree.leaves(dlogp0), jax.tree.leaves(zeros))
        ):
            raise ValueError("dlogp0 must be shaped like dkjax.parameters(sde) with a leading num_paths axis.")
        for leaf in jax.tree.leaves(dlogp0):
            check_finite("dlogp0", leaf)
    rate_used = None if callable(kernel_rate) or not is_concrete(kernel_rate) else float(kernel_rate)
    if not callable(kernel_rate):
        kernel_rate = jnp.asarray(kernel_rate, dtype)
    result = _divergence_kernel(
        sde,
        x0,
        score0,
        dlogp0,
        jnp.asarray(path_offset, jnp.int32),
        t0_arr,
        jnp.asarray(t1, dtype),
        key,
        kernel_rate,
        float(response_mix),
        (mode, num_steps, point_mass, not rate_is_zero),
    )
    result = dataclasses.replace(result, kernel_rate=rate_used)
    report_nonfinite(result, on_nonfinite)
    return result

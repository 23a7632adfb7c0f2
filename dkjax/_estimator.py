"""The divergence-kernel (DK) estimator of the score and the density's parameter derivative.

Implements the exact discrete-time recursion of MATH.md section 3 for the Euler-Maruyama
chain, with the Jacobian terms evaluated densely (``mode="exact"``) or by VJPs and
Hutchinson probes (``mode="matrix_free"``, MATH.md section 4).
"""

import dataclasses
import warnings
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from ._custom_types import Array, Covectors, Int, Key, KernelRate, Params, RealScalarLike, Scalar, State, States
from ._noise import brownian_normal, rademacher_probe, step_key
from ._sde import AbstractSDE, em_increment, noise_dimension, parameters
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
    """

    x: States
    score: Covectors
    dlogp: Params
    nonfinite_step: Int[Array, " paths"]

    @property
    def finite(self) -> Array:
        """Boolean mask of the paths that stayed finite."""
        return self.nonfinite_step < 0

    @property
    def num_nonfinite(self) -> Array:
        """How many paths went non-finite."""
        return jnp.sum(self.nonfinite_step >= 0)


@dataclasses.dataclass(frozen=True)
class _StepPlan:
    """Static choices for one kind of step, fixed at trace time."""

    mode: str
    noise_kind: str
    noise_dim: int
    divergence: bool
    kernel_score: bool
    divergence_response: bool
    kernel_response: bool


def kernel_score(sigma: Array, z: Array, dt: Scalar) -> State:
    """``grad_y log k(x, y)`` at ``y = x + F dt + sigma z sqrt(dt)``: ``-Sigma^{-1} sigma z / sqrt(dt)``."""
    if sigma.ndim == 1:
        return -z / (sigma * jnp.sqrt(dt))
    if sigma.shape[0] == sigma.shape[1]:
        return -jnp.linalg.solve(sigma.T, z) / jnp.sqrt(dt)
    chol = jsl.cho_factor(sigma @ sigma.T, lower=True)
    return -jsl.cho_solve(chol, sigma @ z) / jnp.sqrt(dt)


def log_kernel(sde: AbstractSDE, t: Scalar, dt: Scalar, x: State, y: State) -> Scalar:
    """``log N(y; x + F(t, x) dt, Sigma(t, x) dt)`` up to a constant independent of the SDE."""
    residual = y - x - sde.drift(t, x) * dt
    sigma = sde.diffusion(t, x)
    if sigma.ndim == 1:
        return jnp.sum(-0.5 * residual**2 / (sigma**2 * dt) - jnp.log(jnp.abs(sigma)))
    chol = jnp.linalg.cholesky(sigma @ sigma.T)
    whitened = jsl.solve_triangular(chol, residual, lower=True)
    return -0.5 * jnp.sum(whitened**2) / dt - jnp.sum(jnp.log(jnp.diag(chol)))


def _divergence_matrix_free(increment, x, params, nu, probe):
    """``u = J^{-T}(nu - grad_x log|det J|)`` and ``d_param log|det J|`` without d x d matrices.

    ``A = J - I`` acts by JVPs and VJPs of the increment; ``log|det J|`` is the unbiased
    one-probe estimate ``h = v.(Av) - (A^T v).(Av)/2`` (MATH.md section 4), whose
    ``x``- and parameter-gradients come from one reverse pass. The second-order terms are
    kept for additive noise too: there they are O(dt^2) per step, but dropping them leaves
    an O(dt) bias of many standard errors at practical step sizes, for little saving.
    """
    _, vjp_increment = jax.vjp(increment, x, params)

    def logdet_estimate(x_, params_):
        at_params = lambda y: increment(y, params_)
        _, a_probe = jax.jvp(at_params, (x_,), (probe,))
        at_probe = jax.vjp(at_params, x_)[1](probe)[0]
        return probe @ a_probe - 0.5 * (at_probe @ a_probe)

    grad_x_logdet, grad_params_logdet = jax.grad(logdet_estimate, argnums=(0, 1))(x, params)
    w = nu - grad_x_logdet
    at_w = vjp_increment(w)[0]
    u = w - at_w + vjp_increment(at_w)[0]
    return u, grad_params_logdet, vjp_increment


def _divergence_exact(increment, x, params, nu):
    """Dense reference: Jacobian by ``jacfwd``, ``J^{-T}`` by a solve, ``log|det J|`` by ``slogdet``."""
    step_map = lambda x_, params_: x_ + increment(x_, params_)
    logdet = lambda x_, params_: jnp.linalg.slogdet(jax.jacfwd(step_map)(x_, params_))[1]
    grad_x_logdet, grad_params_logdet = jax.grad(logdet, argnums=(0, 1))(x, params)
    jac = jax.jacfwd(step_map)(x, params)
    u = jnp.linalg.solve(jac.T, nu - grad_x_logdet)
    _, vjp_increment = jax.vjp(increment, x, params)
    return u, grad_params_logdet, vjp_increment


def _path_step(plan: _StepPlan, params, static, t, dt, mix_score, mix_response, key_n, path_id, x, nu, eta):
    """One DK step of one path (MATH.md section 3): returns ``(x, nu, eta)`` at ``n + 1``."""
    sde = eqx.combine(params, static)
    z = brownian_normal(key_n, path_id, plan.noise_dim, x.dtype)
    increment = lambda x_, params_: em_increment(eqx.combine(params_, static), t, x_, z, dt)
    x_next = x + increment(x, params)

    nu_next = jnp.zeros_like(nu)
    eta_next = eta
    if plan.divergence:
        if plan.mode == "exact":
            u, grad_params_logdet, vjp_increment = _divergence_exact(increment, x, params, nu)
        else:
            probe = rademacher_probe(key_n, path_id, x.shape[0], x.dtype)
            u, grad_params_logdet, vjp_increment = _divergence_matrix_free(increment, x, params, nu, probe)
        nu_next = (1 - mix_score) * u
        if plan.divergence_response:
            u_dot_dg = vjp_increment(u)[1]
            eta_next = jax.tree.map(
                lambda e, a, b: e - (1 - mix_response) * (a + b), eta_next, u_dot_dg, grad_params_logdet
            )
    if plan.kernel_score:
        nu_next = nu_next + mix_score * kernel_score(sde.diffusion(t, x), z, dt)
    if plan.kernel_response:
        y = jax.lax.stop_gradient(x_next)
        dlogk = jax.grad(lambda p: log_kernel(eqx.combine(p, static), t, dt, x, y))(params)
        eta_next = jax.tree.map(lambda e, g: e + mix_response * g, eta_next, dlogk)
    return x_next, nu_next, eta_next


def _nonfinite(*trees) -> Array:
    """Per path, whether any leaf of ``trees`` (leading path axis) is non-finite."""
    leaves = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(trees)]
    return ~jnp.all(jnp.concatenate([jnp.isfinite(leaf) for leaf in leaves], axis=1), axis=1)


def _rate_at(kernel_rate, t):
    return kernel_rate(t) if callable(kernel_rate) else kernel_rate


@eqx.filter_jit
def _divergence_kernel(sde, x0, score0, dlogp0, path_ids, t0, t1, key, kernel_rate, response_mix, options):
    mode, num_steps, point_mass, use_kernel_score = options
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    noise_kind, noise_dim = noise_dimension(sde, t0, x0[0])
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    mix_is = lambda value: is_concrete(response_mix) and float(response_mix) == value
    plan = _StepPlan(
        mode=mode,
        noise_kind=noise_kind,
        noise_dim=noise_dim,
        divergence=True,
        kernel_score=use_kernel_score,
        divergence_response=not mix_is(1.0),
        kernel_response=not mix_is(0.0),
    )
    if plan.kernel_score and noise_kind == "general" and noise_dim < x0.shape[1]:
        raise ValueError(
            f"the kernel part of the score needs an invertible Sigma = sigma sigma^T, but the diffusion "
            f"has shape ({x0.shape[1]}, {noise_dim}) with fewer noise than state dimensions. Use "
            "kernel_rate=0 with score0 given (and response_mix=0)."
        )
    if plan.kernel_response and noise_kind == "general" and noise_dim < x0.shape[1]:
        raise ValueError("response_mix != 0 needs an invertible Sigma = sigma sigma^T; use response_mix=0.")

    def vmapped_step(plan, t, mix_score, mix_response, n, x, nu, eta):
        step = lambda i, x_, nu_, eta_: _path_step(
            plan, params, static, t, dt, mix_score, mix_response, step_key(key, n), i, x_, nu_, eta_
        )
        return jax.vmap(step)(path_ids, x, nu, eta)

    x, nu, eta = x0, score0, dlogp0
    first = 0
    if point_mass:
        # No initial score: the first step is pure kernel (a_0 = b_0 = 1), exact whenever
        # the initial law does not depend on the parameters.
        kernel_plan = dataclasses.replace(
            plan, divergence=False, kernel_score=True, divergence_response=False, kernel_response=True
        )
        if noise_kind == "general" and noise_dim < x0.shape[1]:
            raise ValueError(
                "score0=None needs an invertible Sigma = sigma sigma^T for the first (pure kernel) step; "
                "give score0 (the initial score) instead."
            )
        x, nu, eta = vmapped_step(kernel_plan, t0, 1.0, 1.0, 0, x, nu, eta)
        first = 1

    def body(carry, n):
        x, nu, eta, bad_step = carry
        t = t0 + n * dt
        mix_score = _rate_at(kernel_rate, t) * dt
        x, nu, eta = vmapped_step(plan, t, mix_score, response_mix, n, x, nu, eta)
        bad_step = jnp.where((bad_step < 0) & _nonfinite(x, nu), n.astype(jnp.int32), bad_step)
        return (x, nu, eta, bad_step), None

    bad_step = jnp.where(_nonfinite(x, nu), 0, -1).astype(jnp.int32)
    (x, nu, eta, bad_step), _ = jax.lax.scan(body, (x, nu, eta, bad_step), jnp.arange(first, num_steps, dtype=jnp.int32))
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
    message = (
        f"{count} of {result.x.shape[0]} paths went non-finite (first at step {first}). They are kept in "
        "the result and marked by result.nonfinite_step; use result.finite to exclude them, or use "
        "a smaller time step or a larger kernel_rate."
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

    exactly for the simulated chain (MATH.md section 3). Memory does not grow with
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
        kernel_rate: the kernel rate ``alpha`` (``a_n = alpha dt``), a number or a callable
            ``t -> alpha``. It must exceed the growth rate of covectors pushed forward by
            the flow (the flow's strongest contraction); larger values only raise variance
            slowly. ``0`` is allowed when ``score0`` is given.
        response_mix: ``b`` in MATH.md section 3. ``0`` (default) uses the DK score;
            ``1`` is the classic likelihood ratio, whose variance grows with the number
            of steps for parameters inside the diffusion.
        mode: ``"matrix_free"`` (VJPs and Hutchinson probes, cost linear in ``d``) or
            ``"exact"`` (dense Jacobians; a reference for ``d`` up to about 100).
        path_offset: global index of the first path, to split an ensemble over calls.
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
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5, dim=1)
        >>> res = dkjax.divergence_kernel(sde, jnp.zeros((10_000, 1)), t1=1.0,
        ...                               num_steps=100, key=jax.random.key(0))
        >>> res.dlogp.theta.shape
        (10000,)
    """
    num_paths, dim = check_common(sde, x0, t0, t1, num_steps, key)
    check_choice("mode", mode, _MODES)
    check_choice("on_nonfinite", on_nonfinite, _ON_NONFINITE)
    x0 = jnp.asarray(x0)
    dtype = x0.dtype
    t0_arr, dt = time_grid(t0, t1, num_steps, dtype)
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
    if not callable(kernel_rate):
        kernel_rate = jnp.asarray(kernel_rate, dtype)
    result = _divergence_kernel(
        sde,
        x0,
        score0,
        dlogp0,
        path_ids_for(num_paths, path_offset),
        t0_arr,
        jnp.asarray(t1, dtype),
        key,
        kernel_rate,
        float(response_mix),
        (mode, num_steps, point_mass, not rate_is_zero),
    )
    report_nonfinite(result, on_nonfinite)
    return result

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


def _logdet(plan: "_StepPlan", increment, x, params, probe) -> Scalar:
    """``log|det J|`` of the step map ``x -> x + increment(x)``, exactly or by one Hutchinson probe.

    Matrix-free (MATH.md section 4): with ``A = J - I`` acting by a JVP and a VJP of the
    increment, ``h = v.(Av) - (A^T v).(Av)/2`` estimates ``tr A - tr(A^2)/2`` without bias.
    The second-order term is kept for additive noise too: there it is O(dt^2) per step,
    but dropping it leaves an O(dt) bias of many standard errors at practical step sizes.
    """
    at_params = lambda x_: increment(x_, params)
    if plan.mode == "exact":
        return jnp.linalg.slogdet(jnp.eye(x.shape[0], dtype=x.dtype) + jax.jacfwd(at_params)(x))[1]
    _, a_probe = jax.jvp(at_params, (x,), (probe,))
    at_probe = jax.vjp(at_params, x)[1](probe)[0]
    return probe @ a_probe - 0.5 * (at_probe @ a_probe)


def _pushforward(plan: "_StepPlan", increment, x, params, w) -> State:
    """``J^{-T} w``: a dense solve, or ``w - A^T w + A^T A^T w`` by two VJPs (MATH.md section 4)."""
    at_params = lambda x_: increment(x_, params)
    if plan.mode == "exact":
        jac = jnp.eye(x.shape[0], dtype=x.dtype) + jax.jacfwd(at_params)(x)
        return jnp.linalg.solve(jac.T, w)
    _, vjp_increment = jax.vjp(at_params, x)
    at_w = vjp_increment(w)[0]
    return w - at_w + vjp_increment(at_w)[0]


def _increment_fn(static, t, dt, z):
    """``(x, params) -> F dt + sigma z sqrt(dt)`` at frozen noise ``z``."""
    return lambda x_, params_: em_increment(eqx.combine(params_, static), t, x_, z, dt)


def _path_transition(plan: "_StepPlan", params, static, t, dt, mix_score, x, nu, z, probe):
    """State and score update of one path (MATH.md section 3): returns ``(x_next, nu_next, u)``.

    ``u = J^{-T}(nu - grad_x log|det J|)`` is the divergence part of the score, also
    needed (held fixed) by the response surrogate.
    """
    increment = _increment_fn(static, t, dt, z)
    x_next = x + increment(x, params)
    u = jnp.zeros_like(nu)
    nu_next = jnp.zeros_like(nu)
    if plan.divergence:
        grad_x_logdet = jax.grad(lambda x_: _logdet(plan, increment, x_, params, probe))(x)
        u = _pushforward(plan, increment, x, params, nu - grad_x_logdet)
        nu_next = (1 - mix_score) * u
    if plan.kernel_score:
        sigma = eqx.combine(params, static).diffusion(t, x)
        nu_next = nu_next + mix_score * kernel_score(sigma, z, dt)
    return x_next, nu_next, u


def _path_surrogate(plan: "_StepPlan", params, static, t, dt, mix_response, x, u, x_next, z, probe) -> Scalar:
    """A scalar of the parameters whose gradient is the response increment of one path.

    ``eta_{n+1} - eta_n = grad_params [ -(1 - b)(u . g(x) + log|det J|) + b log k(x, x_next) ]``
    with ``x``, ``u`` and ``x_next`` held fixed (MATH.md section 3). Summing it over paths
    with weights gives the weighted response in one VJP (the memory-lean training gradient).
    """
    value = jnp.zeros((), x.dtype)
    if plan.divergence_response:
        increment = _increment_fn(static, t, dt, z)
        divergence = u @ increment(x, params) + _logdet(plan, increment, x, params, probe)
        value = value - (1 - mix_response) * divergence
    if plan.kernel_response:
        value = value + mix_response * log_kernel(eqx.combine(params, static), t, dt, x, x_next)
    return value


def _nonfinite(*trees) -> Array:
    """Per path, whether any leaf of ``trees`` (leading path axis) is non-finite."""
    leaves = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(trees)]
    return ~jnp.all(jnp.concatenate([jnp.isfinite(leaf) for leaf in leaves], axis=1), axis=1)


def _rate_at(kernel_rate, t):
    return kernel_rate(t) if callable(kernel_rate) else kernel_rate


def _step_plan(sde, x0, mode, use_kernel_score, response_mix, t0) -> _StepPlan:
    """The static plan of the regular steps; raises where the kernel part needs a singular inverse."""
    noise_kind, noise_dim = noise_dimension(sde, t0, x0[0])
    plan = _StepPlan(
        mode=mode,
        noise_kind=noise_kind,
        noise_dim=noise_dim,
        divergence=True,
        kernel_score=use_kernel_score,
        divergence_response=response_mix != 1.0,
        kernel_response=response_mix != 0.0,
    )
    if noise_kind == "general" and noise_dim < x0.shape[1] and (plan.kernel_score or plan.kernel_response):
        raise ValueError(
            f"the kernel part needs an invertible Sigma = sigma sigma^T, but the diffusion has shape "
            f"({x0.shape[1]}, {noise_dim}): fewer noise than state dimensions. Use kernel_rate=0 with "
            "score0 given, and response_mix=0."
        )
    return plan


def dk_scan(sde, x0, score0, path_ids, t0, t1, key, kernel_rate, response_mix, options, accumulate, acc0):
    """Runs the DK recursion and folds each step's response surrogate into an accumulator.

    ``accumulate(acc, surrogate, inputs)`` receives the per-path surrogate
    ``surrogate(params, *per_path_inputs) -> scalar`` and the batched inputs; the DK
    estimator adds per-path gradients (``dlogp``), the memory-lean trainer adds one
    weighted gradient summed over paths. Returns ``(x, score, acc, nonfinite_step)``.
    Noise is drawn from ``(key, step, path_id)``, so two calls replay the same paths.
    """
    mode, num_steps, point_mass, use_kernel_score = options
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    plan = _step_plan(sde, x0, mode, use_kernel_score, response_mix, t0)

    def step(plan, n, mix_score, mix_response, x, nu, acc):
        t = t0 + n * dt
        key_n = step_key(key, n)
        z = jax.vmap(lambda i: brownian_normal(key_n, i, plan.noise_dim, x.dtype))(path_ids)
        probe = jax.vmap(lambda i: rademacher_probe(key_n, i, x.shape[1], x.dtype))(path_ids)
        transition = lambda x_, nu_, z_, v_: _path_transition(plan, params, static, t, dt, mix_score, x_, nu_, z_, v_)
        x_next, nu_next, u = jax.vmap(transition)(x, nu, z, probe)
        surrogate = lambda params_, x_, u_, y_, z_, v_: _path_surrogate(
            plan, params_, static, t, dt, mix_response, x_, u_, y_, z_, v_
        )
        return x_next, nu_next, accumulate(acc, surrogate, (x, u, jax.lax.stop_gradient(x_next), z, probe))

    x, nu, acc, first = x0, score0, acc0, 0
    if point_mass:
        # No initial score: the first step is pure kernel (a_0 = b_0 = 1), exact whenever
        # the initial law does not depend on the parameters.
        if plan.noise_kind == "general" and plan.noise_dim < x0.shape[1]:
            raise ValueError(
                "score0=None needs an invertible Sigma = sigma sigma^T for the first (pure kernel) step; "
                "give score0 (the initial score) instead."
            )
        kernel_plan = dataclasses.replace(
            plan, divergence=False, kernel_score=True, divergence_response=False, kernel_response=True
        )
        x, nu, acc = step(kernel_plan, jnp.int32(0), 1.0, 1.0, x, nu, acc)
        first = 1

    def body(carry, n):
        x, nu, acc, bad_step = carry
        mix_score = _rate_at(kernel_rate, t0 + n * dt) * dt
        x, nu, acc = step(plan, n, mix_score, response_mix, x, nu, acc)
        bad_step = jnp.where((bad_step < 0) & _nonfinite(x, nu), n, bad_step)
        return (x, nu, acc, bad_step), None

    bad_step = jnp.where(_nonfinite(x, nu), 0, -1).astype(jnp.int32)
    steps = jnp.arange(first, num_steps, dtype=jnp.int32)
    (x, nu, acc, bad_step), _ = jax.lax.scan(body, (x, nu, acc, bad_step), steps)
    return x, nu, acc, bad_step


@eqx.filter_jit
def _divergence_kernel(sde, x0, score0, dlogp0, path_ids, t0, t1, key, kernel_rate, response_mix, options):
    params = parameters(sde)

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

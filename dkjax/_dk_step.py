"""One step of the divergence-kernel recursion, per path.

The exact discrete-time recursion for the Euler-Maruyama chain, with the Jacobian terms
evaluated densely (``mode="exact"``) or by VJPs and Hutchinson probes
(``mode="matrix_free"``), and ``dk_scan``, the scan over steps that the estimator and the
memory-lean trainer share.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, Scalar, State
from ._linalg import inverse_and_logabsdet
from ._noise import noise_and_probe, step_key
from ._sde import AbstractSDE, em_increment, noise_dimension
from ._simulate import time_grid


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
        return -inverse_and_logabsdet(sigma)[0].T @ z / jnp.sqrt(dt)
    return -inverse_and_logabsdet(sigma @ sigma.T)[0] @ (sigma @ z) / jnp.sqrt(dt)


def log_kernel_carrier(sde: AbstractSDE, t: Scalar, dt: Scalar, x: State, y: State) -> Scalar:
    """A scalar whose parameter gradient (``x``, ``y`` fixed) is that of ``log k(x, y)``.

    ``log k = log N(y; x + F(t, x) dt, Sigma(t, x) dt)``. For diagonal noise it is ``log k``
    itself (up to a constant). For general noise, with ``P = Sigma^{-1}`` and ``s = P r``
    (``r = y - x - F dt``) held fixed,
    ``d log k = dF . s + s^T dSigma s / (2 dt) - tr(P dSigma) / 2``: reverse mode then never
    passes through the inverse, which is formed once per step when ``sigma`` does not depend
    on ``x`` (a per-path transposed inverse made the first kernel step of a 40-dimensional
    general-noise run cost more than all the other steps together).
    """
    drift = sde.drift(t, x)
    sigma = sde.diffusion(t, x)
    residual = y - x - drift * dt
    if sigma.ndim == 1:
        return jnp.sum(-0.5 * residual**2 / (sigma**2 * dt) - jnp.log(jnp.abs(sigma)))
    covariance = sigma @ sigma.T
    precision = jax.lax.stop_gradient(inverse_and_logabsdet(covariance)[0])
    scaled = jax.lax.stop_gradient(precision @ residual)
    return drift @ scaled + scaled @ covariance @ scaled / (2 * dt) - 0.5 * jnp.sum(precision * covariance)


def _step_jacobian(increment, x, params) -> Array:
    """The dense Jacobian ``J = I + D_x increment`` of the step map at frozen noise."""
    return jnp.eye(x.shape[0], dtype=x.dtype) + jax.jacfwd(lambda x_: increment(x_, params))(x)


def _logdet_carrier(plan: "_StepPlan", increment, x, params, probe, inverse_t) -> Scalar:
    """A scalar whose gradients in ``x`` and the parameters are those of ``log|det J|``.

    Both modes use ``d log|det J| = tr(J^{-1} dJ)`` with ``J^{-1}`` held fixed. Exact:
    ``sum(J^{-T} * J)`` with ``inverse_t = J^{-T}`` at the current point. Matrix-free, with
    one Rademacher probe ``v`` (Hutchinson): ``(J^{-T} v) . (A v)``, where ``A = J - I`` acts
    by a JVP of the increment and ``J^{-T} v ~ v - A^T v`` (one VJP) is held fixed. Its
    gradient has mean ``tr(dA) - tr(A dA)``, the gradient of ``tr A - tr(A^2)/2``, as has that
    of the textbook surrogate ``h = v.Av - (A^T v).(Av)/2`` (they differ per probe by a zero-mean
    ``v.[dA, A]v / 2``). The exact gradient adds ``tr(A^2 dA) + ...``: O(dt^3) for additive
    noise, odd in the noise at O(dt^{3/2}) otherwise, so of conditional mean O(dt^2), like the
    terms the second-order expansion drops. This costs one forward-over-reverse pass where ``h`` costs two. The
    second-order part matters for additive noise too: without it, OU at dt = 0.02 showed an
    O(dt) bias of about ten standard errors against the exact EM chain.
    """
    if plan.mode == "exact":
        return jnp.sum(jax.lax.stop_gradient(inverse_t) * _step_jacobian(increment, x, params))
    dual_probe = jax.lax.stop_gradient(_pushforward(plan, increment, x, params, probe, second_order=False))
    _, a_probe = jax.jvp(lambda x_: increment(x_, params), (x,), (probe,))
    return dual_probe @ a_probe


def _inverse_transpose(plan: "_StepPlan", increment, x, params) -> Array | None:
    """``J^{-T}`` for the exact mode (``None`` in matrix-free mode, which never forms it)."""
    if plan.mode != "exact":
        return None
    return inverse_and_logabsdet(_step_jacobian(increment, x, params))[0].T


def _pushforward(plan: "_StepPlan", increment, x, params, w, inverse_t=None, second_order=True) -> State:
    """``J^{-T} w``: densely, or ``w - A^T w (+ A^T A^T w)`` by VJPs."""
    if plan.mode == "exact":
        inverse_t = _inverse_transpose(plan, increment, x, params) if inverse_t is None else inverse_t
        return inverse_t @ w
    _, vjp_increment = jax.vjp(lambda x_: increment(x_, params), x)
    at_w = vjp_increment(w)[0]
    if not second_order:
        return w - at_w
    return w - at_w + vjp_increment(at_w)[0]


def _increment_fn(static, t, dt, z):
    """``(x, params) -> F dt + sigma z sqrt(dt)`` at frozen noise ``z``."""
    return lambda x_, params_: em_increment(eqx.combine(params_, static), t, x_, z, dt)


def _path_transition(plan: "_StepPlan", params, static, t, dt, mix_score, x, nu, z, probe):
    """State and score update of one path: returns ``(x_next, nu_next, u)``.

    ``u = J^{-T}(nu - grad_x log|det J|)`` is the divergence part of the score, also
    needed (held fixed) by the response surrogate.
    """
    increment = _increment_fn(static, t, dt, z)
    x_next = x + increment(x, params)
    u = jnp.zeros_like(nu)
    nu_next = jnp.zeros_like(nu)
    if plan.divergence:
        inverse_t = _inverse_transpose(plan, increment, x, params)
        grad_x_logdet = jax.grad(lambda x_: _logdet_carrier(plan, increment, x_, params, probe, inverse_t))(x)
        u = _pushforward(plan, increment, x, params, nu - grad_x_logdet, inverse_t)
        nu_next = (1 - mix_score) * u
    if plan.kernel_score:
        sigma = eqx.combine(params, static).diffusion(t, x)
        nu_next = nu_next + mix_score * kernel_score(sigma, z, dt)
    return x_next, nu_next, u


def _path_surrogate(plan: "_StepPlan", params, static, t, dt, mix_response, x, u, x_next, z, probe) -> Scalar:
    """A scalar of the parameters whose gradient is the response increment of one path.

    ``eta_{n+1} - eta_n = grad_params [ -(1 - b)(u . g(x) + log|det J|) + b log k(x, x_next) ]``
    with ``x``, ``u`` and ``x_next`` held fixed. Summing it over paths
    with weights gives the weighted response in one VJP (the memory-lean training gradient).
    """
    value = jnp.zeros((), x.dtype)
    if plan.divergence_response:
        increment = _increment_fn(static, t, dt, z)
        inverse_t = _inverse_transpose(plan, increment, x, params)
        divergence = u @ increment(x, params) + _logdet_carrier(plan, increment, x, params, probe, inverse_t)
        value = value - (1 - mix_response) * divergence
    if plan.kernel_response:
        value = value + mix_response * log_kernel_carrier(eqx.combine(params, static), t, dt, x, x_next)
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
        z, probe = jax.vmap(lambda i: noise_and_probe(key_n, i, plan.noise_dim, x.shape[1], x.dtype))(path_ids)
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

    def body(carry, _):
        x, nu, acc, bad_step, n = carry
        mix_score = _rate_at(kernel_rate, t0 + n * dt) * dt
        x, nu, acc = step(plan, n, mix_score, response_mix, x, nu, acc)
        bad_step = jnp.where((bad_step < 0) & _nonfinite(x, nu), n, bad_step)
        return (x, nu, acc, bad_step, n + 1), None

    bad_step = jnp.where(_nonfinite(x, nu), 0, -1).astype(jnp.int32)
    # The step counter is carried, not scanned over: no O(num_steps) array of step indices.
    carry = (x, nu, acc, bad_step, jnp.int32(first))
    (x, nu, acc, bad_step, _), _ = jax.lax.scan(body, carry, None, length=num_steps - first)
    return x, nu, acc, bad_step

"""One step of the divergence-kernel recursion, as a step of the driver.

The exact discrete-time recursion for the Euler-Maruyama chain, with the Jacobian terms
treated by a Jacobian module (dense, or matrix-free) and the kernel weight by a kernel-rate
module. A step linearises the increment of its batch of paths once in the states; that one
forward evaluation gives the new states, and its transpose every ``A^T w`` (the dual probes
and the pushforward of the score). The log-determinant carrier's state gradient comes from
one more linearisation, of the increment with its derivatives along the probes, and one
reverse pass. The parameter response is one reverse pass in the parameters: over the whole
batch with weighted cotangents (training), or per path (the estimator).

``dk_run`` drives it with any fold: per-path response weights for the estimator, or one
weighted response summed over paths for the memory-lean trainer.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Scalar, State
from ._driver import AbstractFold, AbstractStep, drive
from ._jacobian import AbstractJacobian, as_jacobian, tangent_images
from ._kernel_rate import AbstractKernelRate, as_kernel_rate
from ._linalg import inverse_and_logabsdet
from ._noise import noise_and_probe
from .._sde._abstract import AbstractSDE, noise_dimension
from ._simulate import batch_increment, path_increment, time_grid


@dataclasses.dataclass(frozen=True)
class _StepPlan:
    """Static choices for one kind of step, fixed at trace time."""

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


def _scale_rows(c, leaf: Array) -> Array:
    """``c_b * leaf[b]`` for a batch's weights ``c`` ``(B,)``, or ``c * leaf`` for one path."""
    c = jnp.asarray(c, leaf.dtype)
    return c.reshape(c.shape + (1,) * (leaf.ndim - c.ndim)) * leaf


class StepWeights(eqx.Module):
    """The weight of each path's response increment at step ``n``: ``c @ (n < steps)``.

    ``c`` is ``(M, K)``, one column per observation step in ``steps`` (``(K,)``): an increment
    counts towards every observation after it. One final time is ``K = 1``. ``running``
    ``(M,)``, when the step carries a running cost, weighs each path's pathwise cost gradient.
    """

    c: Array
    steps: Array
    running: Array | None = None

    def __call__(self, n) -> Array:
        return self.c @ (n < self.steps).astype(self.c.dtype)


class DivergenceKernelStep(AbstractStep):
    """The EM step with the score recursion; outputs the new states and the response increment.

    The carry is ``(x, score, nonfinite_step, expansion_ratio)``. ``kernel_rate=None`` makes
    the pure-kernel step (``a = b = 1``) that starts a run from a point mass. With
    ``weights=None`` the increment is per path (a leading path axis); with ``StepWeights``
    it is the weighted sum over paths, formed by one reverse pass over the whole batch, and
    ``running_cost(sde, t, x) -> scalar`` (if given) adds ``dt sum_m running_m d_theta
    phi(t, x_m)``, the pathwise gradient of a running cost at the step's states.
    """

    params: object
    static: object
    jacobian: AbstractJacobian
    kernel_rate: AbstractKernelRate | None
    response_mix: float = eqx.field(static=True)
    plan: _StepPlan = eqx.field(static=True)
    weights: StepWeights | None = None
    running_cost: object = None

    def __call__(self, n, t, dt, key_n, path_ids, carry):
        x, nu, bad_step, ratio = carry
        noise = lambda i: noise_and_probe(key_n, i, self.plan.noise_dim, x.shape[1], x.dtype)
        z, probe = jax.vmap(noise)(path_ids)
        mix_score = 1.0 if self.kernel_rate is None else jnp.minimum(self.kernel_rate(t) * dt, 1.0)
        x_next, nu_next, fixed, step_ratio = self.transition(t, dt, mix_score, x, nu, z, probe)
        if self.weights is None:
            # Per path, not as batches of one: XLA compiles a vmap over one-row batches ~20x slower.
            d_eta = jax.vmap(lambda *row: self.response(t, dt, *row, 1.0, batched=False))(x, z, x_next, *fixed)
        else:
            d_eta = self.response(t, dt, x, z, x_next, *fixed, self.weights(n), batched=True)
            if self.running_cost is not None:
                d_eta = jax.tree.map(jnp.add, d_eta, self.running_gradient(t, dt, x))
        bad_step = jnp.where((bad_step < 0) & nonfinite_paths(x_next, nu_next), n, bad_step)
        return (x_next, nu_next, bad_step, jnp.maximum(ratio, step_ratio)), (x_next, d_eta)

    def transition(self, t, dt, mix_score, x, nu, z, probe):
        """The new states and scores of a batch: ``(x_next, nu_next, (u, tangents, duals), ratio)``.

        ``nu_next = (1 - a) u + a grad_y log k`` with ``u = J^{-T}(nu - grad_x log|det J|)``.
        ``u``, the carrier's tangents and its duals are held fixed by the response.
        """
        increment = batch_increment(self.static, t, dt, z)
        step, transpose = jax.vjp(lambda x_: increment(x_, self.params), x)
        at = lambda w: transpose(w)[0]
        u, ratio = jnp.zeros_like(nu), jnp.zeros(x.shape[:1], x.dtype)
        tangents = duals = jnp.zeros(x.shape[:1] + (1,) + x.shape[1:], x.dtype)
        if self.plan.divergence:
            tangents = self.jacobian.tangents(probe)
            images = lambda x_: tangent_images(increment, tangents, 1)(x_, self.params)
            (_, image), transpose_images = jax.vjp(images, x)
            duals = self.jacobian.duals(at, tangents, image)
            grad_logdet = transpose_images((jnp.zeros_like(x), duals))[0]
            u, ratio = self.jacobian.pushforward(at, nu - grad_logdet, duals)
        nu_next = (1 - mix_score) * u
        if self.plan.kernel_score:
            sigma = jax.vmap(lambda x_: eqx.combine(self.params, self.static).diffusion(t, x_))(x)
            nu_next = nu_next + mix_score * jax.vmap(kernel_score, in_axes=(0, 0, None))(sigma, z, dt)
        return x + step, nu_next, (u, tangents, duals), ratio

    def running_gradient(self, t, dt, x):
        """``dt sum_m running_m d_theta phi(t, x_m)`` at fixed states: the running cost's pathwise part."""
        cost = lambda p, x_: self.running_cost(eqx.combine(p, self.static), t, x_)
        total = lambda p: dt * jnp.sum(self.weights.running * jax.vmap(cost, in_axes=(None, 0))(p, x))
        return jax.grad(total)(self.params)

    def response(self, t, dt, x, z, x_next, u, tangents, duals, c, *, batched: bool):
        """The response increment, weighted by ``c`` and summed over a batch (or of one path): one reverse pass.

        ``sum_b c_b [-(1 - b)(u . d g + d log|det J|) + b d log k]``: parameter derivatives at fixed
        states, noise, ``u`` and duals (``d log|det J|`` through the carrier ``sum_k P_k . (A V_k)``).
        """
        if batched:
            increment, axis = batch_increment(self.static, t, dt, z), 1
        else:
            increment, axis = path_increment(self.static, t, dt, z), 0
        d_eta = jax.tree.map(jnp.zeros_like, self.params)
        if self.plan.divergence_response:
            _, transpose = jax.vjp(lambda p: tangent_images(increment, tangents, axis)(x, p), self.params)
            d_div = transpose((_scale_rows(c, u), _scale_rows(c, duals)))[0]
            d_eta = jax.tree.map(lambda g: -(1 - self.response_mix) * g, d_div)
        if self.plan.kernel_response:
            log_k = lambda p, x_, y_: log_kernel_carrier(eqx.combine(p, self.static), t, dt, x_, y_)
            total = (lambda p: jnp.sum(c * jax.vmap(log_k, in_axes=(None, 0, 0))(p, x, x_next))) if batched else (
                lambda p: c * log_k(p, x, x_next))  # fmt: skip
            d_eta = jax.tree.map(lambda a, g: a + self.response_mix * g, d_eta, jax.grad(total)(self.params))
        return d_eta


def nonfinite_paths(*trees) -> Array:
    """Per path, whether any leaf of ``trees`` (leading path axis) is non-finite."""
    leaves = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(trees)]
    return ~jnp.all(jnp.concatenate([jnp.isfinite(leaf) for leaf in leaves], axis=1), axis=1)


class SumResponses(AbstractFold):
    """Adds each step's (already weighted and summed) response increment: the trainer's one accumulator."""

    def update(self, total, n, output):
        return jax.tree.map(jnp.add, total, output[1])


def _step_plan(sde, x0, use_kernel_score, response_mix, t0) -> _StepPlan:
    """The static plan of the regular steps; raises where the kernel part needs a singular inverse."""
    noise_kind, noise_dim = noise_dimension(sde, t0, x0[0])
    plan = _StepPlan(
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


def dk_run(sde, x0, score0, path_ids, t0, dt, key, num_steps, *, jacobian, kernel_rate, use_kernel_score,
           response_mix, point_mass, fold, acc, weights=None, running_cost=None):  # fmt: skip
    """Drives the DK step over ``num_steps`` steps of ``t0 + n dt``, folding each step's response increment.

    From a point mass (no initial score) the first step is pure kernel (``a_0 = b_0 = 1``),
    exact whenever the initial law does not depend on the parameters. ``weights=None`` gives
    the fold per-path increments, ``StepWeights`` their weighted sum (with a running cost's
    pathwise gradient added when ``running_cost`` is given). Returns
    ``(x, score, acc, nonfinite_step, expansion_ratio)``; noise is drawn from
    ``(key, step, path_id)``, so two runs replay the same paths.
    """
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    plan = _step_plan(sde, x0, use_kernel_score, response_mix, t0)
    carry = (x0, score0, jnp.full(x0.shape[:1], -1, jnp.int32), jnp.zeros(x0.shape[:1], x0.dtype))
    grid = dict(path_ids=path_ids, t0=t0, dt=dt, key=key)
    first = 0
    if point_mass:
        if plan.noise_kind == "general" and plan.noise_dim < x0.shape[1]:
            raise ValueError(
                "score0=None needs an invertible Sigma = sigma sigma^T for the first (pure kernel) step; "
                "give score0 (the initial score) instead."
            )
        kernel_plan = dataclasses.replace(
            plan, divergence=False, kernel_score=True, divergence_response=False, kernel_response=True
        )
        kernel_step = DivergenceKernelStep(params, static, jacobian, None, 1.0, kernel_plan, weights, running_cost)
        carry, acc = drive(kernel_step, fold, carry, acc, **grid, first=0, stop=1)
        first = 1
    step = DivergenceKernelStep(params, static, jacobian, kernel_rate, response_mix, plan, weights, running_cost)
    (x, nu, bad_step, ratio), acc = drive(step, fold, carry, acc, **grid, first=first, stop=num_steps)
    return x, nu, acc, bad_step, ratio


def dk_scan(sde, x0, score0, path_ids, *, t0, t1, num_steps, key, kernel_rate, fold, acc0, weights=None,
            jacobian="matrix_free", point_mass=False, use_kernel_score=True, response_mix=0.0,
            running_cost=None):  # fmt: skip
    """``dk_run`` on the grid ``t0 .. t1`` of ``num_steps`` steps; ``jacobian`` and ``kernel_rate`` take shorthands.

    Returns ``(x, score, acc, nonfinite_step)``.
    """
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    x, nu, acc, bad_step, _ = dk_run(
        sde, x0, score0, path_ids, t0, dt, key, num_steps, jacobian=as_jacobian(jacobian),
        kernel_rate=as_kernel_rate(kernel_rate), use_kernel_score=use_kernel_score, response_mix=response_mix,
        point_mass=point_mass, fold=fold, acc=acc0, weights=weights, running_cost=running_cost,
    )  # fmt: skip
    return x, nu, acc, bad_step

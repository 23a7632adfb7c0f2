"""One step of the divergence-kernel recursion, as a step of the driver.

The exact discrete-time recursion for the Euler-Maruyama chain, with the Jacobian terms
treated by a Jacobian module (dense, or matrix-free) and the kernel weight by a kernel-rate
module. ``dk_run`` drives it with any fold: per-path response weights for the estimator, one
weighted response for the memory-lean trainer.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Scalar, State
from ._driver import AbstractStep, FoldWith, drive
from ._jacobian import AbstractJacobian, as_jacobian
from ._kernel_rate import AbstractKernelRate, as_kernel_rate
from ._linalg import inverse_and_logabsdet
from ._noise import noise_and_probe
from .._sde._abstract import AbstractSDE, em_increment, noise_dimension
from ._simulate import em_update, time_grid


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


def _increment_fn(static, t, dt, z):
    """``(x, params) -> F dt + sigma z sqrt(dt)`` at frozen noise ``z``."""
    return lambda x_, params_: em_increment(eqx.combine(params_, static), t, x_, z, dt)


class DivergenceKernelStep(AbstractStep):
    """The EM step with the score recursion; outputs the response surrogate and its inputs.

    The carry is ``(x, score, nonfinite_step, expansion_ratio)``. ``kernel_rate=None`` makes
    the pure-kernel step (``a = b = 1``) that starts a run from a point mass.
    """

    params: object
    static: object
    jacobian: AbstractJacobian
    kernel_rate: AbstractKernelRate | None
    response_mix: float = eqx.field(static=True)
    plan: _StepPlan = eqx.field(static=True)

    def __call__(self, n, t, dt, key_n, path_ids, carry):
        x, nu, bad_step, ratio = carry
        noise = lambda i: noise_and_probe(key_n, i, self.plan.noise_dim, x.shape[1], x.dtype)
        z, probe = jax.vmap(noise)(path_ids)
        mix_score = 1.0 if self.kernel_rate is None else jnp.minimum(self.kernel_rate(t) * dt, 1.0)
        transition = lambda *args: self.transition(t, dt, mix_score, *args)
        nu_next, u, prepared, step_ratio = jax.vmap(transition)(x, nu, z, probe)
        x_next = em_update(eqx.combine(self.params, self.static), t, dt, x, z)
        bad_step = jnp.where((bad_step < 0) & nonfinite_paths(x_next, nu_next), n, bad_step)
        surrogate = lambda params, *inputs: self.surrogate(params, t, dt, *inputs)
        inputs = (x, u, jax.lax.stop_gradient(x_next), z, probe, prepared)
        return (x_next, nu_next, bad_step, jnp.maximum(ratio, step_ratio)), (surrogate, inputs)

    def transition(self, t, dt, mix_score, x, nu, z, probe):
        """Score update of one path: ``(nu_next, u, prepared, ratio)``.

        ``u = J^{-T}(nu - grad_x log|det J|)`` is the divergence part of the score and
        ``prepared`` the Jacobian module's fixed data, both held fixed by the response.
        """
        increment = _increment_fn(self.static, t, dt, z)
        u, nu_next, prepared, ratio = jnp.zeros_like(nu), jnp.zeros_like(nu), None, jnp.zeros((), x.dtype)
        if self.plan.divergence:
            prepared = self.jacobian.prepare(increment, x, self.params, probe)
            carrier = lambda x_: self.jacobian.logdet_carrier(increment, x_, self.params, probe, prepared)
            u, ratio = self.jacobian.pushforward(increment, x, self.params, nu - jax.grad(carrier)(x), prepared)
            nu_next = (1 - mix_score) * u
        if self.plan.kernel_score:
            sigma = eqx.combine(self.params, self.static).diffusion(t, x)
            nu_next = nu_next + mix_score * kernel_score(sigma, z, dt)
        return nu_next, u, prepared, ratio

    def surrogate(self, params, t, dt, x, u, x_next, z, probe, prepared) -> Scalar:
        """A scalar of the parameters whose gradient is the response increment of one path.

        ``eta_{n+1} - eta_n = grad_params [ -(1 - b)(u . g(x) + log|det J|) + b log k(x, x_next) ]``
        with ``x``, ``u``, ``x_next`` and ``prepared`` held fixed. Summing it over paths with
        weights gives the weighted response in one VJP (the memory-lean training gradient).
        """
        value = jnp.zeros((), x.dtype)
        if self.plan.divergence_response:
            increment = _increment_fn(self.static, t, dt, z)
            divergence = u @ increment(x, params) + self.jacobian.logdet_carrier(increment, x, params, probe, prepared)
            value = value - (1 - self.response_mix) * divergence
        if self.plan.kernel_response:
            value = value + self.response_mix * log_kernel_carrier(eqx.combine(params, self.static), t, dt, x, x_next)
        return value


def nonfinite_paths(*trees) -> Array:
    """Per path, whether any leaf of ``trees`` (leading path axis) is non-finite."""
    leaves = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(trees)]
    return ~jnp.all(jnp.concatenate([jnp.isfinite(leaf) for leaf in leaves], axis=1), axis=1)


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
           response_mix, point_mass, fold, acc):  # fmt: skip
    """Drives the DK step over ``num_steps`` steps of ``t0 + n dt``, folding each step's surrogate.

    From a point mass (no initial score) the first step is pure kernel (``a_0 = b_0 = 1``),
    exact whenever the initial law does not depend on the parameters. Returns
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
        kernel_step = DivergenceKernelStep(params, static, jacobian, None, response_mix=1.0, plan=kernel_plan)
        carry, acc = drive(kernel_step, fold, carry, acc, **grid, first=0, stop=1)
        first = 1
    step = DivergenceKernelStep(params, static, jacobian, kernel_rate, response_mix, plan)
    (x, nu, bad_step, ratio), acc = drive(step, fold, carry, acc, **grid, first=first, stop=num_steps)
    return x, nu, acc, bad_step, ratio


def dk_scan(sde, x0, score0, path_ids, *, t0, t1, num_steps, key, kernel_rate, accumulate, acc0,
            jacobian="matrix_free", point_mass=False, use_kernel_score=True, response_mix=0.0):  # fmt: skip
    """``dk_run`` on the grid ``t0 .. t1`` of ``num_steps`` steps, each step folded by ``accumulate``.

    ``accumulate(acc, surrogate, inputs)`` receives the per-path surrogate
    ``surrogate(params, *per_path_inputs) -> scalar`` and the batched inputs; the memory-lean
    trainer adds one weighted gradient summed over paths. ``jacobian`` and ``kernel_rate`` take
    the modules or their shorthands. Returns ``(x, score, acc, nonfinite_step)``.
    """
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    x, nu, acc, bad_step, _ = dk_run(
        sde, x0, score0, path_ids, t0, dt, key, num_steps, jacobian=as_jacobian(jacobian),
        kernel_rate=as_kernel_rate(kernel_rate), use_kernel_score=use_kernel_score, response_mix=response_mix,
        point_mass=point_mass, fold=FoldWith(accumulate), acc=acc0,
    )  # fmt: skip
    return x, nu, acc, bad_step

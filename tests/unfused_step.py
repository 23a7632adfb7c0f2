"""The divergence-kernel step as it was before the fused engine: per path, one derivative at a time.

Kept as the reference the fused step (``dkjax._engine._dk_step``) must reproduce. Every product
is formed from its own autodiff call on the per-path increment: a VJP for the dual probe, the
gradient of a JVP for ``grad_x log|det J|``, VJPs for ``J^{-T}``, and the parameter gradient of a
per-path surrogate for the response.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from dkjax._engine._dk_step import kernel_score, log_kernel_carrier
from dkjax._engine._linalg import inverse_and_logabsdet
from dkjax._sde._abstract import em_increment


def _dense_jacobian(increment, x, params):
    return jnp.eye(x.shape[0], dtype=x.dtype) + jax.jacfwd(lambda x_: increment(x_, params))(x)


def _series(increment, x, params, w, order):
    _, vjp = jax.vjp(lambda x_: increment(x_, params), x)
    at_w = vjp(w)[0]
    total, term = w - at_w, at_w
    for k in range(2, order + 1):
        term = vjp(term)[0]
        total = total + term if k % 2 == 0 else total - term
    return total


def unfused_path_step(sde, t, dt, x, nu, z, probe, *, mix_score, response_mix, dense, order=2):
    """One path's ``(x_next, nu_next, d_eta)`` by the unfused formulas (kernel score always on)."""
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    increment = lambda x_, p: em_increment(eqx.combine(p, static), t, x_, z, dt)
    if dense:
        prepared = inverse_and_logabsdet(_dense_jacobian(increment, x, params))[0].T
        carrier = lambda x_, p: jnp.sum(jax.lax.stop_gradient(prepared) * _dense_jacobian(increment, x_, p))
        push = lambda w: prepared @ w
    else:
        prepared = _series(increment, x, params, probe, 1)
        carrier = lambda x_, p: prepared @ jax.jvp(lambda y: increment(y, p), (x_,), (probe,))[1]
        push = lambda w: _series(increment, x, params, w, order)
    u = push(nu - jax.grad(carrier)(x, params))
    sigma = sde.diffusion(t, x)
    nu_next = (1 - mix_score) * u + mix_score * kernel_score(sigma, z, dt)
    x_next = x + increment(x, params)

    def surrogate(p):
        divergence = u @ increment(x, p) + carrier(x, p)
        kernel = log_kernel_carrier(eqx.combine(p, static), t, dt, x, x_next)
        return -(1 - response_mix) * divergence + response_mix * kernel

    return x_next, nu_next, jax.grad(surrogate)(params)

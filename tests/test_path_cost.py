"""Path costs: the running cost's value and forward-only gradient against exact Euler-Maruyama references."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dkjax
from dkjax._generative._gradient import dk_gradient
from helpers import assert_unbiased, cast, em_ou_moments

F32, F64 = jnp.float32, jnp.float64
T, STEPS, WEIGHT = 1.0, 40, 0.8
MEAN0, STD0 = 1.0, 0.3


def _ou(theta, sigma, dtype):
    # mean frozen as a Python float: the reference differentiates in theta and sigma.
    return eqx.tree_at(lambda s: s.mean, cast(dkjax.OrnsteinUhlenbeck(theta, sigma), dtype), 0.0)


def _exact(theta, sigma, target):
    """``(loss, d loss / d (theta, sigma))`` of ``E (X_T - target)^2 + WEIGHT sum_n dt E|F(X_n)|^2 / 2`` on the EM chain."""

    def loss(theta, sigma):
        dt, m, v = T / STEPS, MEAN0, STD0**2
        kinetic = 0.0
        for _ in range(STEPS):
            kinetic = kinetic + WEIGHT * dt * 0.5 * theta**2 * (m**2 + v)
            m, v = em_ou_moments(theta, sigma, m, v, dt, 1)
        return (m - target) ** 2 + v + kinetic

    return loss(theta, sigma), jax.grad(loss, argnums=(0, 1))(theta, sigma)


def _square_loss(target):
    """``E (X_T - target)^2`` as the objective's ``(loss, c, aux)``, with a baseline."""

    def weights(x):
        phi = (x[:, 0] - target) ** 2
        return jnp.mean(phi), (phi - jnp.mean(phi)) / x.shape[0], None

    return weights


@pytest.mark.parametrize("dtype", [F32, F64])
def test_kinetic_gradient_matches_the_exact_chain(dtype):
    # Both parts count: the pathwise d/dtheta |F|^2 / 2 = theta x^2 and the response of the law
    # of X_n at every step (through theta and sigma); each alone misses the reference by many
    # standard errors.
    theta, sigma, target, num_paths = 1.5, 0.7, 0.3, 4096
    sde = _ou(theta, sigma, dtype)

    @eqx.filter_jit
    def estimate(key):
        x0 = MEAN0 + STD0 * jr.normal(jr.fold_in(key, 1), (num_paths, 1), dtype)
        loss, grad, _, _ = dk_gradient(sde, x0, -(x0 - MEAN0) / STD0**2, _square_loss(target), t1=T, num_steps=STEPS,
                                       key=key, kernel_rate=2.0, path_cost=dkjax.Kinetic(WEIGHT))  # fmt: skip
        return loss, jnp.stack([grad.theta, grad.sigma])

    runs = [estimate(jr.key(i)) for i in range(16)]
    assert {runs[0][0].dtype, runs[0][1].dtype} == {jnp.dtype(dtype)}
    exact_loss, exact_grad = _exact(theta, sigma, target)
    assert_unbiased([float(r[0]) for r in runs], [float(exact_loss)] * 16, scale=float(exact_loss), max_rel_se=0.01,
                    label="loss")  # fmt: skip
    for i, name in enumerate(("theta", "sigma")):
        reference = float(exact_grad[i])
        assert_unbiased([float(r[1][i]) for r in runs], [reference] * 16, scale=abs(reference), max_rel_se=0.03,
                        label=f"d loss / d {name}")  # fmt: skip


def _snapshot_gradient(route, dtype=F64):
    sde = cast(dkjax.NeuralSDE(2, key=jr.key(3), width=8, depth=1, noise="diagonal", state_dependent=True), dtype)
    x0 = jr.normal(jr.key(1), (100, 2), dtype)
    data = (jr.normal(jr.key(2), (64, 2), dtype) + 1.0, jr.normal(jr.key(4), (64, 2), dtype) - 1.0)
    weights = dkjax._generative._snapshots.per_time_weights("energy", data, (1.0, 2.0), 32.0, jr.key(5), (0.0, 0.0),
                                                            (0.0, 0.0))  # fmt: skip
    return dk_gradient(sde, x0, None, weights, (10, 20), t1=T, num_steps=20, key=jr.key(0), kernel_rate=2.0,
                       gradient=route, path_cost=dkjax.Kinetic(0.5))  # fmt: skip


def test_kinetic_replay_in_chunks_equals_one_replay():
    # The padded paths of the last chunk carry no running cost: chunks of 48 (100 paths) give the
    # one-replay gradient to rounding.
    loss_a, grad_a, _, _ = _snapshot_gradient(dkjax.TwoPassGradient())
    loss_b, grad_b, _, _ = _snapshot_gradient(dkjax.TwoPassGradient(path_chunk=48))
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-12)
    for a, b in zip(jax.tree.leaves(grad_a), jax.tree.leaves(grad_b)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_path_cost_routes():
    sde = dkjax.NeuralSDE(2, key=jr.key(0), width=4, depth=1)
    assert dkjax.PerPathGradient().resolve(sde) == dkjax.PerPathGradient()
    assert isinstance(dkjax.AutoGradient().resolve(sde), dkjax.PerPathGradient)  # small: per path without a cost
    assert isinstance(dkjax.AutoGradient().resolve(sde, dkjax.Kinetic(1.0)), dkjax.TwoPassGradient)
    with pytest.raises(ValueError, match="path_cost observes every grid step"):
        dkjax.PerPathGradient().resolve(sde, dkjax.Kinetic(1.0))
    with pytest.raises(ValueError, match="path_cost observes every grid step"):
        _snapshot_gradient(dkjax.PerPathGradient())
    for weight in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="weight must be a positive finite number"):
            dkjax.Kinetic(weight)


def test_fit_refuses_a_bad_path_cost():
    data = jr.normal(jr.key(0), (32, 1))
    arguments = dict(t1=1.0, num_steps=4, key=jr.key(1), steps=1, progress=False, validation=None)
    initial = dkjax.GaussianInitial(jnp.zeros(1), 1.0)
    with pytest.raises(TypeError, match="path_cost must be a dkjax.AbstractPathCost"):
        dkjax.fit(dkjax.OrnsteinUhlenbeck(1.0, 1.0), data, initial, path_cost=0.1, **arguments)
    with pytest.raises(ValueError, match="path_cost observes every grid step"):
        dkjax.fit(dkjax.OrnsteinUhlenbeck(1.0, 1.0), data, initial, path_cost=dkjax.Kinetic(0.1),
                  gradient="per_path", **arguments)  # fmt: skip


@pytest.mark.slow  # two 60-step fits, about 12 s; the exact-chain tests check the prior's loss and gradient
def test_kinetic_prior_slows_the_fitted_drift():
    # Two snapshots of the same law: the data ask for no net motion, the initial drift moves
    # the population. The prior's fit ends with less kinetic energy than the plain fit.
    data = {0.5: jr.normal(jr.key(0), (256, 2)), 1.0: jr.normal(jr.key(1), (256, 2))}
    model = dkjax.NeuralSDE(2, key=jr.key(2), width=16, depth=1)
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    x = jr.normal(jr.key(3), (512, 2))

    def kinetic_energy(sde):
        return float(jnp.mean(jax.vmap(lambda x_: jnp.sum(sde.drift(0.5, x_) ** 2))(x)))

    fits = {}
    for name, cost in (("plain", None), ("prior", dkjax.Kinetic(5.0))):
        fits[name], _ = dkjax.fit(model, data, initial, num_steps=10, key=jr.key(4), steps=40, num_paths=256,
                                  validation=None, path_cost=cost, progress=False)  # fmt: skip
    assert kinetic_energy(fits["prior"]) < 0.5 * kinetic_energy(fits["plain"])

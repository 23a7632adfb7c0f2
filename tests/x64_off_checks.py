"""The main float32 paths with JAX's defaults (x64 off), run by test_float32_default.py.

Not collected with the suite (conftest turns x64 on for it, which can hide a float64
promotion of an unannotated constant); run on its own with ``--noconftest``.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from helpers import assert_unbiased, em_ou_moments

import dkjax
from dkjax._generative._objective import energy_weights

F32 = jnp.dtype(jnp.float32)
THETA, SIGMA, T, STEPS = 1.0, 0.8, 1.0, 50


def test_x64_is_off():
    assert not jax.config.jax_enable_x64 and jnp.asarray(1.0).dtype == F32


def test_simulate_and_divergence_kernel_stay_float32():
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    x0 = jnp.ones((256, 2))
    x = dkjax.simulate(sde, x0, t1=T, num_steps=STEPS, key=jr.key(0))
    res = dkjax.divergence_kernel(sde, x0, t1=T, num_steps=STEPS, key=jr.key(0))
    assert {leaf.dtype for leaf in jax.tree.leaves((x, res.x, res.score, res.dlogp))} == {F32}
    assert np.array_equal(x, res.x)  # the same noise stream


def test_observable_response_matches_the_em_chain():
    """d/dtheta E[X_T] from X_0 = 1: the EM chain's ``(1 - theta dt)^n`` differentiated, in standard errors."""
    res = dkjax.observable_response(
        dkjax.OrnsteinUhlenbeck(THETA, SIGMA), lambda x: x[0], jnp.ones((20_000, 1)), t1=T, num_steps=STEPS,
        key=jr.key(1),
    )  # fmt: skip
    exact = float(jax.grad(lambda theta: em_ou_moments(theta, SIGMA, 1.0, 0.0, T / STEPS, STEPS)[0])(THETA))
    assert res.estimate.theta.dtype == F32
    z = abs(float(res.estimate.theta) - exact) / float(res.stderr.theta)
    assert z < 5 and float(res.stderr.theta) < 0.1 * abs(exact), (res.estimate.theta, res.stderr.theta, exact)


def test_fit_and_sample_stay_float32():
    data = dkjax.toy_data("two_moons", jr.key(0), 128)
    sde, history = dkjax.fit(
        dkjax.NeuralSDE(2, key=jr.key(1), width=8, depth=1), data, dkjax.GaussianInitial(jnp.zeros(2), 1.0),
        t1=1.0, num_steps=10, key=jr.key(2), steps=3, num_paths=64, progress=False, objective="energy",
    )  # fmt: skip
    assert history.stop_reason is None and np.all(np.isfinite(history.loss))
    assert {leaf.dtype for leaf in jax.tree.leaves(dkjax.parameters(sde))} == {F32}
    samples = dkjax.sample(sde, dkjax.GaussianInitial(jnp.zeros(2), 1.0), 16, t1=1.0, num_steps=10, key=jr.key(3))
    assert samples.dtype == F32


def test_energy_weights_unbiased_in_float32():
    theta, data = 0.5, jnp.asarray([[-1.0], [-0.3], [0.2], [0.9], [1.4]])
    exact = float(2 * jnp.mean(2 * jax.scipy.stats.norm.cdf(theta - data) - 1))

    def estimate(key):
        z = jr.normal(key, (4, 1))
        return jnp.sum(energy_weights(theta + z, data)[1] * z[:, 0])

    assert_unbiased(jax.vmap(estimate)(jr.split(jr.key(3), 40_000)), exact, scale=abs(exact), max_rel_se=0.02)


def test_likelihood_ratio_on_a_short_grid():
    res = dkjax.likelihood_ratio_response(
        dkjax.OrnsteinUhlenbeck(THETA, SIGMA), lambda x: x[0], jnp.ones((1000, 1)), t1=0.3, num_steps=3,
        key=jr.key(4),
    )  # fmt: skip
    assert np.isfinite(float(res.estimate.theta))


def test_metrics_take_numpy_float64_and_integers_without_a_truncation_warning():
    import warnings

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 2)), rng.normal(size=(64, 2)) + 1.0  # NumPy float64, as np.loadtxt gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [
            dkjax.energy_distance(x, y), dkjax.energy_distance(x.astype(int), y.astype(int)),
            dkjax.sliced_wasserstein(x, y, key=jr.key(0)), dkjax.smoothed_nll(x, y, 0.5),
        ]  # fmt: skip
    assert all(v.dtype == F32 and np.isfinite(v) for v in values)

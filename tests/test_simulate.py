"""Simulation: Euler-Maruyama paths, replayable noise, diffrax interop, no retracing."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax
from helpers import TimeDependentOU, compilations_during, em_ou_moments, em_time_ou_moments, time_dependent_neural_sde

SYSTEMS = {
    "diagonal_additive": (dkjax.OrnsteinUhlenbeck(theta=1.2, sigma=0.5), 3),
    "diagonal_multiplicative": (dkjax.GeometricBrownianMotion(mu=0.1, sigma=0.4), 2),
    "general": (dkjax.LinearSDE(A=-jnp.eye(2), S=jnp.array([[0.5, 0.1, 0.2], [0.0, 0.3, -0.4]])), 2),
    "lorenz96_multiplicative": (dkjax.Lorenz96Multiplicative(forcing=8.0, noise_level=0.3), 8),
    "neural_time_dependent": (time_dependent_neural_sde(2), 2),
}


@pytest.mark.parametrize("name", SYSTEMS)
def test_simulate_matches_diffrax_euler_on_the_same_increments(name):
    sde, dim = SYSTEMS[name]
    # t0 > 0: a step that reads its coefficients at t - t0, or one step late, shows on the time-dependent systems.
    t0, t1, num_steps, key = 0.5, 1.0, 25, jax.random.key(3)
    x0 = 1.0 + 0.1 * jax.random.normal(jax.random.key(0), (4, dim))
    ours = dkjax.simulate(sde, x0, t0=t0, t1=t1, num_steps=num_steps, key=key)
    noise_dim = sde.diffusion(0.0, x0[0]).shape[-1]

    @jax.vmap
    def solve(x, path):
        bm = dkjax.BrownianIncrements(key, t0, t1, num_steps, dim=noise_dim, path_id=path)
        sol = diffrax.diffeqsolve(
            sde.terms(bm), diffrax.Euler(), t0, t1, (t1 - t0) / num_steps, x, max_steps=num_steps + 1
        )
        return sol.ys[-1]

    np.testing.assert_allclose(solve(x0, jnp.arange(x0.shape[0])), ours, rtol=1e-10, atol=1e-12)


def test_simulate_ou_moments_match_em_chain():
    theta, sigma, t1, num_steps = 1.5, 0.8, 1.0, 20
    x0 = jnp.full((100_000, 1), 2.0)
    x = dkjax.simulate(dkjax.OrnsteinUhlenbeck(theta, sigma), x0, t1=t1, num_steps=num_steps, key=jax.random.key(9))
    mean, var = em_ou_moments(theta, sigma, 2.0, 0.0, t1 / num_steps, num_steps)
    se_mean, se_var = np.sqrt(var / x.shape[0]), var * np.sqrt(2 / x.shape[0])
    assert abs(float(x.mean()) - mean) < 5 * se_mean
    assert abs(float(x.var()) - var) < 5 * se_var


def test_simulate_time_dependent_ou_matches_em_chain():
    """Coefficients that move in time, from t0 > 0: step n must use the coefficients at t0 + n dt."""
    sde = TimeDependentOU(*jnp.array([2.0, -1.2, 1.2, -0.6]))
    t0, t1, num_steps, num_paths = 0.5, 1.5, 20, 50_000
    x = dkjax.simulate(sde, jnp.full((num_paths, 1), 2.0), t0=t0, t1=t1, num_steps=num_steps, key=jax.random.key(8))
    mean, var = em_time_ou_moments(sde, 2.0, 0.0, t0, (t1 - t0) / num_steps, num_steps)
    # Reading the coefficients one step late moves the mean by about 28 and the variance by about 6 standard errors.
    late, _ = em_time_ou_moments(sde, 2.0, 0.0, t0 + (t1 - t0) / num_steps, (t1 - t0) / num_steps, num_steps)
    se_mean, se_var = np.sqrt(var / num_paths), var * np.sqrt(2 / num_paths)
    assert abs(float(late) - float(mean)) > 8 * se_mean
    assert abs(float(x.mean()) - mean) < 4 * se_mean
    assert abs(float(x.var()) - var) < 4 * se_var


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sample_draws_the_model_law_at_t1(dtype):
    """sample: initial states from the initial law, then Euler-Maruyama from t0 to t1. For the
    time-dependent OU from N(1, 0.3^2), the EM chain's exact mean and variance."""
    sde = TimeDependentOU(*jnp.array([2.0, -1.2, 1.2, -0.6], dtype))
    t0, t1, num_steps, n = 0.5, 1.5, 20, 50_000
    initial = dkjax.gaussian_initial(jnp.array([1.0], dtype), 0.3)
    x = dkjax.sample(sde, initial, n, t0=t0, t1=t1, num_steps=num_steps, key=jax.random.key(6))
    assert x.shape == (n, 1) and x.dtype == dtype
    mean, var = em_time_ou_moments(sde, 1.0, 0.09, t0, (t1 - t0) / num_steps, num_steps)
    x = np.asarray(x, np.float64)
    assert abs(x.mean() - float(mean)) < 4 * np.sqrt(float(var) / n)
    assert abs(x.var() - float(var)) < 4 * float(var) * np.sqrt(2 / n)
    again = dkjax.sample(sde, initial, n, t0=t0, t1=t1, num_steps=num_steps, key=jax.random.key(6))
    other = dkjax.sample(sde, initial, n, t0=t0, t1=t1, num_steps=num_steps, key=jax.random.key(7))
    assert np.array_equal(np.asarray(again, np.float64), x) and not np.allclose(np.asarray(other, np.float64), x)


def test_same_key_same_paths_and_chunks_reproduce_one_run():
    sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
    x0 = 8.0 + jax.random.normal(jax.random.key(0), (64, 8))
    kwargs = dict(t1=0.5, num_steps=50, key=jax.random.key(1))
    whole = dkjax.divergence_kernel(sde, x0, **kwargs)
    again = dkjax.divergence_kernel(sde, x0, **kwargs)
    chunks = [dkjax.divergence_kernel(sde, x0[i : i + 16], path_offset=i, **kwargs) for i in range(0, 64, 16)]
    for a, b in [(whole.x, again.x), (whole.score, again.score), (whole.dlogp.forcing, again.dlogp.forcing)]:
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(jnp.concatenate([c.x for c in chunks]), whole.x, rtol=1e-12)
    np.testing.assert_allclose(jnp.concatenate([c.dlogp.noise for c in chunks]), whole.dlogp.noise, rtol=1e-9)
    np.testing.assert_array_equal(dkjax.simulate(sde, x0, **kwargs), whole.x)
    other = dkjax.divergence_kernel(sde, x0, t1=0.5, num_steps=50, key=jax.random.key(2))
    assert not np.allclose(other.x, whole.x)


@pytest.mark.parametrize("entry", ["simulate", "divergence_kernel"])
def test_second_call_with_same_shapes_does_not_recompile(entry):
    function = getattr(dkjax, entry)
    x0 = jnp.zeros((8, 2))
    function(dkjax.OrnsteinUhlenbeck(1.0, 0.5), x0, t1=1.0, num_steps=10, key=jax.random.key(0))
    other_sde, other_x0, other_key = dkjax.OrnsteinUhlenbeck(2.0, 0.3), x0 + 1.0, jax.random.key(1)
    compiled, _ = compilations_during(lambda: function(other_sde, other_x0, t1=2.0, t0=0.5, num_steps=10, key=other_key))
    assert compiled == 0

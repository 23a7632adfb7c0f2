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
    initial = dkjax.GaussianInitial(jnp.array([1.0], dtype), 0.3)
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


# ---------------------------------------------------------------- SaveAt: which states simulate returns


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_save_at_rows_are_the_paths_of_simulate_to_each_time(dtype):
    """Each saved row is, to the bit, ``simulate`` run to that time with the same key (t0 > 0, an offset)."""
    sde = jax.tree.map(lambda p: jnp.asarray(p, dtype), dkjax.OrnsteinUhlenbeck(1.2, 0.7, 0.3))
    x0 = jax.random.normal(jax.random.key(0), (50, 2), dtype)
    grid = dict(t0=0.5, t1=2.5, num_steps=40, key=jax.random.key(1), path_offset=7)
    save_at = dkjax.SaveAt(t0=True, ts=[0.75, 1.5, 2.5], t1=True)
    xs = dkjax.simulate(sde, x0, **grid, save_at=save_at)
    assert xs.shape == (5, 50, 2) and xs.dtype == dtype
    np.testing.assert_array_equal(xs[0], x0)
    for row, (t, n) in zip(xs[1:], ((0.75, 5), (1.5, 20), (2.5, 40), (2.5, 40))):
        np.testing.assert_array_equal(row, dkjax.simulate(sde, x0, **{**grid, "t1": t, "num_steps": n}))
    # The default keeps its meaning: the final states, with no save axis; t1 alone in a list of saves has one.
    np.testing.assert_array_equal(dkjax.simulate(sde, x0, **grid), xs[-1])
    np.testing.assert_array_equal(dkjax.simulate(sde, x0, **grid, save_at=dkjax.SaveAt(t0=True, t1=True)), xs[jnp.array([0, -1])])
    np.testing.assert_array_equal(dkjax.simulate(sde, x0, **grid, save_at=dkjax.SaveAt(ts=[1.5])), xs[2:3])


def test_save_at_memory_does_not_grow_with_steps():
    from test_performance_properties import peak_bytes

    sde, x0 = dkjax.Lorenz96(forcing=8.0, noise=0.5), 8.0 + jax.random.normal(jax.random.key(1), (256, 40))

    def peak(steps):
        save_at = dkjax.SaveAt(t0=True, ts=[0.0025 * steps, 0.005 * steps])
        run = lambda x, k: dkjax.simulate(sde, x, t1=0.005 * steps, num_steps=steps, key=k, save_at=save_at)
        return peak_bytes(jax.jit(run), x0, jax.random.key(0))

    assert peak(4000) / peak(100) <= 1.05


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: dkjax.SaveAt(), ValueError, "SaveAt must save something"),
        (lambda: dkjax.SaveAt(ts=[]), ValueError, "ts must hold at least one time"),
        (lambda: dkjax.SaveAt(ts=[0.5, 0.5]), ValueError, r"ts must be increasing; got \[0.5, 0.5\]"),
        (lambda: dkjax.SaveAt(ts=[0.5, float("nan")]), ValueError, "every time in ts must be a finite number; got nan"),
        (lambda: dkjax.SaveAt(ts="0.5"), ValueError, "ts must be a sequence of times"),
        (lambda: dkjax.SaveAt(ts=0.5), ValueError, "ts must be a sequence of times"),
        (lambda: _simulate_saving(dkjax.SaveAt(ts=[0.33])), ValueError, "time 0.33 is not on the step grid"),
        (lambda: _simulate_saving(dkjax.SaveAt(ts=[0.5, 1.5])), ValueError, r"time 1.5 lies outside \(t0, t1\]"),
        (lambda: _simulate_saving(dkjax.SaveAt(ts=[0.0])), ValueError, r"time 0.0 lies outside \(t0, t1\]"),
        (lambda: _simulate_saving("t1"), TypeError, "save_at must be a dkjax.SaveAt; got str"),
    ],
)
def test_save_at_refuses_what_it_cannot_save(make, error, match):
    with pytest.raises(error, match=match):
        make()


def _simulate_saving(save_at):
    sde, x0 = dkjax.OrnsteinUhlenbeck(1.0, 0.5), jnp.zeros((4, 1))
    return dkjax.simulate(sde, x0, t1=1.0, num_steps=10, key=jax.random.key(0), save_at=save_at)

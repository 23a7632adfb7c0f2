"""Error bars that mean what they say: z-scores against exact references over many independent keys.

For each kind of standard error (i.i.d. over paths for observables and bin densities, batch
means for stationary responses, the delta method for conditional means) the z-scores
``(estimate - exact) / stderr`` over independent keys must have a spread (standard deviation)
within [0.8, 1.25], and 85-100% of them must satisfy ``|z| < 2``. Halved error bars give a
spread near 2, doubled ones near 0.5.

Every key draws fresh initial states and fresh noise. Enough paths enter each estimate for
the z-scores to be nearly normal: with 32 paths per stationary estimate the per-path means of
a skewed observable such as x^2 give t-like z-scores with a heavy left tail (measured with
NumPy's generator as well: 6% outside +-2, spread 1.07), hence 256 paths there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import dkjax
from helpers import em_ou_moments, ou_window_responses

THETA, SIGMA, MEAN0, STD0 = 1.0, 0.8, 0.5, 0.3
EDGES = jnp.linspace(-0.8, 1.2, 6)
SDE = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)


def assert_calibrated(z, label):
    """Spread of the z-scores in [0.8, 1.25] and 85-100% of them inside +-2."""
    z = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in z])
    assert np.all(np.isfinite(z)), f"{label}: non-finite z-scores"
    spread, inside = float(np.std(z)), float(np.mean(np.abs(z) < 2))
    assert 0.8 <= spread <= 1.25, f"{label}: spread of {z.size} z-scores {spread:.3f} (mean {np.mean(z):.3f})"
    assert inside >= 0.85, f"{label}: only {inside:.1%} of {z.size} z-scores inside +-2"


def _z(estimate, stderr, exact):
    return (np.asarray(estimate) - np.asarray(exact)) / np.asarray(stderr)


def _ou_law(theta, sigma, mu, steps):
    m, v = em_ou_moments(theta, sigma, MEAN0, STD0**2, 1.0 / steps, steps, mu)
    return m, jnp.sqrt(v)


def _moments_and_bins(x):
    """x, x^2 and the bin indicators over their widths: the observables behind a bin density."""
    inside = (x[0] >= EDGES[:-1]) & (x[0] < EDGES[1:])
    return jnp.concatenate([jnp.stack([x[0], x[0] ** 2]), inside / jnp.diff(EDGES)])


def _exact_moments_and_bins(theta, sigma, mu, steps):
    m, s = _ou_law(theta, sigma, mu, steps)
    return jnp.concatenate([jnp.stack([m, s**2 + m**2]), jnp.diff(norm.cdf((EDGES - m) / s)) / jnp.diff(EDGES)])


def _initial(key, num_paths):
    x0 = MEAN0 + STD0 * jax.random.normal(key, (num_paths, 1))
    return x0, -(x0 - MEAN0) / STD0**2


def _observable_z(num_keys, num_paths, steps):
    """z-scores of E[phi] and its (theta, sigma, mean) responses for phi = x, x^2 and five bin densities."""
    args = (THETA, SIGMA, 0.0, steps)
    value = _exact_moments_and_bins(*args)
    responses = jax.jacfwd(_exact_moments_and_bins, argnums=(0, 1, 2))(*args)
    z = []
    for i in range(num_keys):
        key = jax.random.key(1000 + i)
        x0, score0 = _initial(jax.random.fold_in(key, 1), num_paths)
        res = dkjax.observable_response(
            SDE, _moments_and_bins, x0, score0=score0, t1=1.0, num_steps=steps, key=jax.random.fold_in(key, 2),
            kernel_rate=2.0,
        )  # fmt: skip
        for name, exact in zip(("theta", "sigma", "mean"), responses):
            z.append(_z(getattr(res.estimate, name), getattr(res.stderr, name), exact))
        z.append(_z(res.value, res.value_stderr, value))
    return z


def _moments(x):
    return jnp.stack([x[0], x[0] ** 2])


def _stationary_z(num_keys, num_paths, num_steps):
    """Stationary responses of <x>, <x^2> from the chain's stationary law, against the exact truncated windows."""
    dt, windows = 0.02, [5, 25]
    stationary_var = SIGMA**2 * dt / (1 - (1 - THETA * dt) ** 2)
    exact = ou_window_responses(THETA, SIGMA, dt, windows)
    z = []
    for i in range(num_keys):
        key = jax.random.key(2000 + i)
        # Started in the stationary law with its exact score: no spin-up bias.
        x0 = np.sqrt(stationary_var) * jax.random.normal(jax.random.fold_in(key, 1), (num_paths, 1))
        res = dkjax.stationary_response(
            SDE, _moments, x0, score0=-x0 / stationary_var, dt=dt, spinup_steps=5, num_steps=num_steps,
            windows=windows, key=jax.random.fold_in(key, 2), sample_every=5, kernel_rate=5.0,
        )  # fmt: skip
        for name in ("theta", "sigma", "mean"):
            estimate, stderr = getattr(res.estimate, name), getattr(res.stderr, name)
            # d<x>/dtheta and d<x>/dsigma are exactly zero at mean zero; the estimates are not.
            z.append(_z(estimate, stderr, exact[name]))
        z.append(_z(res.value, res.value_stderr, jnp.array([0.0, stationary_var])))
    return z


def _conditional_z(num_keys, num_paths, steps):
    """z-scores of bin-conditional means E[dlogp | bin] and E[score | bin] (delta-method errors)."""

    def bin_mass(theta, sigma):
        m, s = _ou_law(theta, sigma, 0.0, steps)
        return jnp.diff(norm.cdf((EDGES - m) / s))

    mass = bin_mass(THETA, SIGMA)
    d_mass = jax.jacfwd(bin_mass, argnums=(0, 1))(THETA, SIGMA)
    m, s = _ou_law(THETA, SIGMA, 0.0, steps)
    z = []
    for i in range(num_keys):
        key = jax.random.key(3000 + i)
        x0, score0 = _initial(jax.random.fold_in(key, 1), num_paths)
        res = dkjax.density_response(
            SDE, x0, score0=score0, t1=1.0, num_steps=steps, key=jax.random.fold_in(key, 2), kernel_rate=2.0,
            bins=EDGES,
        )  # fmt: skip
        for name, derivative in zip(("theta", "sigma"), d_mass):
            # Binning is exact for bin averages: E[d log p | X in bin] = d log P(bin).
            z.append(_z(getattr(res.dlogp_mean, name), getattr(res.dlogp_mean_stderr, name), derivative / mass))
        jump = jnp.diff(norm.pdf(EDGES, m, s))  # E[score | X in bin] = jump of p over the bin / P(bin)
        z.append(_z(res.score_mean[:, 0], res.score_mean_stderr[:, 0], jump / mass))
    return z


def test_observable_and_density_errors_are_calibrated():
    """64 keys of 4000 paths: i.i.d. errors of x, x^2 and bin densities, and of their responses."""
    assert_calibrated(_observable_z(num_keys=64, num_paths=4000, steps=20), "observables and bin densities")


def test_stationary_errors_are_calibrated():
    """100 keys of 256 independent paths (one batch each): batch-means errors against exact truncated windows.

    The z-scores of one key move together (its value and responses share the paths), so the
    spread is judged over many keys; each costs little once compiled.
    """
    assert_calibrated(_stationary_z(num_keys=100, num_paths=256, num_steps=250), "stationary")


@pytest.mark.slow
def test_error_bars_are_calibrated_over_many_keys():
    """400 keys each, more paths and steps, and the delta-method errors of bin-conditional means."""
    assert_calibrated(_observable_z(num_keys=400, num_paths=20_000, steps=40), "observables and bin densities")
    assert_calibrated(_stationary_z(num_keys=400, num_paths=256, num_steps=1000), "stationary")
    # Fewer keys than above: a coarser check, of the delta-method errors only.
    assert_calibrated(_conditional_z(num_keys=100, num_paths=20_000, steps=40), "bin-conditional means")

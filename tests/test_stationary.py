"""Stationary responses: the window chosen on the plateau, its warning, and the finite-difference
baseline's lost paths, against exact Ornstein-Uhlenbeck references.

For ``dX = -theta X dt + sigma dB`` the windowed estimator ``mean_n phi(X_n) (eta_n - eta_{n-W})``
has the expectation of the response of ``E[phi(X_n)]`` to moving the parameters of the last ``W``
time units only. For ``phi = x^2`` the variance then relaxes from ``v* = sigma^2 / (2 theta)`` as
``v(W) = v* e^{-2 theta' W} + sigma'^2 / (2 theta') (1 - e^{-2 theta' W})``, and differentiating at
``theta' = theta``, ``sigma' = sigma`` (the ``W e^{-2 theta W}`` terms cancel) gives

    E[estimate at W] = (1 - e^{-2 theta W}) * d<x^2>/dparam,

a known function of W whose decorrelation time is ``1 / (2 theta)``. The tests use its exact
Euler-Maruyama form (``helpers.ou_window_responses``: W steps of the moment recursion).
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax
from dkjax._response._stationary import auto_windows
from helpers import cast, ou_window_responses
from test_response import assert_close_in_se

DT, SIGMA = 0.02, 0.8


def stationary_second_moment(theta, sigma):
    """``<x^2>`` of the Euler-Maruyama OU chain at step ``DT``."""
    return sigma**2 * DT / (1 - (1 - theta * DT) ** 2)


@functools.cache
def run_auto(theta, dtype, *, num_paths=256, num_steps=4000, seed=0):
    """``windows="auto"`` on OU from its stationary law: 256 paths x 80 time units, windows 0.1 to 10."""
    x0 = (SIGMA / np.sqrt(2 * theta)) * jax.random.normal(jax.random.key(seed), (num_paths, 1), dtype)
    sde = cast(dkjax.OrnsteinUhlenbeck(theta, SIGMA), dtype)
    return dkjax.stationary_response(
        sde, lambda x: x[0] ** 2, x0, dt=DT, spinup_steps=100, num_steps=num_steps, windows="auto",
        key=jax.random.key(seed + 1), sample_every=5, num_blocks=2, kernel_rate=5.0,
    )  # fmt: skip


def check_auto_window(res, theta):
    """The chosen window is past the decorrelation time by enough, and not far past it."""
    windows = np.asarray(res.windows)
    exact = {name: np.asarray(v[:, 1]) for name, v in ou_window_responses(theta, SIGMA, DT, windows).items()}
    full = jax.grad(stationary_second_moment, argnums=(0, 1))(theta, SIGMA)
    assert res.plateau, f"no plateau: {res.estimate.theta}"
    i = res.window_index
    assert res.window == windows[i] and res.window_time == pytest.approx(windows[i] * DT)
    for k, name in enumerate(("theta", "sigma")):
        se = float(getattr(res.chosen_stderr, name))
        # Not too short: what the chosen window truncates is below its own standard error.
        assert abs(exact[name][i] - float(full[k])) <= se, f"d/d{name}: truncation {exact[name][i] - full[k]} > se {se}"
        # The estimate there is the stationary response.
        assert_close_in_se(getattr(res.chosen_estimate, name), se, full[k], max_rel_se=0.08, label=f"auto d/d{name}")
    # Not too long: e^{-2 theta W} has fallen below 1e-3 by W = 3.5 / theta.
    assert res.window_time <= 3.5 / theta, f"chose W = {res.window_time} for theta = {theta}"
    # The windows share their paths: the error of a difference of neighbours is well below the errors combined.
    j = i + 1 if i + 1 < len(windows) else i - 1
    naive = np.hypot(float(res.stderr.theta[i]), float(res.stderr.theta[j]))
    assert float(res.difference_stderr.theta[j]) < 0.5 * naive
    assert float(res.difference_stderr.theta[i]) == 0.0


def test_auto_window_lands_on_the_ou_plateau(dtype):
    """theta = 1: decorrelation time 0.5; the window is chosen past it, within a few times it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no plateau warning here
        res = run_auto(1.0, dtype)
    assert np.asarray(res.windows).tolist() == auto_windows(5, 4000, 2)
    check_auto_window(res, 1.0)


def test_auto_window_follows_the_decorrelation_time():
    """theta = 0.4 decorrelates 2.5 times slower: the chosen window is longer, and still on the plateau."""
    slow, fast = run_auto(0.4, jnp.float64), run_auto(1.0, jnp.float64)
    check_auto_window(slow, 0.4)
    assert slow.window_time > 1.5 * fast.window_time, (slow.window_time, fast.window_time)


def test_auto_windows_grid():
    assert auto_windows(10, 16000, 2) == [10 * q for q in (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 200)]
    assert auto_windows(1, 100, 1) == [1, 2, 3, 4, 6, 8, 11, 16, 25]
    assert auto_windows(5, 10, 1) == [5]


def test_windows_too_short_warn_and_report_no_plateau():
    """theta = 0.1 (decorrelation time 5) with windows up to 0.4: the estimate is still rising."""
    theta = 0.1
    x0 = (SIGMA / np.sqrt(2 * theta)) * jax.random.normal(jax.random.key(3), (64, 1))
    sde = dkjax.OrnsteinUhlenbeck(theta, SIGMA)
    kwargs = dict(dt=DT, spinup_steps=50, key=jax.random.key(4), sample_every=5, kernel_rate=5.0)
    with pytest.warns(RuntimeWarning, match=r"no plateau.*longest window W = 20 steps \(0.4 time units\).*moved by") as record:
        res = dkjax.stationary_response(sde, lambda x: x[0] ** 2, x0, num_steps=2000, windows=[5, 10, 20], **kwargs)
    assert not res.plateau and res.window == 20 and res.window_index == 2
    assert "standard errors of the difference" in str(record[0].message)
    # The estimate truly moves there: the exact windowed response rises by 7% of itself from W = 10 to 20.
    exact = ou_window_responses(theta, SIGMA, DT, [10, 20])["theta"][:, 1]
    assert abs(float(exact[1] - exact[0])) > 0.9 * abs(float(exact[0]))
    # windows="auto" on a run too short for the decorrelation time names the run as the limit.
    with pytest.warns(RuntimeWarning, match=r"no plateau.*quarter of a block.*run longer"):
        auto = dkjax.stationary_response(sde, lambda x: x[0] ** 2, x0, num_steps=400, windows="auto", **kwargs)
    assert not auto.plateau and auto.window == 100 and auto.window_index == len(auto.windows) - 1


def test_plateau_bad_inputs():
    sde = dkjax.OrnsteinUhlenbeck(1.0, SIGMA)
    kwargs = dict(dt=0.01, spinup_steps=10, num_steps=100, key=jax.random.key(0), sample_every=5)
    with pytest.raises(ValueError, match="windows must be 'auto'"):
        dkjax.stationary_response(sde, lambda x: x[0], jnp.zeros((4, 1)), windows="plateau", **kwargs)
    with pytest.raises(ValueError, match="plateau_threshold"):
        dkjax.stationary_response(sde, lambda x: x[0], jnp.zeros((4, 1)), windows=[5], plateau_threshold=0.0, **kwargs)


class Runaway(dkjax.AbstractSDE):
    """OU near 0; above 3 the drift is quadratic (overflows), below -3 exponential (finite but huge)."""

    rate: jax.Array
    noise: jax.Array

    def drift(self, t, x):
        return self.rate * jnp.where(x > 3.0, x**2, jnp.where(x < -3.0, 2.0 * x, -x))

    def diffusion(self, t, x):
        return self.noise * jnp.ones_like(x)


def test_finite_difference_stationary_counts_lost_paths(dtype):
    """Paths that overflow, and paths still finite but 1e9 at the end, are counted, not averaged."""
    rate, noise, dt = 1.0, 0.3, 0.01
    sde = cast(Runaway(jnp.asarray(rate), jnp.asarray(noise)), dtype)
    num_stable, num_overflow, num_growing = 128, 3, 2
    x0 = jnp.concatenate([
        jnp.full((num_overflow, 1), 4.0), noise / np.sqrt(2 * rate) * jax.random.normal(jax.random.key(5), (num_stable, 1)),
        jnp.full((num_growing, 1), -3.5),
    ]).astype(dtype)  # fmt: skip
    with pytest.warns(RuntimeWarning, match=r"5 of 133 paths were lost .*non-finite or beyond"):
        res = dkjax.finite_difference_stationary(
            sde, lambda x: x[0] ** 2, x0, dt=dt, spinup_steps=10, num_steps=1000, key=jax.random.key(6),
            relative_step=0.02, num_blocks=2,
        )  # fmt: skip
    assert res.num_nonfinite == num_overflow + num_growing and res.num_paths == num_stable

    def second_moment(rate, noise):  # the stable paths' law: the Euler-Maruyama OU chain
        return noise**2 * dt / (1 - (1 - rate * dt) ** 2)

    d_rate, d_noise = jax.grad(second_moment, argnums=(0, 1))(rate, noise)
    assert_close_in_se(res.estimate.rate, res.stderr.rate, d_rate, max_rel_se=0.1, label="FD d/drate")
    assert_close_in_se(res.estimate.noise, res.stderr.noise, d_noise, max_rel_se=0.1, label="FD d/dnoise")


def test_choose_window_rule_on_given_differences():
    """The rule itself, on differences whose errors are given: Bonferroni thresholds, order, NaN."""
    from dkjax._response._stationary import choose_window, family_threshold

    assert family_threshold(2.0, 1) == pytest.approx(2.0)
    assert family_threshold(2.0, 10) == pytest.approx(2.837, abs=1e-3)
    windows = [40, 10, 20]  # unsorted on purpose: the rule goes by length
    estimate = np.array([1.0, 0.7, 0.95])  # W = 10 is 0.3 below W = 20, 40; those two agree
    mean = estimate[None, :] - estimate[:, None]  # mean[i, j] = estimate[j] - estimate[i]

    def choose(se):
        return choose_window(windows, {"theta": jnp.asarray(mean)}, {"theta": jnp.asarray(se)}, 2.0)

    # W = 10 vs the two longer ones: 3 standard errors against a threshold of 2.28 (two comparisons).
    index, plateau, worst = choose(np.full((3, 3), 0.1))
    assert (windows[index], plateau, worst) == (20, True, None)
    # 2.2 standard errors: below 2.28, so W = 10 is on the plateau.
    index, plateau, _ = choose(np.full((3, 3), 0.3 / 2.2))
    assert (windows[index], plateau) == (10, True)
    # A NaN error cannot confirm a plateau: the longest window, with the move it could not judge.
    index, plateau, worst = choose(np.full((3, 3), np.nan))
    assert (windows[index], plateau) == (40, False)
    assert worst[:4] == ("d/dtheta", 2, 0, pytest.approx(0.05)) and np.isnan(worst[4])

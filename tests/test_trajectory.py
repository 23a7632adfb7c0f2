"""Trajectory inference as the field scores it: exact W1, the push-forward protocol, t0 snapshots, the preset model.

Every statistical assertion has a fixed seed and a tolerance in standard errors of the sample
it tests (or an exact value); each test also shows that the alternative it rules out (a wrong
start time, an unfitted model, a subsampled baseline) would fail it.
"""

import inspect
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dkjax
import dkjax._generative._snapshot_eval as snapshot_eval
from dkjax._generative._arguments import check_problem, split_initial_snapshot

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- exact W1


def test_w1_is_exact_in_one_dimension_with_and_without_pot(monkeypatch):
    # In 1-D, W1 between equally many points is the mean gap of the sorted samples (exact).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 1)), 1.5 + 0.5 * rng.normal(size=(400, 1))
    exact = float(np.abs(np.sort(x[:, 0]) - np.sort(y[:, 0])).mean())
    if snapshot_eval._ot() is not None:
        assert abs(dkjax.wasserstein1(x, y) - exact) < 1e-9
    monkeypatch.setattr(snapshot_eval, "_ot", lambda: None)   # the assignment fallback
    assert abs(dkjax.wasserstein1(x, y) - exact) < 1e-9
    with pytest.raises(ImportError, match="pip install pot"):
        dkjax.wasserstein1(x, y[:300])
    with pytest.raises(ValueError, match="dimension"):
        dkjax.wasserstein1(x, np.zeros((400, 2)))
    with pytest.raises(ValueError, match="x_weights"):
        dkjax.wasserstein1(x, y, x_weights=np.ones(3))


def test_w1_of_different_sizes_and_weights_needs_pot():
    pytest.importorskip("ot")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 1)), rng.normal(size=(500, 1)) + 2.0
    # 1-D W1 is the integral of |F_x - F_y|: exact for any sizes.
    grid = np.sort(np.concatenate([x[:, 0], y[:, 0]]))
    cdf = lambda s: np.searchsorted(np.sort(s), grid[:-1], side="right") / len(s)   # noqa: E731
    exact = float((np.abs(cdf(x[:, 0]) - cdf(y[:, 0])) * np.diff(grid)).sum())
    assert abs(dkjax.wasserstein1(x, y) - exact) < 1e-9
    # Repeating a point is the same as doubling its weight.
    twice = np.concatenate([x, x[:1]])
    weights = np.ones(300)
    weights[0] = 2.0
    assert abs(dkjax.wasserstein1(twice, y) - dkjax.wasserstein1(x, y, x_weights=weights)) < 1e-9


# ---------------------------------------------------------------- the exact interpolation baseline


def test_interpolation_is_exact_for_thousands_of_points():
    # 1-D: the optimal matching is monotone, so the midpoint of equally many points is the mean of
    # the sorted samples, point for point; 1500 points, none subsampled (the old baseline kept 1000).
    a = np.asarray(jr.normal(jr.key(0), (1500, 1)))
    b = np.asarray(2.0 + 0.5 * jr.normal(jr.key(1), (1500, 1)))
    mid = np.asarray(dkjax.interpolate_snapshots(a, b, 0.5, key=jr.key(2)))
    assert mid.shape == (1500, 1)
    np.testing.assert_allclose(np.sort(mid[:, 0]), 0.5 * (np.sort(a[:, 0]) + np.sort(b[:, 0])), atol=1e-5)


def test_weighted_interpolation_has_the_exact_marginals():
    pytest.importorskip("ot")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(700, 2)), rng.normal(size=(1100, 2)) + np.array([3.0, -1.0])
    points, mass = dkjax.interpolate_snapshots(a, b, 0.25, key=jr.key(0), weights=True)
    points, mass = np.asarray(points, np.float64), np.asarray(mass, np.float64)
    assert abs(mass.sum() - 1) < 1e-5 and points.shape[0] >= 1100
    # Any plan with the right marginals has mean (1 - s) mean(a) + s mean(b), whatever its pairs.
    np.testing.assert_allclose(mass @ points, 0.75 * a.mean(0) + 0.25 * b.mean(0), atol=1e-4)
    # At s = 0 the law is the earlier snapshot itself: W1 zero (exactly, up to float32 rounding).
    start, start_mass = dkjax.interpolate_snapshots(a, b, 0.0, key=jr.key(0), weights=True)
    assert dkjax.wasserstein1(start, a, x_weights=np.asarray(start_mass, np.float64)) < 1e-5


# ---------------------------------------------------------------- the push-forward protocol


class _Ramp(dkjax.AbstractSDE):
    """``dX = c t dt + s dB``: a drift that depends on the absolute time, not only the span."""

    c: jax.Array
    s: jax.Array

    def drift(self, t, x):
        return self.c * t * jnp.ones_like(x)

    def diffusion(self, t, x):
        return self.s * jnp.ones_like(x)


def _ramp_shift(t, dt, c=1.0):
    """The Euler-Maruyama chain's displacement from 0 to ``t``: ``c dt sum_{j < n} j dt`` (exact, left points)."""
    n = round(t / dt)
    return c * dt * dt * n * (n - 1) / 2


def test_push_forward_starts_from_the_previous_time_and_its_cells(monkeypatch):
    # Snapshots at 0, 1, 2, 3: fresh N(0, 1) cells shifted by the chain's displacement. Pushing the
    # cells of t = 2 from t = 2 to t = 3 moves them by shift(3) - shift(2) = 2.45: the pushed set
    # matches the real one at t = 3 up to two samples' W1 (about 0.06 at 800 points). A start one
    # time early (t = 1), the cells of t = 1, or a wrong absolute start time all miss by >= 0.9.
    dt, times = 0.05, (0.0, 1.0, 2.0, 3.0)
    rng = np.random.default_rng(3)
    data = {t: (rng.normal(size=(800, 1)) + _ramp_shift(t, dt)).astype(np.float32) for t in times}
    sde = _Ramp(jnp.array(1.0, jnp.float32), jnp.array(1e-3, jnp.float32))
    score = dkjax.push_forward_score(sde, data, time=3.0, num_steps=60, key=jr.key(0))
    assert (score.time, score.start_time, score.num_steps, score.metric) == (3.0, 2.0, 20, "w1")
    exact = dkjax.wasserstein1(data[2.0] + (_ramp_shift(3.0, dt) - _ramp_shift(2.0, dt)), data[3.0])
    assert abs(score.distance - exact) < 0.01, (score.distance, exact)
    assert score.distance < 0.15 and score.no_motion > 2.0 and score.num_nonfinite == 0
    # What each planted off-by-one would score instead (the same cells, the same noise):
    shifted = lambda cells, start, stop: dkjax.simulate(   # noqa: E731
        sde, jnp.asarray(cells), t0=start, t1=stop, num_steps=round((stop - start) / dt), key=jr.key(0))
    wrong = {
        "cells of t_{k-2}": shifted(data[1.0], 2.0, 3.0),
        "start at t_{k-2}": shifted(data[2.0], 1.0, 3.0),
        "absolute start one interval early": shifted(data[2.0], 1.0, 2.0),
    }
    for name, pushed in wrong.items():
        assert dkjax.wasserstein1(pushed, data[3.0]) > score.distance + 0.9, name
    # The interpolation baseline between t = 2 and the (absent) next time does not exist at the end.
    assert score.interpolation is None
    middle = dkjax.push_forward_score(sde, data, time=2.0, num_steps=60, key=jr.key(0), metric="energy")
    assert middle.start_time == 1.0 and middle.metric == "energy" and middle.interpolation is not None
    assert abs(middle.distance) < 0.01 < middle.no_motion
    # The interpolation baseline at t = 1 between t = 0 and t = 2: their exact midpoint, weighted (POT), or
    # the matching of equally many points (without POT the sizes must agree; here they do).
    first = dkjax.push_forward_score(sde, data, time=1.0, num_steps=60, key=jr.key(0))
    points, mass = dkjax.interpolate_snapshots(data[0.0], data[2.0], 0.5, key=jr.key(0), weights=True)
    assert first.interpolation == dkjax.wasserstein1(points, data[1.0], x_weights=np.asarray(mass, np.float64))
    # The midpoint's mean is shift(2) / 2 = 0.975, the truth's shift(1) = 0.475: the straight line misses
    # the accelerating motion by 0.5 (W1 about 0.5), the model does not.
    assert first.interpolation > 0.4 and first.distance < 0.15
    monkeypatch.setattr(snapshot_eval, "_ot", lambda: None)   # without POT: equal sizes, the same exact numbers
    no_pot = dkjax.push_forward_score(sde, data, time=1.0, num_steps=60, key=jr.key(0))
    assert abs(no_pot.interpolation - first.interpolation) < 1e-9 and abs(no_pot.distance - first.distance) < 1e-9


def test_push_forward_scores_an_ou_interval_in_standard_errors():
    # OU cells at t = 0.5 pushed to t = 1: the pushed set and the real t = 1 set are two samples of
    # one law; W1 between two samples of N(m, v) of n points is O(sqrt(v / n)). Pushing from the
    # t = 0 cells (one time early) moves the mean by 0.49 = 25 standard errors of the mean.
    theta, sigma, n = 1.0, 0.5, 1500
    sde = dkjax.OrnsteinUhlenbeck(jnp.float32(theta), jnp.float32(sigma), jnp.float32(0.0))
    xs = dkjax.simulate(sde, jnp.full((3 * n, 1), 2.0, jnp.float32), t1=1.0, num_steps=40, key=jr.key(4),
                        save_at=dkjax.SaveAt(ts=[0.5, 1.0]))
    data = {0.0: np.full((n, 1), 2.0, np.float32), 0.5: np.asarray(xs[0][:n]), 1.0: np.asarray(xs[1][n:2 * n])}
    score = dkjax.push_forward_score(sde, data, time=1.0, num_steps=40, key=jr.key(5))
    sd = float(np.std(data[1.0]))
    assert score.distance < 4 * sd / np.sqrt(n), (score.distance, sd / np.sqrt(n))
    # Without the baselines: the same pushed paths and score, no model-free numbers.
    alone = dkjax.push_forward_score(sde, data, time=1.0, num_steps=40, key=jr.key(5), baselines=False)
    assert alone.distance == score.distance and (alone.no_motion, alone.interpolation) == (None, None)
    assert score.no_motion > 0.1 and score.interpolation is None
    early = dkjax.simulate(sde, jnp.asarray(data[0.0]), t0=0.0, t1=0.5, num_steps=20, key=jr.key(5))
    assert abs(float(early.mean()) - float(data[1.0].mean())) > 10 * sd / np.sqrt(n)
    with pytest.raises(ValueError, match="time must be one of the data's times after the first"):
        dkjax.push_forward_score(sde, data, time=0.0, num_steps=40, key=jr.key(5))
    with pytest.raises(ValueError, match="metric"):
        dkjax.push_forward_score(sde, data, time=1.0, num_steps=40, key=jr.key(5), metric="w2")
    with pytest.raises(ValueError, match="not on the step grid"):
        dkjax.push_forward_score(sde, data, time=1.0, num_steps=7, key=jr.key(5))


# ---------------------------------------------------------------- a snapshot at t0 is the initial law


def test_a_snapshot_at_t0_becomes_the_initial_law_or_is_dropped():
    x0, x1, x2 = (np.full((4, 2), v, np.float32) for v in (0.0, 1.0, 2.0))
    data = {0.0: x0, 0.5: x1, 1.0: x2}
    rest, initial = split_initial_snapshot(data, None, 0.0)
    assert rest.times == (0.5, 1.0) and isinstance(initial, dkjax.EmpiricalInitial)
    np.testing.assert_array_equal(np.asarray(initial(jr.key(0), 3)[0]), np.zeros((3, 2)))
    given = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    rest, same = split_initial_snapshot(dkjax.Snapshots(data, weights=[5.0, 1.0, 2.0]), given, 0.0)
    assert same is given and rest.times == (0.5, 1.0) and rest.weights == (1.0, 2.0)
    untouched, _ = split_initial_snapshot({0.5: x1}, given, 0.0)
    assert untouched == {0.5: x1}
    with pytest.raises(ValueError, match="initial is None"):
        split_initial_snapshot({0.5: x1}, None, 0.0)
    with pytest.raises(ValueError, match="only snapshot lies at t0"):
        split_initial_snapshot({0.0: x0}, None, 0.0)
    # fit's checks: the t0 snapshot no longer raises "lies outside (t0, t1]"; it leaves the loss.
    problem = check_problem(dkjax.OrnsteinUhlenbeck(1.0, 0.5), data, given, jr.key(0), t0=0.0, t1=None, num_steps=10)
    assert problem.data.times == (0.5, 1.0) and problem.t1 == 1.0 and problem.dim == 2 and problem.initial is given
    # The evaluations take initial=None only with a t0 snapshot, and name a bad protocol, before any fit.
    sde = dkjax.OrnsteinUhlenbeck(1.0, 0.5)
    with pytest.raises(ValueError, match="initial is None"):
        dkjax.forecast(sde, {0.5: x1, 1.0: x2}, None, num_train=1, num_steps=10, key=jr.key(0), steps=1)
    with pytest.raises(ValueError, match="protocol"):
        dkjax.leave_one_time_out(sde, data, None, time=0.5, num_steps=10, key=jr.key(0), steps=1, protocol="w1")


# ---------------------------------------------------------------- the recommended snapshot model


def test_the_snapshot_preset_is_the_documented_model_and_the_cli_config_uses_it():
    from dkjax._cli._config import train_config

    sde = dkjax.NeuralSDE.for_snapshots(3, key=jr.key(0))
    documented = dkjax.NeuralSDE(3, key=jr.key(0), width=64, depth=2, noise="diagonal", state_dependent=True,
                                 sigma_min=0.05)  # fmt: skip
    assert bool(eqx.tree_equal(sde, documented))
    sigma = sde.diffusion(0.0, 100.0 * jnp.ones(3))
    assert sigma.shape == (3,) and float(sigma.min()) >= 0.05
    model = train_config(ROOT / "configs" / "snapshots_double_well.toml")["model"]
    preset = inspect.signature(dkjax.NeuralSDE.for_snapshots).parameters
    assert (model["noise"], model["state_dependent"]) == ("diagonal", True)
    assert all(model[name] == preset[name].default for name in ("width", "depth", "sigma_init", "sigma_min"))
    assert "for_snapshots" in (ROOT / "docs" / "snapshots.md").read_text()


# ---------------------------------------------------------------- an exact reference for learned dynamics


THETA, MU, SIGMA, M0, S0 = 1.0, -1.0, 0.8, 2.0, 0.3


def _ou_marginal(t, theta=THETA, mu=MU, sigma=SIGMA):
    e = np.exp(-theta * t)
    return mu + (M0 - mu) * e, sigma**2 / (2 * theta) * (1 - e * e) + S0**2 * e * e


@pytest.mark.slow
def test_fitted_ou_marginal_at_an_unseen_time_matches_the_closed_form():
    # Snapshots of dX = -theta (X - mu) dt + sigma dB from N(2, 0.3^2) at t = 0 (data: the initial law),
    # 0.5, 1.5 and 2.0; t = 1.0 is never seen. The fitted model's closed-form marginal at t = 1
    # matches the true one within 4 standard errors of a 2000-point sample's mean and variance;
    # the starting model misses by more than 10.
    n, rng = 2000, np.random.default_rng(6)
    data = {t: rng.normal(_ou_marginal(t)[0], np.sqrt(_ou_marginal(t)[1]), (n, 1))
            for t in (0.0, 0.5, 1.5, 2.0)}  # fmt: skip
    start = dkjax.OrnsteinUhlenbeck(jnp.array(0.5), jnp.array(0.4), jnp.array(0.0))
    fitted, _ = dkjax.fit(start, data, dkjax.EmpiricalInitial(jnp.asarray(data[0.0])), num_steps=80, key=jr.key(1),
                          steps=200, num_paths=512, learning_rate=0.1, final_lr_fraction=0.01, objective="energy",
                          kernel_rate=1.0, validation=None, progress=False)  # fmt: skip
    mean, var = _ou_marginal(1.0)
    se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2 / (n - 1))
    got = _ou_marginal(1.0, float(fitted.theta), float(fitted.mean), float(fitted.sigma))
    assert abs(got[0] - mean) < 4 * se_mean and abs(got[1] - var) < 4 * se_var, (got, (mean, var), fitted)
    before = _ou_marginal(1.0, 0.5, 0.0, 0.4)
    assert abs(before[0] - mean) > 10 * se_mean or abs(before[1] - var) > 10 * se_var


@pytest.mark.slow
def test_leave_one_time_out_pushes_forward_from_a_t0_snapshot_without_initial():
    # All times as data, the first at t0 = 0 and no initial law: the t0 cells become it. Held out t = 1.0,
    # scored by the published protocol: the cells of t = 0.5 pushed to 1.0, exact W1 against all of t = 1.0.
    # A fitted OU lands within 3 times the W1 of two independent samples of the true law (the metric's floor).
    n, rng = 1000, np.random.default_rng(7)
    draw = lambda t: rng.normal(_ou_marginal(t)[0], np.sqrt(_ou_marginal(t)[1]), (n, 1))   # noqa: E731
    data = {t: draw(t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)}
    floor = dkjax.wasserstein1(draw(1.0), draw(1.0))
    start = dkjax.OrnsteinUhlenbeck(jnp.array(0.5), jnp.array(0.4), jnp.array(0.0))
    fitted, history, score = dkjax.leave_one_time_out(
        start, data, None, time=1.0, num_steps=40, key=jr.key(2), steps=100, num_paths=512, learning_rate=0.1,
        final_lr_fraction=0.01, objective="energy", kernel_rate=1.0, validation=None, progress=False,
        protocol="push_forward",
    )  # fmt: skip
    assert isinstance(score, dkjax.PushForwardScore) and (score.start_time, score.num_steps) == (0.5, 10)
    assert score.distance < 3 * floor < score.no_motion, (score, floor, fitted)
    assert len(history.loss) == 100

"""Fitting SDEs to population snapshots: the per-time gradient, time checks, recovery on exact references."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import em_ou_moments

import dkjax
from dkjax._generative._gradient import dk_gradient
from dkjax._generative._objective import energy_weights
from dkjax._engine._save_at import grid_steps
from dkjax._generative._snapshots import per_time_weights

DTYPES = [jnp.float32, jnp.float64]
# Recoveries by training: float32 in the quick suite, float64 with the slow cases (the snapshot
# gradient itself is checked exactly in both dtypes above them).
DTYPES_FLOAT64_SLOW = [jnp.float32, pytest.param(jnp.float64, marks=pytest.mark.slow)]


def _cast(tree, dtype):
    return jax.tree.map(lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf, tree)


# ---------------------------------------------------------------- the per-time gradient


def _ou(dtype=jnp.float64):
    return _cast(dkjax.OrnsteinUhlenbeck(jnp.array(1.2), jnp.array(0.7), jnp.array(0.3)), dtype)


@pytest.mark.parametrize("dtype", DTYPES_FLOAT64_SLOW)
def test_snapshot_gradient_is_the_weighted_sum_of_single_time_gradients(dtype):
    # The response at t_k read off one pass equals a separate DK run to t_k (same noise keys),
    # for both routes and the chunked replay; unequal sizes, unequal weights.
    sde = _ou(dtype)
    x0, score0 = dkjax.GaussianInitial(jnp.array([2.0], dtype), 0.5)(jr.key(0), 200)
    times, num_steps, t1 = (0.3, 0.7, 1.2), 60, 1.2
    data = tuple(m + 0.6 * jr.normal(jr.key(k), (n, 1), dtype) for k, (m, n) in enumerate([(1.6, 90), (1.1, 40), (0.6, 70)]))
    w = (1.0, 2.5, 0.5)
    steps = grid_steps(times, 0.0, t1, num_steps)
    weights = per_time_weights("energy", data, w, 32.0, jr.key(3), (0.1,) * 3, (1.0,) * 3)
    expected = {"theta": 0.0, "sigma": 0.0, "mean": 0.0}
    for k, n in enumerate(steps):
        _, g, _, _ = dk_gradient(sde, x0, score0, lambda x, k=k: energy_weights(x, data[k]), t1=times[k], num_steps=n,
                                 key=jr.key(1), kernel_rate=1.0)  # fmt: skip
        expected = {name: expected[name] + w[k] * float(getattr(g, name)) for name in expected}
    rtol = 2e-3 if dtype == jnp.float32 else 1e-9
    # float32 takes the chunked replay only: each route is a compilation of its own.
    chunked = dkjax.TwoPassGradient(path_chunk=64)
    routes = (chunked,) if dtype == jnp.float32 else (dkjax.PerPathGradient(), dkjax.TwoPassGradient(), chunked)
    for route in routes:
        _, g, _, _ = dk_gradient(sde, x0, score0, weights, steps, t1=t1, num_steps=num_steps, key=jr.key(1),
                                 kernel_rate=1.0, gradient=route)  # fmt: skip
        for name, value in expected.items():
            assert float(getattr(g, name)) == pytest.approx(value, rel=rtol, abs=rtol * 1e-2), (route, name)


T_OBS, STEPS_OBS = (0.4, 1.0), 40  # grid dt = 0.025 to t = 1.0


def _exact_snapshot_energy(theta, sigma, targets):
    """Sum over times of the energy distance between the EM chain's N(m, v) and the data law N(a, b^2), exact."""
    total = 0.0
    for t, (a, b) in zip(T_OBS, targets):
        m, v = em_ou_moments(theta, sigma, 1.0, 0.09, T_OBS[-1] / STEPS_OBS, round(t * STEPS_OBS / T_OBS[-1]))
        total = total + 2 * _gaussian_mean_abs(m - a, v + b**2) - 2 * jnp.sqrt(v / jnp.pi) - 2 * b / np.sqrt(np.pi)
    return total


def _gaussian_mean_abs(mu, var):
    s = jnp.sqrt(var)
    return s * jnp.sqrt(2 / jnp.pi) * jnp.exp(-(mu**2) / (2 * var)) + mu * jax.scipy.special.erf(mu / (s * jnp.sqrt(2.0)))


@pytest.mark.parametrize("method", ["per_path", "two_pass"])
def test_snapshot_energy_gradient_matches_exact_ou(method):
    # Against the exact gradient of the summed energy distances of the EM chain's Gaussian
    # marginals, judged in standard errors over 16 seeds (and the error must be small).
    targets = ((0.5, 0.5), (0.1, 0.6))
    sde = eqx.tree_at(lambda s: s.mean, dkjax.OrnsteinUhlenbeck(1.5, 0.8), 0.0)
    exact = np.array(jax.grad(_exact_snapshot_energy, (0, 1))(1.5, 0.8, targets))
    steps = grid_steps(T_OBS, 0.0, T_OBS[-1], STEPS_OBS)

    @eqx.filter_jit
    def estimate(key):
        x0 = 1.0 + 0.3 * jr.normal(jr.fold_in(key, 3), (2048, 1))
        data = tuple(a + b * jr.normal(jr.fold_in(key, 10 + k), (1024, 1)) for k, (a, b) in enumerate(targets))
        weights = per_time_weights("energy", data, (1.0, 1.0), 32.0, key, (0.1,) * 2, (1.0,) * 2)
        _, g, _, _ = dk_gradient(sde, x0, -(x0 - 1.0) / 0.09, weights, steps, t1=T_OBS[-1], num_steps=STEPS_OBS,
                                 key=key, kernel_rate=2.0, gradient=method)  # fmt: skip
        return jnp.stack([g.theta, g.sigma])

    samples = np.array([estimate(jr.key(20 + i)) for i in range(16)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / 4.0
    assert np.all(se < 0.15 * np.abs(exact)), (se, exact)
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, se, exact)


# ---------------------------------------------------------------- the data and its times


def test_times_off_the_grid_or_outside_are_named():
    sde, initial = _ou(), dkjax.GaussianInitial(jnp.zeros(1), 1.0)
    data = {0.5: np.zeros((4, 1)), 1.0: np.ones((4, 1))}
    fit = lambda data, **kw: dkjax.fit(sde, data, initial, key=jr.key(0), steps=1, progress=False, **kw)
    with pytest.raises(ValueError, match="time 0.33 is not on the step grid"):
        fit({0.33: np.zeros((4, 1)), 1.0: np.ones((4, 1))}, num_steps=10)
    with pytest.raises(ValueError, match=r"time 1.0 lies outside \(t0, t1\]"):
        fit(data, num_steps=8, t1=0.8)
    with pytest.raises(ValueError, match=r"time 0.5 lies outside \(t0, t1\]"):
        fit(data, num_steps=10, t0=0.6)
    with pytest.raises(ValueError, match=r"data\[1.0\] must have shape \(n, d\) with n >= 2"):
        fit({0.5: np.zeros((4, 1)), 1.0: np.ones((1, 1))}, num_steps=10)
    with pytest.raises(ValueError, match=r"data\[1.0\] has dimension 2"):
        fit({0.5: np.zeros((4, 1)), 1.0: np.ones((4, 2))}, num_steps=10)
    with pytest.raises(ValueError, match=r"data\[0.5\] holds 1 non-finite"):
        fit({0.5: np.array([[0.0], [np.nan]]), 1.0: np.ones((4, 1))}, num_steps=10)
    with pytest.raises(ValueError, match="at time 1.0: validation as a fraction"):
        fit({0.5: np.zeros((40, 1)), 1.0: np.ones((4, 1))}, num_steps=10, validation=0.3)
    with pytest.raises(ValueError, match="t1 must be given when data is one array"):
        fit(np.zeros((4, 1)), num_steps=10)
    with pytest.raises(ValueError, match="weight of time 1.0"):
        dkjax.Snapshots(data, weights={0.5: 1.0, 1.0: -1.0})
    # Decimal times on a decimal grid pass despite rounding (0.3 / 0.1 is not 3 in binary).
    assert grid_steps([0.1, 0.3, 0.7], 0.0, 0.7, 7) == (1, 3, 7)


def test_t1_defaults_to_the_last_time_and_a_zero_weight_drops_a_time():
    # With the middle time weighted 0 the run is the run on the other two (same losses, same model).
    initial = dkjax.GaussianInitial(jnp.array([1.0]), 0.3)
    rng = np.random.default_rng(0)
    points = {t: rng.normal(1.0 - t, 0.5, (64 + 16 * k, 1)) for k, t in enumerate((0.25, 0.5, 1.0))}
    run = lambda data: dkjax.fit(_ou(), data, initial, num_steps=20, key=jr.key(1), steps=3, num_paths=64,
                                 objective="energy", validation=None, progress=False)  # fmt: skip
    a, history_a = run(dkjax.Snapshots(points, weights=[1.0, 0.0, 1.0]))
    b, history_b = run({0.25: points[0.25], 1.0: points[1.0]})
    np.testing.assert_allclose(history_a.loss, history_b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12)


def test_validation_per_time_selects_a_model():
    # Also the memory-lean route through fit, replayed in chunks.
    initial = dkjax.GaussianInitial(jnp.array([1.0]), 0.3)
    rng = np.random.default_rng(1)
    data = {t: rng.normal(1.0 - t, 0.5, (100, 1)) for t in (0.5, 1.0)}
    _, history = dkjax.fit(_ou(), data, initial, num_steps=20, key=jr.key(1), steps=4, num_paths=64,
                           validate_every=2, validation_samples=128, gradient="two_pass", path_chunk=24,
                           progress=False)  # fmt: skip
    assert [v["step"] for v in history.validation] == [0, 2, 4]
    assert all(np.isfinite(v["energy_distance"]) for v in history.validation)
    assert history.best_step is not None


# ---------------------------------------------------------------- recovery on exact references

THETA, MU, SIGMA, M0, S0 = 1.0, -1.0, 0.8, 2.0, 0.3
OU_TIMES = (0.4, 1.0, 2.0)


def _ou_marginal(t):
    e = np.exp(-THETA * t)
    return MU + (M0 - MU) * e, np.sqrt(SIGMA**2 / (2 * THETA) * (1 - e * e) + S0**2 * e * e)


@pytest.mark.parametrize("dtype", DTYPES_FLOAT64_SLOW)
def test_ou_recovered_from_three_exact_marginals(dtype):
    # theta, mu and sigma from 4000 exact-marginal draws at each of 3 times, from a known N(2, 0.3^2).
    rng = np.random.default_rng(0)
    data = {t: rng.normal(*_ou_marginal(t), (4000, 1)).astype(dtype) for t in OU_TIMES}
    start = _cast(dkjax.OrnsteinUhlenbeck(jnp.array(0.5), jnp.array(0.4), jnp.array(0.0)), dtype)
    initial = dkjax.GaussianInitial(jnp.array([M0], dtype), S0)
    fitted, _ = dkjax.fit(start, data, initial, num_steps=80, key=jr.key(1), steps=300, num_paths=1024,
                          learning_rate=0.1, final_lr_fraction=0.01, objective="energy", kernel_rate=1.0,
                          validation=None, progress=False)  # fmt: skip
    for name, true in (("theta", THETA), ("mean", MU), ("sigma", SIGMA)):
        assert abs(float(getattr(fitted, name)) / true - 1) < 0.05, (name, float(getattr(fitted, name)))


class _LogNormalInitial(eqx.Module):
    """``log X_0 ~ N(m, s^2)`` and its score ``-(1 + (log x - m) / s^2) / x``."""

    m: float = eqx.field(static=True)
    s: float = eqx.field(static=True)
    dtype: object = eqx.field(static=True)

    def __call__(self, key, n):
        x0 = jnp.exp(self.m + self.s * jr.normal(key, (n, 1), self.dtype))
        return x0, -(1 + (jnp.log(x0) - self.m) / self.s**2) / x0


@pytest.mark.parametrize("dtype", DTYPES_FLOAT64_SLOW)
def test_state_dependent_diffusion_recovered(dtype):
    # Geometric Brownian motion dX = mu X dt + s X dB: the noise grows with the state. Exact
    # log-normal marginals at 3 times; the diffusion parameter s within 15%.
    mu, s, m0, s0 = 0.3, 0.5, 0.0, 0.2
    rng = np.random.default_rng(2)
    data = {t: np.exp(rng.normal(m0 + (mu - s**2 / 2) * t, np.sqrt(s0**2 + s**2 * t), (3000, 1))).astype(dtype)
            for t in (0.5, 1.0, 1.5)}  # fmt: skip
    start = _cast(dkjax.GeometricBrownianMotion(jnp.array(0.0), jnp.array(0.2)), dtype)
    fitted, _ = dkjax.fit(start, data, _LogNormalInitial(m0, s0, dtype), num_steps=60, key=jr.key(3), steps=300,
                          num_paths=1024, learning_rate=0.05, final_lr_fraction=0.01, objective="energy",
                          kernel_rate=1.0, validation=None, progress=False)  # fmt: skip
    assert abs(float(fitted.sigma) / s - 1) < 0.15, float(fitted.sigma)
    assert abs(float(fitted.mu) - mu) < 0.15 * mu, float(fitted.mu)


class _Quartic(eqx.Module):
    """``U(x) = e^{c_0} x_1^4 + c_1 x_1^2 + c_2 x_2^2 + c_3 x_1 + c_4 x_2``: a structured landscape."""

    c: jax.Array

    def __call__(self, x):
        return jnp.concatenate([jnp.exp(self.c[:1]), self.c[1:]]) @ jnp.array([x[0] ** 4, x[0] ** 2, x[1] ** 2, x[0], x[1]])


class _DoubleWell(dkjax.AbstractSDE):
    sigma: jax.Array

    def drift(self, t, x):
        return jnp.array([-4 * x[0] * (x[0] ** 2 - 1), -x[1]])

    def diffusion(self, t, x):
        return self.sigma * jnp.ones_like(x)


DW_TIMES, DW_HELD_OUT, DW_SIGMA = (0.25, 0.5, 1.0, 1.5), 0.75, 0.7


def _double_well_data(dtype, n=2000, extra=8):
    """Snapshots of V = (x1^2 - 1)^2 + x2^2 / 2 from N(0, 0.3^2 I) (out of equilibrium: the
    population splits between the wells), from a 20x finer Euler-Maruyama grid; plus
    ``extra`` independent draws at the held-out time for the metric's own noise floor."""
    initial = dkjax.GaussianInitial(jnp.zeros(2), 0.3)
    x0 = initial(jr.key(100), n * (extra + 2))[0]
    times = sorted(DW_TIMES + (DW_HELD_OUT,))
    fine = dkjax.simulate(_DoubleWell(jnp.array(DW_SIGMA)), x0, t1=times[-1], num_steps=1200, key=jr.key(101),
                          save_at=dkjax.SaveAt(ts=times))
    data = {t: np.asarray(fine[times.index(t), :n], dtype) for t in DW_TIMES}
    held = np.asarray(fine[times.index(DW_HELD_OUT)], dtype).reshape(extra + 2, n, 2)
    return data, held


def _noise_floor(held, num_samples):
    """RMS energy distance between independent true samples of the model's and the held-out size."""
    pool = held[1:].reshape(-1, 2)
    draws = [dkjax.energy_distance(pool[i * num_samples // 2:][:num_samples], held[0]) for i in range(4)]
    return float(np.sqrt(np.mean(np.square(draws))))


def _fit_double_well(dtype, steps):
    data, held = _double_well_data(dtype)
    start = dkjax.GradientFlowSDE(2, key=jr.key(0), sigma_init=0.4,
                                  potential=_Quartic(jnp.array([np.log(0.5), -0.5, 0.2, 0.0, 0.0], dtype)))  # fmt: skip
    initial = dkjax.GaussianInitial(jnp.zeros(2, dtype), 0.3)
    fitted, _ = dkjax.fit(start, data, initial, num_steps=60, key=jr.key(1), steps=steps, num_paths=512,
                          learning_rate=0.05, final_lr_fraction=0.01, objective="kl", validation=None,
                          progress=False)  # fmt: skip
    return fitted, initial, held


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_double_well_gradient_flow_recovered(dtype):
    # Noise level within 10%, and at a time never trained on (0.75) the model's energy distance
    # to fresh true samples is at most twice the metric's own noise floor there.
    fitted, initial, held = _fit_double_well(dtype, steps=300)
    assert abs(float(fitted.noise_level) / DW_SIGMA - 1) < 0.10, float(fitted.noise_level)
    x0 = initial(jr.key(5), 4000)[0]
    xs = dkjax.simulate(fitted, x0, t1=1.5, num_steps=60, key=jr.key(6), save_at=dkjax.SaveAt(ts=[DW_HELD_OUT]))[0]
    distance, floor = float(dkjax.energy_distance(xs, held[0])), _noise_floor(held, 4000)
    assert distance <= 2 * floor, (distance, floor)


@pytest.mark.slow
def test_double_well_gradient_flow_moves_toward_the_truth():
    # The suite's cheap version: 80 steps from sigma = 0.4 close most of the gap to 0.7 and
    # turn the x1^2 coefficient negative (two wells), float32.
    fitted, _, _ = _fit_double_well(jnp.float32, steps=80)
    assert abs(float(fitted.noise_level) - DW_SIGMA) < 0.5 * (DW_SIGMA - 0.4), float(fitted.noise_level)
    assert float(fitted.potential_net.c[1]) < -1.0, fitted.potential_net.c


# ---------------------------------------------------------------- models


def test_gradient_flow_drift_is_minus_the_potential_gradient_and_round_trips(tmp_path):
    sde = dkjax.GradientFlowSDE(2, key=jr.key(0), width=8, depth=1, sigma_init=0.6, sigma_min=0.1, confinement=0.5)
    x = jnp.array([0.3, -1.2])
    np.testing.assert_allclose(sde.drift(0.0, x), -jax.grad(sde.potential)(x), rtol=1e-12)
    assert float(sde.noise_level) == pytest.approx(0.6)
    model = dkjax.GenerativeModel(sde, dkjax.GaussianInitial(jnp.zeros(2), 1.0), dkjax.DataScaling.identity(2), 0.0, 1.0, 10)
    loaded = dkjax.load_model(dkjax.save_model(tmp_path / "m.eqx", model))
    assert isinstance(loaded.sde, dkjax.GradientFlowSDE) and loaded.sde.confinement == 0.5
    np.testing.assert_array_equal(loaded.sample(5, key=jr.key(1)), model.sample(5, key=jr.key(1)))
    with pytest.raises(ValueError, match="sigma_min < sigma_init"):
        dkjax.GradientFlowSDE(2, key=jr.key(0), sigma_init=0.1, sigma_min=0.2)


def test_state_dependent_noise_stays_above_its_floor(tmp_path):
    sde = dkjax.NeuralSDE(2, key=jr.key(0), width=8, depth=1, noise="diagonal", state_dependent=True, sigma_min=0.05)
    # Push the noise network far negative: the level tends to the floor, never below it.
    low = eqx.tree_at(lambda s: s.sigma_bias, sde, jnp.full(2, -50.0))
    sigma = jax.vmap(lambda x: low.diffusion(0.0, x))(10 * jr.normal(jr.key(1), (100, 2)))
    assert float(jnp.min(sigma)) >= 0.05 and float(jnp.max(sigma)) < 0.051
    model = dkjax.GenerativeModel(sde, dkjax.GaussianInitial(jnp.zeros(2), 1.0), dkjax.DataScaling.identity(2), 0.0, 1.0, 10)
    assert dkjax.load_model(dkjax.save_model(tmp_path / "m.eqx", model)).sde.sigma_min == 0.05


# ---------------------------------------------------------------- evaluation


def test_interpolation_baseline_is_the_displacement_interpolation():
    # Between N(0, 1) and N(2, 0.5^2) (1-D, monotone matching) the interpolation at s is N(2s, (1 - s/2)^2).
    a = jr.normal(jr.key(0), (800, 1))
    b = 2.0 + 0.5 * jr.normal(jr.key(1), (1000, 1))
    mid = np.asarray(dkjax.interpolate_snapshots(a, b, 0.5, key=jr.key(2)))
    assert mid.shape == (800, 1)
    assert abs(mid.mean() - 1.0) < 0.1 and abs(mid.std() - 0.75) < 0.06
    with pytest.raises(ValueError, match="fraction"):
        dkjax.interpolate_snapshots(a, b, 1.5, key=jr.key(2))


def test_leave_one_time_out_and_forecast_beat_their_baselines_on_ou():
    rng = np.random.default_rng(3)
    data = {t: rng.normal(*_ou_marginal(t), (1000, 1)) for t in (0.4, 1.0, 1.6, 2.0)}
    start, initial = dkjax.OrnsteinUhlenbeck(jnp.array(0.7), jnp.array(0.6), jnp.array(-0.5)), dkjax.GaussianInitial(jnp.array([M0]), S0)
    options = dict(num_steps=20, steps=80, num_paths=512, learning_rate=0.1, objective="energy", kernel_rate=1.0,
                   validation=None, progress=False, num_samples=1000)  # fmt: skip
    _, _, score = dkjax.leave_one_time_out(start, data, initial, time=1.0, key=jr.key(0), **options)
    assert score.time == 1.0 and score.baseline == "interpolation"
    assert score.energy_distance < score.baseline_energy_distance, score
    _, _, scores = dkjax.forecast(start, data, initial, num_train=2, key=jr.key(0), **options)
    assert [s.time for s in scores] == [1.6, 2.0] and scores[0].baseline == "last snapshot"
    assert all(s.energy_distance < s.baseline_energy_distance for s in scores), scores
    assert all(s.sliced_wasserstein < s.baseline_sliced_wasserstein for s in scores), scores


# ---------------------------------------------------------------- command line


# Slow: the quick suite trains on a shipped snapshot config (test_cli_commands, with sample --time) and reads
# a CSV's time column through the command line (test_cli); this adds both file forms end to end.
@pytest.mark.parametrize("form", ["npz", "csv"])
@pytest.mark.slow
def test_train_on_a_snapshot_file_then_sample_at_a_time(tmp_path, monkeypatch, capsys, form):
    # A snapshot at time 0 becomes the initial law; the others are fitted; sample --time draws a marginal.
    from dkjax._cli._main import main

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(4)
    snaps = {t: rng.normal([1.0 - t, 0.5 * t], 0.4 + 0.2 * t, (60 + 10 * k, 2)) for k, t in enumerate((0.0, 0.5, 1.0))}
    if form == "npz":
        np.savez("cells.npz", **{f"t{t}": x for t, x in snaps.items()})
        data = ["--set", "data.path=cells.npz"]
    else:
        rows = [f"{t},{x[0]},{x[1]}" for t, points in snaps.items() for x in points]
        Path("cells.csv").write_text("day,a,b\n" + "\n".join(rows) + "\n")
        data = ["--set", "data.path=cells.csv", "--set", "data.time_column=day"]
    settings = ["train.steps=4", "train.num_steps=10", "train.num_paths=64", "train.validate_every=2",
                "train.validation_samples=64", "eval.num_samples=64", "model.width=8"]  # fmt: skip
    args = ["train", *data, *[x for s in settings for x in ("--set", s)], "--out", "run", "--quiet"]
    assert main(args) == 0
    evaluation = json.loads(Path("run/eval.json").read_text())
    assert sorted(evaluation["times"]) == ["0.5", "1.0"]
    assert Path("run/snapshots.png").is_file()
    model = dkjax.load_model("run/model.eqx")
    assert isinstance(model.initial, dkjax.EmpiricalInitial) and model.t1 == 1.0
    assert main(["sample", "--run", "run", "--num", "5", "--out", "s.npy", "--time", "0.5"]) == 0
    assert np.load("s.npy").shape == (5, 2)
    with pytest.raises(SystemExit):
        main(["sample", "--run", "run", "--num", "5", "--out", "s.npy", "--time", "0.55"])
    assert "--time" in capsys.readouterr().err


def test_snapshot_file_errors_name_the_problem(tmp_path):
    from dkjax._cli._datafile import DataFileError, load_snapshot_file

    np.savez(tmp_path / "bad.npz", cells=np.zeros((3, 2)))
    with pytest.raises(DataFileError, match="array 'cells' names no time"):
        load_snapshot_file(tmp_path / "bad.npz")
    (tmp_path / "t.csv").write_text("time,x\n0.5,1.0\n0.5,2.0\n1.0,3.0\n")
    with pytest.raises(DataFileError, match="data.time_column = 'day' is not in the header"):
        load_snapshot_file(tmp_path / "t.csv", "day")
    with pytest.raises(DataFileError, match="time 1.0 has 1 row"):
        load_snapshot_file(tmp_path / "t.csv", "time")


@pytest.mark.parametrize("name", ["Snapshots", "EmpiricalInitial", "SaveAt", "interpolate_snapshots",
                                  "GradientFlowSDE"])  # fmt: skip
def test_docstring_examples_run_and_print_what_they_claim(name):
    import doctest

    (test,) = doctest.DocTestFinder(recurse=False).find(getattr(dkjax, name), name,
                                                        globs={"dkjax": dkjax, "jax": jax, "jnp": jnp, "np": np})  # fmt: skip
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.summarize(verbose=False).failed == 0


@pytest.mark.slow
def test_worked_example_runs(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "docs" / "examples" / "snapshots_double_well.py"), "--steps", "3", "--paths", "64",
         "--figure", str(tmp_path / "f.png")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "noise level sigma" in done.stdout and "interpolation baseline" in done.stdout
    assert (tmp_path / "f.png").is_file()


def test_fit_takes_the_snapshot_at_t0_as_its_initial_law():
    """All times given, the first at t0 and no initial: the t0 cells are the initial law and not a loss term."""
    points = lambda k, n: 0.3 * jr.normal(jr.key(k), (n, 1)) + k
    data = {0.0: points(0, 40), 0.5: points(1, 40), 1.0: points(2, 40)}
    model, history = dkjax.fit(_ou(), data, key=jr.key(3), num_steps=10, steps=2, num_paths=16, validation=None,
                               kernel_rate=2.0, progress=False)  # fmt: skip
    assert len(history.records) == 2 and all(np.isfinite(history.loss))
    with pytest.raises(ValueError, match="initial is None"):
        dkjax.fit(_ou(), {0.5: points(1, 40), 1.0: points(2, 40)}, key=jr.key(3), num_steps=10, steps=1,
                  progress=False)  # fmt: skip

"""DK-SDE training: parameter recovery on OU, exact resume, stability stops, input checks."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import dkjax
from helpers import cast, compilations_during

F32, F64 = jnp.float32, jnp.float64


def _ou_data(theta, sigma, mean0, std0, t1, n, key):
    """Samples of the exact (continuous-time) OU marginal at ``t1`` from ``N(mean0, std0^2)``."""
    theta, sigma, mean0, std0 = (np.asarray(v, float) for v in (theta, sigma, mean0, std0))
    decay = np.exp(-theta * t1)
    mean = mean0 * decay
    var = std0**2 * decay**2 + sigma**2 * (1 - decay**2) / (2 * theta)
    return jnp.asarray(mean + np.sqrt(var) * np.asarray(jr.normal(key, (n, mean0.shape[0]))))


def _frozen_mean_ou(theta, sigma):
    # The OU mean is not identifiable together with theta from p_T alone: hold it fixed.
    return eqx.tree_at(lambda m: m.mean, dkjax.OrnsteinUhlenbeck(theta, sigma), 0.0)


OU_CASES = [
    # theta, sigma, mean0, std0, start theta, start sigma, objective, dtype (float32 for both objectives)
    (1.5, 0.8, [1.0], [0.3], 0.5, 0.4, "kl", F32),
    (0.7, 0.5, [-2.0], [0.5], 2.0, 1.0, "kl", F64),
    pytest.param(([1.0, 2.0], [0.4, 1.0], [1.5, -1.0], [0.2, 0.6], [0.5, 0.5], [0.8, 0.8], "kl", F64), marks=pytest.mark.slow),
    (1.5, 0.8, [1.0], [0.3], 0.5, 0.4, "energy", F32),
]


@pytest.mark.parametrize("case", OU_CASES)
def test_fit_recovers_ou_drift_and_noise(case):
    theta, sigma, mean0, std0, theta_start, sigma_start, objective, dtype = case
    t1, steps = 1.0, 150
    data = _ou_data(theta, sigma, mean0, std0, t1, 4096, jr.key(0)).astype(dtype)
    ones = jnp.ones(len(mean0), dtype)
    model = _frozen_mean_ou(jnp.asarray(theta_start, dtype) * ones, jnp.asarray(sigma_start, dtype) * ones)
    initial = dkjax.GaussianInitial(jnp.asarray(mean0, dtype), jnp.asarray(std0, dtype))
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, steps, 0.05))
    fitted, history = dkjax.fit(
        model, data, initial, t1=t1, num_steps=40, key=jr.key(1), steps=steps,
        optimizer=optimizer, num_paths=1024, kernel_rate=2.0, objective=objective, progress=False,
    )  # fmt: skip
    assert history.stop_reason is None and len(history.loss) == steps and fitted.theta.dtype == dtype
    np.testing.assert_allclose(fitted.theta, np.broadcast_to(theta, fitted.theta.shape), rtol=0.1)
    np.testing.assert_allclose(fitted.sigma, np.broadcast_to(sigma, fitted.sigma.shape), rtol=0.1)


def _tiny_problem(dtype=F64):
    sde = cast(dkjax.NeuralSDE(2, key=jr.key(0), width=8, depth=1), dtype)
    data = jr.normal(jr.key(1), (64, 2), dtype) * 0.5 + 1.0
    return sde, data, dkjax.GaussianInitial(jnp.zeros(2, dtype), 1.0)


def _fit_tiny(steps, directory, resume=False, dtype=F64, **kwargs):
    sde, data, initial = _tiny_problem(dtype)
    return dkjax.fit(
        sde, data, initial, t1=1.0, num_steps=10, key=jr.key(2), steps=steps, num_paths=64, batch_size=32,
        kernel_rate="auto", kernel_rate_every=2, checkpoint_dir=directory, checkpoint_every=3, resume=resume,
        optimizer=optax.adam(1e-2), validate_every=2, progress=False, **kwargs,
    )  # fmt: skip


def test_resume_is_bit_identical(tmp_path):
    """In float32, where rounding differences between two programs would show first."""
    full, full_history = _fit_tiny(7, tmp_path / "full", dtype=F32)
    _fit_tiny(3, tmp_path / "split", dtype=F32)
    resumed, resumed_history = _fit_tiny(
        7, tmp_path / "split", resume=True, dtype=F32, metrics_file=tmp_path / "m.jsonl"
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(dkjax.parameters(resumed))} == {jnp.dtype(F32)}
    for a, b in zip(jax.tree.leaves(dkjax.parameters(full)), jax.tree.leaves(dkjax.parameters(resumed))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    untimed = lambda records: [{k: v for k, v in r.items() if k != "time"} for r in records]
    assert untimed(resumed_history.records) == untimed(full_history.records)
    # The 3-step run ended with an evaluation of its own at step 3, which the 7-step run does not make.
    resumed_validation = [r for r in resumed_history.validation if r["step"] != 3]
    assert untimed(resumed_validation) == untimed(full_history.validation)
    assert resumed_history.best_step == full_history.best_step
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 7
    # And the run really moved away from its start (else equality is vacuous).
    start = dkjax.parameters(_tiny_problem(F32)[0])
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(full)))


def test_nonfinite_loss_stops_and_keeps_last_good(tmp_path):
    # theta dt = 30: Euler-Maruyama explodes at once.
    model = _frozen_mean_ou(3000.0, 0.5)
    data = jr.normal(jr.key(0), (64, 1))
    with pytest.warns(RuntimeWarning) as caught:
        fitted, history = dkjax.fit(
            model, data, dkjax.GaussianInitial([0.0], [1.0]), t1=1.0, num_steps=100, key=jr.key(1), steps=5,
            num_paths=64, progress=False,
        )  # fmt: skip
    messages = " ".join(str(w.message) for w in caught)
    assert "stiffness" in messages
    assert history.stop_reason is not None and "step 0" in history.stop_reason
    assert "kernel_rate" in history.stop_reason and "learning rate" in history.stop_reason
    assert "went non-finite" in history.stop_reason or "overflowed" in history.stop_reason
    assert float(fitted.theta) == 3000.0 and len(history.records) == 0


def test_training_step_compiles_once_for_a_model_built_from_python_numbers():
    # OU(1.5, 0.8) holds weakly typed parameters; the optimiser's updates are not. Three steps
    # must compile what one step compiles (the step and the validation, once each).
    data = 0.5 * jr.normal(jr.key(0), (64, 1))
    run = lambda steps, lr: dkjax.fit(dkjax.OrnsteinUhlenbeck(1.5, 0.8), data, dkjax.GaussianInitial([0.0], [1.0]),
                                      t1=1.0, num_steps=10, key=jr.key(1), steps=steps, num_paths=32, progress=False,
                                      learning_rate=lr)  # fmt: skip
    run(1, 1e-3)  # compiles the eager operations fit shares between calls
    counts = [compilations_during(lambda: run(steps, 2e-3))[0] for steps in (1, 3)]
    assert counts[0] == counts[1] > 0, counts


@pytest.mark.parametrize("snapshots", [False, True])
def test_a_repeated_fit_compiles_nothing(snapshots):
    """Same settings, shapes and model structure: the second fit reuses the compiled step, validation
    and pilot, also with new data, a new key, a new t1 and new initial weights."""
    def run(seed, t1):
        key = jr.key(seed)
        points = lambda k: 0.5 * jr.normal(jr.fold_in(key, k), (64, 2))
        data = {0.5 * t1: points(0), t1: points(1)} if snapshots else points(0)
        model = dkjax.NeuralSDE(2, key=jr.fold_in(key, 2), width=8)
        initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
        return dkjax.fit(model, data, initial, t1=t1, num_steps=10, key=jr.fold_in(key, 3), steps=3, num_paths=32,
                         validate_every=2, kernel_rate_every=2, progress=False)  # fmt: skip

    first, _ = compilations_during(lambda: run(0, 1.0))
    second, (model, history) = compilations_during(lambda: run(1, 2.0))
    assert first > 0 and second == 0, (first, second)
    assert len(history.records) == 3 and history.best_step is not None


@pytest.mark.parametrize(
    "change, match",
    [
        ({"data": jnp.zeros((10, 3))}, "dimension"),
        ({"data": jnp.zeros((1, 2))}, "at least 2"),
        ({"data": jnp.full((10, 2), jnp.nan)}, "row 0, column 0 is nan"),
        ({"data": jnp.zeros(10)}, "data must have shape"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"kernel_rate": -1.0}, "kernel_rate"),
        ({"objective": "mmd"}, "objective"),
        ({"gradient": "backprop"}, "gradient"),
        ({"steps": 0}, "steps"),
        ({"checkpoint_every": 5}, "checkpoint_dir"),
        ({"path_chunk": 0}, "path_chunk"),
        ({"path_chunk": 8, "gradient": "per_path"}, "path_chunk applies to the two-pass"),
    ],
)
def test_bad_inputs_raise_before_work(change, match):
    sde, data, initial = _tiny_problem()
    kwargs = dict(t1=1.0, num_steps=10, key=jr.key(0), steps=3, progress=False)
    data = change.pop("data", data)
    with pytest.raises(ValueError, match=match):
        dkjax.fit(sde, data, initial, **{**kwargs, **change})


def test_sample_shapes_and_reproducibility(dtype):
    sde, _, initial = _tiny_problem(dtype)
    a = dkjax.sample(sde, initial, 100, t1=1.0, num_steps=10, key=jr.key(3))
    b = dkjax.sample(sde, initial, 100, t1=1.0, num_steps=10, key=jr.key(3))
    assert a.shape == (100, 2) and a.dtype == dtype and np.array_equal(a, b) and math.isfinite(float(jnp.sum(a)))


@pytest.mark.slow
def test_two_moons_beats_best_gaussian_threefold():
    """Two moons with fit's defaults (float32), shortened to 300 steps."""
    f32 = jnp.float32
    data = dkjax.toy_data("two_moons", jr.key(0), 4096).astype(f32)
    heldout = dkjax.toy_data("two_moons", jr.key(1), 2048).astype(f32)
    sde = dkjax.NeuralSDE(2, key=jr.key(2))
    sde = jax.tree.map(lambda a: a.astype(f32) if eqx.is_inexact_array(a) else a, sde)
    initial = dkjax.GaussianInitial(jnp.zeros(2, f32), 1.0)
    fitted, history = dkjax.fit(sde, data, initial, t1=1.0, num_steps=50, key=jr.key(3), steps=300, progress=False)
    assert history.stop_reason is None
    assert history.best_step >= 200, history.validation
    samples = dkjax.sample(fitted, initial, 2048, t1=1.0, num_steps=50, key=jr.key(4))
    cov_root = jnp.linalg.cholesky(jnp.cov(data.T))
    gaussian = jnp.mean(data, 0) + jr.normal(jr.key(5), (2048, 2), f32) @ cov_root.T
    model_distance = float(dkjax.energy_distance(samples, heldout))
    gaussian_distance = float(dkjax.energy_distance(gaussian, heldout))
    assert model_distance * 3 < gaussian_distance, (model_distance, gaussian_distance)


@pytest.mark.slow
def test_lorenz96_prior_recovers_forcing_and_noise_with_energy_objective():
    """20-D stochastic Lorenz-96 snapshots at T = 0.5 (about 2 minutes on 2 CPU cores)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "lorenz96_prior.py"
    spec = importlib.util.spec_from_file_location("lorenz96_prior", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    forcing, noise, history = example.recover("energy")
    assert history.stop_reason is None
    assert abs(forcing / 8.0 - 1) < 0.02, forcing
    assert abs(noise / 0.5 - 1) < 0.2, noise


def test_an_optimizer_that_cannot_be_hashed_still_trains():
    """The compiled step is keyed on the optimiser; one that cannot be hashed is keyed by identity instead."""
    import optax

    class Unhashable(tuple):  # an optax transformation held in a type that refuses hashing
        __hash__ = None

    adam = optax.adam(1e-2)
    optimizer = Unhashable(adam)
    optimizer.init, optimizer.update = adam.init, adam.update  # noqa: B010
    data = 0.5 * jr.normal(jr.key(0), (64, 1))
    model, history = dkjax.fit(dkjax.OrnsteinUhlenbeck(1.5, 0.8), data, dkjax.GaussianInitial([0.0], [1.0]), t1=1.0,
                               num_steps=10, key=jr.key(1), steps=2, num_paths=32, optimizer=optimizer,
                               clip_norm=None, validation=None, progress=False)  # fmt: skip
    assert len(history.records) == 2 and float(model.theta) != 1.5


def test_a_gradient_route_module_trains_exactly_as_its_shorthand():
    data = 0.5 * jr.normal(jr.key(0), (64, 1))

    def run(**gradient):
        model, _ = dkjax.fit(dkjax.OrnsteinUhlenbeck(1.5, 0.8), data, dkjax.GaussianInitial(jnp.zeros(1), jnp.ones(1)),
                             t1=1.0, num_steps=10, key=jr.key(1), steps=2, num_paths=32, validation=None,
                             progress=False, **gradient)  # fmt: skip
        return np.array([float(model.theta), float(model.sigma)])

    chunked = run(gradient=dkjax.TwoPassGradient(path_chunk=12))
    np.testing.assert_array_equal(chunked, run(gradient="two_pass", path_chunk=12))
    np.testing.assert_array_equal(run(gradient=dkjax.PerPathGradient()), run(gradient="per_path"))
    assert not np.array_equal(chunked, [1.5, 0.8])

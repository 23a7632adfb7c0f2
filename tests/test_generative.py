"""Trained generative models: data scaling, self-sampling, save/load, fit_generative, model selection."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import dkjax

DTYPES = [jnp.float32, jnp.float64]


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


@pytest.mark.parametrize("dtype", DTYPES)
def test_data_scaling_round_trip_and_moments(dtype):
    data = jr.normal(jr.key(0), (500, 3), dtype) * jnp.array([1e-3, 5.0, 200.0], dtype) + jnp.array([0.007, -3.0, 1e4])
    data = data.astype(dtype)
    scaling = dkjax.DataScaling.fit(data)
    standard = scaling.standardize(data)
    np.testing.assert_allclose(jnp.mean(standard, 0), 0.0, atol=1e-4 if dtype == jnp.float32 else 1e-12)
    np.testing.assert_allclose(jnp.std(standard, 0), 1.0, rtol=1e-4 if dtype == jnp.float32 else 1e-12)
    tol = 4 * float(jnp.finfo(dtype).eps)
    error = np.abs(np.asarray(scaling.unstandardize(standard) - data)) / np.asarray(scaling.scale)
    assert error.max() <= tol, error.max(axis=0)


def test_data_scaling_rejects_constant_column():
    data = jnp.stack([jnp.arange(5.0), jnp.full(5, 2.0)], axis=1)
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant"):
        dkjax.DataScaling.fit(data)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_initial_draws_its_law_and_broadcasts_a_scalar_std(dtype):
    mean = jnp.array([1.0, -2.0], dtype)
    initial = dkjax.GaussianInitial(mean, 0.5)
    assert initial.std.shape == (2,) and initial.std.dtype == dtype and initial.mean.dtype == dtype
    x0, score0 = initial(jr.key(0), 64)
    # The same numbers as before the checks moved into the module: mean + std * N(0, 1) of the key.
    np.testing.assert_array_equal(x0, mean + 0.5 * jr.normal(jr.key(0), (64, 2), dtype))
    np.testing.assert_allclose(score0, -(x0 - mean) / 0.25, rtol=1e-6 if dtype == jnp.float32 else 1e-12)
    np.testing.assert_array_equal(dkjax.GaussianInitial(mean, jnp.full(2, 0.5, dtype))(jr.key(0), 64)[0], x0)
    # Integer means are accepted and converted to the default float.
    assert dkjax.GaussianInitial(jnp.array([1, 2]), 1).mean.dtype == jnp.result_type(float)


@pytest.mark.parametrize(
    "mean, std, match",
    [
        (jnp.zeros((2, 2)), 1.0, r"mean must be a vector \(d,\); got shape \(2, 2\)"),
        (jnp.zeros(2), jnp.ones(3), r"std must be a positive scalar or a vector of shape \(2,\); got shape \(3,\)"),
        (jnp.zeros(2), -1.0, r"std must be a positive scalar or a vector of shape \(2,\); got \[-1. -1.\]"),
        (jnp.zeros(2), jnp.array([1.0, 0.0]), "std must be a positive scalar"),
        (jnp.array([0.0, jnp.nan]), 1.0, r"mean holds 1 non-finite value\(s\)"),
        (jnp.zeros(2), jnp.inf, r"std holds 2 non-finite value\(s\)"),
    ],
)
def test_gaussian_initial_checks_its_arguments_when_built(mean, std, match):
    with pytest.raises(ValueError, match=match):
        dkjax.GaussianInitial(mean, std)


def test_gaussian_initial_builds_inside_a_transform():
    """Under jit the values are unknown: the shapes are checked, the draws work."""
    draw = jax.jit(lambda m, s: dkjax.GaussianInitial(m, s)(jr.key(1), 3)[0])
    np.testing.assert_array_equal(draw(jnp.zeros(2), 1.0), dkjax.GaussianInitial(jnp.zeros(2), 1.0)(jr.key(1), 3)[0])
    with pytest.raises(ValueError, match="std must be a positive scalar or a vector of shape"):
        jax.jit(lambda m: dkjax.GaussianInitial(m, jnp.ones(3))(jr.key(1), 3))(jnp.zeros(2))


def _model(dtype, t1=1.0, num_steps=10):
    sde = _cast(dkjax.NeuralSDE(2, key=jr.key(0), width=8, depth=1), dtype)
    scaling = dkjax.DataScaling(jnp.array([10.0, -5.0], dtype), jnp.array([2.0, 0.5], dtype))
    return dkjax.GenerativeModel(sde, dkjax.GaussianInitial(jnp.zeros(2, dtype), 1.0), scaling, 0.0, t1, num_steps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_generative_model_samples_in_data_units(dtype):
    model = _model(dtype)
    samples = model.sample(4096, key=jr.key(1))
    assert samples.shape == (4096, 2) and samples.dtype == dtype
    # Same key, same paths: the model's own law in standardised units, mapped back.
    standard = dkjax.sample(model.sde, model.initial, 4096, t1=1.0, num_steps=10, key=jr.key(1))
    np.testing.assert_array_equal(samples, model.scaling.unstandardize(standard))  # model.sample is an alias
    assert abs(float(jnp.mean(samples[:, 0])) - 10.0) < 1.0 and abs(float(jnp.mean(samples[:, 1])) + 5.0) < 0.3


def test_generative_model_sample_at_grid_time_and_errors():
    model = _model(jnp.float64)
    early = model.sample(8, key=jr.key(2), t=0.3)
    # Three steps of the same paths: simulate directly to check.
    init_key, path_key = jr.split(jr.key(2))
    x0 = model.initial(init_key, 8)[0]
    expected = dkjax.simulate(model.sde, x0, t1=0.3, num_steps=3, key=path_key)
    np.testing.assert_allclose(early, model.scaling.unstandardize(expected), rtol=1e-12)
    for bad in (0.0, 1.2, 0.25):
        with pytest.raises(ValueError, match="t must lie in"):
            model.sample(8, key=jr.key(2), t=bad)
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0, key=jr.key(2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_and_load_round_trip(tmp_path, dtype):
    model = _model(dtype, t1=0.5, num_steps=5)
    path = dkjax.save_model(tmp_path / "sub" / "model.eqx", model)
    loaded = dkjax.load_model(path)
    assert (loaded.t0, loaded.t1, loaded.num_steps) == (0.0, 0.5, 5)
    arrays = lambda m: jax.tree.leaves(eqx.filter(m, eqx.is_array))
    for a, b in zip(arrays(model), arrays(loaded), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(loaded.sample(16, key=jr.key(3)), model.sample(16, key=jr.key(3)))


def test_load_needs_a_template_for_structured_sdes(tmp_path):
    sde = dkjax.OrnsteinUhlenbeck(theta=jnp.array([1.5]), sigma=jnp.array([0.7]))
    model = dkjax.GenerativeModel(
        sde, dkjax.GaussianInitial(jnp.zeros(1), 1.0), dkjax.DataScaling.identity(1), 0.0, 1.0, 10
    )
    path = dkjax.save_model(tmp_path / "ou.eqx", model)
    with pytest.raises(ValueError, match="pass like="):
        dkjax.load_model(path)
    like = dkjax.OrnsteinUhlenbeck(theta=jnp.array([0.0]), sigma=jnp.array([0.0]))
    loaded = dkjax.load_model(path, like=like)
    assert float(loaded.sde.theta[0]) == 1.5 and float(loaded.sde.sigma[0]) == 0.7
    (tmp_path / "junk.eqx").write_bytes(b"not a model\n")
    with pytest.raises(ValueError, match="not a dkjax model file"):
        dkjax.load_model(tmp_path / "junk.eqx")


@pytest.mark.parametrize("dtype", [jnp.float32, pytest.param(jnp.float64, marks=pytest.mark.slow)])
def test_fit_generative_learns_data_in_its_own_units(dtype):
    """A Gaussian far from N(0, I) in odd units: the standardised model only has to stay put."""
    loc, scale = jnp.array([300.0, -0.02], dtype), jnp.array([40.0, 0.001], dtype)
    data = loc + scale * jr.normal(jr.key(0), (2048, 2), dtype)
    model, history = dkjax.fit_generative(
        data, key=jr.key(1), steps=30, num_steps=10, num_paths=256, validate_every=10, progress=False,
        sde=_cast(dkjax.NeuralSDE(2, key=jr.key(2), width=8, depth=1, sigma_init=0.3), dtype),
    )  # fmt: skip
    assert history.stop_reason is None and history.best_step is not None
    samples = model.sample(4096, key=jr.key(3))
    assert samples.dtype == dtype
    # Means within 0.25 data standard deviations, spreads within 35%: wrong units miss by orders.
    assert np.all(np.abs(np.asarray(jnp.mean(samples, 0) - loc)) < 0.25 * np.asarray(scale))
    ratio = np.asarray(jnp.std(samples, 0) / scale)
    assert np.all((ratio > 0.65) & (ratio < 1.35)), ratio


def _diverging_problem():
    """Training data far from the validation data: the held-out distance grows as training goes on."""
    sde = dkjax.OrnsteinUhlenbeck(theta=jnp.array([0.5]), sigma=jnp.array([1.0]))
    initial = dkjax.GaussianInitial(jnp.zeros(1), 1.0)
    train = 3.0 + 0.2 * jr.normal(jr.key(0), (512, 1))
    held_out = jr.normal(jr.key(1), (512, 1))
    return sde, initial, train, held_out


def _fit_diverging(**options):
    sde, initial, train, held_out = _diverging_problem()
    options = {"validation": held_out, **options}
    return dkjax.fit(
        dkjax.OrnsteinUhlenbeck(theta=sde.theta, sigma=sde.sigma, mean=jnp.zeros(1)), train, initial, t1=1.0,
        num_steps=10, key=jr.key(2), steps=12, num_paths=256, optimizer=optax.adam(0.1), kernel_rate=2.0,
        validate_every=2, progress=False, **options,
    )  # fmt: skip


def test_fit_returns_the_best_held_out_model_not_the_last():
    fitted, history = _fit_diverging()
    distances = [r["energy_distance"] for r in history.validation]
    assert [r["step"] for r in history.validation] == list(range(0, 13, 2))
    # The held-out distance climbs far beyond its noise: the kept model is an early one, at or
    # after the lowest score (a later one only while within noise of it).
    assert distances[-1] > 3 * min(distances)
    best = history.best_step
    assert int(np.argmin(distances)) * 2 <= best < 12
    # Rerun to the selected step without validation: the same parameters, bit for bit.
    sde, initial, train, _ = _diverging_problem()
    if best == 0:
        reference = dkjax.OrnsteinUhlenbeck(theta=sde.theta, sigma=sde.sigma, mean=jnp.zeros(1))
    else:
        reference, _ = dkjax.fit(
            dkjax.OrnsteinUhlenbeck(theta=sde.theta, sigma=sde.sigma, mean=jnp.zeros(1)), train, initial, t1=1.0,
            num_steps=10, key=jr.key(2), steps=best, num_paths=256, optimizer=optax.adam(0.1), kernel_rate=2.0,
            validation=None, progress=False,
        )  # fmt: skip
    for a, b in zip(jax.tree.leaves(dkjax.parameters(fitted)), jax.tree.leaves(dkjax.parameters(reference))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    last, _ = _fit_diverging(validation=None)
    assert not np.array_equal(np.asarray(last.mean), np.asarray(fitted.mean))


def test_patience_stops_after_evaluations_without_improvement():
    _, history = _fit_diverging(patience=2)
    lowest = history.validation[int(np.argmin([r["energy_distance"] for r in history.validation]))]["step"]
    assert history.stopped_early and "early stop" in history.stop_reason
    assert history.validation[-1]["step"] == lowest + 4  # two evaluations, two steps apart, without a new lowest
    assert len(history.records) == lowest + 4


@pytest.mark.parametrize("as_array", [np.asarray, jnp.asarray])
def test_fit_generative_converts_integer_data_to_floats(as_array):
    data = as_array(np.random.default_rng(0).integers(0, 10, (40, 2)))
    model, _ = dkjax.fit_generative(
        data, key=jr.key(0), steps=1, num_steps=4, num_paths=8, progress=False, discrete_columns=(),
        sde=dkjax.NeuralSDE(2, key=jr.key(1), width=4),
    )  # fmt: skip
    samples = model.sample(3, key=jr.key(2))
    assert jnp.issubdtype(samples.dtype, jnp.floating) and bool(jnp.all(jnp.isfinite(samples)))


def test_fit_generative_names_the_row_of_a_nan_before_standardising():
    data = np.random.default_rng(0).normal(size=(300, 2))
    data[123, 1] = np.nan
    with pytest.raises(ValueError, match=r"data: row 123, column 1 is nan .*; 1 row\(s\) hold NaN"):
        dkjax.fit_generative(data, key=jr.key(0), steps=1)
    with pytest.raises(TypeError, match="data must be an array of numbers"):
        dkjax.fit_generative(np.array([["a", "b"], ["c", "d"]]), key=jr.key(0), steps=1)


def test_progress_off_a_terminal_writes_short_lines(capsys):
    sde, initial, train, _ = _diverging_problem()
    dkjax.fit(sde, train, initial, t1=1.0, num_steps=4, key=jr.key(2), steps=3, num_paths=16, progress=True)
    err = capsys.readouterr().err  # not a terminal: no carriage-return redraws piling up into one line
    lines = err.splitlines()
    assert "\r" not in err and lines and max(map(len, lines)) <= 100
    assert lines[-1].startswith("dkjax fit: 100%") and "3/3" in lines[-1]


def test_validation_arguments_are_checked():
    sde, initial, train, held_out = _diverging_problem()
    common = dict(t1=1.0, num_steps=10, key=jr.key(2), steps=2, num_paths=16, progress=False)
    with pytest.raises(ValueError, match="validation has dimension 2"):
        dkjax.fit(sde, train, initial, validation=jnp.zeros((10, 2)), **common)
    with pytest.raises(ValueError, match="validation: row 3, column 0 is nan"):
        dkjax.fit(sde, train, initial, validation=held_out.at[3, 0].set(jnp.nan), **common)
    with pytest.raises(ValueError, match="validation as a fraction"):
        dkjax.fit(sde, train, initial, validation=1.5, **common)
    with pytest.raises(ValueError, match="validation as a fraction"):
        dkjax.fit(sde, train[:3], initial, validation=0.5, **common)
    with pytest.raises(ValueError, match="patience must be a positive int"):
        dkjax.fit(sde, train, initial, patience=0, **common)


def test_resume_refuses_a_different_schedule_and_keeps_a_new_fixed_rate(tmp_path):
    sde, initial, train, _ = _diverging_problem()
    common = dict(t1=1.0, num_steps=10, key=jr.key(2), num_paths=32, progress=False, checkpoint_dir=tmp_path)
    dkjax.fit(sde, train, initial, steps=4, kernel_rate=2.0, **common)
    with pytest.raises(ValueError, match="resume with steps=4"):
        dkjax.fit(sde, train, initial, steps=8, kernel_rate=2.0, resume=True, **common)
    common["checkpoint_dir"] = tmp_path / "own_optimizer"
    dkjax.fit(sde, train, initial, steps=4, kernel_rate=2.0, optimizer=optax.adam(0.01), **common)
    _, history = dkjax.fit(sde, train, initial, steps=8, kernel_rate=3.0, resume=True, optimizer=optax.adam(0.01), **common)
    assert [r["kernel_rate"] for r in history.records] == [2.0] * 4 + [3.0] * 4


def test_selection_keeps_a_later_model_within_two_standard_errors_of_the_lowest():
    from dkjax._generative._state import _Selection

    rng = np.random.default_rng(0)
    lowest_terms = rng.normal(size=400) * 0.1
    later_terms = lowest_terms + rng.normal(size=400) * 0.1
    stderr = 2 * np.std(later_terms - lowest_terms) / np.sqrt(400)  # about 0.014
    selection = _Selection()
    assert selection.within_noise(0.2, later_terms)  # the untrained model, kept until one beats it
    selection.update(0, 0.2, later_terms)
    assert selection.within_noise(0.01, lowest_terms)  # a new lowest
    selection.update(1, 0.01, lowest_terms)
    assert selection.within_noise(0.01 + 1.9 * stderr, later_terms)
    assert not selection.within_noise(0.01 + 2.1 * stderr, later_terms)
    assert not selection.within_noise(float("inf"), later_terms)
    restored = _Selection.from_record(selection.record())
    assert restored.lowest == 0.01 and restored.lowest_step == 1 and restored.start == 0.2
    assert restored.within_noise(0.01 + 1.9 * stderr, later_terms)


def test_selection_keeps_the_untrained_model_until_a_trained_one_beats_it_beyond_noise():
    """Within noise of the lowest is not enough when the lowest is the untrained model: a trained model
    must score below it by more than two standard errors of the difference (on a few dozen held-out
    points a lower score by chance is common, and the kept model was worse on test data)."""
    from dkjax._generative._state import _Selection

    rng = np.random.default_rng(0)
    terms = rng.normal(size=35)
    later = terms + 0.1 * rng.normal(size=35)
    stderr = 2 * np.std(later - terms) / np.sqrt(35)  # of the difference of two scores: about 0.03
    selection = _Selection()
    selection.update(0, 0.0, terms)
    assert not selection.within_noise(0.001, later)  # above the start
    assert not selection.within_noise(-1.9 * stderr, later)  # below it, but within noise
    assert selection.within_noise(-2.1 * stderr, later)
    restored = _Selection.from_record(selection.record())
    assert not restored.within_noise(-1.9 * stderr, later) and restored.within_noise(-2.1 * stderr, later)
    # A checkpoint written before the start's terms were kept: the start is beaten by any lower score.
    no_terms = {key: value for key, value in selection.record().items() if key != "start_terms"}
    assert _Selection.from_record(no_terms).within_noise(-0.001, later)
    # A checkpoint written before the rule carries no start: the rule is off, not a fresh start.
    old = {key: value for key, value in no_terms.items() if key != "start"}
    assert _Selection.from_record(old).within_noise(0.001, later)

"""The documented promises of the training machinery, each checked through the public API.

``dkjax.fit`` and ``dkjax.fit_generative`` (schedule, clipping, validation cadence, model
selection, kernel-rate control, stiffness check, bandwidth rule), checkpoints and resume,
``save_model``/``load_model``, and the held-out score of snapshot fits. Plumbing tests: a 1-D
OU model, a few steps, fixed keys. Compilation is most of their cost, so the fits share one
configuration (grid, paths, data shape, objective, optimiser) wherever a test allows, and the
suite's persistent compilation cache compiles each program once. ``python -m tests.mutations
--list`` names the planted bug each test must catch.
"""

import functools
import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from helpers import cast

import dkjax

F32 = jnp.float32


def _ou(theta, sigma, mean=0.0, dtype=F32):
    """A 1-D OU model of float arrays (every field a trained parameter)."""
    return cast(dkjax.OrnsteinUhlenbeck(jnp.array([theta]), jnp.array([sigma]), jnp.array([mean])), dtype)


def _initial(dim=1, dtype=F32):
    return dkjax.GaussianInitial(jnp.zeros(dim, dtype), 1.0)


def _data(loc=0.5, scale=0.6, key=0, n=64):
    return (loc + scale * jr.normal(jr.key(key), (n, 1))).astype(F32)


ADAM = optax.adam(0.2)


def _fit_ou(model=None, data=None, **options):
    """The shared configuration: 10 Euler steps, 32 paths, 64 points, energy objective, fixed rate, no held-out data."""
    options = {"t1": 1.0, "num_steps": 10, "key": jr.key(1), "steps": 3, "num_paths": 32, "kernel_rate": 2.0,
               "objective": "energy", "optimizer": ADAM, "validation": None, "progress": False, **options}  # fmt: skip
    model = _ou(1.0, 0.5) if model is None else model
    return dkjax.fit(model, _data() if data is None else data, _initial(), **options)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _same_arrays(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


def _untimed(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# ---------------------------------------------------------------- the optimiser: schedule and clipping


# The default optimiser's settings, and the KL objective with a trivial ESS target (its bandwidth is then the
# lower end of the rule's range): the schedule and bandwidth tests share this one compiled program.
DEFAULT_OPTIMIZER = dict(optimizer=None, steps=4, learning_rate=0.05, final_lr_fraction=0.3, clip_norm=None,
                         objective="kl", ess_target=1e-3)  # fmt: skip


def test_default_optimizer_is_adam_cosine_decayed_to_the_final_fraction():
    """Default: Adam on ``cosine_decay_schedule(learning_rate, steps, final_lr_fraction)``; ``clip_norm=None``
    chains no clipping in front (a gradient norm here exceeds 1, so a default clipping would show)."""
    far = _data(3.0, 0.2, key=10)
    default, history = _fit_ou(data=far, **DEFAULT_OPTIMIZER)
    assert np.any(history["grad_norm"] > 1.0), history["grad_norm"]
    schedule = optax.cosine_decay_schedule(0.05, 4, 0.3)
    assert float(schedule(4)) == pytest.approx(0.3 * 0.05)  # the floor the docstring promises
    reference, _ = _fit_ou(data=far, **{**DEFAULT_OPTIMIZER, "optimizer": optax.adam(schedule)})
    assert _same_arrays(default, reference)
    assert not _same_arrays(default, _ou(1.0, 0.5))


def _recording_sgd(learning_rate, seen):
    """Plain SGD that records the global norm of every update it receives."""

    def update(updates, state, params=None):
        jax.debug.callback(lambda norm: seen.append(float(norm)), optax.tree.norm(updates))
        return jax.tree.map(lambda u: -learning_rate * u, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def test_the_optimizer_receives_the_gradient_clipped_to_clip_norm():
    """``clip_norm`` clips the gradient's global norm before the optimiser (here a recording SGD) sees it."""
    seen = []
    _, history = _fit_ou(optimizer=_recording_sgd(0.5, seen), clip_norm=1e-3)
    raw = history["grad_norm"]  # the gradient before clipping
    assert len(seen) == 3 and np.all(raw > 1e-2), raw
    np.testing.assert_allclose(seen, 1e-3, rtol=1e-4)


# ---------------------------------------------------------------- model selection, history, metrics file

HELD_OUT = jr.normal(jr.key(11), (64, 1)).astype(F32)


# Held-out data at 0.5, between the model's start (0) and the training data (3): the score falls, then climbs.
PASSED_THROUGH = 0.5 * HELD_OUT + 0.5


def _diverging(steps, model=None, held_out=HELD_OUT, **options):
    """Training data at 3, held-out data at 0: the held-out score climbs as training goes on."""
    train = _data(3.0, 0.2, key=10)
    model = _ou(1.0, 0.8) if model is None else model
    return _fit_ou(model, train, steps=steps, validation=held_out, validate_every=2, **options)


def test_history_validation_cadence_and_metrics_file(tmp_path):
    """Evaluations at step 0, every ``validate_every`` steps and after the last; one metrics line per record."""
    _, history = _diverging(5, metrics_file=tmp_path / "m.jsonl")
    assert [r["step"] for r in history.validation] == [0, 2, 4, 5]
    assert all(set(r) == {"step", "time", "energy_distance"} for r in history.validation)
    keys = {"step", "loss", "grad_norm", "bandwidth", "ess", "kernel_rate", "num_nonfinite", "num_paths", "time"}
    assert [r["step"] for r in history.records] == list(range(5)) and all(set(r) == keys for r in history.records)
    assert np.all(np.diff(history["time"]) >= 0) and history.stop_reason is None and not history.stopped_early
    assert history.best_step in (0, 2, 4, 5)
    np.testing.assert_array_equal(history.loss, [r["loss"] for r in history.records])
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines == history.records


def test_resume_restores_the_model_selection(tmp_path):
    """A run resumed after its lowest held-out score keeps the model the uninterrupted run keeps."""
    run = functools.partial(_diverging, 12, held_out=PASSED_THROUGH)
    full, full_history = run(checkpoint_dir=tmp_path / "full", metrics_file=tmp_path / "full.jsonl")
    scores = [r["energy_distance"] for r in full_history.validation]
    # kept before the resume, and not the untrained model (which a resume that lost the kept one would return)
    assert 0 < full_history.best_step < 6, full_history.validation
    assert scores[-1] > 2 * min(scores)  # later models are clearly worse: a fresh selection would keep one
    _diverging(6, held_out=PASSED_THROUGH, checkpoint_dir=tmp_path / "split")
    resumed, resumed_history = run(checkpoint_dir=tmp_path / "split", resume=True, metrics_file=tmp_path / "split.jsonl")
    assert resumed_history.best_step == full_history.best_step
    assert _same_arrays(resumed, full)
    assert _untimed(resumed_history.validation) == _untimed(full_history.validation)
    assert _untimed(resumed_history.records) == _untimed(full_history.records)
    lines = lambda name: _untimed(json.loads(line) for line in (tmp_path / name).read_text().splitlines())
    assert lines("split.jsonl") == lines("full.jsonl")


def test_checkpoints_every_n_steps_and_at_the_end_and_no_selection_returns_the_last_model(tmp_path):
    """``checkpoint_every`` steps and at the end, the two newest array files kept; a finished run resumes
    as it ended; without held-out data the last model comes back."""
    start = _ou(1.0, 0.5)
    fitted, history = _fit_ou(start, steps=5, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.glob("step_*.eqx")) == ["step_00000004.eqx", "step_00000005.eqx"]
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 5
    assert history.validation == [] and history.best_step is None
    assert not _same_arrays(fitted, start)
    again, again_history = _fit_ou(start, steps=5, checkpoint_dir=tmp_path, resume=True)
    assert _same_arrays(fitted, again) and _untimed(again_history.records) == _untimed(history.records)
    shorter, _ = _fit_ou(start, steps=4)
    assert not _same_arrays(fitted, shorter)  # the fifth step is in the returned model


# ---------------------------------------------------------------- kernel-rate control and stiffness check


def _breathing(grow_steps):
    """An optimiser that scales every parameter by 1.3 for ``grow_steps`` steps, then by 0.7: the OU rate
    ``theta`` rises, then falls, whatever the gradient."""

    def update(updates, state, params):
        factor = jnp.where(state.count < grow_steps, 0.3, -0.3)
        return jax.tree.map(lambda p: factor * p, params), optax.ScaleByScheduleState(state.count + 1)

    return optax.GradientTransformation(lambda params: optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)), update)


def test_auto_kernel_rate_follows_the_contraction_upward_never_down():
    """``kernel_rate="auto"``: measured at step 0 and every ``kernel_rate_every`` steps, raised as the
    flow contracts faster, never lowered as it contracts slower."""
    fitted, history = _fit_ou(steps=8, kernel_rate="auto", kernel_rate_every=2, optimizer=_breathing(3))
    rates = history["kernel_rate"]
    assert rates[0] >= 1.0 and np.all(rates[0::2] == rates[1::2]), rates  # changed at pilot steps only
    assert rates[2] > 1.2 * rates[0], rates  # theta grew by 1.3^2: the rate followed
    assert np.all(np.diff(rates) >= 0), rates  # theta fell from step 3 on: the rate stayed
    x0 = _initial()(jr.key(3), 256)[0]
    measured = dkjax.estimate_kernel_rate(fitted, x0, t1=1.0, num_steps=10, key=jr.key(4))
    assert float(fitted.theta[0]) < 0.5 and measured < 0.6 * rates[-1], (fitted.theta, measured, rates)


def _stiffness_warnings(theta):
    """Stiffness warnings of a 4-step fit of OU with ``theta dt = theta / 10``, a pilot run every step."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = _fit_ou(_ou(theta, 0.5), steps=4, kernel_rate=9.0, kernel_rate_every=1)
    assert len(history.records) == 4
    return [str(w.message) for w in caught if "stiffness" in str(w.message)]


def test_stiffness_warns_once_when_the_drift_outpaces_the_time_step():
    """``||grad F|| dt`` above 1 warns, once per run (Euler-Maruyama is still stable at theta dt = 1.2)."""
    stiff = _stiffness_warnings(12.0)
    assert len(stiff) == 1 and "= 1.2 exceeds 1" in stiff[0], stiff
    assert _stiffness_warnings(9.0) == []


# ---------------------------------------------------------------- the bandwidth rule


def test_bandwidth_is_fixed_or_bounded_below_by_min_bandwidth():
    """``bandwidth=h`` is used at every step; the rule's lower end is ``min_bandwidth``, by default 0.05
    times the data's standard deviation (a trivial ESS target reaches it)."""
    data = _data(0.0, 0.8)
    run = lambda **options: _fit_ou(data=data, **DEFAULT_OPTIMIZER, **options)[1]["bandwidth"]
    np.testing.assert_allclose(run(bandwidth=0.37), 0.37, rtol=1e-6)
    np.testing.assert_allclose(run(min_bandwidth=0.02), 0.02, rtol=1e-6)
    np.testing.assert_allclose(run(), 0.05 * float(jnp.std(data)), rtol=1e-5)


# ---------------------------------------------------------------- fit_generative and its held-out points


def test_fit_generative_standardises_held_out_points_given_in_data_units():
    """``validation`` points in the data's units are standardised like the data: a change of units changes
    no held-out score. The model carries the data's scaling, ``N(0, I)`` at ``t0 = 0`` and the grid."""
    loc, scale = 300.0, 40.0
    train, held = _data(0.0, 1.0, key=20), _data(0.0, 1.0, key=21)
    run = lambda data, **options: dkjax.fit_generative(
        data, key=jr.key(2), steps=2, sde=_ou(1.0, 0.5), t1=1.0, num_steps=10, num_paths=32, kernel_rate=2.0,
        objective="energy", optimizer=ADAM, validate_every=1, progress=False, **options)  # fmt: skip
    model, history = run(loc + scale * train, validation=loc + scale * held)
    _, standard_history = run(train, validation=held)
    scores = lambda h: np.array([r["energy_distance"] for r in h.validation])
    assert len(scores(history)) == 3 and np.all(np.abs(scores(history)) < 1.0), history.validation
    np.testing.assert_allclose(scores(history), scores(standard_history), rtol=1e-3, atol=1e-5)
    assert history.best_step == standard_history.best_step
    assert _same_arrays(model.scaling, dkjax.DataScaling.fit(loc + scale * train))
    assert (model.t0, model.t1, model.num_steps) == (0.0, 1.0, 10)
    assert _same_arrays(model.initial, _initial())
    raw, _ = run(train, standardize=False, validation=None)
    assert _same_arrays(raw.scaling, dkjax.DataScaling.identity(1, F32))


# ---------------------------------------------------------------- save_model / load_model


def _noisy_neural_sde(dtype):
    """A small NeuralSDE with diagonal, state- and time-dependent noise above a floor, every weight in use."""
    sde = dkjax.NeuralSDE(2, key=jr.key(5), width=8, depth=1, noise="diagonal", state_dependent=True, sigma_min=0.05)
    last = sde.sigma_net.layers[-1].weight
    sde = eqx.tree_at(lambda s: s.sigma_net.layers[-1].weight, sde, 0.3 * jr.normal(jr.key(6), last.shape))
    return cast(eqx.tree_at(lambda s: s.sigma_slope, sde, jnp.array([0.8, -0.5])), dtype)


def test_save_and_load_keep_every_field_and_the_samples(tmp_path):
    """Every field of a model survives ``save_model``/``load_model``: the time grid (``t0`` not 0), the
    scaling, the initial law (Gaussian or empirical), the noise settings and the dtype; the loaded model
    samples identically. (Both dtypes round-trip in test_generative.py.)"""
    dtype = F32
    scaling = dkjax.DataScaling(jnp.array([10.0, -5.0], dtype), jnp.array([2.0, 0.5], dtype))
    gaussian = dkjax.GaussianInitial(jnp.array([1.0, -2.0], dtype), jnp.array([0.5, 2.0], dtype))
    empirical = dkjax.EmpiricalInitial(jr.normal(jr.key(7), (5, 2), dtype))
    for k, initial in enumerate((gaussian, empirical)):
        model = dkjax.GenerativeModel(_noisy_neural_sde(dtype), initial, scaling, 0.25, 1.5, 5)
        loaded = dkjax.load_model(dkjax.save_model(tmp_path / f"model{k}.eqx", model))
        assert (loaded.t0, loaded.t1, loaded.num_steps) == (0.25, 1.5, 5)
        assert type(loaded.initial) is type(initial) and isinstance(loaded.sde, dkjax.NeuralSDE)
        assert loaded.sde.sigma_min == 0.05 and loaded.sde.sigma_net is not None
        assert (loaded.sde.drift_net.width_size, loaded.sde.drift_net.depth) == (8, 1)
        static = lambda m: eqx.filter(m, eqx.is_array, inverse=True)
        assert eqx.tree_equal(static(loaded), static(model))
        assert _same_arrays(loaded, model)  # weights, noise parameters, initial law, scaling; dtypes included
        # The time-dependent model from t0 = 0.25: a wrong time origin moves every sample.
        a, b = model.sample(64, key=jr.key(8)), loaded.sample(64, key=jr.key(8))
        assert a.dtype == dtype and np.array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- snapshot fits: the held-out score


NEAR, FAR = (0.0, 0.8), (4.0, 0.3)  # the untrained model's law at t = 0.5 is close to NEAR


def _snapshot_score(validation, weights, extra=0):
    """The step-0 held-out score of a snapshot fit at times 0.5 (points near the untrained model) and 1.0 (far)."""
    rng = np.random.default_rng(0)
    points = {t: jnp.asarray(rng.normal(*law, (64 + extra, 1)), F32) for t, law in zip((0.5, 1.0), (NEAR, FAR))}
    data = dkjax.Snapshots(points, weights=weights)
    _, history = dkjax.fit(_ou(1.0, 0.5), data, _initial(), num_steps=10, key=jr.key(1), steps=1, num_paths=32,
                           kernel_rate=2.0, objective="energy", optimizer=ADAM, validation=validation,
                           validation_samples=256, progress=False)  # fmt: skip
    return history.validation[0]["energy_distance"]


def test_snapshot_held_out_score_is_the_weighted_sum_of_the_per_time_distances():
    """The held-out score of snapshots is ``sum_k w_k ED_k``: with the data's weights when the held-out
    points are a fraction of each time's, and with the held-out snapshots' own weights when given."""
    rng = np.random.default_rng(1)
    held = {t: jnp.asarray(rng.normal(*law, (64, 1)), F32) for t, law in zip((0.5, 1.0), (NEAR, FAR))}
    # Each time's distance, measured on samples of our own (the same law as the validation's samples).
    xs = dkjax.simulate(_ou(1.0, 0.5), _initial()(jr.key(2), 1024)[0], t1=1.0, num_steps=10, key=jr.key(3),
                        save_at=dkjax.SaveAt(ts=[0.5, 1.0]))  # fmt: skip
    near, far = (float(dkjax.energy_distance(x, held[t])) for x, t in zip(xs, (0.5, 1.0)))
    assert abs(near) < 0.02 * far, (near, far)
    mixed = _snapshot_score(dkjax.Snapshots(held, weights=(2.0, 3.0)), weights=(1.0, 0.0))
    np.testing.assert_allclose(mixed, 2 * near + 3 * far, rtol=0.03)
    # A held-out fraction (85 points a time: 21 held out, 64 kept) scores with the data's weights (1, 0):
    # the far time does not count.
    assert abs(_snapshot_score(0.25, weights=(1.0, 0.0), extra=21)) < 0.02 * far


def test_score_held_out_baselines_interpolate_the_neighbours_or_repeat_the_last_snapshot():
    """A held-out time between training times is compared with the displacement interpolation of its two
    neighbours at ``(t - t_a) / (t_b - t_a)``; one past the last training time with the last snapshot."""
    rng = np.random.default_rng(2)
    sample = lambda loc, scale, n: jnp.asarray(rng.normal(loc, scale, (n, 1)), F32)
    train = {0.5: sample(0.0, 1.0, 40), 1.0: sample(3.0, 0.5, 40)}
    held = {0.75: sample(1.5, 0.7, 30), 1.5: sample(3.0, 0.5, 30)}
    scores = dkjax.score_held_out(_ou(1.0, 0.5), train, held, _initial(), t1=1.5, num_steps=6, key=jr.key(0),
                                  num_samples=40)  # fmt: skip (as many samples as points: fewer programs)
    assert [(s.time, s.baseline) for s in scores] == [(0.75, "interpolation"), (1.5, "last snapshot")]
    # Halfway between 0.5 and 1.0. Any key: an optimal matching of all the points does not depend on their order.
    halfway = dkjax.interpolate_snapshots(train[0.5], train[1.0], 0.5, key=jr.key(9))
    expected = [dkjax.energy_distance(halfway, held[0.75]), dkjax.energy_distance(train[1.0], held[1.5])]
    np.testing.assert_allclose([s.baseline_energy_distance for s in scores], np.asarray(expected), rtol=1e-4)


# ---------------------------------------------------------------- promises whose bugs these tests found (fixed)


def test_a_model_that_overflows_at_its_first_evaluation_stops_cleanly():
    """Non-finite paths are never averaged in silently, and a non-finite loss stops training with a message
    (fit's docstring): a model whose samples overflow float32 from the start must get that stop too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = _diverging(2, model=_ou(1e5, 0.5))
    assert history.validation[0]["energy_distance"] == float("inf")
    assert history.stop_reason is not None and "step 0" in history.stop_reason
    assert any("training stopped" in str(w.message) for w in caught)


def test_fit_generative_packages_the_time_origin_it_trained_from():
    try:
        model, _ = dkjax.fit_generative(_data(), key=jr.key(0), steps=1, sde=_ou(1.0, 0.5), num_steps=10, t0=0.5,
                                        num_paths=32, kernel_rate=2.0, objective="energy", optimizer=ADAM,
                                        validation=None, progress=False)  # fmt: skip
    except (TypeError, ValueError):  # refusing t0, as the docstring's "from N(0, I) at time 0" suggests, also fixes it
        return
    assert (model.t0, model.t1) == (0.5, 1.0)


class _UniformInitial(eqx.Module):
    """A user's initial law (not a dkjax one), so ``load_model`` needs a whole model as ``like``."""

    low: jax.Array

    def __call__(self, key, n):
        return self.low + jr.uniform(key, (n, self.low.shape[0]), self.low.dtype), None


def test_load_with_a_model_template_keeps_the_files_time_grid(tmp_path):
    model = dkjax.GenerativeModel(_ou(1.5, 0.7), _UniformInitial(jnp.array([2.0], F32)),
                                  dkjax.DataScaling.identity(1, F32), 0.25, 1.5, 5)  # fmt: skip
    like = dkjax.GenerativeModel(_ou(0.0, 0.0), _UniformInitial(jnp.array([0.0], F32)),
                                 dkjax.DataScaling.identity(1, F32), 0.0, 1.0, 10)  # fmt: skip
    loaded = dkjax.load_model(dkjax.save_model(tmp_path / "model.eqx", model), like=like)
    assert _same_arrays(loaded, model)  # the arrays come from the file
    assert (loaded.t0, loaded.t1, loaded.num_steps) == (0.25, 1.5, 5)

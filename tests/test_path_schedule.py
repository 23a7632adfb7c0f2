"""Path schedules (dkjax/_generative/_path_schedule.py): their stages, and fit's steps under them."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import dkjax
from helpers import compilations_during


def _stage_lengths(schedule, steps, final):
    counts = [schedule.num_paths(step, steps, final) for step in range(steps)]
    return {n: counts.count(n) for n in schedule.counts(steps, final)}, counts


def test_growing_paths_stages_cost_the_same():
    # 1024 from 256: 256, 512, 1024 for 4/7, 2/7, 1/7 of 700 steps, each stage 102400 path-steps.
    lengths, counts = _stage_lengths(dkjax.GrowingPaths(start=256), 700, 1024)
    assert lengths == {256: 400, 512: 200, 1024: 100}
    assert counts == sorted(counts), "the count never falls"
    # a final count that is not start times a power of two still ends the run
    lengths, _ = _stage_lengths(dkjax.GrowingPaths(start=300), 800, 1024)
    assert list(lengths) == [300, 600, 1024] and sum(lengths.values()) == 800
    shares = np.array(list(lengths.values())) * np.array(list(lengths)) / 800
    np.testing.assert_allclose(shares, shares[0], rtol=0.01)


@pytest.mark.parametrize("steps", [1, 2, 3, 10])
def test_growing_paths_end_at_the_final_count_for_short_runs(steps):
    counts = [dkjax.GrowingPaths(start=16).num_paths(step, steps, 64) for step in range(steps)]
    assert counts[-1] == 64 and all(n in (16, 32, 64) for n in counts)


def test_growing_paths_from_above_the_final_count_is_constant():
    assert dkjax.GrowingPaths(start=2048).counts(50, 1024) == (1024,)
    assert dkjax.ConstantPaths().counts(50, 1024) == (1024,)


@pytest.mark.parametrize("start, error", [(1, ValueError), (0, ValueError), (2.5, ValueError), (True, ValueError)])
def test_growing_paths_checks_its_start(start, error):
    with pytest.raises(error, match="start"):
        dkjax.GrowingPaths(start=start)


def test_fit_refuses_a_path_schedule_that_is_not_a_module():
    data = jr.normal(jr.key(0), (32, 2))
    with pytest.raises(TypeError, match="path_schedule"):
        dkjax.fit(dkjax.NeuralSDE(2, key=jr.key(1), width=8), data, dkjax.GaussianInitial(jnp.zeros(2), 1.0), t1=1.0,
                  num_steps=5, key=jr.key(2), steps=2, path_schedule=256, progress=False)  # fmt: skip


_ADAM = optax.adam(1e-2)  # one object: the compiled step is keyed on the optimiser


def _fit(steps, num_paths, schedule, optimizer=_ADAM):
    data = 0.5 * jr.normal(jr.key(0), (64, 2))
    model = dkjax.NeuralSDE(2, key=jr.key(1), width=8)
    return dkjax.fit(model, data, dkjax.GaussianInitial(jnp.zeros(2), 1.0), t1=1.0, num_steps=8, key=jr.key(2),
                     steps=steps, num_paths=num_paths, optimizer=optimizer,
                     kernel_rate=0.5, validation=None, progress=False,
                     **({} if schedule is None else {"path_schedule": schedule}))  # fmt: skip


def test_each_growing_stage_is_the_constant_fit_of_its_count():
    """A growing run's first stage is the constant run at its count, step for step (same keys,
    parameters and optimiser state); its last steps draw the final count."""
    _, grown = _fit(3, 64, dkjax.GrowingPaths(start=32))
    _, constant = _fit(2, 32, dkjax.ConstantPaths())
    _, full = _fit(3, 64, dkjax.ConstantPaths())
    assert [r["num_paths"] for r in grown.records] == [32, 32, 64]
    assert [r["num_paths"] for r in full.records] == [64, 64, 64]
    for grown_record, constant_record in zip(grown.records[:2], constant.records):
        assert grown_record["loss"] == constant_record["loss"]
        assert grown_record["bandwidth"] == constant_record["bandwidth"]
    assert grown.records[0]["loss"] != full.records[0]["loss"]


def test_a_repeated_growing_fit_compiles_nothing():
    adam = optax.adam(2e-2)  # not the other tests' optimiser, so the first fit compiles its own steps
    first, _ = compilations_during(lambda: _fit(3, 64, dkjax.GrowingPaths(start=32), adam))
    second, (_, history) = compilations_during(lambda: _fit(3, 64, dkjax.GrowingPaths(start=32), adam))
    assert first >= 2 and second == 0, (first, second)
    assert [r["num_paths"] for r in history.records] == [32, 32, 64]


def test_the_default_schedule_is_constant():
    # growing schedules lost quality on the generative benchmark (docs/guide.md), so fit keeps num_paths throughout
    assert dkjax.TRAIN_DEFAULTS.path_schedule == dkjax.ConstantPaths()
    _, history = _fit(3, 48, None)
    assert [r["num_paths"] for r in history.records] == [48, 48, 48]

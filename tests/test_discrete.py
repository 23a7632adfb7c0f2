"""Discrete columns (dkjax/_generative/_discrete.py): detection, dequantising, snapping, and the models using them."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dkjax


def _table(n=400, p=0.3, seed=0):
    """A normal column, a binary one taking 2 with probability ``p`` (else -1), and a three-valued one."""
    rng = np.random.default_rng(seed)
    return np.c_[rng.normal(size=n), np.where(rng.uniform(size=n) < p, 2.0, -1.0), rng.integers(0, 3, n) * 0.5]


def test_detect_finds_the_columns_of_few_values_only():
    discrete = dkjax.DiscreteColumns.detect(_table())
    assert discrete.columns == (1, 2)
    np.testing.assert_array_equal(discrete.levels[0], [-1.0, 2.0])
    np.testing.assert_array_equal(discrete.levels[1], [0.0, 0.5, 1.0])
    # 8 rows of 3 values: more values than a quarter of the rows, so a small sample is not taken for discrete
    assert dkjax.DiscreteColumns.detect(_table(n=8)[:, 2:]).columns == ()
    assert dkjax.DiscreteColumns.detect(_table(), columns=[1]).columns == (1,)
    assert dkjax.DiscreteColumns.detect(_table(), columns=()).columns == ()


@pytest.mark.parametrize(
    "columns, match",
    [([3], "not a column index"), ([True], "not a column index"), ([0.5], "not a column index"),
     ("some", "'auto' or a sequence"), ([1, 1], "more than once")],
)  # fmt: skip
def test_detect_names_a_bad_column(columns, match):
    with pytest.raises(ValueError, match=match):
        dkjax.DiscreteColumns.detect(_table(), columns=columns)


def test_detect_refuses_a_column_of_one_value():
    table = _table()
    table[:, 1] = 4.0
    with pytest.raises(ValueError, match="column 1 takes a single value"):
        dkjax.DiscreteColumns.detect(table, columns=[1])


def test_dequantize_draws_uniformly_in_each_cell_and_snap_undoes_it(dtype):
    table = jnp.asarray(_table(n=20_000), dtype)
    discrete = dkjax.DiscreteColumns.detect(table)
    jittered = discrete.dequantize(table, jr.key(0))
    assert jittered.dtype == dtype
    np.testing.assert_array_equal(jittered[:, 0], table[:, 0])  # continuous columns untouched
    np.testing.assert_array_equal(discrete.snap(jittered), table)
    # binary column -1 / 2: cells [-2.5, 0.5) and [0.5, 3.5), each uniform, so each half of a cell holds half
    low = np.asarray(jittered[:, 1])[np.asarray(table[:, 1]) == -1.0]
    assert low.min() >= -2.5 and low.max() <= 0.5
    share = np.mean(low < -1.0)
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / low.size)
    # three values 0, 0.5, 1: the middle cell runs between the midpoints, [0.25, 0.75]
    middle = np.asarray(jittered[:, 2])[np.asarray(table[:, 2]) == 0.5]
    assert middle.min() >= 0.25 and middle.max() <= 0.75 and middle.max() - middle.min() > 0.45


def test_snap_moves_each_value_to_the_value_of_its_cell(dtype):
    discrete = dkjax.DiscreteColumns([1], [jnp.asarray([-1.0, 2.0], dtype)])
    points = jnp.asarray([[7.0, 0.49], [7.0, 0.51], [7.0, -9.0], [7.0, 9.0]], dtype)
    np.testing.assert_array_equal(discrete.snap(points), [[7.0, -1.0], [7.0, 2.0], [7.0, -1.0], [7.0, 2.0]])


def test_generative_model_snaps_at_t1_only_and_keeps_its_columns_through_a_file(tmp_path):
    table = jnp.asarray(_table())
    sde, initial = dkjax.NeuralSDE(3, key=jr.key(1), width=8), dkjax.GaussianInitial(jnp.zeros(3), 1.0)
    model = dkjax.GenerativeModel(sde, initial, dkjax.DataScaling.fit(table), 0.0, 1.0, 4,
                                  dkjax.DiscreteColumns.detect(table))  # fmt: skip
    samples = np.asarray(model.sample(500, key=jr.key(2)))
    assert set(np.unique(samples[:, 1])) <= {-1.0, 2.0} and set(np.unique(samples[:, 2])) <= {0.0, 0.5, 1.0}
    assert len(np.unique(samples[:, 0])) == 500
    earlier = np.asarray(model.sample(500, key=jr.key(2), t=0.5))
    assert len(np.unique(earlier[:, 1])) == 500, "the law before t1 is the continuous one"
    loaded = dkjax.load_model(dkjax.save_model(tmp_path / "model.eqx", model))
    np.testing.assert_array_equal(loaded.sample(100, key=jr.key(3)), model.sample(100, key=jr.key(3)))
    assert loaded.discrete.columns == (1, 2)


def test_fit_generative_without_discrete_columns_trains_as_before():
    # Continuous data under "auto" and the same data with discrete_columns=() draw every key alike.
    table = _table()[:, :1] * np.array([[1.0]]) + np.random.default_rng(1).normal(size=(400, 1))
    settings = dict(key=jr.key(0), steps=3, num_steps=4, num_paths=32, progress=False)
    auto, _ = dkjax.fit_generative(table, sde=dkjax.NeuralSDE(1, key=jr.key(1), width=8), **settings)
    off, _ = dkjax.fit_generative(table, sde=dkjax.NeuralSDE(1, key=jr.key(1), width=8), discrete_columns=(),
                                  **settings)  # fmt: skip
    assert auto.discrete is None and off.discrete is None
    np.testing.assert_array_equal(auto.sample(50, key=jr.key(2)), off.sample(50, key=jr.key(2)))


def test_fit_generative_dequantizes_held_out_points_like_the_training_ones(monkeypatch):
    table, shapes = _table(n=500), []
    dequantize = dkjax.DiscreteColumns.dequantize
    monkeypatch.setattr(dkjax.DiscreteColumns, "dequantize", lambda self, x, key: shapes.append(x.shape)
                        or dequantize(self, x, key))  # fmt: skip
    model, history = dkjax.fit_generative(table[:400], validation=table[400:], key=jr.key(0), steps=2, num_steps=4,
                                          num_paths=32, validate_every=1, progress=False,
                                          sde=dkjax.NeuralSDE(3, key=jr.key(1), width=8))  # fmt: skip
    assert len(history.validation) == 3 and all(np.isfinite(v["energy_distance"]) for v in history.validation)
    assert model.discrete.columns == (1, 2) and shapes == [(400, 3), (100, 3)]
    samples = np.asarray(model.sample(200, key=jr.key(2)))
    assert set(np.unique(samples[:, 1])) <= {-1.0, 2.0} and set(np.unique(samples[:, 2])) <= {0.0, 0.5, 1.0}

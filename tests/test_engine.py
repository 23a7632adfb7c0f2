"""The step driver and its strategy modules: replay, dtypes, rate checks, expansion report, platforms."""

import re
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax
from dkjax._engine._dk_step import StepWeights, SumResponses, dk_scan
from dkjax._generative._gradient import dk_gradient
from dkjax._engine._simulate import path_ids_for, time_grid

DTYPES = [jnp.float32, jnp.float64]


def _ou32(theta=1.0, sigma=0.5):
    return dkjax.OrnsteinUhlenbeck(*jnp.asarray([theta, sigma, 0.0], jnp.float32))


def _lorenz96(dtype, num_paths=16, dim=8):
    sde = dkjax.Lorenz96(jnp.asarray(8.0, dtype), jnp.asarray(0.5, dtype))
    x0 = 8.0 + jax.random.normal(jax.random.key(3), (num_paths, dim), dtype)
    return sde, x0


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_training_passes_replay_bit_identical_chaotic_paths(dtype):
    """Lorenz-96 over 20 time units (about 30 Lyapunov times): the memory-lean trainer's two passes
    (simulate, then the DK replay) and the estimator end on the same bits; one ulp in x0 does not."""
    sde, x0 = _lorenz96(dtype)
    t1, num_steps, key = 20.0, 4000, jax.random.key(5)
    first = dkjax.simulate(sde, x0, t1=t1, num_steps=num_steps, key=key)
    t0_arr, _ = time_grid(0.0, t1, num_steps, dtype)
    params = dkjax.parameters(sde)
    weights = StepWeights(jnp.ones((x0.shape[0], 1), dtype), jnp.asarray([num_steps], jnp.int32))

    # As in the trainer, the model and the grid are arguments of the compiled replay, not constants.
    replay = eqx.filter_jit(lambda sde, x, t0, t1, rate, key: dk_scan(
        sde, x, jnp.zeros_like(x), path_ids_for(x.shape[0], 0), t0=t0, t1=t1, num_steps=num_steps, key=key,
        kernel_rate=rate, fold=SumResponses(), acc0=jax.tree.map(jnp.zeros_like, params), weights=weights,
        point_mass=True,
    ))  # fmt: skip
    second = replay(sde, x0, t0_arr, jnp.asarray(t1, dtype), jnp.asarray(10.0, dtype), key)[0]
    estimator = dkjax.divergence_kernel(sde, x0, t1=t1, num_steps=num_steps, key=key, kernel_rate=10.0).x
    assert bool(jnp.all(jnp.isfinite(first)))
    np.testing.assert_array_equal(np.asarray(second), np.asarray(first))
    np.testing.assert_array_equal(np.asarray(estimator), np.asarray(first))
    nudged = x0.at[0, 0].set(jnp.nextafter(x0[0, 0], jnp.asarray(np.inf, dtype)))
    moved = dkjax.simulate(sde, nudged, t1=t1, num_steps=num_steps, key=key)
    assert float(jnp.max(jnp.abs(moved[0] - first[0]))) > 1.0  # the horizon amplifies one ulp


def test_two_pass_objective_follows_the_paths_of_the_per_path_route():
    sde, x0 = _lorenz96(jnp.float32, num_paths=8)
    weights = lambda x: (jnp.mean(x**2), jnp.ones(x.shape[0], x.dtype) / x.shape[0], None)
    kwargs = dict(t1=2.0, num_steps=400, key=jax.random.key(1), kernel_rate=10.0)
    per_path = dk_gradient(sde, x0, None, weights, gradient="per_path", **kwargs)
    two_pass = dk_gradient(sde, x0, None, weights, gradient="two_pass", **kwargs)
    np.testing.assert_array_equal(np.asarray(per_path[3]), np.asarray(two_pass[3]))


def test_wider_parameters_than_states_raise_naming_both_dtypes_before_any_work():
    sde = dkjax.OrnsteinUhlenbeck(*jnp.asarray([1.0, 0.5, 0.0], jnp.float64))
    x0 = jnp.zeros((16, 1), jnp.float32)
    common = dict(t1=1.0, num_steps=10, key=jax.random.key(0))
    calls = [
        lambda: dkjax.simulate(sde, x0, **common),
        lambda: dkjax.divergence_kernel(sde, x0, **common),
        lambda: dkjax.divergence_kernel(sde, x0, score0=jnp.zeros_like(x0), **common),
        lambda: dkjax.observable_response(sde, lambda x: x[0], x0, **common),
        lambda: dkjax.density_response(sde, x0, bins=jnp.linspace(-1, 1, 5), **common),
        lambda: dkjax.stationary_response(
            sde, lambda x: x[0], x0, dt=0.01, spinup_steps=10, num_steps=10, windows=[5], key=jax.random.key(0)
        ),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="parameters are float64 but x0 is float32"):
            call()
    # Narrower parameters are promoted without loss: allowed.
    narrow = _ou32()
    assert dkjax.simulate(narrow, x0.astype(jnp.float64), **common).dtype == jnp.float64


def test_likelihood_ratio_runs_in_float32_on_grids_whose_rate_rounds_above_one_over_dt():
    """kernel_rate = num_steps / (t1 - t0) = 10 exceeds 1 / dt in float32 by rounding."""
    sde = _ou32()
    x0 = jnp.ones((1000, 1), jnp.float32)
    res = dkjax.likelihood_ratio_response(sde, lambda x: x[0], x0, t1=0.3, num_steps=3, key=jax.random.key(0))
    assert res.num_paths == 1000 and np.isfinite(float(res.estimate.theta))
    with pytest.raises(ValueError, match="kernel_rate \\* dt must be <= 1"):
        dkjax.divergence_kernel(sde, x0, t1=0.3, num_steps=3, key=jax.random.key(0), kernel_rate=10.01)


def test_stationary_response_keeps_dt_exact_at_late_times_in_float32():
    """An autonomous SDE gives the same bits from t0 = 0 and t0 = 1000: dt is not recomputed
    from float32 time boundaries (which jitters by about 1e-3 relative near t = 1000)."""
    sde = _ou32()
    x0 = jnp.zeros((32, 1), jnp.float32)
    kwargs = dict(dt=0.01, spinup_steps=50, num_steps=200, windows=[20, 40], key=jax.random.key(2), sample_every=10)
    early = dkjax.stationary_response(sde, lambda x: x[0] ** 2, x0, t0=0.0, **kwargs)
    late = dkjax.stationary_response(sde, lambda x: x[0] ** 2, x0, t0=1000.0, **kwargs)
    np.testing.assert_array_equal(np.asarray(early.estimate.theta), np.asarray(late.estimate.theta))
    fd = dict(kwargs, relative_step=0.05)
    del fd["windows"]
    early_fd = dkjax.finite_difference_stationary(sde, lambda x: x[0] ** 2, x0, t0=0.0, **fd)
    late_fd = dkjax.finite_difference_stationary(sde, lambda x: x[0] ** 2, x0, t0=1000.0, **fd)
    np.testing.assert_array_equal(np.asarray(early_fd.estimate.theta), np.asarray(late_fd.estimate.theta))


def test_rate_schedules_are_checked_on_every_step():
    sde = dkjax.OrnsteinUhlenbeck(1.0, 0.5)
    kwargs = dict(score0=jnp.zeros((8, 1)), t1=1.0, num_steps=10, key=jax.random.key(0))
    ramp = lambda t: 2.0 + 9.0 * t  # alpha dt = 0.2 + 0.9 t: above 1 from t = 0.9 (the last step)
    with pytest.raises(ValueError, match="at step 9 \\(t = 0.9\\)"):
        dkjax.divergence_kernel(sde, jnp.zeros((8, 1)), kernel_rate=ramp, **kwargs)
    with pytest.raises(ValueError, match="alpha = -1"):
        dkjax.divergence_kernel(sde, jnp.zeros((8, 1)), kernel_rate=lambda t: -1.0 + 0.0 * t, **kwargs)
    dkjax.divergence_kernel(sde, jnp.zeros((8, 1)), kernel_rate=lambda t: 2.0 + 8.0 * t, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_free_expansion_ratio_is_reported(dtype):
    """For OU, A = -theta dt exactly, so |A^T w| / |w| = theta dt on every path."""
    x0 = jnp.zeros((64, 1), dtype)
    run = lambda theta, mode="matrix_free": dkjax.divergence_kernel(
        dkjax.OrnsteinUhlenbeck(*jnp.asarray([theta, 0.5, 0.0], dtype)), x0, t1=1.0, num_steps=10,
        key=jax.random.key(0), mode=mode,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the expansion warning, not e.g. a cache read retried
        small = run(2.0)
    np.testing.assert_allclose(np.asarray(small.expansion_ratio), 0.2, rtol=1e-5)
    with pytest.warns(RuntimeWarning, match="expansion of J\\^-T is biased here: \\|A\\^T w\\| / \\|w\\| reached 0.5"):
        run(5.0)
    assert run(5.0, mode="exact").expansion_ratio is None


def test_matrix_free_order_sets_the_truncation_error():
    """On a linear increment A x, the order-k expansion of J^{-T} w errs by about |A|^(k+1)."""
    a = 0.2 * jax.random.normal(jax.random.key(0), (6, 6))
    a = 0.2 * a / jnp.linalg.norm(a, 2)
    at = lambda w: w @ a  # A^T w for a batch of covectors (B, d)
    w = jax.random.normal(jax.random.key(1), (1, 6))
    exact = jnp.linalg.solve((jnp.eye(6) + a).T, w[0])
    errors = []
    for order in (1, 2, 3, 4):
        pushed, ratio = dkjax.MatrixFree(order).pushforward(at, w, None)
        errors.append(float(jnp.linalg.norm(pushed[0] - exact) / jnp.linalg.norm(w)))
        assert float(ratio[0]) == pytest.approx(float(jnp.linalg.norm(a.T @ w[0]) / jnp.linalg.norm(w)))
    for lower, higher in zip(errors, errors[1:]):
        assert higher < 0.25 * lower
    with pytest.raises(ValueError, match="order must be a positive int"):
        dkjax.MatrixFree(0)


def test_strings_are_shorthands_for_the_strategy_modules():
    sde = dkjax.OrnsteinUhlenbeck(1.5, 0.8)
    x0 = jax.random.normal(jax.random.key(0), (256, 2))
    kwargs = dict(t1=1.0, num_steps=20, key=jax.random.key(1))
    pairs = [
        (dict(mode="exact"), dict(mode=dkjax.Dense())),
        (dict(mode="matrix_free"), dict(mode=dkjax.MatrixFree(order=2))),
        (dict(kernel_rate=3.0), dict(kernel_rate=dkjax.ConstantRate(3.0))),
        (dict(kernel_rate=lambda t: 3.0 + t), dict(kernel_rate=dkjax.RateSchedule(lambda t: 3.0 + t))),
        (dict(kernel_rate="auto"), dict(kernel_rate=dkjax.AutoRate())),
    ]
    for short, module in pairs:
        a, b = dkjax.divergence_kernel(sde, x0, **short, **kwargs), dkjax.divergence_kernel(sde, x0, **module, **kwargs)
        np.testing.assert_array_equal(np.asarray(a.score), np.asarray(b.score))
        assert a.kernel_rate == b.kernel_rate
    with pytest.raises(ValueError, match="mode must be one of \\['exact', 'matrix_free'\\] or a dkjax.AbstractJacobian"):
        dkjax.divergence_kernel(sde, x0, mode="dense", **kwargs)


def test_auto_rate_pilot_uses_a_key_of_its_own():
    """The pilot's paths are not the run's: its rate differs from a pilot on the run's own key
    (multiplicative noise, so the measured growth depends on the noise)."""
    sde = dkjax.GeometricBrownianMotion(-1.0, 0.8)
    x0 = jnp.ones((64, 1))
    key = jax.random.key(4)
    res = dkjax.divergence_kernel(sde, x0, t1=1.0, num_steps=100, key=key, kernel_rate="auto")
    salted = dkjax.estimate_kernel_rate(sde, x0, t1=1.0, num_steps=100, key=jax.random.fold_in(key, 2**32 - 2))
    same_key = dkjax.estimate_kernel_rate(sde, x0 + 0.0, t1=1.0, num_steps=100, key=key)
    assert res.kernel_rate == salted and res.kernel_rate != same_key


def test_gauss_jordan_only_on_the_cpu(monkeypatch):
    """The LAPACK deadlock workaround is for the CPU; other platforms use their LU factorisation."""
    from dkjax._engine import _linalg

    matrix = jnp.eye(3) + 0.1 * jax.random.normal(jax.random.key(0), (3, 3))
    # A fresh function each time: make_jaxpr caches traces by function.
    trace = lambda: str(jax.make_jaxpr(lambda m: _linalg.inverse_and_logabsdet(m))(matrix))
    primitives = lambda: set(re.findall(r"= (\w+)[\[ ]", trace()))
    assert "scan" in primitives() and "lu" not in primitives()  # the elimination loop
    monkeypatch.setattr(_linalg.jax, "default_backend", lambda: "gpu")
    assert "lu" in primitives() and "scan" not in primitives()
    inverse, logabsdet = _linalg.inverse_and_logabsdet(matrix)
    np.testing.assert_allclose(inverse, jnp.linalg.inv(matrix), rtol=1e-12)
    np.testing.assert_allclose(logabsdet, jnp.linalg.slogdet(matrix)[1], rtol=1e-12)


class _GeneralMultiplicative(dkjax.AbstractSDE):
    """General (matrix) noise whose rows scale with the state: parameters in the drift and the noise."""

    A: jax.Array
    S: jax.Array

    def drift(self, t, x):
        return self.A @ x - 0.1 * x**3

    def diffusion(self, t, x):
        return (1.0 + 0.3 * jnp.tanh(x))[:, None] * self.S


def _fused_case(name, dtype):
    key = jax.random.key(11)
    if name == "lorenz96":
        return _lorenz96(dtype, num_paths=6, dim=8)
    if name == "neural_state_dependent":
        sde = dkjax.NeuralSDE(3, key=key, width=8, noise="diagonal", state_dependent=True, sigma_min=0.05)
        sde = jax.tree.map(lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf, sde)
        # A non-zero last layer of the noise net, so the noise really depends on the state.
        sde = eqx.tree_at(lambda m: m.sigma_net.layers[-1].weight, sde,
                          0.3 * jax.random.normal(key, sde.sigma_net.layers[-1].weight.shape, dtype))  # fmt: skip
        return sde, jax.random.normal(jax.random.key(3), (6, 3), dtype)
    A = jnp.asarray([[-1.0, 0.4, 0.0], [-0.3, -0.5, 0.2], [0.1, 0.0, -0.8]], dtype)
    S = jnp.asarray([[0.5, 0.1, 0.0], [0.0, 0.4, 0.1], [0.2, 0.0, 0.6]], dtype)
    return _GeneralMultiplicative(A, S), jax.random.normal(jax.random.key(3), (6, 3), dtype)


_SLOW = pytest.mark.slow
# Quick: every model in float64 (1e-10) and the state-dependent NeuralSDE in float32 too; the rest is slow.
_FUSED_CASES = [
    ("lorenz96", "matrix_free", "float64"), pytest.param("lorenz96", "matrix_free", "float32", marks=_SLOW),
    ("neural_state_dependent", "matrix_free", "float64"), ("neural_state_dependent", "matrix_free", "float32"),
    ("general_multiplicative", "exact", "float64"),
    pytest.param("general_multiplicative", "exact", "float32", marks=_SLOW),
    *(pytest.param(case, mode, dtype, marks=_SLOW) for case, mode in
      [("lorenz96", "exact"), ("neural_state_dependent", "exact"), ("general_multiplicative", "matrix_free")]
      for dtype in ("float64", "float32")),
]  # fmt: skip


@pytest.mark.parametrize("case, mode, dtype_name", _FUSED_CASES)
def test_fused_step_equals_the_unfused_reference(case, mode, dtype_name):
    """One fused DK step (one linearisation, batch reverse passes) against today's unfused per-path
    formulas: new states, scores, per-path responses and their weighted sum, with the kernel response on."""
    from dkjax._engine._dk_step import DivergenceKernelStep, StepWeights, _step_plan
    from dkjax._engine._noise import noise_and_probe
    from tests.unfused_step import unfused_path_step

    dtype = jnp.dtype(dtype_name).type
    sde, x = _fused_case(case, dtype)
    num_paths, dim = x.shape
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    nu = jax.random.normal(jax.random.key(4), x.shape, dtype)
    t, dt, mix, response_mix = jnp.asarray(0.3, dtype), jnp.asarray(0.01, dtype), 0.05, 0.25
    plan = _step_plan(sde, x, True, response_mix, t)
    key_n, ids = jnp.asarray([7, 9], jnp.uint32), jnp.arange(num_paths, dtype=jnp.int32)
    z, probe = jax.vmap(lambda i: noise_and_probe(key_n, i, plan.noise_dim, dim, dtype))(ids)
    rate = dkjax.ConstantRate(jnp.asarray(mix / 0.01, dtype))
    jacobian = dkjax.MatrixFree() if mode == "matrix_free" else dkjax.Dense()
    c = jax.random.normal(jax.random.key(5), (num_paths, 1), dtype)
    carry = (x, nu, jnp.full((num_paths,), -1, jnp.int32), jnp.zeros((num_paths,), dtype))
    outputs = {}
    for route, weights in (("per_path", None), ("weighted", StepWeights(c, jnp.asarray([10], jnp.int32)))):
        step = DivergenceKernelStep(params, static, jacobian, rate, response_mix, plan, weights)
        (x_next, nu_next, _, _), (_, d_eta) = eqx.filter_jit(step)(jnp.int32(2), t, dt, key_n, ids, carry)
        outputs[route] = (x_next, nu_next, d_eta)
    reference = jax.jit(jax.vmap(lambda *row: unfused_path_step(sde, t, dt, *row, mix_score=jnp.minimum(rate(t) * dt, 1.0),
                                                        response_mix=response_mix, dense=mode == "exact")))(x, nu, z, probe)  # fmt: skip
    tolerance = 1e-10 if dtype == jnp.float64 else 64 * float(jnp.finfo(dtype).eps)

    def close(actual, expected, what):
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
            scale = max(float(jnp.max(jnp.abs(e))), float(jnp.finfo(dtype).tiny))
            error = float(jnp.max(jnp.abs(a - e))) / scale
            assert error <= tolerance, f"{what}: relative error {error:.3g} > {tolerance:.3g}"

    close(outputs["per_path"][0], reference[0], "states")
    close(outputs["per_path"][1], reference[1], "scores")
    close(outputs["per_path"][2], reference[2], "per-path responses")
    weighted_reference = jax.tree.map(lambda eta: jnp.tensordot(c[:, 0], eta, axes=1), reference[2])
    close(outputs["weighted"][2], weighted_reference, "weighted response")
    close(outputs["weighted"][:2], outputs["per_path"][:2], "weighted route's states and scores")

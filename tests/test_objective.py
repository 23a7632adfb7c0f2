"""Objectives of DK-SDE training: both gradient routes agree, and the gradient is the right one."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import assert_unbiased, cast, em_ou_moments

import dkjax
import dkjax._generative._metrics
from dkjax._generative._metrics import energy_distance
from dkjax._generative._gradient import as_gradient, dk_gradient
from dkjax._generative._objective import energy_weights, ess_bandwidth, kl_weights

T, STEPS = 1.0, 40
F32, F64 = jnp.float32, jnp.float64
# The routes agree to rounding: float64 to nine digits, float32 to about three.
ROUTE_TOLERANCE = {F64: dict(x=1e-12, loss=1e-12, grad=1e-9, atol=1e-10), F32: dict(x=1e-5, loss=1e-5, grad=1e-3, atol=1e-4)}


def _ou(dtype=F64):
    # mean frozen as a Python float: not a parameter (it is not identifiable with theta from p_T).
    return eqx.tree_at(lambda s: s.mean, cast(dkjax.OrnsteinUhlenbeck(1.5, 0.8), dtype), 0.0)


def _gaussian_start(key, n, mean=1.0, std=0.3, dim=1, dtype=F64):
    x0 = mean + std * jr.normal(key, (n, dim), dtype)
    return x0, -(x0 - mean) / std**2


def _weights(objective, data, key):
    if objective == "kl":
        return lambda x: kl_weights(x, data, 0.3, key)
    return lambda x: energy_weights(x, data)


@eqx.filter_jit
def _gradient(sde, x0, score0, data, key, objective, gradient):
    weights = _weights(objective, data, jr.fold_in(key, 1))
    return dk_gradient(sde, x0, score0, weights, t1=T, num_steps=STEPS, key=key, kernel_rate=2.0, gradient=gradient)


@pytest.mark.parametrize(
    "objective, model, dtype",
    [("kl", "ou", F32), ("energy", "ou", F64), pytest.param("kl", "neural", F64, marks=pytest.mark.slow),
     ("energy", "neural", F32), ("kl", "neural_point_mass", F32),
     pytest.param("energy", "neural_point_mass", F64, marks=pytest.mark.slow)],
)  # fmt: skip
def test_gradient_routes_agree(objective, model, dtype):
    # per-path responses, the two-pass replay, and the replay in chunks of 48 paths (the
    # last chunk padded with zero-weight paths) follow the same paths to the same gradient.
    key, tolerance = jr.key(0), ROUTE_TOLERANCE[dtype]
    if model == "ou":
        sde = _ou(dtype)
        x0, score0 = _gaussian_start(jr.key(1), 256, dtype=dtype)
        data = 0.2 + 0.7 * jr.normal(jr.key(2), (128, 1), dtype)
    else:
        sde = cast(dkjax.NeuralSDE(2, key=jr.key(3), width=8, depth=1, noise="diagonal", state_dependent=True), dtype)
        x0, score0 = _gaussian_start(jr.key(1), 128, mean=0.0, std=1.0, dim=2, dtype=dtype)
        score0 = None if model == "neural_point_mass" else score0
        data = jr.normal(jr.key(2), (64, 2), dtype) + jnp.array([1.0, -0.5], dtype)
    loss_a, grad_a, _, x_a = _gradient(sde, x0, score0, data, key, objective, dkjax.PerPathGradient())
    leaves_a = jax.tree.leaves(grad_a)
    scale = max(float(jnp.max(jnp.abs(g))) for g in leaves_a)
    assert len(leaves_a) > 0 and scale > 0 and {leaf.dtype for leaf in leaves_a} == {jnp.dtype(dtype)}
    for path_chunk in (None, 48):
        loss_b, grad_b, _, x_b = _gradient(sde, x0, score0, data, key, objective, dkjax.TwoPassGradient(path_chunk))
        np.testing.assert_allclose(x_a, x_b, rtol=tolerance["x"])
        assert float(loss_a) == pytest.approx(float(loss_b), rel=tolerance["loss"])
        leaves_b = jax.tree.leaves(grad_b)
        assert len(leaves_a) == len(leaves_b)
        for a, b in zip(leaves_a, leaves_b):
            np.testing.assert_allclose(a, b, rtol=tolerance["grad"], atol=tolerance["atol"] * scale)


def test_gradient_shorthands_name_the_route_modules_and_auto_chooses_by_size():
    assert as_gradient("per_path") == dkjax.PerPathGradient()
    assert as_gradient("two_pass", path_chunk=8) == dkjax.TwoPassGradient(path_chunk=8)
    assert as_gradient("auto", path_chunk=8) == dkjax.TwoPassGradient(path_chunk=8)  # a chunk implies two passes
    assert as_gradient("auto", lean_threshold=10) == dkjax.AutoGradient(lean_threshold=10)
    route = dkjax.TwoPassGradient(path_chunk=4)
    assert as_gradient(route) is route and route.resolve(_ou(F32)) is route
    small, large = _ou(F32), dkjax.NeuralSDE(2, key=jr.key(0), width=8, depth=1)  # 3 and 52 parameters
    assert dkjax.AutoGradient(lean_threshold=10).resolve(small) == dkjax.PerPathGradient()
    assert dkjax.AutoGradient(lean_threshold=10).resolve(large) == dkjax.TwoPassGradient()
    for call, match in [
        (lambda: as_gradient("backprop"), "gradient must be one of"),
        (lambda: as_gradient("per_path", path_chunk=8), "path_chunk applies to the two-pass"),
        (lambda: as_gradient(route, path_chunk=8), "path_chunk goes with a gradient shorthand"),
        (lambda: dkjax.TwoPassGradient(path_chunk=0), "path_chunk"),
        (lambda: dkjax.AutoGradient(lean_threshold=1.5), "lean_threshold"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


A, B, H = 0.2, 0.7, 0.3  # data N(A, B^2), kernel bandwidth H


def _em_ou_law(theta, sigma):
    """Mean and variance at T of the EM chain from _gaussian_start's N(1, 0.3^2) (mean parameter 0)."""
    return em_ou_moments(theta, sigma, 1.0, 0.09, T / STEPS, STEPS)


def _seed_gradients(weights_for, num_seeds, num_paths, num_data, data_std=B, dtype=F64):
    """DK gradients (theta, sigma) for OU over independent seeds: fresh initial states, data, jitter, noise.

    Returns their mean and its standard error.
    """

    @eqx.filter_jit
    def estimate(key):
        x0, score0 = _gaussian_start(jr.fold_in(key, 3), num_paths, dtype=dtype)
        data = A + data_std * jr.normal(jr.fold_in(key, 2), (num_data, 1), dtype)
        weights = weights_for(data, jr.fold_in(key, 1))
        _, grad, _, _ = dk_gradient(_ou(dtype), x0, score0, weights, t1=T, num_steps=STEPS, key=key, kernel_rate=2.0)
        assert grad.theta.dtype == dtype
        return jnp.stack([grad.theta, grad.sigma])

    samples = np.array([estimate(jr.key(10 + i)) for i in range(num_seeds)])
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(num_seeds)


def _gaussian_mean_abs(mu, var):
    """``E|Z|`` for ``Z ~ N(mu, var)``."""
    s = jnp.sqrt(var)
    return s * jnp.sqrt(2 / jnp.pi) * jnp.exp(-(mu**2) / (2 * var)) + mu * jax.scipy.special.erf(mu / (s * jnp.sqrt(2.0)))


def _exact_kl_gradient(data_std):
    def loss(theta, sigma):  # L_h = -E log q_h(y + h e), q_h = N(m, v + h^2), y + h e ~ N(A, data_std^2 + H^2)
        m, v = _em_ou_law(theta, sigma)
        return 0.5 * jnp.log(2 * jnp.pi * (v + H**2)) + ((A - m) ** 2 + data_std**2 + H**2) / (2 * (v + H**2))

    return np.array(jax.grad(loss, (0, 1))(1.5, 0.8))


def _kl_weights_for(data, key):
    return lambda x: kl_weights(x, data, H, key)


def test_kl_gradient_matches_exact_smoothed_likelihood():
    """OU from a Gaussian start: L_h has a closed form; the DK gradient must match its gradient.

    20 independent seeds of 4096 paths, data N(0.2, 0.35^2): narrower than the model's
    smoothed law N(m, v + h^2) (v + h^2 = 0.30 against 0.35^2 + h^2 = 0.21 for the jittered
    data), where the self-normalised weights' ratio bias is of order 1 / (number of paths):
    measured within 3% (at most 1.6 SE) of exact at 128, 512 and 4096 paths. A 30% error in the
    weights is 7-10 SE off; data not jittered, 30-45. (For data wider than the model see the
    slow test below.)
    """
    exact = _exact_kl_gradient(0.35)
    mean, se = _seed_gradients(_kl_weights_for, 20, 4096, 4096, data_std=0.35)
    assert np.all(se < 0.05 * np.abs(exact)), (se, exact)
    assert np.all(np.abs(mean - exact) < 4 * se + 0.01 * np.abs(exact)), (mean, se, exact)


@pytest.mark.slow
def test_kl_gradient_ratio_bias_for_data_wider_than_the_model():
    """Data N(0.2, 0.7^2), wider than the model: the KL gradient is biased low by the self-normalised ratio.

    The bias of a data point's weights is about 1 / (M q(y)) and E_data[1 / q] diverges when
    the jittered data's variance (0.58) exceeds the smoothed model's (0.29), so the bias decays
    only like M^(-0.29 / 0.58) = M^(-1/2), not 1 / M. Measured (relative, theta and sigma):
    M = 128: -23% +- 4%, -20% +- 2% (200 seeds); 512: -8% +- 3%, -9% +- 2% (120); 1024: -8% +- 3%,
    -7% +- 1.5% (80); 4096: -3% +- 2%, -2.5% +- 1.3% (40). The per-seed estimates are heavy-tailed
    (the tail data points sit on a few paths), so the sigma component is the one judged.
    """
    exact = _exact_kl_gradient(B)
    bias = {}
    for num_paths in (128, 512):
        mean, se = _seed_gradients(_kl_weights_for, 200, num_paths, 4096)
        bias[num_paths] = ((mean - exact) / exact)[1], (se / np.abs(exact))[1]
    (low, low_se), (high, high_se) = bias[128], bias[512]
    assert low < -5 * low_se and high < -2 * high_se, bias  # biased low at both sizes
    # Four times the paths halve the bias (M^-1/2); a 1/M law would quarter it.
    assert abs(high - low / 2) < 3 * np.hypot(high_se, low_se / 2), bias


def test_energy_gradient_matches_exact_ou():
    """The energy objective's DK gradient is unbiased (no ratio): it matches the exact gradient for OU.

    For Gaussians E|X - Y| has a closed form, so the energy distance between the EM chain's
    N(m, v) and the data law N(A, B^2) is exact in (theta, sigma). 20 seeds of 2048 paths, in
    float32 (the KL test beside it runs in float64).
    """

    def energy(theta, sigma):
        m, v = _em_ou_law(theta, sigma)
        return 2 * _gaussian_mean_abs(m - A, v + B**2) - 2 * jnp.sqrt(v / jnp.pi) - 2 * B / np.sqrt(np.pi)

    exact = np.array(jax.grad(energy, (0, 1))(1.5, 0.8))
    mean, se = _seed_gradients(lambda data, key: lambda x: energy_weights(x, data), 20, 2048, 1024, dtype=F32)
    assert np.all(se < 0.15 * np.abs(exact)), (se, exact)
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, se, exact)


def test_energy_distance_is_unbiased_for_small_samples():
    """U-statistics within each sample: E[energy_distance] is exact even for 4 against 3 points."""
    mx, sx, my, sy = 0.3, 1.0, -0.2, 0.6
    exact = float(2 * _gaussian_mean_abs(mx - my, sx**2 + sy**2)) - 2 * (sx + sy) / np.sqrt(np.pi)
    keys = jr.split(jr.key(5), 20_000)
    draw = lambda key: energy_distance(mx + sx * jr.normal(key, (4, 1)), my + sy * jr.normal(jr.fold_in(key, 1), (3, 1)))
    values = np.asarray(jax.vmap(draw)(keys))
    mean, se = values.mean(), values.std(ddof=1) / np.sqrt(values.size)
    assert se < 0.05 * exact and abs(mean - exact) < 4 * se, (mean, se, exact)


def test_energy_distance_properties():
    x = jr.normal(jr.key(0), (2000, 2))
    y = jr.normal(jr.key(1), (2000, 2))
    shifted = y + jnp.array([0.5, 0.0])
    same, apart = float(energy_distance(x, y)), float(energy_distance(x, shifted))
    assert abs(same) < 0.01 < apart


def test_ess_bandwidth_reaches_target():
    x = jr.normal(jr.key(0), (512, 2))
    y = jr.normal(jr.key(1), (256, 2))
    sq = jnp.sum((y[:, None] - x[None]) ** 2, -1)
    h = ess_bandwidth(y, x, 32.0, 1e-3, 4.0)
    ess = lambda h_: float(jnp.mean(1 / jnp.sum(jax.nn.softmax(-sq / (2 * h_**2), 1) ** 2, 1)))
    assert ess(h) >= 32.0
    assert ess(h / 1.02) < 32.0
    assert float(ess_bandwidth(y, x, 1e6, 1e-3, 4.0)) == 4.0


def test_sliced_wasserstein_of_shifted_gaussians():
    # Projections of N(0, I) and N(a e_1, I) on a unit u differ by the shift a u_1 only, so
    # SW2^2 = a^2 E[u_1^2] = a^2 / d.
    x = jr.normal(jr.key(0), (20000, 2))
    y = jr.normal(jr.key(1), (20000, 2)) + jnp.array([1.0, 0.0])
    value = float(dkjax.sliced_wasserstein(x, y, key=jr.key(2), num_projections=512))
    assert value == pytest.approx(1 / np.sqrt(2), rel=0.05)
    assert float(dkjax.sliced_wasserstein(x, x[::-1], key=jr.key(2))) < 1e-12


@pytest.mark.parametrize("dim", [1, 2])
def test_smoothed_nll_of_gaussian_samples(dim):
    # KDE of N(0, I) samples with width h is N(0, (1 + h^2) I) in expectation.
    h = 0.3
    samples = jr.normal(jr.key(0), (20000, dim))
    data = jr.normal(jr.key(1), (4000, dim))
    exact = 0.5 * dim * np.log(2 * np.pi * (1 + h**2)) + float(jnp.mean(jnp.sum(data**2, 1))) / (2 * (1 + h**2))
    assert float(dkjax.smoothed_nll(samples, data, h)) == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("block_entries", [2**20, 37, 260])
def test_blocked_pairwise_reductions_equal_the_whole_matrix_formulas(monkeypatch, block_entries):
    # 37 entries: blocks of one row (against 37 or 50 columns), no padding. 260 entries: blocks of
    # 7 of the 37 or 50 rows against 37 columns (the last block padded with 5 or 6 zero rows) and of
    # 5 of the 50 rows against 50 columns.
    monkeypatch.setattr(dkjax._generative._metrics, "_BLOCK_ENTRIES", block_entries)
    x = jr.normal(jr.key(0), (37, 2))
    data = 0.5 + jr.normal(jr.key(1), (50, 2))
    key, h = jr.key(2), 0.4
    distance = lambda a, b: jnp.sqrt(jnp.sum((a[:, None] - b[None]) ** 2, -1))
    m = x.shape[0]

    loss, c, ess = kl_weights(x, data, h, key)
    jittered = data + h * jr.normal(key, data.shape)
    logits = -jnp.sum((jittered[:, None] - x[None]) ** 2, -1) / (2 * h**2)
    w = jax.nn.softmax(logits, axis=1)
    log_q = jax.nn.logsumexp(logits, axis=1) - jnp.log(m) - 2 * jnp.log(h * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(loss, -jnp.mean(log_q), rtol=1e-12)
    np.testing.assert_allclose(c, -jnp.mean(w, axis=0) + 1 / m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ess, jnp.mean(1 / jnp.sum(w**2, axis=1)), rtol=1e-12)

    off_diagonal = lambda a: jnp.sum(distance(a, a)) / (a.shape[0] * (a.shape[0] - 1))
    exact_energy = 2 * jnp.mean(distance(x, data)) - off_diagonal(x) - off_diagonal(data)
    np.testing.assert_allclose(energy_distance(x, data), exact_energy, rtol=1e-12)
    loss, c, _ = energy_weights(x, data)
    to_data, between = np.asarray(jnp.mean(distance(x, data), axis=1)), np.asarray(distance(x, x))
    weight = 2 * to_data - 2 * between.sum(axis=1) / (m - 1)
    # Path i's baseline: the mean weight of the other paths computed as if path i were not drawn.
    baseline = [
        np.mean([2 * to_data[k] - 2 * np.delete(between[k], [k, i]).sum() / (m - 2) for k in range(m) if k != i])
        for i in range(m)
    ]
    np.testing.assert_allclose(loss, exact_energy, rtol=1e-12)
    np.testing.assert_allclose(c, (weight - np.asarray(baseline)) / m, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(dkjax.smoothed_nll(x, data, h), -jnp.mean(
        jax.nn.logsumexp(-jnp.sum((data[:, None] - x[None]) ** 2, -1) / (2 * h**2), axis=1)
        - jnp.log(m) - 2 * jnp.log(h * np.sqrt(2 * np.pi))), rtol=1e-12)  # fmt: skip


def test_half_precision_sums_do_not_overflow():
    # 300 x 300 distances sum past float16's maximum (65504): sums accumulate in float32.
    x = jr.normal(jr.key(0), (300, 2))
    y = 0.3 + jr.normal(jr.key(1), (300, 2))
    half, full = (x.astype(jnp.float16), y.astype(jnp.float16)), (x, y)
    energy_half = energy_distance(*half)
    assert energy_half.dtype == jnp.float16
    np.testing.assert_allclose(float(energy_half), float(energy_distance(*full)), atol=2e-3)
    # c = -mean_j w_j + 1/M cancels to well below 1/M: judged on the scale 1/M.
    tolerances = [dict(rtol=2e-2), dict(atol=0.2 / x.shape[0]), dict(rtol=2e-2)]
    for a, b, tol in zip(kl_weights(*half, 3.0, jr.key(2)), kl_weights(*full, 3.0, jr.key(2)), tolerances):
        assert a.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b), **tol)


def test_energy_weights_are_unbiased_for_a_handful_of_paths(dtype):
    """Gaussian location model ``X = theta + Z`` (its path response is ``eta = Z``) and four paths.

    ``d/dtheta E[energy] = 2 mean_j (2 Phi(theta - y_j) - 1)`` exactly (``E|X - X'|`` does not
    move). A baseline that holds path m itself (the plain batch mean) shrinks the gradient by
    about 1 / M, here 25% (about 40 standard errors); the leave-one-out mean leaves it exact.
    """
    theta, data = 0.5, jnp.asarray([[-1.0], [-0.3], [0.2], [0.9], [1.4]], dtype)
    exact = float(2 * jnp.mean(2 * jax.scipy.stats.norm.cdf(theta - data.astype(jnp.float64)) - 1))

    def estimate(key):
        z = jr.normal(key, (4, 1), dtype)
        c = energy_weights(theta + z, data)[1]
        return jnp.sum(c * z[:, 0])

    estimates = jax.vmap(estimate)(jr.split(jr.key(3), 40_000))
    assert estimates.dtype == dtype
    assert_unbiased(estimates, exact, scale=abs(exact), max_rel_se=0.02, label=str(dtype))


def test_jackknife_coefficients_equal_the_leave_one_out_formula():
    """Per row: ``n R - (n - 1) mean_i R_{-i}`` written out, rows summing to one, and dominated rows finite.

    A row whose largest logit leads by 30 has the other weights near 1e-13: 1 - w formed by
    subtraction keeps only a few digits of them. Leading by 200, float32 rounds them to zero
    (0 / 0 in the plain formula); the result must then be the limit
    ``(2 - 1/n) e_k - (1 - 1/n) v``, with ``v`` the softmax of the other logits.
    """
    n = 7
    logits = jr.normal(jr.key(0), (3, n), F64) * jnp.array([[0.3], [2.0], [1.0]])
    rest = jr.normal(jr.key(3), (n,), F64)
    dominated = jnp.stack([rest.at[2].add(30.0), rest.at[2].add(200.0)])
    eta = jr.normal(jr.key(1), (n,), F64)

    def jackknife(row):
        w = jax.nn.softmax(row)
        left_out = [jax.nn.softmax(jnp.delete(row, i)) @ jnp.delete(eta, i) for i in range(n)]
        return n * (w @ eta) - (n - 1) * jnp.mean(jnp.stack(left_out))

    limit = ((2 * n - 1) * eta[2] - (n - 1) * jax.nn.softmax(jnp.delete(rest, 2)) @ jnp.delete(eta, 2)) / n
    jackknife_coefficients = dkjax._generative._metrics.jackknife_coefficients
    for dtype, rtol in ((F64, 1e-10), (F32, 2e-5)):
        rows = jnp.concatenate([logits, dominated]).astype(dtype)
        coefficients = jackknife_coefficients(rows, jax.nn.softmax(rows, axis=1))
        assert coefficients.dtype == dtype and np.all(np.isfinite(coefficients))
        np.testing.assert_allclose(coefficients.sum(1), 1.0, rtol=rtol)
        np.testing.assert_allclose(coefficients[:3] @ eta.astype(dtype), [jackknife(row) for row in logits], rtol=rtol)
        np.testing.assert_allclose(coefficients[3:] @ eta.astype(dtype), [limit, limit], rtol=max(rtol, 1e-12 * n))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_jackknife_cancels_the_ratio_bias_that_narrows_the_model(dtype):
    """Model N(0, s^2 I) at the data law N(0, I): the exact smoothed-KL gradient in s is zero.

    The exact score ``d/ds log p_s(X) = |Z|^2 - d`` at ``s = 1`` stands in for the DK response,
    so only the weights are judged: 512 paths, 128 data points, the ESS rule at 32, 300 seeds.
    The self-normalised weights' gradient is positive (a descent narrows the model): measured
    in 2-D +0.043 +- 0.010 and in 5-D +0.216 +- 0.011, where the jackknife gives +0.009 +- 0.011
    and +0.089 +- 0.013. It cancels the leading order; the 5-D remainder comes from the heavy
    tail of data points that few paths reach.
    """
    seeds = jr.split(jr.key(0), 300)

    @functools.partial(jax.jit, static_argnums=1)
    def gradients(key, dim):
        z = jr.normal(jr.fold_in(key, 0), (512, dim), dtype)
        data = jr.normal(jr.fold_in(key, 1), (128, dim), dtype)
        score = jnp.sum(z**2, axis=1) - dim
        h = ess_bandwidth(data, z, 32.0, 0.05, 4.0)
        plain, jackknifed = (kl_weights(z, data, h, jr.fold_in(key, 2), jk)[1] for jk in (False, True))
        return plain @ score, jackknifed @ score

    for dim in (2, 5):
        estimates = [np.asarray(g, np.float64) for g in jax.lax.map(lambda k: gradients(k, dim), seeds, batch_size=50)]
        (p, p_se), (j, j_se) = ((g.mean(), g.std(ddof=1) / np.sqrt(len(g))) for g in estimates)
        assert p_se < 0.015 and j_se < 0.016, (dim, p_se, j_se)  # a useless estimator cannot pass
        if dim == 2:
            assert p > 3 * p_se and abs(j) < 3 * j_se, (p, p_se, j, j_se)
        else:
            assert p > 10 * p_se and 3 * j_se < j < 0.6 * p, (p, p_se, j, j_se)


def test_kl_module_jackknifes_by_default_and_checks_its_flag():
    x = jr.normal(jr.key(0), (64, 2))
    data = jr.normal(jr.key(1), (32, 2)) * 1.5
    key = jr.key(2)
    for objective, jackknife in ((dkjax.KL(bandwidth=0.4), True), (dkjax.KL(bandwidth=0.4, jackknife=False), False)):
        _, c, (_, h) = objective.weights(x, data, key, *objective.bandwidth_range(data))
        np.testing.assert_array_equal(c, kl_weights(x, data, h, key, jackknife)[1])
    assert dkjax.TRAIN_DEFAULTS.objective == "kl" and dkjax._generative._objective.as_objective("kl").jackknife
    with pytest.raises(TypeError, match="jackknife must be True or False"):
        dkjax.KL(jackknife=1)

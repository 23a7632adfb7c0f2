"""Observable, density and stationary responses against exact Euler-Maruyama references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import dkjax
from helpers import cast, compilations_during, em_linear_moments, em_ou_moments, ou_window_responses

THETA, SIGMA, MEAN0, STD0 = 1.0, 0.8, 0.5, 0.3
T, STEPS = 1.0, 50
F32, F64 = jnp.float32, jnp.float64


def assert_close_in_se(estimate, stderr, reference, *, max_rel_se, scale=None, max_z=5.0, label=""):
    """``|estimate - reference| < max_z * stderr`` entrywise, with ``stderr < max_rel_se * scale``.

    The bound on the standard error keeps a useless high-variance estimator from passing.
    ``scale`` defaults to the RMS of the reference.
    """
    estimate, stderr, reference = (np.asarray(a, np.float64) for a in (estimate, stderr, reference))
    scale = float(np.sqrt(np.mean(reference**2))) if scale is None else scale
    assert np.all(np.isfinite(stderr)), f"{label}: non-finite standard errors {stderr}"
    assert np.all(stderr <= max_rel_se * scale), f"{label}: standard errors {stderr} exceed {max_rel_se} x {scale:.3g}"
    z = np.abs(estimate - reference) / stderr
    assert np.all(z <= max_z), f"{label}: z-scores {z} (estimate {estimate}, reference {reference}, se {stderr})"


def ou_initial(num, seed=1, dtype=F64):
    x0 = MEAN0 + STD0 * jax.random.normal(jax.random.key(seed), (num, 1), dtype)
    return x0, -(x0 - MEAN0) / STD0**2


def ou(dtype, theta=THETA, sigma=SIGMA):
    return cast(dkjax.OrnsteinUhlenbeck(theta, sigma), dtype)


def ou_first_two_moments(theta, sigma, mu=0.0):
    m, v = em_ou_moments(theta, sigma, MEAN0, STD0**2, T / STEPS, STEPS, mu)
    return jnp.stack([m, v + m**2])


def ou_final_law(theta, sigma):
    m, v = em_ou_moments(theta, sigma, MEAN0, STD0**2, T / STEPS, STEPS)
    return m, jnp.sqrt(v)


def observables(x):
    return jnp.stack([x[0], x[0] ** 2])


@pytest.mark.parametrize("response_mix, dtype", [(0.0, F32), (0.5, F64)])
def test_observable_response_ou_matches_em_chain(response_mix, dtype):
    # response_mix = 0.5 weighs the divergence and the kernel (likelihood-ratio) parts of each step equally.
    x0, score0 = ou_initial(20_000, dtype=dtype)
    sde = ou(dtype)
    res = dkjax.observable_response(
        sde, observables, x0, score0=score0, t1=T, num_steps=STEPS, key=jax.random.key(2), chunk_size=8192,
        response_mix=response_mix,
    )  # fmt: skip
    exact = jax.jacfwd(ou_first_two_moments, argnums=(0, 1, 2))(THETA, SIGMA, 0.0)
    assert res.estimate.theta.shape == (2,) and res.estimate.mean.shape == (2,)
    for name, reference in zip(("theta", "sigma", "mean"), exact):
        estimate, stderr = getattr(res.estimate, name), getattr(res.stderr, name)
        assert_close_in_se(estimate, stderr, reference, max_rel_se=0.08, label=f"b={response_mix} d/d{name}")
    assert_close_in_se(res.value, res.value_stderr, ou_first_two_moments(THETA, SIGMA), max_rel_se=0.02, label="E[phi]")
    assert res.num_paths == 20_000 and res.num_nonfinite == 0


def test_observable_response_linear_sde_general_noise():
    A = jnp.array([[-1.0, 0.5], [-0.3, -0.8]])
    S = jnp.array([[0.6, 0.0, 0.2], [0.1, 0.5, 0.0]])
    mean0, cov0 = jnp.array([0.3, -0.2]), 0.04 * jnp.eye(2)
    steps, t1 = 40, 0.8
    x0 = mean0 + 0.2 * jax.random.normal(jax.random.key(3), (20_000, 2))
    x0, score0 = cast((x0, -(x0 - mean0) / 0.04), F32)  # float64 in the tests around it

    def second_moment(A, S):
        m, c = em_linear_moments(A, S, jnp.zeros(2), mean0, cov0, t1 / steps, steps)
        return jnp.trace(c) + m @ m

    res = dkjax.observable_response(
        cast(dkjax.LinearSDE(A, S), F32), lambda x: x @ x, x0, score0=score0, t1=t1, num_steps=steps,
        key=jax.random.key(4),
    )  # fmt: skip
    d_A, d_S = jax.grad(second_moment, argnums=(0, 1))(A, S)
    scale = float(jnp.sqrt(jnp.mean(jnp.concatenate([d_A.ravel(), d_S.ravel()]) ** 2)))
    assert_close_in_se(res.estimate.A, res.stderr.A, d_A, scale=scale, max_rel_se=0.1, label="d/dA")
    assert_close_in_se(res.estimate.S, res.stderr.S, d_S, scale=scale, max_rel_se=0.1, label="d/dS")


def test_chunks_and_samplers_reproduce_one_run():
    x0, score0 = ou_initial(3000)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    kwargs = dict(t1=T, num_steps=STEPS, key=jax.random.key(5), center=False)
    whole = dkjax.observable_response(sde, observables, x0, score0=score0, **kwargs)
    chunked = dkjax.observable_response(sde, observables, x0, score0=score0, chunk_size=700, **kwargs)
    for a, b in zip(jax.tree.leaves((whole.estimate, whole.stderr)), jax.tree.leaves((chunked.estimate, chunked.stderr))):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)

    def sampler(key, n):
        x = MEAN0 + STD0 * jax.random.normal(key, (n, 1))
        return x, -(x - MEAN0) / STD0**2

    sampled = dkjax.observable_response(
        sde, observables, sampler, num_paths=20_000, chunk_size=6000, t1=T, num_steps=STEPS, key=jax.random.key(6)
    )
    assert sampled.num_paths == 20_000
    d_theta = jax.jacfwd(ou_first_two_moments)(THETA, SIGMA)
    assert_close_in_se(sampled.estimate.theta, sampled.stderr.theta, d_theta, max_rel_se=0.08, label="sampler")


def test_response_statistics_keep_the_state_dtype():
    x0, score0 = ou_initial(200, dtype=F32)
    kwargs = dict(score0=score0, t1=T, num_steps=5, key=jax.random.key(15))
    res = dkjax.observable_response(ou(F32), observables, x0, **kwargs)
    density = dkjax.density_response(ou(F32), x0, bins=jnp.linspace(-1.0, 1.5, 4, dtype=F32), **kwargs)
    leaves = jax.tree.leaves((res.estimate, res.stderr, res.value, density.density, density.response))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(F32)}


def test_centred_response_is_the_unbiased_sample_covariance():
    """One chunk, centred: the estimate is the sample covariance (ddof 1) of phi and dlogp, unbiased
    because E[dlogp] = 0; uncentred it is their sample mean product. Same key, same paths."""
    x0, score0 = ou_initial(500)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    kwargs = dict(score0=score0, t1=T, num_steps=10, key=jax.random.key(17))
    dk = dkjax.divergence_kernel(sde, x0, kernel_rate=1.0, **kwargs)
    phi, eta = np.asarray(dk.x[:, 0]) ** 2, np.asarray(dk.dlogp.sigma)
    centred = dkjax.observable_response(sde, lambda x: x[0] ** 2, x0, **kwargs)
    plain = dkjax.observable_response(sde, lambda x: x[0] ** 2, x0, center=False, **kwargs)
    np.testing.assert_allclose(centred.estimate.sigma, np.cov(phi, eta, ddof=1)[0, 1], rtol=1e-10)
    np.testing.assert_allclose(plain.estimate.sigma, np.mean(phi * eta), rtol=1e-10)
    np.testing.assert_allclose(plain.stderr.sigma, np.std(phi * eta, ddof=1) / np.sqrt(500), rtol=1e-10)


class Cubic(dkjax.AbstractSDE):
    """``dX = a X^3 dt + s dB``: paths started far out blow up in finite time."""

    a: jax.Array
    s: jax.Array

    def drift(self, t, x):
        return self.a * x**3

    def diffusion(self, t, x):
        return self.s * jnp.ones_like(x)


def test_nonfinite_paths_are_excluded_and_counted():
    x0 = jnp.concatenate([jnp.full((990, 1), 0.1), jnp.full((10, 1), 1e3)])
    sde = Cubic(jnp.array(1.0), jnp.array(0.3))
    with pytest.warns(RuntimeWarning, match="10 of 1000 paths went non-finite"):
        res = dkjax.observable_response(
            sde, lambda x: x[0], x0, t1=1.0, num_steps=20, key=jax.random.key(7), chunk_size=300
        )
    assert res.num_nonfinite == 10 and res.num_paths == 990
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves((res.estimate, res.stderr, res.value)))


def test_observable_bad_inputs():
    x0, score0 = ou_initial(100)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    kwargs = dict(t1=T, num_steps=10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="phi returned non-finite"):
        dkjax.observable_response(sde, lambda x: jnp.log(x[0]), x0, **kwargs)
    with pytest.raises(ValueError, match="num_paths is required"):
        dkjax.observable_response(sde, observables, lambda k, n: (jnp.zeros((n, 1)), None), **kwargs)
    with pytest.raises(ValueError, match="x0 sampler must return x0 of shape"):
        dkjax.observable_response(sde, observables, lambda k, n: (jnp.zeros((n + 1, 1)), None), num_paths=10, **kwargs)
    with pytest.raises(ValueError, match="chunk_size"):
        dkjax.observable_response(sde, observables, x0, chunk_size=0, **kwargs)
    with pytest.raises(ValueError, match="score0 must have the shape"):
        dkjax.observable_response(sde, observables, x0, score0=score0[:5], **kwargs)


# ----------------------------------------------------------------------------------- densities


def test_density_response_bins_1d_exact_bin_averages():
    x0, score0 = ou_initial(30_000, dtype=F32)
    edges = jnp.linspace(-1.0, 1.5, 6, dtype=F32)
    res = dkjax.density_response(
        ou(F32), x0, score0=score0, t1=T, num_steps=STEPS, key=jax.random.key(8),
        bins=edges, chunk_size=10_000,
    )

    def bin_mass(theta, sigma):
        m, s = ou_final_law(theta, sigma)
        return jnp.diff(norm.cdf((edges - m) / s))

    mass = bin_mass(THETA, SIGMA)
    m, s = ou_final_law(THETA, SIGMA)
    widths = jnp.diff(edges)
    d_mass = jax.jacfwd(bin_mass)(THETA, SIGMA)
    assert_close_in_se(res.density, res.density_stderr, mass / widths, max_rel_se=0.03, label="density")
    assert_close_in_se(res.response.theta, res.response_stderr.theta, d_mass / widths, max_rel_se=0.1, label="dp/dtheta")
    # Binning is exact for bin averages: E[d log p | X in bin] = d log P(bin), E[score | bin] = jump of p / P(bin).
    assert_close_in_se(res.dlogp_mean.theta, res.dlogp_mean_stderr.theta, d_mass / mass, max_rel_se=0.15, label="E[dlogp|bin]")
    jump = jnp.diff(norm.pdf(edges, m, s))
    assert_close_in_se(res.score_mean[:, 0], res.score_mean_stderr[:, 0], jump / mass, max_rel_se=0.1, label="E[score|bin]")
    np.testing.assert_allclose(res.points[:, 0], 0.5 * (edges[1:] + edges[:-1]))


def test_density_conditional_means_are_the_bin_sample_means():
    """Per bin: E[dlogp | bin] is the mean of the paths that landed in it, its error their std / sqrt(count)
    (the delta method for indicator weights); the density is count / (paths x width). Same key, same paths."""
    x0, score0 = ou_initial(3000)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    kwargs = dict(score0=score0, t1=T, num_steps=10, key=jax.random.key(18))
    edges = np.array([-1.0, 0.0, 0.4, 1.5])
    res = dkjax.density_response(sde, x0, bins=jnp.asarray(edges), **kwargs)
    dk = dkjax.divergence_kernel(sde, x0, kernel_rate=1.0, **kwargs)
    x, eta, score = np.asarray(dk.x[:, 0]), np.asarray(dk.dlogp.theta), np.asarray(dk.score[:, 0])
    for g in range(3):
        inside = (x >= edges[g]) & (x < edges[g + 1])
        count = int(inside.sum())
        np.testing.assert_allclose(res.density[g], count / (3000 * (edges[g + 1] - edges[g])), rtol=1e-10)
        np.testing.assert_allclose(res.effective_paths[g], count, rtol=1e-10)
        for mean, stderr, samples in [
            (res.dlogp_mean.theta[g], res.dlogp_mean_stderr.theta[g], eta[inside]),
            (res.score_mean[g, 0], res.score_mean_stderr[g, 0], score[inside]),
        ]:
            np.testing.assert_allclose(mean, samples.mean(), rtol=1e-9)
            np.testing.assert_allclose(stderr, samples.std() / np.sqrt(count), rtol=1e-9)


def test_density_response_kernel_points_is_exact_for_the_smoothed_density():
    x0, score0 = ou_initial(20_000)
    points, h = jnp.linspace(-0.8, 1.2, 5), 0.2
    res = dkjax.density_response(
        dkjax.OrnsteinUhlenbeck(THETA, SIGMA), x0, score0=score0, t1=T, num_steps=STEPS, key=jax.random.key(9),
        points=points, bandwidth=h,
    )

    def smoothed(theta, sigma):
        m, s = ou_final_law(theta, sigma)
        return norm.pdf(points, m, jnp.sqrt(s**2 + h**2))

    d_theta, d_sigma = jax.jacfwd(smoothed, argnums=(0, 1))(THETA, SIGMA)
    assert_close_in_se(res.density, res.density_stderr, smoothed(THETA, SIGMA), max_rel_se=0.03, label="p*K")
    assert_close_in_se(res.response.theta, res.response_stderr.theta, d_theta, max_rel_se=0.1, label="d(p*K)/dtheta")
    assert_close_in_se(res.response.sigma, res.response_stderr.sigma, d_sigma, max_rel_se=0.1, label="d(p*K)/dsigma")


def test_density_response_bins_2d_product_law():
    # Diagonal linear SDE: independent coordinates, so 2-D bin masses are products of 1-D ones.
    steps, t1 = 30, 0.6
    x0 = 0.1 * jax.random.normal(jax.random.key(10), (20_000, 2), F32)
    score0 = -x0 / 0.01
    edges = (jnp.array([-1.0, -0.2, 0.3, 1.0]), jnp.array([-0.8, -0.25, 0.25, 0.8]))

    def masses(a):
        pieces = []
        for axis, e in enumerate(edges):
            m, v = em_ou_moments(a[axis], 0.7, 0.0, 0.01, t1 / steps, steps)
            pieces.append(jnp.diff(norm.cdf((e - m) / jnp.sqrt(v))))
        return jnp.outer(pieces[0], pieces[1]).ravel()

    a = jnp.array([1.0, 2.0])
    sde = cast(dkjax.LinearSDE(-jnp.diag(a), 0.7 * jnp.eye(2)), F32)
    res = dkjax.density_response(
        sde, x0, score0=score0, t1=t1, num_steps=steps, key=jax.random.key(11), bins=cast(edges, F32)
    )
    volume = jnp.outer(jnp.diff(edges[0]), jnp.diff(edges[1])).ravel()
    assert res.grid_shape == (3, 3) and res.points.shape == (9, 2)
    assert_close_in_se(res.density, res.density_stderr, masses(a) / volume, max_rel_se=0.03, label="2-D density")
    d_a = jax.jacfwd(masses)(a) / volume[:, None]  # (G, 2): d/da_k
    scale = float(jnp.sqrt(jnp.mean(d_a**2)))
    # dA = -diag(da): d/dA_kk = -d/da_k.
    for k in range(2):
        assert_close_in_se(res.response.A[k, k], res.response_stderr.A[k, k], -d_a[:, k], scale=scale, max_rel_se=0.3,
                           label=f"dp/dA{k}{k}")


def test_density_bad_inputs_and_empty_bins():
    x0, score0 = ou_initial(2000)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    kwargs = dict(t1=T, num_steps=10, key=jax.random.key(0), score0=score0)
    with pytest.raises(ValueError, match="exactly one of bins"):
        dkjax.density_response(sde, x0, **kwargs)
    with pytest.raises(ValueError, match="strictly increasing"):
        dkjax.density_response(sde, x0, bins=jnp.array([0.0, 1.0, 0.5]), **kwargs)
    with pytest.raises(ValueError, match="bandwidth"):
        dkjax.density_response(sde, x0, points=jnp.zeros(3), **kwargs)
    with pytest.raises(ValueError, match="outside the region"):
        dkjax.density_response(sde, x0, bins=jnp.array([50.0, 51.0, 52.0]), **kwargs)
    with pytest.raises(ValueError, match="coordinates"):
        dkjax.density_response(dkjax.OrnsteinUhlenbeck(1.0, 1.0), jnp.zeros((10, 3)), t1=T, num_steps=5,
                               key=jax.random.key(0), bins=jnp.array([0.0, 1.0]))
    with pytest.warns(RuntimeWarning, match="1 of 3 bins received fewer than 2"):
        res = dkjax.density_response(sde, x0, bins=jnp.array([-1.0, 0.5, 3.5, 50.0]), **kwargs)
    assert np.isnan(res.dlogp_mean.theta[2]) and np.all(np.isfinite(res.dlogp_mean.theta[:2]))
    assert np.isnan(res.score_mean[2, 0]) and res.density[2] == 0.0


@pytest.mark.parametrize("grid", ["bins", "points"])
def test_density_second_call_with_new_arrays_does_not_recompile(grid):
    """Bins (or points), states, scores, parameters and key all new, shapes and settings the same."""

    def call(shift, seed):
        x0, score0 = ou_initial(300, seed=seed, dtype=F32)
        where = jnp.linspace(-1.0, 1.5, 6, dtype=F32) + shift
        placed = dict(bins=where) if grid == "bins" else dict(points=where, bandwidth=0.3)
        return dkjax.density_response(ou(F32, THETA + shift, SIGMA), x0, score0=score0, t1=T, num_steps=5,
                                      key=jax.random.key(seed), chunk_size=128, **placed)  # fmt: skip

    first = call(0.0, 1)
    compiled, second = compilations_during(lambda: call(0.1, 2))
    assert compiled == 0, f"{compiled} compilations on the second call"
    assert not np.allclose(first.density, second.density)


# ----------------------------------------------------------------------------------- stationary


def test_stationary_response_ou_matches_exact_truncated_windows():
    """Each window W gives exactly the response to moving the parameters of the last W steps.

    For the stationary OU chain that is W steps of its moment recursion, differentiated
    (``ou_window_responses``): short windows truncate the response by a known factor,
    long ones reach the plateau, the full stationary response.
    """
    dt, theta, sigma = 0.02, 1.0, 0.8
    windows = [5, 10, 25, 200, 300]

    def stationary_second_moment(theta, sigma):
        return sigma**2 * dt / (1 - (1 - theta * dt) ** 2)

    exact = {name: value[:, 1] for name, value in ou_window_responses(theta, sigma, dt, windows).items()}
    x0 = 0.5 * jax.random.normal(jax.random.key(12), (64, 1), F32)  # float64: the tests around it
    res = dkjax.stationary_response(
        ou(F32, theta, sigma), lambda x: x[0] ** 2, x0, dt=dt, spinup_steps=200, num_steps=6000,
        windows=windows, key=jax.random.key(13), sample_every=5, num_blocks=2, kernel_rate=5.0,
    )
    assert res.estimate.theta.shape == (5,) and np.all(np.asarray(res.num_batches) == 128)
    # W = 4 and 6 decorrelation times reach the plateau.
    np.testing.assert_allclose(exact["theta"][3:], jax.grad(stationary_second_moment)(theta, sigma), rtol=1e-3)
    for name in ("theta", "sigma"):
        for i, window in enumerate(windows):
            # Each window on its own scale: a window one segment short is 13 SE off at W = 10.
            assert_close_in_se(
                getattr(res.estimate, name)[i], getattr(res.stderr, name)[i], exact[name][i],
                max_rel_se=0.06 if window <= 25 else 0.1, label=f"W={window} d/d{name}",
            )  # fmt: skip
    # The mean is a parameter too; at mean zero, <x^2> does not move with it.
    assert_close_in_se(res.estimate.mean, res.stderr.mean, exact["mean"], scale=abs(float(exact["theta"][-1])),
                       max_rel_se=0.15, label="d/dmean")
    assert_close_in_se(res.value, res.value_stderr, stationary_second_moment(theta, sigma), max_rel_se=0.03, label="<x^2>")


def test_stationary_bad_inputs():
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    x0 = jnp.zeros((4, 1))
    kwargs = dict(dt=0.01, spinup_steps=10, num_steps=100, key=jax.random.key(0), sample_every=5)
    with pytest.raises(ValueError, match="longer than the run"):
        dkjax.stationary_response(sde, lambda x: x[0], x0, windows=[50, 200], **kwargs)
    with pytest.raises(ValueError, match="multiples of sample_every"):
        dkjax.stationary_response(sde, lambda x: x[0], x0, windows=[12], **kwargs)
    with pytest.raises(ValueError, match="multiple of sample_every"):
        dkjax.stationary_response(sde, lambda x: x[0], x0, windows=[10], num_blocks=3, **kwargs)
    with pytest.raises(ValueError, match="phi returned non-finite"):
        dkjax.stationary_response(sde, lambda x: jnp.log(x[0]), x0 + 0.1, windows=[10], **kwargs)
    with pytest.raises(ValueError, match="dt must be"):
        dkjax.stationary_response(sde, lambda x: x[0], x0, windows=[10], **{**kwargs, "dt": -1.0})


def test_auto_kernel_rate_is_chosen_once_and_reported():
    x0, score0 = ou_initial(4000)
    res = dkjax.observable_response(
        dkjax.OrnsteinUhlenbeck(THETA, SIGMA), observables, x0, score0=score0, t1=T, num_steps=STEPS,
        key=jax.random.key(14), kernel_rate="auto", chunk_size=1500,
    )
    assert isinstance(res.kernel_rate, float) and 0 < res.kernel_rate <= STEPS / T
    d_theta = jax.jacfwd(ou_first_two_moments)(THETA, SIGMA)
    assert_close_in_se(res.estimate.theta, res.stderr.theta, d_theta, max_rel_se=0.15, label="auto rate")


def test_plots_write_png_files(tmp_path):
    x0, score0 = ou_initial(2000)
    sde = dkjax.OrnsteinUhlenbeck(THETA, SIGMA)
    dens = dkjax.density_response(sde, x0, score0=score0, t1=T, num_steps=10, key=jax.random.key(15),
                                  bins=jnp.linspace(-1.0, 1.5, 8))
    stat = dkjax.stationary_response(sde, lambda x: x[0] ** 2, x0[:8], dt=0.05, spinup_steps=10, num_steps=100,
                                     windows=[10, 20], key=jax.random.key(16), sample_every=10)
    dkjax.plot_density_response(dens, tmp_path / "d.png", parameter="theta")
    dkjax.plot_window_plateau(stat, tmp_path / "w.png", parameter="sigma", reference=(0.8, 0.1))
    dkjax.plot_response_vs_parameter([1.0, 2.0], {"DK": ([0.1, 0.2], [0.01, 0.01])}, tmp_path / "r.png",
                                     xlabel="p", ylabel="r")
    dkjax.plot_slope_segments(np.linspace(-1, 1, 50), np.linspace(-1, 1, 50) ** 2, np.array([0.0, 0.5]),
                              np.array([0.0, 1.0]), tmp_path / "s.png", xlabel="x", ylabel="y")
    for name in ("d", "w", "r", "s"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="parameter must name"):
        dkjax.plot_window_plateau(stat, tmp_path / "x.png", parameter="nope")
    with pytest.raises(ValueError, match="has"):
        dkjax.plot_response_vs_parameter([1.0, 2.0], {"DK": ([0.1], None)}, tmp_path / "r.png", xlabel="p", ylabel="r")

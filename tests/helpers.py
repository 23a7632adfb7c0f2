"""Shared exact references, statistical judges and dtype helpers for the tests."""

import importlib.util
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import dkjax


DTYPES = (jnp.float32, jnp.float64)
ROOT = Path(__file__).resolve().parent.parent


def gen_api():
    """``docs/gen_api.py`` as a module: the exports and the docstring rules the docs are built from."""
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_LOWERINGS = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: _LOWERINGS.append(event) if event.endswith("jaxpr_to_mlir_module_duration") else None
)


def compilations_during(fn):
    """``(number of programs JAX compiles while fn() runs, its result)``.

    Counted as lowerings to XLA, which every in-memory cache miss goes through: a count of
    backend compilations would miss the programs that the suite's persistent compilation
    cache serves, and a count of traces would include shape-only ``eval_shape`` traces.
    """
    before = len(_LOWERINGS)
    result = fn()
    return len(_LOWERINGS) - before, result


def cast(tree, dtype):
    """``tree`` with every floating-point array leaf in ``dtype``.

    conftest enables x64, so arrays made from Python floats are float64: tests pass their
    dtype explicitly, parameters and states alike.
    """
    return jax.tree.map(lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf, tree)


def z_score(samples) -> tuple[float, float]:
    """Monte-Carlo mean of ``samples`` and its standard error."""
    samples = np.asarray(samples, dtype=np.float64)
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(samples.shape[0]))


def assert_unbiased(estimates, reference, *, scale, max_rel_se, max_z=5.0, label=""):
    """Judges ``E[estimates - reference] = 0`` in standard errors, with a bound on the error.

    ``scale`` is the typical size of the quantity (e.g. the RMS of ``reference``); the
    standard error must be below ``max_rel_se * scale`` so a useless high-variance
    estimator cannot pass by having huge error bars.
    """
    mean, se = z_score(np.asarray(estimates) - np.asarray(reference))
    assert se <= max_rel_se * scale, f"{label}: standard error {se:.3g} exceeds {max_rel_se} x scale {scale:.3g}"
    assert abs(mean) <= max_z * se, f"{label}: bias {mean:.3g} is {abs(mean) / se:.1f} standard errors (se {se:.3g})"


def assert_conditional_identity(weights, exact, x, *, max_rel_se, label="", powers=(0, 1, 2)):
    """``E[(weights - exact(x)) phi(x)] = 0`` for test functions ``phi = x^k``.

    ``weights`` and ``exact`` have shape ``(M,)`` or ``(M, k)``; ``x`` has shape ``(M, d)``;
    the test functions are powers of each state coordinate, scaled to unit spread.
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(x.shape[0], -1)
    exact = np.asarray(exact, dtype=np.float64).reshape(x.shape[0], -1)
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean(0)) / x.std(0)
    scale = float(np.sqrt(np.mean(exact**2))) + 1e-12
    for column in range(weights.shape[1]):
        for coordinate in range(x.shape[1]):
            for power in powers:
                phi = x[:, coordinate] ** power
                assert_unbiased(
                    weights[:, column] * phi,
                    exact[:, column] * phi,
                    scale=scale,
                    max_rel_se=max_rel_se,
                    label=f"{label}[{column}] phi=x{coordinate}^{power}",
                )


def em_ou_moments(theta, sigma, mean0, var0, dt, num_steps, mu=0.0):
    """Mean and variance of the Euler-Maruyama chain of ``dX = -theta (X - mu) dt + sigma dB`` (exact)."""
    m, v = mean0, var0
    for _ in range(num_steps):
        m = (1 - theta * dt) * m + theta * mu * dt
        v = (1 - theta * dt) ** 2 * v + sigma**2 * dt
    return m, v


class TimeDependentOU(dkjax.AbstractSDE):
    """``dX = -(theta0 + theta1 t) X dt + (sigma0 + sigma1 t) dB``: coefficients that move in time.

    A time-dependent exact reference (``em_time_ou_moments``): a step that reads its
    coefficients at the wrong time shifts the chain's moments.
    """

    theta0: jax.Array
    theta1: jax.Array
    sigma0: jax.Array
    sigma1: jax.Array

    def drift(self, t, x):
        return -(self.theta0 + self.theta1 * t) * x

    def diffusion(self, t, x):
        return (self.sigma0 + self.sigma1 * t) * jnp.ones_like(x)


def em_time_ou_moments(sde: TimeDependentOU, mean0, var0, t0, dt, num_steps):
    """Mean and variance of the Euler-Maruyama chain of ``TimeDependentOU`` from ``t0`` (exact).

    Step ``n`` uses the coefficients at ``t_n = t0 + n dt``; differentiable in the fields of ``sde``.
    """
    m, v = mean0, var0
    for n in range(num_steps):
        t = t0 + n * dt
        decay = 1 - (sde.theta0 + sde.theta1 * t) * dt
        m = decay * m
        v = decay**2 * v + (sde.sigma0 + sde.sigma1 * t) ** 2 * dt
    return m, v


def ou_window_responses(theta, sigma, dt, windows):
    """Exact windowed stationary responses of ``<x>`` and ``<x^2>`` for the OU chain (mean 0).

    ``E[phi(X_n) (eta_n - eta_{n-W})]`` is the response of ``E[phi(X_n)]`` to moving the
    parameters of the last ``W`` steps only: ``W`` steps of the moment recursion
    ``m <- (1 - theta dt) m + theta mu dt``, ``v <- (1 - theta dt)^2 v + sigma^2 dt`` from the
    stationary law, differentiated in those steps' ``theta``, ``sigma`` and ``mu``. Returns a
    dict ``{"theta", "sigma", "mean"}`` of arrays of shape ``(len(windows), 2)`` (phi = x, x^2).
    """
    stationary_var = sigma**2 * dt / (1 - (1 - theta * dt) ** 2)

    def windowed(params, window):
        theta_w, sigma_w, mu_w = params

        def step(_, moments):
            m, v = moments
            return (1 - theta_w * dt) * m + theta_w * mu_w * dt, (1 - theta_w * dt) ** 2 * v + sigma_w**2 * dt

        m, v = jax.lax.fori_loop(0, window, step, (0.0, stationary_var))
        return jnp.stack([m, v + m**2])

    params = jnp.array([theta, sigma, 0.0])
    derivatives = jnp.stack([jax.jacfwd(windowed)(params, w) for w in windows])  # (nW, 2 phi, 3 params)
    return {name: derivatives[:, :, k] for k, name in enumerate(("theta", "sigma", "mean"))}


def time_dependent_neural_sde(dim: int = 2) -> dkjax.NeuralSDE:
    """A small ``NeuralSDE`` whose drift and noise both depend on t and x, every weight in use.

    ``NeuralSDE`` starts with a zero noise slope and a zero last noise layer (so the noise
    ignores t and x); both are set nonzero here.
    """
    sde = dkjax.NeuralSDE(dim, key=jax.random.key(5), width=8, depth=1, noise="diagonal", state_dependent=True)
    last = sde.sigma_net.layers[-1].weight
    sde = eqx.tree_at(lambda s: s.sigma_net.layers[-1].weight, sde, 0.3 * jax.random.normal(jax.random.key(6), last.shape))
    return eqx.tree_at(lambda s: s.sigma_slope, sde, jnp.linspace(0.8, -0.5, dim))


def gaussian_logpdf(x, mean, cov):
    """Log-density of ``N(mean, cov)`` at ``x`` (shape ``(d,)``), differentiable in all arguments."""
    chol = jnp.linalg.cholesky(cov)
    r = jax.scipy.linalg.solve_triangular(chol, x - mean, lower=True)
    return -0.5 * r @ r - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * x.shape[0] * jnp.log(2 * jnp.pi)


def em_linear_moments(A, S, b, mean0, cov0, dt, num_steps):
    """Mean and covariance of the Euler-Maruyama chain of ``dX = (A X + b) dt + S dB`` (exact)."""
    step = jnp.eye(A.shape[0]) + A * dt
    m, c = mean0, cov0
    for _ in range(num_steps):
        m = step @ m + b * dt
        c = step @ c @ step.T + S @ S.T * dt
    return m, c


def grid_density_1d(drift, diffusion, p0, grid, dt, num_steps):
    """Density of a 1-D Euler-Maruyama chain propagated on a grid with its transition kernel.

    ``drift(x)``, ``diffusion(x)`` act elementwise on the grid; ``p0`` is the initial
    density on ``grid``. Differentiable in whatever ``drift`` and ``diffusion`` close over.
    """
    h = grid[1] - grid[0]
    mean = grid + drift(grid) * dt
    std = jnp.abs(diffusion(grid)) * jnp.sqrt(dt)
    kernel = jnp.exp(-0.5 * ((grid[None, :] - mean[:, None]) / std[:, None]) ** 2) / (
        jnp.sqrt(2 * jnp.pi) * std[:, None]
    )
    p = p0
    for _ in range(num_steps):
        p = (p * h) @ kernel
    return p


def tiny_train_config(*, steps: int = 4, checkpoint_every: int = 2, extra_train: str = "") -> str:
    """A TOML config for ``dkjax train`` small enough for a test (a one-layer, width-8 neural SDE)."""
    return f"""
[run]
name = "tiny"
[data]
num_points = 128
heldout_points = 64
[model]
width = 8
depth = 1
[train]
steps = {steps}
num_steps = 10
num_paths = 64
batch_size = 32
checkpoint_every = {checkpoint_every}
{extra_train}
dtype = "float64"
[eval]
num_samples = 64
"""

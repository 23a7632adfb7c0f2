"""Property-based tests (hypothesis) of the public API over shapes, dtypes, noise kinds and
pytree parameters: documented shapes and dtypes, finite outputs for well-posed inputs, and
only the documented errors otherwise.

Sizes are drawn from small fixed sets so that examples share compiled shapes.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dkjax

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Each example of a whole estimator or training run is a compilation of its own (seconds).
COMPILING = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Inner(eqx.Module):
    scale: jax.Array


class PytreeSDE(dkjax.AbstractSDE):
    """Parameters in a dict and in a nested module; diagonal or general multiplicative noise."""

    params: dict
    inner: Inner
    general: bool = eqx.field(static=True)

    def drift(self, t, x):
        return -self.params["rate"] * x + 0.1 * jnp.sin(x) + self.params["shift"]

    def diffusion(self, t, x):
        level = self.inner.scale * (1.0 + 0.1 * jnp.cos(x[0]))
        if self.general:
            d, m = self.params["mix"].shape
            return level * (jnp.eye(d, m, dtype=x.dtype) + 0.1 * self.params["mix"])
        return level * jnp.ones_like(x)


# (dtype, d, m or None for diagonal noise, initial score given): a pairwise cover of the axes,
# so each example reuses one of six compiled shapes.
CONFIGS = [
    (jnp.float32, 1, None, False),
    (jnp.float64, 1, None, True),
    (jnp.float32, 3, 4, True),
    (jnp.float64, 3, 4, False),
    (jnp.float64, 2, 2, True),
    (jnp.float32, 2, None, False),
]
NUM_PATHS = 4


@st.composite
def problems(draw):
    """An SDE with random coefficients, initial states, their score (or None) and a key."""
    dtype, d, m, with_score0 = draw(st.sampled_from(CONFIGS))
    seed = draw(st.integers(0, 2**16))
    keys = jr.split(jr.key(seed), 4)
    params = {
        "rate": jr.uniform(keys[0], (d,), dtype, 0.5, 1.5),
        "shift": jnp.asarray(draw(st.floats(-1, 1)), dtype),
        "mix": jr.normal(keys[1], (d, m or d), dtype),
    }
    inner = Inner(scale=jnp.asarray(draw(st.floats(0.2, 1.0)), dtype))
    sde = PytreeSDE(params=params, inner=inner, general=m is not None)
    x0 = jr.normal(keys[2], (NUM_PATHS, d), dtype)
    return sde, x0, -x0 if with_score0 else None, keys[3], dtype


def _assert_like_parameters(tree, sde, leading: tuple, trailing: tuple = (), same_dtype: bool = True):
    params = dkjax.parameters(sde)
    assert jax.tree.structure(tree) == jax.tree.structure(params)
    for leaf, p in zip(jax.tree.leaves(tree), jax.tree.leaves(params)):
        assert leaf.shape == leading + p.shape + trailing
        assert leaf.dtype == p.dtype if same_dtype else jnp.issubdtype(leaf.dtype, jnp.floating)


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


@COMPILING
@given(problems())
def test_divergence_kernel_shapes_dtypes_finite(problem):
    sde, x0, score0, key, dtype = problem
    n, d = x0.shape
    result = dkjax.divergence_kernel(sde, x0, t1=0.1, num_steps=2, key=key, kernel_rate=2.0, score0=score0)
    assert result.x.shape == result.score.shape == (n, d)
    assert result.x.dtype == result.score.dtype == dtype
    _assert_like_parameters(result.dlogp, sde, (n,))
    assert result.nonfinite_step.shape == (n,) and bool(jnp.all(result.finite))
    assert _finite((result.x, result.score, result.dlogp))
    if not sde.general:  # the mixing matrix is unused: its response is exactly zero
        assert not np.any(np.asarray(result.dlogp.params["mix"]))
    # The same paths as simulate with the same key (up to rounding: a different compiled program).
    simulated = dkjax.simulate(sde, x0, t1=0.1, num_steps=2, key=key)
    np.testing.assert_allclose(simulated, result.x, rtol=10 * jnp.finfo(dtype).eps, atol=10 * jnp.finfo(dtype).eps)


@COMPILING
@given(problems(), st.sampled_from([(), (2,)]))
def test_observable_response_shapes_dtypes_finite(problem, phi_shape):
    sde, x0, score0, key, dtype = problem

    def phi(x):
        return jnp.sum(x**2) if phi_shape == () else jnp.stack([x[0], jnp.sum(x)])

    result = dkjax.observable_response(
        sde, phi, x0, score0=score0, t1=0.1, num_steps=2, key=key, kernel_rate=2.0, chunk_size=NUM_PATHS
    )
    # Running moments are accumulated in the default float type, so float32 models may get float64 estimates.
    _assert_like_parameters(result.estimate, sde, (), phi_shape, same_dtype=False)
    _assert_like_parameters(result.stderr, sde, (), phi_shape, same_dtype=False)
    assert result.value.shape == result.value_stderr.shape == phi_shape
    assert result.num_paths == x0.shape[0] and result.num_nonfinite == 0
    assert _finite((result.estimate, result.stderr, result.value, result.value_stderr))
    if not sde.general:
        assert not np.any(np.asarray(result.estimate.params["mix"]))


def _log_kernel(sde, x, y, t, dt):
    sigma = sde.diffusion(t, x)
    covariance = (jnp.diag(sigma**2) if sigma.ndim == 1 else sigma @ sigma.T) * dt
    return jax.scipy.stats.multivariate_normal.logpdf(y, x + sde.drift(t, x) * dt, covariance)


_kernel_gradients = eqx.filter_jit(jax.vmap(jax.grad(_log_kernel, argnums=(0, 2)), in_axes=(None, 0, 0, None, None)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_first_step_from_a_point_mass_is_the_transition_kernel(problem):
    """With no initial score the first step is the kernel alone: score = grad_y log k(x0, X_1) and
    dlogp = d/dparam log k(x0, X_1), k the Gaussian Euler-Maruyama transition density (here by autodiff
    of its log-density), for diagonal and general noise, parameters in dicts and nested modules."""
    sde, x0, _, key, dtype = problem
    dt = 0.1
    result = dkjax.divergence_kernel(sde, x0, t0=0.2, t1=0.2 + dt, num_steps=1, key=key, kernel_rate=2.0)
    dlogp, score = _kernel_gradients(sde, x0, result.x, jnp.asarray(0.2, dtype), jnp.asarray(dt, dtype))
    tolerance = dict(rtol=2e-3, atol=2e-3) if dtype == jnp.float32 else dict(rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(result.score, score, **tolerance)
    for estimate, exact in zip(jax.tree.leaves(result.dlogp), jax.tree.leaves(eqx.filter(dlogp, eqx.is_inexact_array))):
        np.testing.assert_allclose(estimate, exact, **tolerance)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([jnp.float32, jnp.float64]), st.integers(1, 3), st.integers(0, 2**16))
def test_fewer_noise_than_state_dimensions_is_a_documented_error(dtype, d, seed):
    narrow = PytreeSDE(
        params={"rate": jnp.ones(d + 1, dtype), "shift": jnp.zeros((), dtype), "mix": jnp.ones((d + 1, d), dtype)},
        inner=Inner(scale=jnp.asarray(0.5, dtype)), general=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="invertible Sigma"):
        dkjax.divergence_kernel(narrow, jnp.zeros((2, d + 1), dtype), t1=0.1, num_steps=1, key=jr.key(seed))


BAD_X0_SHAPES = st.sampled_from([(), (3,), (0, 2), (2, 0), (1, 2, 3)])


@SETTINGS
@given(BAD_X0_SHAPES, st.sampled_from(["divergence_kernel", "simulate"]))
def test_bad_state_shapes_raise_value_error(shape, entry):
    sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
    with pytest.raises(ValueError, match="x0 must have shape"):
        getattr(dkjax, entry)(sde, jnp.zeros(shape), t1=1.0, num_steps=2, key=jr.key(0))


@SETTINGS
@given(
    st.one_of(
        st.tuples(st.just("num_steps"), st.sampled_from([0, -1]), st.just(ValueError)),
        st.tuples(st.just("num_steps"), st.sampled_from([1.5, "3", None]), st.just(TypeError)),
        st.tuples(st.just("t1"), st.sampled_from([0.0, -1.0, float("nan"), float("inf")]), st.just(ValueError)),
        st.tuples(st.just("key"), st.sampled_from([0, None, "key"]), st.just(TypeError)),
        st.tuples(st.just("kernel_rate"), st.sampled_from([-1.0, float("inf"), 1e6, "fast"]), st.just(ValueError)),
        st.tuples(st.just("mode"), st.sampled_from(["dense", ""]), st.just(ValueError)),
    )
)
def test_bad_arguments_raise_the_documented_error(case):
    name, value, error = case
    kwargs = {"t1": 1.0, "num_steps": 4, "key": jr.key(0), name: value}
    with pytest.raises(error):
        dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), jnp.zeros((2, 1)), **kwargs)


@pytest.mark.parametrize("objective", ["kl", "energy"])  # every combination once: each trains and compiles
def test_fit_keeps_dtype_and_structure(dtype, objective):
    d = 2
    sde = PytreeSDE(
        params={"rate": jnp.ones(d, dtype), "shift": jnp.zeros((), dtype), "mix": jnp.zeros((d, d), dtype)},
        inner=Inner(scale=jnp.asarray(0.5, dtype)), general=False,
    )  # fmt: skip
    data = jr.normal(jr.key(1), (16, d), dtype)
    initial = dkjax.GaussianInitial(jnp.zeros(d, dtype), 1.0)
    fitted, history = dkjax.fit(
        sde, data, initial, t1=0.2, num_steps=2, key=jr.key(2), steps=2, num_paths=8, batch_size=8,
        kernel_rate=1.0, objective=objective, progress=False,
    )  # fmt: skip
    _assert_like_parameters(dkjax.parameters(fitted), sde, ())
    assert history.stop_reason is None and len(history.records) == 2
    assert np.all(np.isfinite(history.loss)) and _finite(dkjax.parameters(fitted))

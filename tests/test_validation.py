"""Bad input is refused before any work, with a message naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax
from dkjax._validation import check_positive, is_positive
from helpers import assert_conditional_identity, em_linear_moments, gaussian_logpdf

OU = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
KEY = jax.random.key(0)
GOOD = dict(t1=1.0, num_steps=10, key=KEY)


class _WrongDiffusion(dkjax.AbstractSDE):
    scale: jax.Array

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return self.scale * jnp.ones((x.shape[0] + 1,))


class _Degenerate(dkjax.AbstractSDE):
    """Noise of rank one in two dimensions: Sigma is singular."""

    scale: jax.Array

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return self.scale * jnp.ones((2, 1))


class _Exploding(dkjax.AbstractSDE):
    rate: jax.Array

    def drift(self, t, x):
        return self.rate * x**3

    def diffusion(self, t, x):
        return 0.1 * jnp.ones_like(x)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x0=jnp.zeros(5)), ValueError, "x0 must have shape"),
        (dict(x0=jnp.zeros((5, 1), jnp.int32)), TypeError, "x0 must be a floating"),
        (dict(x0=jnp.zeros((5, 1)).at[2, 0].set(jnp.nan)), ValueError, "x0 holds 1 non-finite"),
        (dict(num_steps=0), ValueError, "num_steps must be >= 1"),
        (dict(num_steps=2.5), TypeError, "num_steps must be a Python int"),
        (dict(t1=0.0), ValueError, "t1 must be greater than t0"),
        (dict(t0=2.0), ValueError, "t1 must be greater than t0"),
        (dict(key=0), TypeError, "key must be a single JAX PRNG key"),
        (dict(kernel_rate=-1.0), ValueError, "kernel_rate must be finite and >= 0"),
        (dict(kernel_rate=100.0), ValueError, "kernel_rate \\* dt must be <= 1"),
        (dict(kernel_rate="fast"), ValueError, "kernel_rate must be a number, a callable or 'auto'"),
        (dict(mode="dense"), ValueError, "mode must be one of"),
        (dict(score0=jnp.zeros((4, 1))), ValueError, "score0 must have the shape of x0"),
        (dict(score0=jnp.full((5, 1), jnp.inf)), ValueError, "score0 holds 5 non-finite"),
        (dict(on_nonfinite="maybe"), ValueError, "on_nonfinite must be one of"),
        (dict(sde=lambda t, x: x), TypeError, "sde must be a dkjax.AbstractSDE"),
        (dict(sde=_WrongDiffusion(jnp.array(1.0))), ValueError, "sde.diffusion must return shape"),
        (dict(x0=jnp.zeros((5, 2)), sde=dkjax.LinearSDE(-jnp.eye(3), jnp.eye(3))), ValueError, "sde.drift must map"),
    ],
)
def test_divergence_kernel_rejects_bad_input(kwargs, error, match):
    args = dict(sde=OU, x0=jnp.zeros((5, 1)), **GOOD)
    args.update(kwargs)
    sde, x0 = args.pop("sde"), args.pop("x0")
    with pytest.raises(error, match=match):
        dkjax.divergence_kernel(sde, x0, **args)


def test_simulate_rejects_bad_input():
    with pytest.raises(ValueError, match="x0 must have shape"):
        dkjax.simulate(OU, jnp.zeros((2, 3, 4)), **GOOD)
    with pytest.raises(ValueError, match="num_steps"):
        dkjax.simulate(OU, jnp.zeros((2, 1)), t1=1.0, num_steps=-3, key=KEY)


def test_singular_diffusion_explains_the_fix_and_the_fix_works():
    sde = _Degenerate(jnp.array(0.5))
    x0 = jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="kernel_rate=0 with score0 given"):
        dkjax.divergence_kernel(sde, x0, score0=jnp.zeros((5, 2)), **GOOD)
    with pytest.raises(ValueError, match="give score0"):
        dkjax.divergence_kernel(sde, x0, kernel_rate=0.0, **GOOD)
    # The fix: a Gaussian start with its score, kernel_rate=0 and the default response_mix=0.
    # Rank-one noise keeps the EM chain Gaussian (covariance (1 - dt)^2 C + S S^T dt stays
    # invertible), so its score and d/dscale log p are exact references.
    num_paths, std0, dt, num_steps = 20_000, 0.5, 0.05, 10
    x0 = std0 * jax.random.normal(jax.random.key(1), (num_paths, 2))
    res = dkjax.divergence_kernel(sde, x0, score0=-x0 / std0**2, t1=dt * num_steps, num_steps=num_steps, key=KEY,
                                  kernel_rate=0.0)

    def logp(scale, x):
        S = scale * jnp.ones((2, 1))
        m, c = em_linear_moments(-jnp.eye(2), S, jnp.zeros(2), jnp.zeros(2), std0**2 * jnp.eye(2), dt, num_steps)
        return gaussian_logpdf(x, m, c)

    dscale, score = jax.vmap(jax.grad(logp, argnums=(0, 1)), in_axes=(None, 0))(jnp.asarray(0.5), res.x)
    assert_conditional_identity(res.score, score, res.x, max_rel_se=0.01, label="score", powers=(0, 1))
    assert_conditional_identity(res.dlogp.scale, dscale, res.x, max_rel_se=0.03, label="d/dscale", powers=(0, 1))


def test_paths_that_blow_up_are_reported_not_averaged_silently():
    sde = _Exploding(jnp.array(1.0))
    x0 = jnp.concatenate([jnp.zeros((6, 1)), jnp.full((2, 1), 3.0)])
    with pytest.warns(RuntimeWarning, match="2 of 8 paths went non-finite.*states of 2 diverged: use a smaller time step"):
        res = dkjax.divergence_kernel(sde, x0, t1=1.0, num_steps=50, key=KEY, kernel_rate=1.0)
    assert int(res.num_nonfinite) == 2
    assert res.finite.tolist() == [True] * 6 + [False] * 2
    assert bool(jnp.all(res.nonfinite_step[6:] >= 0)) and bool(jnp.all(res.nonfinite_step[:6] == -1))
    with pytest.raises(FloatingPointError, match="went non-finite"):
        dkjax.divergence_kernel(sde, x0, t1=1.0, num_steps=50, key=KEY, on_nonfinite="raise")


class _VanishingNoise(dkjax.AbstractSDE):
    scale: jax.Array

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return self.scale * x  # zero at the origin, where the kernel score divides by it


def test_weights_that_blow_up_while_states_stay_finite_point_to_the_kernel_rate():
    with pytest.warns(RuntimeWarning, match="states stayed finite but the weights did not.*kernel_rate=0 with score0"):
        res = dkjax.divergence_kernel(_VanishingNoise(jnp.array(0.5)), jnp.zeros((4, 1)), **GOOD)
    assert int(res.num_nonfinite) == 4 and bool(jnp.all(jnp.isfinite(res.x)))


@pytest.mark.parametrize(
    "value, integer, allow_none, ok",
    [(3, True, False, True), (np.int64(3), True, False, True), (0, True, False, False), (True, True, False, False),
     (1.5, True, False, False), (None, True, True, True), (None, True, False, False), (0.5, False, False, True),
     (np.float32(0.5), False, False, True), (float("inf"), False, False, False), (-1.0, False, False, False),
     ("1", False, False, False)],
)  # fmt: skip
def test_one_positivity_check_for_the_library_and_the_config(value, integer, allow_none, ok):
    """``check_positive`` (entry points) and ``is_positive`` (config schema) are one rule."""
    if ok:
        result = check_positive("n", value, integer=integer, allow_none=allow_none)
        assert result == value and (type(result) is int or not integer or value is None)
    else:
        kind = "a positive int" if integer else "a positive finite number"
        with pytest.raises(ValueError, match=f"n must be {kind}"):
            check_positive("n", value, integer=integer, allow_none=allow_none)
    if value is not None:
        assert is_positive(value, integer=integer) == ok


@pytest.mark.parametrize("call", ["simulate", "divergence_kernel", "divergence_kernel_score0"])
def test_a_dtype_mismatch_is_refused_naming_both_dtypes(call):
    sde = jax.tree.map(lambda p: p.astype(jnp.float64), OU)
    x0 = jnp.zeros((8, 1), jnp.float32)
    run = {
        "simulate": lambda: dkjax.simulate(sde, x0, **GOOD),
        "divergence_kernel": lambda: dkjax.divergence_kernel(sde, x0, **GOOD),
        "divergence_kernel_score0": lambda: dkjax.divergence_kernel(sde, x0, score0=x0, **GOOD),
    }[call]
    with pytest.raises(ValueError) as caught:
        run()
    message = str(caught.value)  # names the argument and both dtypes (JAX's own VJP error names no argument)
    assert "x0" in message and "float32" in message and "float64" in message, message


# ---------------------------------------------------------------- validated once, at the public boundary


@pytest.fixture
def common_checks(monkeypatch):
    """Counts the calls of ``check_common`` (the model, states, grid and key checks) from every dkjax module."""
    import sys

    from dkjax._engine import _simulate

    original, calls = _simulate.check_common, []

    def counting(*args, **kwargs):
        calls.append(args[2:4])  # (t0, t1) of the grid checked
        return original(*args, **kwargs)

    for module in [m for name, m in sys.modules.items() if name.startswith("dkjax")]:
        if getattr(module, "check_common", None) is original:
            monkeypatch.setattr(module, "check_common", counting)
    return calls


@pytest.mark.parametrize(
    "call",
    [
        # "auto" measures the rate in a pilot run on the arguments divergence_kernel has just checked.
        lambda: dkjax.divergence_kernel(OU, jnp.zeros((64, 1)), kernel_rate="auto", **GOOD),
        # Three chunks and an "auto" rate: the first chunk carries the checks, the others only their states'.
        lambda: dkjax.observable_response(OU, lambda x: x[0], jnp.zeros((96, 1)), chunk_size=32, kernel_rate="auto",
                                          **GOOD),  # fmt: skip
        lambda: dkjax.density_response(OU, jnp.zeros((96, 1)), bins=jnp.linspace(-1, 1, 5), chunk_size=32, **GOOD),
        lambda: dkjax.finite_difference_response(OU, lambda x: x[0], jnp.zeros((96, 1)), chunk_size=32, **GOOD),
        lambda: dkjax.stationary_response(OU, lambda x: x[0], jnp.zeros((8, 1)), dt=0.1, spinup_steps=10,
                                          num_steps=20, windows=[5], key=KEY, kernel_rate="auto"),  # fmt: skip
        lambda: dkjax.finite_difference_stationary(OU, lambda x: x[0], jnp.zeros((8, 1)), dt=0.1, spinup_steps=10,
                                                   num_steps=20, key=KEY),  # fmt: skip
    ],
    ids=["divergence_kernel", "observable_response", "density_response", "finite_difference_response",
         "stationary_response", "finite_difference_stationary"],
)  # fmt: skip
def test_an_entry_point_checks_its_arguments_once(common_checks, call):
    call()
    assert len(common_checks) == 1, common_checks


def test_fit_checks_once_and_its_pilot_runs_check_nothing(common_checks, monkeypatch):
    from dkjax._generative import _train

    problems, original = [], _train.check_problem

    def counting(*args, **kwargs):
        problems.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(_train, "check_problem", counting)
    data = 0.5 * jax.random.normal(KEY, (64, 1))
    initial = dkjax.GaussianInitial(jnp.zeros(1), jnp.ones(1))
    _, history = dkjax.fit(OU, data, initial, t1=1.0, num_steps=10, key=KEY, steps=3, num_paths=16, kernel_rate="auto",
                           kernel_rate_every=1, validation=None, progress=False)  # fmt: skip
    # Three pilot runs measured the rate (it is recorded at every step); none checked the model or the grid again.
    assert len(history.records) == 3 and all(r["kernel_rate"] > 0 for r in history.records)
    assert len(problems) == 1 and common_checks == []

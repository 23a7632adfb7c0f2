"""Performance properties that are deterministic: XLA's compiled memory vs the number of steps.

Peak memory is XLA's own ``memory_analysis`` of the compiled program (arguments + outputs +
temporaries - aliases), free of allocator noise; no wall-clock timing here (see
``python -m benchmarks.run``). Plus float32 against float64 on the OU exact reference.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dkjax
from dkjax._response._baselines import _backprop_chunk, _flat_parameters
from dkjax._response._observable import fold_observable
from helpers import em_ou_moments

PATHS, DIM, FEW, MANY = 256, 40, 100, 4000
SDE = dkjax.Lorenz96(forcing=8.0, noise=0.5)
PHI = lambda x: jnp.mean(x**2)


def peak_bytes(jitted, *args) -> int:
    compiled = jitted.lower(*args).compile()
    stats = getattr(compiled, "compiled", compiled).memory_analysis()
    return (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


def _dk(steps):
    return lambda x, k: dkjax.divergence_kernel(
        SDE, x, t1=0.005 * steps, num_steps=steps, key=k, kernel_rate=10.0, on_nonfinite="ignore"
    )


def _response_chunk(steps):
    valid = jnp.ones(PATHS, bool)
    return lambda x, k: fold_observable(PHI, None, _dk(steps)(x, k), valid, True)


def _backprop(steps):
    vector, rebuild, _ = _flat_parameters(SDE)
    ids = jnp.arange(PATHS, dtype=jnp.int32)
    t1 = jnp.asarray(0.005 * steps)
    return lambda x, k: _backprop_chunk(rebuild, PHI, vector, x, ids, jnp.asarray(0.0), t1, k, steps, DIM)


@pytest.fixture(scope="module")
def lorenz_memory():
    x0, key = 8.0 + jr.normal(jr.key(1), (PATHS, DIM)), jr.key(0)
    return {
        (name, steps): peak_bytes(jax.jit(make(steps)), x0, key)
        for name, make in [("dk", _dk), ("response", _response_chunk), ("backprop", _backprop)]
        for steps in (FEW, MANY)
    }


@pytest.mark.parametrize("name", ["dk", "response"])
def test_dk_and_response_memory_do_not_grow_with_steps(lorenz_memory, name):
    ratio = lorenz_memory[(name, MANY)] / lorenz_memory[(name, FEW)]
    assert ratio <= 1.05, f"{name}: peak memory grew {ratio:.3f}x from {FEW} to {MANY} steps"


def test_dk_memory_is_8x_below_backprop_through_diffrax(lorenz_memory):
    # Backprop stores (checkpoints of) the path; its memory grows with the number of steps.
    assert lorenz_memory[("backprop", MANY)] > 2 * lorenz_memory[("backprop", FEW)]
    for name in ("dk", "response"):
        assert lorenz_memory[("backprop", MANY)] >= 8 * lorenz_memory[(name, MANY)]


def test_training_step_memory_does_not_grow_with_steps():
    from dkjax._generative._train import _make_train_step
    import equinox as eqx
    import optax

    model = dkjax.NeuralSDE(2, key=jr.key(2))
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    optimizer = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    data = dkjax.toy_data("two_moons", jr.key(0), 512)

    def peak(steps):
        step = _make_train_step(
            initial, optimizer, objective="kl", gradient="two_pass", t0=0.0, t1=1.0, num_steps=steps,
            num_paths=128, batch_size=128, ess_target=16.0,
        )  # fmt: skip
        args = (params, static, opt_state, data, jr.key(0), jnp.asarray(10.0), jnp.asarray(0.05), jnp.asarray(4.0))
        return peak_bytes(step, *args)

    ratio = peak(MANY) / peak(FEW)
    assert ratio <= 1.05, f"training step peak memory grew {ratio:.3f}x from {FEW} to {MANY} steps"


def _em_second_moment(system, a, b, start, dt, steps):
    """``E[X_T^2]`` of the Euler-Maruyama chain, exactly: OU (``a = theta``, ``b = sigma``), GBM (``a = mu``, ``b = sigma``)."""
    if system == "ou":
        m, v = em_ou_moments(a, b, start, 0.0, dt, steps)
        return m * m + v
    return start**2 * ((1 + a * dt) ** 2 + b**2 * dt) ** steps


@pytest.mark.parametrize("system, max_rel_se", [("ou", 0.05), ("gbm", 0.13)])  # about 2x the observed
def test_float32_agrees_with_float64_on_exact_references(system, max_rel_se):
    """d/da and d/db of E[X_T^2] (additive OU, multiplicative GBM), both precisions within 4 SE."""
    a, b, t1, steps, start = (1.5, 0.8, 1.0, 50, 1.0) if system == "ou" else (0.2, 0.5, 1.0, 50, 1.0)
    names = ("theta", "sigma") if system == "ou" else ("mu", "sigma")
    h = 1e-6
    moment = lambda a_, b_: _em_second_moment(system, a_, b_, start, t1 / steps, steps)
    exact = {
        names[0]: (moment(a + h, b) - moment(a - h, b)) / (2 * h),
        names[1]: (moment(a, b + h) - moment(a, b - h)) / (2 * h),
    }
    estimates = {}
    for dtype in (jnp.float32, jnp.float64):
        if system == "ou":
            sde = dkjax.OrnsteinUhlenbeck(jnp.asarray(a, dtype), jnp.asarray(b, dtype), jnp.asarray(0.0, dtype))
        else:
            sde = dkjax.GeometricBrownianMotion(jnp.asarray(a, dtype), jnp.asarray(b, dtype))
        x0 = jnp.full((100_000, 1), start, dtype)
        res = dkjax.divergence_kernel(sde, x0, t1=t1, num_steps=steps, key=jr.key(0), kernel_rate=3.0)
        assert getattr(res.dlogp, names[0]).dtype == dtype and res.x.dtype == dtype
        phi = np.asarray(res.x[:, 0], np.float64) ** 2
        phi -= phi.mean()
        for name in names:
            samples = phi * np.asarray(getattr(res.dlogp, name), np.float64)
            mean, se = samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)
            assert abs(mean - exact[name]) < 4 * se, f"{jnp.dtype(dtype).name} d/d{name}: {mean} vs {exact[name]} (se {se})"
            assert se < max_rel_se * abs(exact[name]), f"d/d{name}: standard error {se} too large for a useful check"
            estimates[(dtype, name)] = (mean, se)
    for name in names:
        (m32, s32), (m64, s64) = estimates[(jnp.float32, name)], estimates[(jnp.float64, name)]
        assert abs(m32 - m64) < 4 * np.hypot(s32, s64)
        assert s32 == pytest.approx(s64, rel=0.1)  # float32 adds no visible variance

"""Sharding the path axis over devices: results equal single-device runs (4 forced CPU devices).

The device count is fixed when JAX initialises, so the multi-device checks run in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax

ROOT = Path(__file__).resolve().parent.parent

_CHECK = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import dkjax
    from dkjax._generative._gradient import dk_gradient
    from dkjax._generative._objective import energy_weights

    out = {"devices": len(jax.devices())}
    mesh = dkjax.path_mesh()
    sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
    x0 = 8.0 + jax.random.normal(jax.random.key(0), (64, 8))
    xs = dkjax.shard_paths(x0, mesh)
    out["input_spec"] = list(xs.sharding.spec)
    kw = dict(t1=0.2, num_steps=20, key=jax.random.key(1))

    # simulate and divergence_kernel: every path computed on its own device, same noise.
    one, many = dkjax.simulate(sde, x0, **kw), dkjax.simulate(sde, xs, **kw)
    out["simulate_max_diff"] = float(jnp.max(jnp.abs(one - many)))
    out["simulate_spec"] = list(many.sharding.spec)
    one = dkjax.divergence_kernel(sde, x0, kernel_rate=10.0, **kw)
    many = dkjax.divergence_kernel(sde, xs, kernel_rate=10.0, **kw)
    out["dk_max_diff"] = max(
        float(jnp.max(jnp.abs(a - b))) for a, b in
        [(one.x, many.x), (one.score, many.score), (one.dlogp.forcing, many.dlogp.forcing), (one.dlogp.noise, many.dlogp.noise)]
    )
    out["dk_specs"] = sorted({tuple(leaf.sharding.spec) for leaf in jax.tree.leaves(many)})

    # observable_response: chunk statistics reduced across devices.
    phi = lambda x: jnp.mean(x**2)
    one = dkjax.observable_response(sde, phi, x0, kernel_rate=10.0, **kw)
    many = dkjax.observable_response(sde, phi, xs, kernel_rate=10.0, **kw)
    out["response"] = [float(one.estimate.forcing), float(many.estimate.forcing)]
    out["response_stderr"] = [float(one.stderr.forcing), float(many.stderr.forcing)]

    # Training gradient (two-pass, memory-lean): the sum over paths is an all-reduce.
    ou = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
    y0 = jax.random.normal(jax.random.key(2), (64, 2))
    data = 1.0 + jax.random.normal(jax.random.key(3), (32, 2))
    grad = jax.jit(lambda x: dk_gradient(
        ou, x, -x, lambda xt: energy_weights(xt, data), t1=0.5, num_steps=10, key=jax.random.key(4),
        kernel_rate=5.0, gradient=dkjax.TwoPassGradient())[1])
    g_one, g_many = grad(y0), grad(dkjax.shard_paths(y0, mesh))
    out["grad"] = [[float(g_one.theta), float(g_one.sigma)], [float(g_many.theta), float(g_many.sigma)]]
    hlo = grad.lower(dkjax.shard_paths(y0, mesh)).compile().as_text()
    out["grad_all_reduce"] = "all-reduce" in hlo

    # fit with a path-sharded initial law equals the unsharded fit.
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    fit_kw = dict(t1=0.5, num_steps=10, key=jax.random.key(5), steps=2, num_paths=64, batch_size=32,
                  kernel_rate=5.0, progress=False)
    m_one, h_one = dkjax.fit(ou, data, initial, **fit_kw)
    m_many, h_many = dkjax.fit(ou, data, dkjax.sharded_initial(initial, mesh), **fit_kw)
    out["fit_loss"] = [h_one.loss.tolist(), h_many.loss.tolist()]
    out["fit_theta"] = [float(m_one.theta), float(m_many.theta)]

    try:
        dkjax.shard_paths(x0[:63], mesh)
        out["indivisible_error"] = None
    except ValueError as error:
        out["indivisible_error"] = str(error)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_four_devices_are_used(four_devices):
    assert four_devices["devices"] == 4
    assert four_devices["input_spec"] == ["paths"]


def test_simulate_and_divergence_kernel_sharded_equal_single_device(four_devices):
    # Each path is computed by one device from the same (key, step, path) noise: bit-identical.
    assert four_devices["simulate_max_diff"] == 0.0
    assert four_devices["dk_max_diff"] == 0.0
    assert four_devices["simulate_spec"] == ["paths"]
    assert four_devices["dk_specs"] == [["paths"]]


def test_response_and_gradient_reductions_equal_single_device(four_devices):
    # Sums over paths become collectives: equal up to floating-point reassociation.
    np.testing.assert_allclose(*four_devices["response"], rtol=1e-10)
    np.testing.assert_allclose(*four_devices["response_stderr"], rtol=1e-10)
    np.testing.assert_allclose(*four_devices["grad"], rtol=1e-10)
    assert four_devices["grad_all_reduce"]


def test_fit_with_sharded_initial_law_equals_single_device(four_devices):
    np.testing.assert_allclose(*four_devices["fit_loss"], rtol=1e-9)
    np.testing.assert_allclose(*four_devices["fit_theta"], rtol=1e-9)


def test_indivisible_path_count_is_a_clear_error(four_devices):
    message = four_devices["indivisible_error"]
    assert message is not None and "divisible by the number of devices (4)" in message


def test_single_device_mesh_is_a_no_op():
    x0 = jnp.ones((6, 2))
    sharded = dkjax.shard_paths({"x": x0, "s": -x0})
    np.testing.assert_array_equal(sharded["x"], x0)
    assert sharded["s"].sharding.spec == jax.sharding.PartitionSpec("paths")
    with pytest.raises(ValueError, match="leading path axis"):
        dkjax.shard_paths(jnp.ones(()))


def test_host_path_offsets_tile_one_ensemble():
    sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
    x0 = jnp.zeros((12, 1))
    kw = dict(t1=0.5, num_steps=10, key=jax.random.key(0))
    whole = dkjax.simulate(sde, x0, **kw)
    hosts = [dkjax.simulate(sde, x0[:4], path_offset=dkjax.host_path_offset(4, i), **kw) for i in range(3)]
    np.testing.assert_array_equal(jnp.concatenate(hosts), whole)
    assert dkjax.host_path_offset(4) == 4 * jax.process_index()
    with pytest.raises(ValueError, match="positive int"):
        dkjax.host_path_offset(0)


@pytest.mark.slow
def test_multihost_example_two_processes_on_localhost_equal_one_run():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "examples/multihost_response.py", "--launch", "2", "--port", str(port), "--paths-per-host", "128"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "one process over all 256 paths" in proc.stdout
    assert proc.stdout.count("2 of 4 devices") == 2 and proc.stdout.count("over 256 paths") == 2

"""Multi-process runs (``jax.distributed``) equal one run over the same global paths.

Two processes on localhost, each with 2 forced CPU devices, build the global array of
initial states from their own rows (``dkjax.shard_paths``) and call the estimators
unchanged; every process must get the same numbers, equal (1e-10 relative, float64) to
one process over all the paths. The workers are this file run as a script.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dkjax

# Two coordinated processes take about 45 s to start and compile on 2 cores: outside the quick suite.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NUM_PROCESSES, DEVICES_PER_PROCESS, PATHS = 2, 2, 64


def initial_states():
    """All paths' initial states, ``(PATHS, 2)``; process ``p`` holds rows ``p * PATHS / 2`` onwards."""
    return 0.3 * jax.random.normal(jax.random.key(0), (PATHS, 2), jnp.float64)


def sampler(key, n):
    """A Gaussian initial law (drawn from the key: equal on every process)."""
    return 0.3 * jax.random.normal(key, (n, 2), jnp.float64), None


def compute(x0) -> dict:
    """Reductions of every entry point on ``x0`` (a global array or all the paths), as floats."""
    sde = dkjax.OrnsteinUhlenbeck(jnp.float64(1.0), jnp.float64(0.5), jnp.zeros(2, jnp.float64))
    kw = dict(t1=0.5, num_steps=10, key=jax.random.key(1), kernel_rate=5.0)
    phi = lambda x: x[0] ** 2 + x[1]
    floats = lambda *values: [float(v) for v in values]
    out = {}
    xt = dkjax.simulate(sde, x0, t1=0.5, num_steps=10, key=jax.random.key(1))
    out["simulate"] = floats(jnp.sum(xt), jnp.sum(xt[:, 0] ** 2))
    res = dkjax.divergence_kernel(sde, x0, **kw)
    out["divergence_kernel"] = floats(
        jnp.sum(res.score * res.x), jnp.sum(res.dlogp.theta), jnp.sum(res.dlogp.sigma * res.x[:, 0])
    )
    for name, chunk in (("observable_response", None), ("observable_response_chunked", PATHS // 4)):
        r = dkjax.observable_response(sde, phi, x0, **kw, **({"chunk_size": chunk} if chunk else {}))
        out[name] = floats(r.estimate.theta, r.estimate.sigma, r.stderr.theta, r.value, r.num_paths)
    # Streaming from a sampler, the last of 3 chunks padded (chunks shaped as above: no new compilation).
    r = dkjax.observable_response(sde, phi, sampler, num_paths=40, chunk_size=PATHS // 4, **kw)
    out["observable_response_sampler"] = floats(r.estimate.theta, r.estimate.sigma, r.stderr.sigma, r.num_paths)
    d = dkjax.density_response(sde, x0, bins=jnp.linspace(-0.8, 0.8, 5), coordinates=(0,), **kw)
    out["density_response"] = [*np.asarray(d.density).tolist(), *np.asarray(d.response.theta).tolist(),
                               *np.asarray(d.score_mean[:, 0]).tolist()]  # fmt: skip
    s = dkjax.stationary_response(
        sde, phi, x0, dt=0.05, spinup_steps=10, num_steps=40, windows=[10, 20], key=jax.random.key(2),
        sample_every=5, num_blocks=2, kernel_rate=5.0,
    )  # fmt: skip
    out["stationary_response"] = [*np.asarray(s.estimate.theta).tolist(), *np.asarray(s.stderr.theta).tolist()]
    out["stationary_response"].append(float(s.value))
    return out


def fit_results(checkpoint_dir) -> list[float]:
    """A few DK-SDE steps with a path-sharded initial law: losses, parameters, held-out distances."""
    sde = dkjax.OrnsteinUhlenbeck(jnp.float64(1.0), jnp.float64(0.5), jnp.zeros(2, jnp.float64))
    data = 0.5 + 0.2 * jax.random.normal(jax.random.key(3), (64, 2), jnp.float64)
    fitted, history = dkjax.fit(
        sde, data, dkjax.sharded_initial(sampler), t1=0.5, num_steps=10, key=jax.random.key(4), steps=3,
        num_paths=PATHS, kernel_rate=5.0, optimizer=optax.adam(0.05), validate_every=1, validation_samples=PATHS,
        checkpoint_dir=checkpoint_dir, progress=False,
    )  # fmt: skip
    validation = [r["energy_distance"] for r in history.validation]
    return [*history.loss.tolist(), float(fitted.theta), float(fitted.sigma), *validation]


def _worker(process_id: int, port: int, out_file: str) -> None:
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=NUM_PROCESSES, process_id=process_id, initialization_timeout=60
    )
    rows = PATHS // NUM_PROCESSES
    local = initial_states()[process_id * rows : (process_id + 1) * rows]
    x0 = dkjax.shard_paths(local)
    report = {
        "devices": len(jax.devices()),
        "global_shape": list(x0.shape),
        "local_rows": sorted({shard.index[0].start for shard in x0.addressable_shards}),
        "results": compute(x0),
    }
    report["results"]["fit"] = fit_results(Path(out_file).parent / f"checkpoints_{process_id}")
    try:  # every process must pass the same number of rows
        dkjax.shard_paths(local[: rows - 2 * process_id])
    except ValueError as error:
        report["unequal_rows_error"] = str(error)
    Path(out_file).write_text(json.dumps(report))
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path) -> tuple[list, list]:
    forced = f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=forced)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    port, logs = _free_port(), [open(tmp_path / f"process_{i}.log", "w") for i in range(NUM_PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(i), str(port), str(tmp_path / f"process_{i}.json")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i, log in enumerate(logs)
    ]
    return procs, logs


def _wait(tmp_path, procs, logs, timeout: float) -> list[dict]:
    """Waits for the processes; the first failure or the timeout stops them all."""
    try:
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs:
            log.close()
    if any(p.returncode for p in procs):
        tails = [(tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(len(procs))]
        output = "\n".join(f"--- process {i}\n{tail}" for i, tail in enumerate(tails))
        pytest.fail(f"a process failed or timed out (exit codes {[p.returncode for p in procs]}):\n{output}")
    return [json.loads((tmp_path / f"process_{i}.json").read_text()) for i in range(len(procs))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The two processes' reports, and the one-process reference computed here meanwhile."""
    tmp_path = tmp_path_factory.mktemp("multihost")
    procs, logs = _start(tmp_path)
    try:
        reference = compute(initial_states())
        reference["fit"] = fit_results(tmp_path / "checkpoints_reference")
    finally:
        reports = _wait(tmp_path, procs, logs, timeout=240.0)
    return reports, reference, tmp_path


def test_the_global_array_spans_both_processes_in_process_order(runs):
    rows = PATHS // NUM_PROCESSES
    for i, report in enumerate(runs[0]):
        assert report["devices"] == NUM_PROCESSES * DEVICES_PER_PROCESS
        assert report["global_shape"] == [PATHS, 2]
        assert report["local_rows"] == [i * rows, i * rows + rows // 2]  # its own rows, on its 2 devices


def test_every_process_gets_one_run_over_all_paths(runs):
    reports, reference, _ = runs
    first, second = (report["results"] for report in reports)
    assert first == second  # the same numbers on every process, bit for bit
    assert set(first) == set(reference)
    for name, values in reference.items():
        np.testing.assert_allclose(first[name], values, rtol=1e-10, atol=1e-14, err_msg=name)


def test_only_process_zero_writes_training_checkpoints(runs):
    tmp_path = runs[2]
    assert (tmp_path / "checkpoints_0" / "latest.json").is_file()
    assert not (tmp_path / "checkpoints_1").exists()


def test_processes_passing_different_numbers_of_paths_is_a_clear_error(runs):
    for report in runs[0]:
        assert "same number of paths" in report["unequal_rows_error"]


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

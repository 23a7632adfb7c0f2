"""Multi-host DK response: every host draws its own disjoint paths of one ensemble.

Each process calls ``jax.distributed.initialize``, simulates ``paths_per_host`` paths with
``path_offset = process_index * paths_per_host`` (``dkjax.host_path_offset``) and the
same key, shards them over its local devices, and the hosts add their sums with a
cross-host collective. The result equals one run over all ``num_processes * paths_per_host``
paths up to the order of the sums; the script checks that on process 0.

Runnable on one machine as two processes on localhost (each with 2 forced CPU devices)::

    python examples/multihost_response.py --launch 2

which starts::

    python examples/multihost_response.py --process-id 0 --num-processes 2 --port 12355 &
    python examples/multihost_response.py --process-id 1 --num-processes 2 --port 12355

On a cluster run one process per host with ``--coordinator host0:port`` (or call
``jax.distributed.initialize()`` without arguments under SLURM / Open MPI, which fill them in).
"""

import argparse
import os
import subprocess
import sys


def run(process_id: int, num_processes: int, coordinator: str, paths_per_host: int, local_devices: int) -> None:
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={local_devices}")
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils

    import dkjax

    sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
    kw = dict(t1=0.5, num_steps=50, key=jax.random.key(0), kernel_rate=10.0)
    dim = 8

    def initial_states(offset, n):
        # Initial states are addressed by path index too, so hosts need not exchange them.
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(offset + jnp.arange(n))
        return 8.0 + jax.vmap(lambda k: jax.random.normal(k, (dim,)))(keys)

    offset = dkjax.host_path_offset(paths_per_host)
    x0 = dkjax.shard_paths(initial_states(offset, paths_per_host), dkjax.path_mesh(jax.local_devices()))
    result = dkjax.divergence_kernel(sde, x0, path_offset=offset, **kw)

    # Sufficient statistics of d/dF E[phi(X_T)] = E[(phi(X_T) - c) dlogp_F], c = E[phi] (a free
    # baseline since E[dlogp] = 0): sums over this host's paths, added across hosts.
    phi, eta = jnp.mean(result.x**2, axis=1), result.dlogp.forcing
    local = np.array([float(v) for v in (
        paths_per_host, jnp.sum(phi), jnp.sum(eta), jnp.sum(phi * eta),
        jnp.sum(eta**2), jnp.sum(phi * eta**2), jnp.sum(phi**2 * eta**2),
    )])  # fmt: skip
    totals = np.asarray(multihost_utils.process_allgather(local)).sum(axis=0)  # across hosts
    n, s_phi, s_e, s_pe, s_e2, s_pe2, s_p2e2 = totals
    c = s_phi / n
    estimate = (s_pe - c * s_e) / n
    second = (s_p2e2 - 2 * c * s_pe2 + c**2 * s_e2) / n  # mean of ((phi - c) eta)^2
    stderr = np.sqrt((second - estimate**2) / (n - 1))
    print(f"[process {jax.process_index()}/{jax.process_count()}] local devices {len(jax.local_devices())}, "
          f"path_offset {offset}: d/dF E[mean x^2] = {estimate:.6f} +- {stderr:.6f} over {int(n)} paths", flush=True)

    if jax.process_index() == 0:  # one process redoes the whole ensemble on its own devices
        total = int(n)
        whole = dkjax.divergence_kernel(sde, initial_states(0, total), **kw)
        phi_all = jnp.mean(whole.x**2, axis=1)
        reference = float(jnp.mean((phi_all - jnp.mean(phi_all)) * whole.dlogp.forcing))
        np.testing.assert_allclose(estimate, reference, rtol=1e-10)
        print(f"[process 0] single-run reference {reference:.6f}: equal up to summation order", flush=True)
    jax.distributed.shutdown()


def launch(num_processes: int, port: int, paths_per_host: int, local_devices: int) -> int:
    procs = [
        subprocess.Popen([
            sys.executable, __file__, "--process-id", str(i), "--num-processes", str(num_processes),
            "--coordinator", f"127.0.0.1:{port}", "--paths-per-host", str(paths_per_host),
            "--local-devices", str(local_devices),
        ])  # fmt: skip
        for i in range(num_processes)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    return max(codes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launch", type=int, default=0, help="start this many processes on localhost")
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--port", type=int, default=12355)
    parser.add_argument("--paths-per-host", type=int, default=512)
    parser.add_argument("--local-devices", type=int, default=2, help="forced CPU devices per process")
    args = parser.parse_args(argv)
    if args.launch:
        sys.exit(launch(args.launch, args.port, args.paths_per_host, args.local_devices))
    coordinator = args.coordinator or f"127.0.0.1:{args.port}"
    run(args.process_id, args.num_processes, coordinator, args.paths_per_host, args.local_devices)


if __name__ == "__main__":
    main()

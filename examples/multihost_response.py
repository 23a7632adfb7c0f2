"""Multi-host DK response: the calls of one machine, run over the devices of every process.

Each process calls ``jax.distributed.initialize``, makes its own rows of the ensemble's
initial states and passes them to ``dkjax.shard_paths``, which returns the global array
(process 0's rows first). ``dkjax.observable_response`` takes that array as it would any
other: every device of every process simulates its share of the paths, and every process
gets the same estimate, the one a single run over all the paths gives. Process 0 checks that.

Runnable on one machine as two processes on localhost, each with 2 forced CPU devices::

    python examples/multihost_response.py --launch 2

which starts::

    python examples/multihost_response.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0 &
    python examples/multihost_response.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1

On a cluster, start one process per host (``srun python examples/multihost_response.py`` under
SLURM, ``mpirun -npernode 1 ...`` under Open MPI) and leave out ``--coordinator``:
``jax.distributed.initialize()`` then fills in its arguments itself.
"""

import argparse
import os
import subprocess
import sys


def run(coordinator: str | None, num_processes: int, process_id: int, paths_per_host: int) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    if coordinator is None:
        jax.distributed.initialize()  # SLURM, Open MPI: arguments from the environment
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    import jax.numpy as jnp
    import numpy as np

    import dkjax

    sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
    phi = lambda x: jnp.mean(x**2)
    kw = dict(t1=0.5, num_steps=50, key=jax.random.key(0), kernel_rate=10.0)

    def initial_states(rows):
        # Drawn by global row, so each process makes its own rows without the others'.
        return 8.0 + jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(jax.random.key(1), i), (8,)))(rows)

    mine = jax.process_index() * paths_per_host + jnp.arange(paths_per_host)
    x0 = dkjax.shard_paths(initial_states(mine))  # the global array, over every process's devices
    result = dkjax.observable_response(sde, phi, x0, **kw)
    print(
        f"[process {jax.process_index()}/{jax.process_count()}] {len(jax.local_devices())} of {len(jax.devices())} "
        f"devices: d/dF E[mean x^2] = {float(result.estimate.forcing):.6f} +- {float(result.stderr.forcing):.6f} "
        f"over {result.num_paths} paths",
        flush=True,
    )
    if jax.process_index() == 0:  # one process redoes the whole ensemble on its own
        everything = initial_states(jnp.arange(x0.shape[0]))
        reference = dkjax.observable_response(sde, phi, everything, **kw)
        np.testing.assert_allclose(float(result.estimate.forcing), float(reference.estimate.forcing), rtol=1e-10)
        print(f"[process 0] one process over all {x0.shape[0]} paths: {float(reference.estimate.forcing):.6f}, the same")
    jax.distributed.shutdown()


def launch(num_processes: int, port: int, paths_per_host: int, local_devices: int) -> int:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}")
    procs = [
        subprocess.Popen([
            sys.executable, __file__, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(num_processes),
            "--process-id", str(i), "--paths-per-host", str(paths_per_host),
        ], env=env)  # fmt: skip
        for i in range(num_processes)
    ]
    try:
        return max(p.wait(timeout=600) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launch", type=int, default=0, help="start this many processes on localhost")
    parser.add_argument("--coordinator", default=None, help="host:port of process 0 (default: from SLURM / Open MPI)")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--port", type=int, default=12355, help="with --launch: the coordinator's port")
    parser.add_argument("--paths-per-host", type=int, default=512)
    parser.add_argument("--local-devices", type=int, default=2, help="with --launch: forced CPU devices per process")
    args = parser.parse_args(argv)
    if args.launch:
        sys.exit(launch(args.launch, args.port, args.paths_per_host, args.local_devices))
    run(args.coordinator, args.num_processes, args.process_id, args.paths_per_host)


if __name__ == "__main__":
    main()

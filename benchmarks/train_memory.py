"""Memory and time per training step: forward-only DK gradients vs backpropagation through diffrax.

The same model (``dkjax.NeuralSDE``, 2-D, width 64, depth 2), the same objective (the smoothed
KL ``L_h`` with the ESS bandwidth rule) and the same optimiser (Adam with
clipping). Gradients:

- ``dk_two_pass``: the memory-lean two-pass DK gradient (``fit(..., gradient="two_pass")``);
- ``dk_chunked``: the same, replaying the paths in 8 chunks
  (``fit(..., gradient=dkjax.TwoPassGradient(path_chunk=num_paths // 8))``);
- ``dk_per_path``: per-path DK responses (``gradient="per_path"``);
- ``backprop``: reverse mode through ``diffrax.diffeqsolve`` (Euler on the same grid, driven by
  ``dkjax.BrownianIncrements``, diffrax's default ``RecursiveCheckpointAdjoint``, which
  recomputes the forward pass from a few checkpoints to save memory);
- ``backprop_full``: the same, storing every step (``RecursiveCheckpointAdjoint(checkpoints=num_steps)``);
- ``backprop_batched``: the default adjoint again, but one solve of all paths as a single
  ``(M d)``-dimensional state instead of ``jax.vmap`` over per-path solves (with ``vmap`` the
  parameter cotangent is carried per path through the adjoint loop, ``M x size(theta)``); its
  noise is one ``dkjax.BrownianIncrements`` path of dimension ``M d``: the same law, other paths.

Every (method, time steps) configuration runs in its own subprocess. Peak memory is XLA's
compiled ``memory_analysis()`` of the jitted training step (arguments + outputs + temporaries,
``temp_size_in_bytes`` being the part that grows with the number of time steps); the
subprocess's peak RSS (``resource.getrusage``) is printed beside it, though it also counts the
Python runtime and the XLA compiler. Time is the median wall time of a step after compilation.
Final quality: each gradient trains the model on two moons for ``--quality-steps`` steps at
``--quality-time-steps`` time steps and reports the energy distance to held-out data.

Usage:
    python benchmarks/train_memory.py                      # the full table (slow on a CPU)
    python benchmarks/train_memory.py --time-steps 100 1000 --paths 256 --quality-steps 200
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("dk_two_pass", "dk_chunked", "dk_per_path", "backprop", "backprop_full", "backprop_batched")


def _setup(num_paths):
    import jax.numpy as jnp
    import jax.random as jr

    import dkjax

    data = dkjax.toy_data("two_moons", jr.key(0), 4096)
    heldout = dkjax.toy_data("two_moons", jr.key(1), 2048)
    model = dkjax.NeuralSDE(2, key=jr.key(2), width=64, depth=2)  # the committed results' model
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    return data, heldout, model, initial


def _backprop_step(initial, optimizer, num_paths, batch_size, num_steps, variant, t1=1.0, ess_target=16.0):
    """A jitted training step whose gradient is reverse mode through diffrax."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import dkjax
    from dkjax._generative._objective import ess_bandwidth, kl_weights

    ts = t1 * jnp.arange(num_steps + 1) / num_steps
    adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=num_steps if variant == "full" else None)

    def batched_final_states(sde, x0, key):
        import lineax as lx

        num, dim = x0.shape
        per_path = lambda f: lambda t, y, args: jax.vmap(f, in_axes=(None, 0))(t, y.reshape(num, dim)).reshape(-1)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(per_path(sde.drift)),
            diffrax.ControlTerm(
                lambda t, y, args: lx.DiagonalLinearOperator(per_path(sde.diffusion)(t, y, args)),
                dkjax.BrownianIncrements(key, 0.0, t1, num_steps, dim=num * dim),
            ),
        )
        sol = diffrax.diffeqsolve(
            terms, diffrax.Euler(), 0.0, t1, None, x0.reshape(-1), stepsize_controller=diffrax.StepTo(ts=ts),
            saveat=diffrax.SaveAt(t1=True), max_steps=num_steps, adjoint=adjoint,
        )  # fmt: skip
        return sol.ys[-1].reshape(num, dim)

    def final_states(sde, x0, key):
        if variant == "batched":
            return batched_final_states(sde, x0, key)

        def solve(x, path_id):
            bm = dkjax.BrownianIncrements(key, 0.0, t1, num_steps, dim=x.shape[0], path_id=path_id)
            sol = diffrax.diffeqsolve(
                sde.terms(bm), diffrax.Euler(), 0.0, t1, None, x, stepsize_controller=diffrax.StepTo(ts=ts),
                saveat=diffrax.SaveAt(t1=True), max_steps=num_steps, adjoint=adjoint,
            )  # fmt: skip
            return sol.ys[-1]

        return jax.vmap(solve)(x0, jnp.arange(x0.shape[0], dtype=jnp.int32))

    @eqx.filter_jit
    def step(params, static, opt_state, data, key, h_min, h_max):
        init_key, path_key, batch_key, jitter_key = jr.split(key, 4)
        x0 = initial(init_key, num_paths)[0]
        batch = data[jr.choice(batch_key, data.shape[0], (batch_size,), replace=False)]

        def loss_fn(p):
            x = final_states(eqx.combine(p, static), x0, path_key)
            h = ess_bandwidth(batch, jax.lax.stop_gradient(x), ess_target, h_min, h_max)
            return kl_weights(x, batch, h, jitter_key)[0]

        loss, grad = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, loss

    return step


def _dk_step(initial, optimizer, num_paths, batch_size, num_steps, method):
    import dkjax
    from dkjax._generative._train import _make_train_step

    gradient = dkjax.TwoPassGradient(path_chunk=max(1, num_paths // 8)) if method == "chunked" else method
    return _make_train_step(
        initial, optimizer, objective="kl", gradient=gradient, t0=0.0, t1=1.0,
        num_steps=num_steps, num_paths=num_paths, batch_size=batch_size, ess_target=16.0,
    )  # fmt: skip


def _step_and_args(method, num_steps, num_paths, batch_size, total_steps):
    import equinox as eqx
    import jax.numpy as jnp
    import optax

    data, heldout, model, initial = _setup(num_paths)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(optax.cosine_decay_schedule(3e-3, total_steps, 0.1))
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    h_min, h_max = jnp.asarray(0.05), jnp.asarray(4.0)
    if method.startswith("backprop"):
        step = _backprop_step(initial, optimizer, num_paths, batch_size, num_steps, method.removeprefix("backprop").strip("_"))
        args = lambda p, o, k: (p, static, o, data, k, h_min, h_max)
    else:
        step = _dk_step(initial, optimizer, num_paths, batch_size, num_steps, method.removeprefix("dk_"))
        args = lambda p, o, k: (p, static, o, data, k, jnp.asarray(10.0), h_min, h_max)
    return step, args, params, static, opt_state, heldout, initial


def _measure(method, num_steps, num_paths, batch_size, repeats):
    import jax
    import jax.random as jr

    step, args, params, _, opt_state, _, _ = _step_and_args(method, num_steps, num_paths, batch_size, 1000)
    compiled = step.lower(*args(params, opt_state, jr.key(0))).compile()
    analysis = compiled.compiled.memory_analysis() if hasattr(compiled, "compiled") else compiled.memory_analysis()
    xla_bytes = analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = step(*args(params, opt_state, jr.key(i)))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return {
        "method": method,
        "time_steps": num_steps,
        "xla_peak_mib": xla_bytes / 2**20,
        "xla_temp_mib": analysis.temp_size_in_bytes / 2**20,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds_per_step": statistics.median(times[1:]),
    }


def _quality(method, num_steps, num_paths, batch_size, train_steps):
    import jax.random as jr

    import dkjax

    step, args, params, static, opt_state, heldout, initial = _step_and_args(
        method, num_steps, num_paths, batch_size, train_steps
    )
    start = time.perf_counter()
    for s in range(train_steps):
        params, opt_state = step(*args(params, opt_state, jr.fold_in(jr.key(7), s)))[:2]
    import equinox as eqx

    model = eqx.combine(params, static)
    samples = dkjax.sample(model, initial, 2048, t1=1.0, num_steps=num_steps, key=jr.key(9))
    return {
        "method": method,
        "quality_time_steps": num_steps,
        "train_steps": train_steps,
        "energy_distance": float(dkjax.energy_distance(samples, heldout)),
        "train_seconds": time.perf_counter() - start,
    }


def _child(argv):
    kind, method, num_steps, num_paths, batch_size, extra = argv
    fn = _measure if kind == "measure" else _quality
    print(json.dumps(fn(method, int(num_steps), int(num_paths), int(batch_size), int(extra))))


def _run_child(*args, timeout):
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-steps", type=int, nargs="+", default=[100, 1000, 4000])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--paths", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality-steps", type=int, default=400, help="0 skips the quality runs")
    parser.add_argument("--quality-time-steps", type=int, default=50)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child)
    print(f"paths {args.paths}, data batch {args.batch_size}; memory: XLA memory_analysis of the jitted step")
    print(f"{'method':12s} {'steps':>6s} {'XLA peak MiB':>13s} {'XLA temp MiB':>13s} {'RSS MiB':>8s} {'s/step':>8s}")
    for num_steps in args.time_steps:
        for method in args.methods:
            r = _run_child("measure", method, num_steps, args.paths, args.batch_size, args.repeats, timeout=args.timeout)
            if "error" in r:
                print(f"{method:12s} {num_steps:6d} failed: {r['error']}")
                continue
            print(
                f"{method:12s} {num_steps:6d} {r['xla_peak_mib']:13.1f} {r['xla_temp_mib']:13.1f} "
                f"{r['rss_peak_mib']:8.0f} {r['seconds_per_step']:8.3f}",
                flush=True,
            )
    if args.quality_steps:
        print(f"quality: {args.quality_steps} training steps, {args.quality_time_steps} time steps")
        for method in args.methods:
            r = _run_child(
                "quality", method, args.quality_time_steps, args.paths, args.batch_size, args.quality_steps,
                timeout=args.timeout,
            )  # fmt: skip
            if "error" in r:
                print(f"{method:12s} failed: {r['error']}")
                continue
            print(f"{method:12s} energy distance {r['energy_distance']:.4f}  ({r['train_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

"""Cost of simulate and of the DK estimator relative to a hand-written Euler-Maruyama scan.

Lorenz-96 (d = 40, additive noise) on the default device: wall time of ``dkjax.simulate``
and of ``dkjax.divergence_kernel`` in both modes as ratios to a plain ``lax.scan`` loop,
the same for a Lorenz-96 written in user code with ``jnp.roll`` (whose VJPs XLA handles less
well than the built-in's), and XLA's compiled peak memory of the estimator at two step
counts (it must be flat). It also times one ``dkjax.fit`` training step against ``simulate`` of the
same paths for two neural models, and counts XLA's floating-point operations of one time step
of each kind (the step profile: where a training step's cost goes).
Correctness is checked before timing: simulate must reproduce the reference loop's
distribution moments and the estimator's states must equal simulate's.

    python -m benchmarks.core_overhead [--paths 4096] [--steps 100]
    python -m benchmarks.core_overhead --step-profile   # the flop counts alone (no timing: any load)
"""

import argparse
import time
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

import dkjax
from dkjax._sde._systems import lorenz96_drift

from ._common import ROOT, compiled_memory, machine, markdown_table, time_call, write_results


def hand_written_scan(x0, key, *, forcing, noise, dt, num_steps):
    """The baseline: the EM loop one would write by hand, batch noise per step."""

    def step(x, n):
        z = jax.random.normal(jax.random.fold_in(key, n), x.shape, x.dtype)
        return x + lorenz96_drift(x, forcing) * dt + noise * jnp.sqrt(dt) * z, None

    return jax.lax.scan(step, x0, jnp.arange(num_steps))[0]


class UserLorenz96(dkjax.AbstractSDE):
    """Lorenz-96 as a user would write it, with ``jnp.roll``."""

    forcing: Array
    noise: Array

    def drift(self, t, x):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + self.forcing

    def diffusion(self, t, x):
        return self.noise * jnp.ones_like(x)


def interleaved_cpu_times(functions: dict, repeats: int = 7) -> dict:
    """The least CPU time (all threads) of each zero-argument call over ``repeats`` interleaved rounds.

    On a machine shared with other jobs, wall time measures the load; CPU time of the process
    measures the work, and interleaving keeps slow phases from landing on one method.
    """
    for function in functions.values():
        jax.block_until_ready(function())
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.process_time()
            jax.block_until_ready(function())
            best[name] = min(best[name], time.process_time() - start)
    return best


def _training_models() -> dict:
    """``NeuralSDE(2)`` of width 64 and depth 2 (the committed results' model) and the 5-D snapshot preset."""
    return {
        "NeuralSDE(2)": dkjax.NeuralSDE(2, key=jax.random.key(1), width=64, depth=2),
        "NeuralSDE(5, diagonal, state_dependent)": dkjax.NeuralSDE.for_snapshots(5, key=jax.random.key(1)),
    }  # fmt: skip


def training_rows(num_paths: int = 1024, num_steps: int = 50) -> list[dict]:
    """One ``dkjax.fit`` training step against ``simulate`` of the same paths, per gradient route.

    ``fit``'s defaults (KL objective with its bandwidth rule, Adam with clipping, a batch of 1024
    data points); ``NeuralSDE(2)`` of width 64, depth 2 and the 5-D snapshot preset ``NeuralSDE.for_snapshots(5)``.
    """
    from dkjax._generative._arguments import Schedule
    from dkjax._generative._train import _make_train_step

    rows = []
    defaults = dkjax.TRAIN_DEFAULTS
    for name, model in _training_models().items():
        dim = model.dim
        data = jax.random.normal(jax.random.key(3), (4096, dim))
        initial = dkjax.GaussianInitial(jnp.zeros(dim), 1.0)
        optimizer = Schedule(800, None, defaults.learning_rate, defaults.final_lr_fraction, defaults.clip_norm).build()[0]
        params, static = eqx.partition(model, eqx.is_inexact_array)
        opt_state = optimizer.init(params)
        x0 = initial(jax.random.key(0), num_paths)[0]
        calls = {"simulate": lambda: dkjax.simulate(model, x0, t1=1.0, num_steps=num_steps, key=jax.random.key(2))}
        for route in ("per_path", "two_pass"):
            step = _make_train_step(initial, optimizer, num_paths=num_paths, objective=defaults.objective, gradient=route,
                                    t0=0.0, t1=1.0, num_steps=num_steps, batch_size=defaults.batch_size)  # fmt: skip
            args = (params, static, opt_state, data, jax.random.key(4), jnp.asarray(2.0), jnp.asarray(0.05), jnp.asarray(4.0))
            calls[route] = lambda step=step, args=args: step(*args)[2]
        cpu = interleaved_cpu_times(calls)
        for route in ("per_path", "two_pass"):
            rows.append({"model": name, "parameters": int(sum(p.size for p in jax.tree.leaves(params))), "route": route,
                         "paths": num_paths, "steps": num_steps, "simulate_cpu_s": cpu["simulate"],
                         "train_step_cpu_s": cpu[route], "ratio": cpu[route] / cpu["simulate"]})  # fmt: skip
    return rows


def _flops(function, *args) -> float:
    """XLA's count of floating-point operations of one call of ``function`` (compiled for the default device)."""
    analysis = jax.jit(function).lower(*args).compile().cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


def step_profile(num_paths: int = 1024) -> list[dict]:
    """XLA flops of one time step of each kind, for the models of ``training_rows``, in units of one EM step.

    One step, not a scan (XLA counts a loop's body once): the plain Euler-Maruyama step; the
    DK step's transition alone (states and scores, no parameter response); the training
    step (transition plus one weighted reverse pass in the parameters); the same with the
    kinetic path prior (``fit(path_cost=dkjax.Kinetic(...))``: its pathwise gradient at the
    step's states, and the cost recorded in the first pass); the estimator's step (per-path
    responses); and the KL objective's weights for the batch (once per training step).
    """
    import dataclasses

    from dkjax._engine._dk_step import DivergenceKernelStep, StepWeights, _step_plan
    from dkjax._engine._jacobian import MatrixFree
    from dkjax._engine._kernel_rate import ConstantRate
    from dkjax._engine._noise import step_key
    from dkjax._engine._simulate import EulerMaruyama, path_ids_for

    rows = []
    for name, model in _training_models().items():
        x = jax.random.normal(jax.random.key(0), (num_paths, model.dim))
        data = jax.random.normal(jax.random.key(3), (1024, model.dim))
        params, static = eqx.partition(model, eqx.is_inexact_array)
        plan = _step_plan(model, x, True, 0.0, 0.0)
        carry = (x, jnp.zeros_like(x), jnp.full((num_paths,), -1, jnp.int32), jnp.zeros((num_paths,), x.dtype))
        ids, dt, n = path_ids_for(num_paths, 0), jnp.asarray(0.02, x.dtype), jnp.int32(3)
        weights = StepWeights(jnp.ones((num_paths, 1), x.dtype), jnp.asarray([50], jnp.int32))

        def dk_step(p, plan=plan, weights=weights, running_cost=None):
            step = DivergenceKernelStep(p, static, MatrixFree(), ConstantRate(2.0), 0.0, plan, weights, running_cost)
            return step(n, n * dt, dt, step_key(jax.random.key(2), n), ids, carry)

        kinetic = dkjax.Kinetic(1.0)
        with_cost = StepWeights(weights.c, weights.steps, jnp.full((num_paths,), 1.0 / num_paths, x.dtype))
        # The first pass records the cost at each step's own states, as fit's recorder does.
        em_and_cost = lambda p: (em(p), jax.vmap(lambda x_: kinetic(eqx.combine(p, static), n * dt, x_))(x))

        em = lambda p: EulerMaruyama(eqx.combine(p, static), plan.noise_dim)(n, n * dt, dt, step_key(jax.random.key(2), n), ids, x)
        kl = dkjax.KL()
        counts = {
            "EM step": _flops(em, params),
            "DK transition (states, scores)": _flops(partial(dk_step, plan=dataclasses.replace(plan, divergence_response=False)), params),
            "DK training step (+ weighted parameter pass)": _flops(dk_step, params),
            "DK training step with dkjax.Kinetic (+ its pathwise gradient)": _flops(
                partial(dk_step, weights=with_cost, running_cost=kinetic), params),
            "EM step recording dkjax.Kinetic's cost (first pass)": _flops(em_and_cost, params),
            "DK estimator step (+ per-path responses)": _flops(partial(dk_step, weights=None), params),
            "KL weights of the batch (once per training step)": _flops(lambda y: kl.weights(y, data, jax.random.key(7), 0.05, 4.0)[1], x),
        }  # fmt: skip
        rows += [{"model": name, "part": part, "mflops": value / 1e6, "em_steps": value / counts["EM step"]}
                 for part, value in counts.items()]  # fmt: skip
    return rows


def _profile_table(profile: list[dict]) -> str:
    return ("Where a training step's cost goes: XLA's floating-point operation count of one time step of each "
            "kind (1024 paths), in units of one Euler-Maruyama step. A training step runs one EM pass (to record "
            "the states the weights need), the KL weights, and one DK training step per time step:\n\n"
            + markdown_table(list(profile[0]), [list(row.values()) for row in profile]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--exact-paths", type=int, default=512, help="paths for the (slow) exact mode")
    parser.add_argument("--memory-steps", type=int, nargs=2, default=[200, 2000])
    parser.add_argument("--step-profile", action="store_true",
                        help="only the step profile (XLA flop counts, no timing), to results/core_overhead/step_profile")
    args = parser.parse_args(argv)
    if args.step_profile:
        profile = step_profile()
        out = ROOT / "benchmarks" / "results" / "core_overhead" / "step_profile"
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, {"machine": machine(), "step_profile": profile}, f"Machine: {machine()}\n\n"
                      + _profile_table(profile), "Step profile of the DK training step")  # fmt: skip
        return

    sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
    key = jax.random.key(0)
    x0 = dkjax.simulate(sde, 8.0 + jax.random.normal(jax.random.key(1), (args.paths, args.dim)), t1=5.0, num_steps=1000, key=jax.random.key(2))
    t1 = 0.005 * args.steps
    dt = t1 / args.steps

    baseline = jax.jit(lambda x, k: hand_written_scan(x, k, forcing=8.0, noise=0.5, dt=dt, num_steps=args.steps))
    simulate = lambda x, k: dkjax.simulate(sde, x, t1=t1, num_steps=args.steps, key=k)
    estimator = lambda mode: lambda x, k: dkjax.divergence_kernel(sde, x, t1=t1, num_steps=args.steps, key=k, kernel_rate=10.0, mode=mode)

    # Correctness before timing.
    reference, ours = baseline(x0, key), simulate(x0, key)
    assert abs(float(reference.mean() - ours.mean())) < 0.1 and abs(float(reference.std() / ours.std()) - 1) < 0.02
    result = estimator("matrix_free")(x0, key)
    np.testing.assert_array_equal(result.x, ours)
    assert int(result.num_nonfinite) == 0

    rows = []
    base = time_call(baseline, x0, key)
    rows.append({"method": "hand-written lax.scan", "paths": args.paths, **base, "ratio": 1.0})
    for name, function, x in [
        ("dkjax.simulate", simulate, x0),
        ("divergence_kernel matrix_free", estimator("matrix_free"), x0),
    ]:
        timing = time_call(function, x, key)
        rows.append({"method": name, "paths": args.paths, **timing, "ratio": timing["median_s"] / base["median_s"]})
    user = UserLorenz96(jnp.asarray(8.0, x0.dtype), jnp.asarray(0.5, x0.dtype))
    for name, function in [
        ("dkjax.simulate (user jnp.roll L96)", lambda x, k: dkjax.simulate(user, x, t1=t1, num_steps=args.steps, key=k)),
        ("divergence_kernel matrix_free (user jnp.roll L96)", lambda x, k: dkjax.divergence_kernel(
            user, x, t1=t1, num_steps=args.steps, key=k, kernel_rate=10.0)),
    ]:
        timing = time_call(function, x0, key)
        rows.append({"method": name, "paths": args.paths, **timing, "ratio": timing["median_s"] / base["median_s"]})
    # The dense reference costs O(d^3) per path and step: timed on fewer paths, ratio per path.
    x_small = x0[: args.exact_paths]
    base_small = time_call(baseline, x_small, key)
    timing = time_call(estimator("exact"), x_small, key, repeats=3)
    rows.append({"method": "divergence_kernel exact", "paths": args.exact_paths, **timing, "ratio": timing["median_s"] / base_small["median_s"]})

    memory = []
    for steps in args.memory_steps:
        jitted = jax.jit(lambda x, k, s=steps: dkjax.divergence_kernel(sde, x, t1=0.005 * s, num_steps=s, key=k, kernel_rate=10.0).dlogp)
        memory.append({"steps": steps, **compiled_memory(jitted, x0, key)})
    flat = memory[-1]["peak_bytes"] / memory[0]["peak_bytes"]

    training = training_rows()
    profile = step_profile()
    user_cpu = interleaved_cpu_times({
        "simulate": lambda: dkjax.simulate(user, x0, t1=t1, num_steps=args.steps, key=key),
        "dk": lambda: dkjax.divergence_kernel(user, x0, t1=t1, num_steps=args.steps, key=key, kernel_rate=10.0).dlogp,
    })  # fmt: skip

    columns = ["method", "paths", "median_s", "compile_and_first_s", "ratio"]
    table = f"Machine: {machine()}\n\n" + markdown_table(columns, [[row[c] for c in columns] for row in rows])
    table += "\n\nPeak memory of divergence_kernel (XLA compiled: arguments + outputs + temporaries):\n\n"
    table += markdown_table(["steps", "peak_bytes", "temp_bytes"], [[m["steps"], m["peak_bytes"], m["temp_bytes"]] for m in memory])
    table += f"\n\nratio {args.memory_steps[1]} / {args.memory_steps[0]} steps: {flat:.3f}"
    table += (f"\n\nUser-written Lorenz-96, DK / simulate by CPU time (interleaved, least of 7): "
              f"{user_cpu['dk'] / user_cpu['simulate']:.2f}x")
    table += ("\n\nOne fit training step / simulate of the same paths, by CPU time of the process (interleaved, "
              "least of 7; wall time on a shared machine measures its load):\n\n")
    table += markdown_table(list(training[0]), [list(row.values()) for row in training])
    table += "\n\n" + _profile_table(profile)
    payload = {"machine": machine(), "args": vars(args), "timings": rows, "memory": memory, "memory_ratio": flat,
               "training": training, "step_profile": profile, "user_lorenz96_cpu": user_cpu}
    out = ROOT / "benchmarks" / "results" / "core_overhead"
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, payload, table, "Cost of simulate and the DK estimator vs a hand-written scan")


if __name__ == "__main__":
    main()

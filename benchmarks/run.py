"""The performance suite: one entry point, JSON and markdown tables per suite (run from the repository root).

    python -m benchmarks.run --suite quick      # a 2-core CPU in minutes
    python -m benchmarks.run --suite full       # one GPU
    python -m benchmarks.run --suite quick --sections simulate memory

Sections (each a ratio measured side by side in one process; absolute times only mean
something on a quiet machine):

- ``simulate``: ``dkjax.simulate`` vs the Euler-Maruyama ``lax.scan`` one would write by hand
  (batch noise per step) vs ``diffrax.diffeqsolve`` (Euler on the same increments, vmapped).
- ``dk``: the divergence-kernel estimator (matrix-free, and the dense exact reference at small
  ``d``) vs ``simulate`` on the same paths, over ``d`` and the noise kinds (additive,
  diagonal multiplicative, general ``d x d`` noise), and the cost per path-step relative to
  ``d = 40``.
- ``memory``: XLA's compiled peak memory (``memory_analysis``: arguments + outputs +
  temporaries - aliases) vs the number of steps, of ``divergence_kernel``, of one chunk of
  ``observable_response`` and of a DK-SDE training step, against backpropagation through
  diffrax. Every configuration compiles in its own subprocess. Training steps are also
  timed at the smallest step count.
- ``scaling``: ``divergence_kernel`` on 1 device vs the path axis sharded over 4 forced
  host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, a subprocess),
  results checked equal first.

Every timed function is jitted, checked for correctness, compiled (timed on its own),
warmed up and then timed with ``block_until_ready``. Results go to
``benchmarks/results/suite_<suite>/results.{json,md}`` (``--out`` to change).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("simulate", "dk", "memory", "scaling")

SUITES = {
    "quick": {
        "simulate": {"paths": 2048, "dim": 40, "steps": 100, "repeats": 5},
        "dk": {
            "dims": [10, 40, 160, 640], "paths": 1024, "steps": 40, "repeats": 3,
            "exact_dims": [10, 40], "exact_paths": 64, "general_dims": [10, 40],
        },
        "memory": {
            "steps": [100, 1000, 4000], "paths": 256, "dim": 40,
            "train_steps": [100, 4000], "train_paths": 4096, "train_batch": 1024,
        },
        "scaling": {"devices": 4, "paths": 1024, "dim": 40, "steps": 50, "repeats": 3},
    },
    "full": {
        "simulate": {"paths": 65536, "dim": 40, "steps": 1000, "repeats": 10},
        "dk": {
            "dims": [10, 40, 160, 640], "paths": 16384, "steps": 200, "repeats": 5,
            "exact_dims": [10, 40], "exact_paths": 1024, "general_dims": [10, 40, 160],
        },
        "memory": {
            "steps": [100, 1000, 4000], "paths": 4096, "dim": 40,
            "train_steps": [100, 1000, 4000], "train_paths": 16384, "train_batch": 1024,
        },
        "scaling": {"devices": 4, "paths": 65536, "dim": 40, "steps": 200, "repeats": 5},
    },
}


# --------------------------------------------------------------------------------------
# Helpers that run inside a child process (JAX is imported lazily).


def _enable_x64():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _compile(jitted, *args):
    """``(compiled, seconds)``: lowering and XLA compilation, timed on their own."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _time_side_by_side(functions: dict, args: tuple, repeats: int) -> dict:
    """Compiles each function (timed), warms it up, then times them interleaved, round-robin.

    Interleaving makes every method see the same background load on a shared machine, so
    the ratios are fair even when the absolute times drift. A value may be a pair
    ``(function, its own args)``. Returns, per name, the compile
    time and the median and minimum of ``repeats`` blocked calls.
    """
    import jax

    compiled, arguments, out = {}, {}, {}
    for name, f in functions.items():
        f, arguments[name] = f if isinstance(f, tuple) else (f, args)
        compiled[name], seconds = _compile(f, *arguments[name])
        out[name] = {"compile_s": seconds}
        jax.block_until_ready(compiled[name](*arguments[name]))  # warm-up
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, c in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(c(*arguments[name]))
            times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        ts.sort()
        out[name].update(median_s=ts[len(ts) // 2], min_s=ts[0])
    return out


def _memory(jitted, *args) -> dict:
    compiled = jitted.lower(*args).compile()
    compiled = getattr(compiled, "compiled", compiled)  # equinox's filter_jit wraps jax's Compiled
    stats = compiled.memory_analysis()
    peak = (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )
    return {"peak_bytes": int(peak), "temp_bytes": int(stats.temp_size_in_bytes)}


def _l96_start(jax, paths, dim, key=1):
    import dkjax

    x0 = 8.0 + jax.random.normal(jax.random.key(key), (paths, dim))
    # A short spin-up onto the attractor, so the timed runs see typical states.
    return dkjax.simulate(dkjax.Lorenz96(8.0, 0.5), x0, t1=1.0, num_steps=200, key=jax.random.key(key + 1))


def _general_noise_l96(dim):
    """Lorenz-96 with a full constant ``d x d`` noise matrix ``noise * (I + 0.3 N)`` (``N``: next-neighbour shift)."""
    import jax.numpy as jnp

    import dkjax
    from dkjax._sde._systems import lorenz96_drift

    class GeneralNoiseL96(dkjax.AbstractSDE):
        forcing: object
        noise: object

        def drift(self, t, x):
            return lorenz96_drift(x, self.forcing)

        def diffusion(self, t, x):
            d = x.shape[0]
            return self.noise * (jnp.eye(d, dtype=x.dtype) + 0.3 * jnp.eye(d, k=1, dtype=x.dtype))

    return GeneralNoiseL96(jnp.asarray(8.0), jnp.asarray(0.5))


def section_simulate(cfg) -> dict:
    jax = _enable_x64()
    import jax.numpy as jnp
    import numpy as np

    import dkjax
    from dkjax._sde._systems import lorenz96_drift

    paths, dim, steps, dt = cfg["paths"], cfg["dim"], cfg["steps"], 0.005
    t1 = steps * dt
    sde = dkjax.Lorenz96(8.0, 0.5)
    x0, key = _l96_start(jax, paths, dim), jax.random.key(0)

    def hand_written(x0, key):
        def step(x, n):
            z = jax.random.normal(jax.random.fold_in(key, n), x.shape, x.dtype)
            return x + lorenz96_drift(x, 8.0) * dt + 0.5 * jnp.sqrt(dt) * z, None

        return jax.lax.scan(step, x0, jnp.arange(steps))[0]

    def with_diffrax(x0, key):
        ts = jnp.arange(steps + 1, dtype=x0.dtype) * dt
        brownian = lambda path_id: dkjax.BrownianIncrements(
            key, 0.0, t1, steps, dim=dim, path_id=path_id, dtype=x0.dtype
        )
        return diffrax_euler_paths(sde, brownian, ts, x0)

    functions = {
        "hand-written lax.scan": jax.jit(hand_written),
        "dkjax.simulate": jax.jit(lambda x, k: dkjax.simulate(sde, x, t1=t1, num_steps=steps, key=k)),
        "diffrax Euler (vmapped)": jax.jit(with_diffrax),
    }
    timings = _time_side_by_side(functions, (x0, key), cfg["repeats"])
    # Correctness (before the timings are used): diffrax follows simulate's increments
    # exactly; the hand-written loop draws other noise, so its moments are compared.
    ours = functions["dkjax.simulate"](x0, key)
    ref = functions["hand-written lax.scan"](x0, key)
    np.testing.assert_allclose(functions["diffrax Euler (vmapped)"](x0, key), ours, rtol=1e-9, atol=1e-9)
    assert abs(float(ours.mean() - ref.mean())) < 0.1 and abs(float(ours.std() / ref.std()) - 1) < 0.03
    rows = [{"method": name, **t} for name, t in timings.items()]
    base = rows[0]["median_s"]
    for row in rows:
        row["ratio_to_scan"] = row["median_s"] / base
    return {"config": cfg, "rows": rows}


def diffrax_euler_paths(sde, brownian, ts, x0):
    """Euler-Maruyama through ``diffrax.diffeqsolve`` on the grid ``ts`` for each row of ``x0``,
    path ``i`` driven by the Brownian motion ``brownian(i)``; the states at ``ts[-1]``."""
    import diffrax
    import jax
    import jax.numpy as jnp

    def solve(x, path_id):
        sol = diffrax.diffeqsolve(
            sde.terms(brownian(path_id)), diffrax.Euler(), ts[0], ts[-1], None, x,
            stepsize_controller=diffrax.StepTo(ts=ts), saveat=diffrax.SaveAt(t1=True), max_steps=ts.shape[0] - 1,
        )  # fmt: skip
        return sol.ys[-1]

    return jax.vmap(solve)(x0, jnp.arange(x0.shape[0], dtype=jnp.int32))


def section_dk(cfg) -> dict:
    jax = _enable_x64()
    import numpy as np

    import dkjax

    paths, steps, dt = cfg["paths"], cfg["steps"], 0.005
    t1 = steps * dt
    key = jax.random.key(0)
    kinds = {
        "additive (L96)": lambda d: dkjax.Lorenz96(8.0, 0.5),
        "multiplicative (L96)": lambda d: dkjax.Lorenz96Multiplicative(8.0, 0.5),
        "general d x d (L96)": _general_noise_l96,
    }
    rows = []
    for kind, make in kinds.items():
        dims = cfg["general_dims"] if kind.startswith("general") else cfg["dims"]
        # All sizes of one noise kind are timed interleaved, so the cost-vs-d ratios are side by side.
        functions = {}
        for d in dims:
            sde = make(d)
            x0 = _l96_start(jax, paths, d)
            sim = jax.jit(lambda x, k, sde=sde: dkjax.simulate(sde, x, t1=t1, num_steps=steps, key=k))
            dk = lambda mode, sde=sde: jax.jit(
                lambda x, k: dkjax.divergence_kernel(
                    sde, x, t1=t1, num_steps=steps, key=k, kernel_rate=10.0, mode=mode, on_nonfinite="ignore"
                )
            )
            functions[("sim", d)] = (sim, (x0, key))
            functions[("mf", d)] = (dk("matrix_free"), (x0, key))
            if d in cfg["exact_dims"]:
                xe = x0[: cfg["exact_paths"]]
                functions[("sim_exact_paths", d)] = (sim, (xe, key))
                functions[("exact", d)] = (dk("exact"), (xe, key))
        timed = _time_side_by_side(functions, (), cfg["repeats"])
        for d in dims:
            sim, (x0, _) = functions[("sim", d)]
            result = functions[("mf", d)][0](x0, key)
            np.testing.assert_array_equal(result.x, sim(x0, key))  # the same paths
            assert int(result.num_nonfinite) == 0
            t_sim, t_mf = timed[("sim", d)], timed[("mf", d)]
            row = {
                "noise": kind, "d": d, "paths": paths, "steps": steps,
                "simulate_s": t_sim["median_s"], "matrix_free_s": t_mf["median_s"],
                "matrix_free_compile_s": t_mf["compile_s"],
                "matrix_free_over_simulate": t_mf["median_s"] / t_sim["median_s"],
                "us_per_path_step": 1e6 * t_mf["median_s"] / (paths * steps),
            }  # fmt: skip
            if ("exact", d) in functions:
                exact, (xe, _) = functions[("exact", d)]
                np.testing.assert_array_equal(exact(xe, key).x, result.x[: cfg["exact_paths"]])
                row["exact_over_simulate"] = timed[("exact", d)]["median_s"] / timed[("sim_exact_paths", d)]["median_s"]
                row["exact_paths"] = cfg["exact_paths"]
            rows.append(row)
    for row in rows:
        ref = [r for r in rows if r["noise"] == row["noise"] and r["d"] == 40]
        row["cost_vs_d40"] = row["us_per_path_step"] / ref[0]["us_per_path_step"] if ref else None
    return {"config": cfg, "rows": rows}


def l96_functions(jax, spec) -> dict:
    """The jitted Lorenz-96 computations whose memory is compared, each with its arguments.

    ``spec``: ``steps``, ``paths``, ``dim`` and optionally ``dt`` (default 0.005). States
    follow JAX's default float type.
    """
    import jax.numpy as jnp

    import dkjax
    from dkjax._response._baselines import _backprop_chunk, _flat_parameters
    from dkjax._response._observable import fold_observable

    steps, dt = spec["steps"], spec.get("dt", 0.005)
    t1 = steps * dt
    sde = dkjax.Lorenz96(8.0, 0.5)
    x0 = 8.0 + jax.random.normal(jax.random.key(1), (spec["paths"], spec["dim"]))
    key = jax.random.key(0)
    phi = lambda x: jnp.mean(x**2)
    dk = lambda x, k: dkjax.divergence_kernel(sde, x, t1=t1, num_steps=steps, key=k, kernel_rate=10.0, on_nonfinite="ignore")
    valid = jnp.ones(x0.shape[0], bool)
    vector, rebuild, _ = _flat_parameters(sde)
    ids = jnp.arange(x0.shape[0], dtype=jnp.int32)
    backprop = lambda x: _backprop_chunk(
        rebuild, phi, vector, x, ids, jnp.asarray(0.0, x.dtype), jnp.asarray(t1, x.dtype), key, steps, spec["dim"]
    )
    return {
        "divergence_kernel": (jax.jit(dk), (x0, key)),
        "observable_response chunk": (jax.jit(lambda x, k: fold_observable(phi, None, dk(x, k), valid, True)), (x0, key)),
        "backprop (diffrax)": (jax.jit(backprop), (x0,)),
    }


def memory_child(spec) -> dict:
    """One memory configuration (in its own process): compiled peak bytes, and a timing for training.

    ``spec["x64"] = False`` keeps JAX's default float32 (the GPU check); float64 otherwise.
    """
    import jax

    if spec.get("x64", True):
        _enable_x64()
    kind, steps = spec["kind"], spec["steps"]
    if kind.startswith("train:"):
        import statistics

        import jax.random as jr

        from benchmarks.train_memory import _step_and_args

        method = kind.removeprefix("train:")
        step, args, params, _, opt_state, _, _ = _step_and_args(method, steps, spec["paths"], spec["batch"], 1000)
        out = _memory(step, *args(params, opt_state, jr.key(0)))
        if spec.get("time"):
            times = []
            for i in range(spec["time"] + 1):
                start = time.perf_counter()
                jax.block_until_ready(step(*args(params, opt_state, jr.key(i))))
                times.append(time.perf_counter() - start)
            out["seconds_per_step"] = statistics.median(times[1:])
        return out
    functions = l96_functions(jax, spec)
    if kind not in functions:
        raise ValueError(f"unknown memory configuration {kind!r}")
    jitted, args = functions[kind]
    return _memory(jitted, *args)


def section_memory(cfg, log) -> dict:
    rows = []
    configs = [
        (kind, steps, {"paths": cfg["paths"], "dim": cfg["dim"]})
        for kind in ("divergence_kernel", "observable_response chunk", "backprop (diffrax)")
        for steps in cfg["steps"]
    ]
    train_methods = ("dk_two_pass", "dk_chunked", "dk_per_path", "backprop", "backprop_batched", "backprop_full")
    configs += [
        (
            f"train:{method}", steps,
            {"paths": cfg["train_paths"], "batch": cfg["train_batch"], "time": 2 if steps == cfg["train_steps"][0] else 0},
        )
        for method in train_methods
        for steps in cfg["train_steps"]
    ]  # fmt: skip
    for kind, steps, extra in configs:
        spec = {"kind": kind, "steps": steps, **extra}
        out = _run_child("memory_child", spec)
        log(f"  memory {kind} steps={steps}: {out}")
        rows.append({"kind": kind, "steps": steps, **extra, **out})
    summary = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = sorted((r for r in rows if r["kind"] == kind and "peak_bytes" in r), key=lambda r: r["steps"])
        if len(mine) >= 2:
            summary.append({
                "kind": kind, "steps_low": mine[0]["steps"], "steps_high": mine[-1]["steps"],
                "peak_ratio_high_over_low": mine[-1]["peak_bytes"] / mine[0]["peak_bytes"],
                "peak_mib_high": mine[-1]["peak_bytes"] / 2**20,
            })  # fmt: skip
    by = {(r["kind"], r["steps"]): r for r in rows if "peak_bytes" in r}
    comparisons = []
    for ours, theirs in [
        ("divergence_kernel", "backprop (diffrax)"),
        ("observable_response chunk", "backprop (diffrax)"),
        ("train:dk_two_pass", "train:backprop"),
        ("train:dk_two_pass", "train:backprop_batched"),
        ("train:dk_two_pass", "train:backprop_full"),
        ("train:dk_chunked", "train:backprop"),
        ("train:dk_chunked", "train:backprop_batched"),
        ("train:dk_per_path", "train:backprop_full"),
    ]:
        steps = max((s for k, s in by if k == ours), default=None)
        if steps is not None and (theirs, steps) in by:
            comparisons.append({
                "ours": ours, "baseline": theirs, "steps": steps,
                "baseline_over_ours": by[(theirs, steps)]["peak_bytes"] / by[(ours, steps)]["peak_bytes"],
            })  # fmt: skip
    return {"config": cfg, "rows": rows, "flatness": summary, "vs_backprop": comparisons}


def scaling_child(cfg) -> dict:
    jax = _enable_x64()
    import numpy as np

    import dkjax

    paths, steps, dt = cfg["paths"], cfg["steps"], 0.005
    sde = dkjax.Lorenz96(8.0, 0.5)
    x0 = 8.0 + jax.random.normal(jax.random.key(1), (paths, cfg["dim"]))
    key = jax.random.key(0)
    f = jax.jit(
        lambda x, k: dkjax.divergence_kernel(sde, x, t1=steps * dt, num_steps=steps, key=k, kernel_rate=10.0, on_nonfinite="ignore")
    )
    one = jax.device_put(x0, jax.devices()[0])
    many = dkjax.shard_paths(x0)
    g = jax.jit(lambda x, k: f(x, k))  # a second jit object: its own compiled executable for the sharded input
    timed = _time_side_by_side({"one": (f, (one, key)), "many": (g, (many, key))}, (), cfg["repeats"])
    t1, tn = timed["one"], timed["many"]
    a, b = f(one, key), g(many, key)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.dlogp.forcing, b.dlogp.forcing)
    return {
        "devices": len(jax.devices()), "cpu_cores": os.cpu_count(), "paths": paths, "steps": steps,
        "one_device_s": t1["median_s"], "sharded_s": tn["median_s"], "speedup": t1["median_s"] / tn["median_s"],
        "output_sharding": str(b.x.sharding.spec),
    }  # fmt: skip


def section_scaling(cfg) -> dict:
    # Forced host devices are CPU devices: pin the platform, so a GPU machine measures the same thing.
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={cfg['devices']}", "JAX_PLATFORMS": "cpu"}
    return {"config": cfg, **_run_child("scaling_child", cfg, env=env)}


# --------------------------------------------------------------------------------------
# Process plumbing, tables, entry point.


def _run_child(name, spec, env=None, timeout=900, module="benchmarks.run") -> dict:
    """Runs ``module``'s ``name(spec)`` in a fresh process and returns its last ``RESULT`` line.

    A child that fails or is killed at ``timeout`` returns the last ``RESULT`` it printed
    (a child may print partial results as it goes) with an ``"error"`` entry added.
    """
    cmd = [sys.executable, "-m", module, "--child", name, json.dumps(spec)]
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:  # its output so far arrives as bytes, even with text=True
        stdout, stderr, code = exc.stdout, exc.stderr, None
    stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else s or "" for s in (stdout, stderr))
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    last = json.loads(lines[-1].removeprefix("RESULT ")) if lines else {}
    if code is None:
        return {**last, "error": f"timed out after {timeout:.0f} s"}
    if code != 0 or not lines:
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else [f"exit {code}"]
        return {**last, "error": " | ".join(tail)}
    return last


def _machine() -> dict:
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    spec = _run_child("machine_child", {})
    return {**spec, "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(), "load_avg_start": load}


def machine_child(_) -> dict:
    import jax

    device = jax.devices()[0]
    return {"platform": device.platform, "device_kind": getattr(device, "device_kind", ""), "jax": jax.__version__}


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(h for h, _ in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(row.get(key)) for _, key in headers) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    m = results["machine"]
    parts = [
        f"# Performance suite ({results['suite']})\n",
        f"Machine: {m.get('platform')}:{m.get('device_kind')} ({m.get('processor')}), {m.get('cpu_count')} CPU cores, "
        f"jax {m.get('jax')}; load average at start {_fmt(tuple(round(x, 2) for x in m['load_avg_start']) if m.get('load_avg_start') else None)}, "
        f"at end {_fmt(tuple(round(x, 2) for x in results['load_avg_end']))}. float64. Times are medians of warm "
        "calls of jitted functions; ratios are measured side by side in one process.\n",
    ]
    s = results.get("simulate")
    if s and "rows" in s:
        c = s["config"]
        parts.append(f"## simulate vs a hand-written scan vs diffrax\n\nLorenz-96 additive, d = {c['dim']}, {c['paths']} paths, {c['steps']} steps.\n")
        parts.append(_table([("method", "method"), ("median s", "median_s"), ("compile s", "compile_s"), ("ratio to scan", "ratio_to_scan")], s["rows"]))
    d = results.get("dk")
    if d and "rows" in d:
        c = d["config"]
        parts.append(
            f"\n## DK estimator vs simulate over d and noise kinds\n\n{c['paths']} paths, {c['steps']} steps (exact mode on "
            f"{c['exact_paths']} paths); kernel rate 10. `cost vs d=40` is the matrix-free time per path-step over that at d = 40.\n"
        )
        parts.append(_table([
            ("noise", "noise"), ("d", "d"), ("simulate s", "simulate_s"), ("matrix-free s", "matrix_free_s"),
            ("matrix-free / simulate", "matrix_free_over_simulate"), ("exact / simulate", "exact_over_simulate"),
            ("us per path-step", "us_per_path_step"), ("cost vs d=40", "cost_vs_d40"), ("compile s", "matrix_free_compile_s"),
        ], d["rows"]))  # fmt: skip
    mem = results.get("memory")
    if mem and "rows" in mem:
        c = mem["config"]
        parts.append(
            f"\n## Peak memory vs steps (XLA compiled memory_analysis, one subprocess per configuration)\n\n"
            f"Response: Lorenz-96 d = {c['dim']}, {c['paths']} paths (one chunk). Training: NeuralSDE 2-D, width 64, "
            f"depth 2, {c['train_paths']} paths, data batch {c['train_batch']}; time per training step at "
            f"{c['train_steps'][0]} steps. `dk_chunked`: the two-pass replay in 8 path chunks (`path_chunk`); "
            "`backprop`: `jax.vmap` over per-path `diffeqsolve`s with diffrax's default `RecursiveCheckpointAdjoint` "
            "(O(log steps) checkpoints); `backprop_batched`: the same adjoint on one solve of all paths as a single "
            "state; `backprop_full`: storing every step.\n"
        )
        rows = [dict(r, peak_mib=r.get("peak_bytes", 0) / 2**20, temp_mib=r.get("temp_bytes", 0) / 2**20) for r in mem["rows"]]
        parts.append(_table([
            ("what", "kind"), ("steps", "steps"), ("peak MiB", "peak_mib"), ("temp MiB", "temp_mib"),
            ("s / training step", "seconds_per_step"), ("error", "error"),
        ], rows))  # fmt: skip
        parts.append("\nFlatness (peak at the most steps over peak at the fewest):\n")
        parts.append(_table([("what", "kind"), ("steps", "steps_high"), ("from", "steps_low"), ("ratio", "peak_ratio_high_over_low"), ("peak MiB", "peak_mib_high")], mem["flatness"]))
        parts.append("\nBackprop over DK at the most steps:\n")
        parts.append(_table([("DK", "ours"), ("baseline", "baseline"), ("steps", "steps"), ("baseline / DK", "baseline_over_ours")], mem["vs_backprop"]))
    sc = results.get("scaling")
    if sc:
        parts.append(
            f"\n## Multi-device scaling (forced host devices)\n\n`divergence_kernel`, Lorenz-96 d = {sc['config']['dim']}, "
            f"{sc['config']['paths']} paths, {sc['config']['steps']} steps; paths and weights checked bit-identical first.\n"
        )
        parts.append(_table([("devices", "devices"), ("CPU cores", "cpu_cores"), ("1 device s", "one_device_s"), ("sharded s", "sharded_s"), ("speedup", "speedup"), ("error", "error")], [sc]))
    return "\n".join(parts) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="quick")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/suite_<suite>)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, spec = args.child
        out = globals()[name](json.loads(spec))
        print("RESULT " + json.dumps(out))
        return out
    cfg = SUITES[args.suite]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"suite_{args.suite}"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.0f} s] {msg}", flush=True)
    results = {"suite": args.suite, "machine": _machine()}
    log(f"machine {results['machine']}")
    for section in args.sections:
        log(f"section {section}")
        if section == "memory":
            results[section] = section_memory(cfg[section], log)
        elif section == "scaling":
            results[section] = section_scaling(cfg[section])
        else:  # timing sections: one process for all the configurations compared side by side
            results[section] = _run_child(f"section_{section}", cfg[section])
        log(f"  {json.dumps(results[section])[:400]}")
    results["load_avg_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / "results.md").write_text(table + f"\nSuite wall time {results['wall_s']:.0f} s.\n")
    print(table)
    log(f"written to {out}")
    failed = _errors(results)
    if failed:
        raise RuntimeError(f"benchmark configurations failed (see {out / 'results.md'}): {failed}")
    return results


def _errors(value, where="") -> list[str]:
    """Paths of every ``"error"`` entry in the results (failed or timed-out configurations)."""
    if isinstance(value, dict):
        found = [f"{where}: {value['error']}"] if "error" in value else []
        return found + [e for k, v in value.items() if k != "error" for e in _errors(v, f"{where}/{k}")]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _errors(v, f"{where}[{i}]")]
    return []


if __name__ == "__main__":
    main()

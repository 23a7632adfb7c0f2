"""One-shot GPU check: float32 exact references, speed against hand-written and diffrax baselines, memory.

    python -m benchmarks.gpu_check                 # a GPU: full sizes in about 7 minutes; else CPU sizes
    python -m benchmarks.gpu_check --size tiny     # seconds (the test)
    python -m benchmarks.gpu_check --budget 300    # total seconds to plan for (default per size)

Everything is float32 (JAX's default) except the float64 side of the exact checks. Sections,
each in its own process with a time budget and a hard timeout (a failing or killed section
is recorded with its partial results; the others still run; the exit status is 1 if any
failed):

- ``exact``: ``d/dparam E[X_T^2]`` of the Euler-Maruyama chains of Ornstein-Uhlenbeck
  (additive noise) and geometric Brownian motion (a parameter inside multiplicative noise)
  by ``observable_response``, and the DK score of OU against the exact score of its Gaussian
  chain, in float32 and float64, judged in standard errors.
- ``speed``: Lorenz-96 (d = 40): a hand-written ``lax.scan`` Euler-Maruyama loop,
  ``dkjax.simulate``, ``diffrax`` Euler driven by a ``VirtualBrownianTree`` and
  ``divergence_kernel`` (matrix-free), side by side at growing path counts (2^16 to 2^20
  on a GPU), with the device's copy bandwidth for the scan's memory floor.
- ``memory``: the DK-SDE training step (two-pass DK gradient) against backpropagation
  through diffrax at 100, 1000 and 4000 steps (time, and XLA's compiled peak memory), the
  same for the Lorenz-96 estimator, a response chunk and backprop through diffrax, and
  backprop's time per step.
- ``paper`` (GPU only): the full-size paper reproductions, as far as the time left allows.

Sizes stop growing when the next one would overrun the section's budget; what was skipped
is said in the results. Results: ``benchmarks/results/gpu_<card>/results.{md,json}`` and
``log.txt`` (``gpu_check_<platform>`` without a GPU), compared with reference figures
measured on one H100; all of it is also copied (flat) to ``$OUT`` when that is set.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from benchmarks.run import _errors, _machine, _run_child

ROOT = Path(__file__).resolve().parent.parent
MODULE = "benchmarks.gpu_check"

SIZES = {
    "tiny": {
        "budget_s": 120, "exact_paths": 2**13, "dim": 40, "sim_paths": [256, 512], "sim_steps": 10, "repeats": 2,
        "copy_floats": 2**20, "resp_paths": 256, "memory_steps": [10, 40], "time_steps": [10],
        "train_paths": 64, "train_batch": 32, "extra_memory": False,
    },
    "cpu": {
        "budget_s": 900, "exact_paths": 2**16, "dim": 40, "sim_paths": [1024, 2048, 4096], "sim_steps": 50,
        "repeats": 3, "copy_floats": 2**24, "resp_paths": 1024, "memory_steps": [100, 1000, 4000],
        "time_steps": [100], "train_paths": 1024, "train_batch": 512, "extra_memory": True,
    },
    "gpu": {
        "budget_s": 400, "exact_paths": 2**22, "dim": 40, "sim_paths": [2**16, 2**17, 2**18, 2**19, 2**20],
        "sim_steps": 200, "repeats": 5, "copy_floats": 2**28, "resp_paths": 16384,
        "memory_steps": [100, 1000, 4000], "time_steps": [100, 1000, 4000], "train_paths": 16384,
        "train_batch": 1024, "extra_memory": True,
    },
}  # fmt: skip

# Relative weights of the time budget; the time a section leaves unused goes to the later ones.
WEIGHTS = {"exact": 1.0, "speed": 3.0, "memory": 3.0, "paper": 2.0}

# Figures measured on one H100 (Lorenz-96, d = 40, float32), for the comparison table.
H100 = {
    "scan_ms": 0.39, "scan_floor_ms": 0.11, "dk_ms": 1.51, "dk_over_scan": 3.9, "vbt_ms": 0.97, "vbt_over_scan": 35.0,
    "backprop_ms": 2.5, "backprop_gb": {100: 0.14, 1000: 0.27, 4000: 0.54},
}  # fmt: skip


# --------------------------------------------------------------------------------------
# Running inside a section's process


class Section:
    """A section's results as they accrue, printed after every step so a killed process keeps them."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), budget_s
        self.out = {"rows": [], "skipped": [], "failed": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, predicted_s: float) -> bool:
        return self.elapsed() + predicted_s <= self.budget_s

    def skip(self, what: str) -> None:
        self.out["skipped"].append(f"{what} (budget {self.budget_s:.0f} s, {self.elapsed():.0f} s used)")
        self.emit()

    def attempt(self, what: str, function):
        """Runs ``function() -> row``; records the row, or the failure, and returns the row (or None)."""
        started = time.perf_counter()
        try:
            row = function()
        except Exception as exc:  # noqa: BLE001 - recorded, and the section goes on
            self.out["failed"].append({"what": what, "error": _summary(exc), "detail": str(exc)[-3000:]})
            row = None
        else:
            self.out["rows"].append({"what": what, **row, "wall_s": time.perf_counter() - started})
        print(f"[{self.elapsed():6.1f} s] {what}: {'failed' if row is None else 'done'}", file=sys.stderr, flush=True)
        self.emit()
        return row

    def emit(self) -> None:
        print("RESULT " + json.dumps(self.out, default=float), flush=True)


def _summary(exc: Exception) -> str:
    """One line saying what went wrong (JAX wraps errors raised inside callbacks in long tracebacks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b.*: ", ln) and not ln.startswith("INTERNAL")]
    message = causes[-1] if causes else f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return message.replace("|", "/")[:400]


def _z_check(estimate, stderr, exact, max_rel_se, what):
    """A row judging ``estimate`` against ``exact`` in standard errors (|z| < 5 and a useful error bar)."""
    z = (estimate - exact) / stderr
    row = {"estimate": estimate, "exact": exact, "stderr": stderr, "z": z, "rel_stderr": abs(stderr / exact)}
    if not (abs(z) < 5.0 and abs(stderr / exact) < max_rel_se):
        raise AssertionError(f"{what}: {estimate:.6g} vs exact {exact:.6g}, z = {z:.2f}, stderr {stderr:.3g}")
    return row


def exact_child(spec) -> dict:
    """float32 and float64 DK responses and scores against the exact Euler-Maruyama-chain values."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)  # for the float64 side; every array below has an explicit dtype
    import dkjax
    from tests.helpers import em_ou_moments, z_score

    paths, sec = spec["cfg"]["exact_paths"], Section(spec["budget_s"])
    t1, steps = 1.0, 50
    dt = t1 / steps
    # Bounds on the relative standard error at 10^5 paths, shrinking as 1/sqrt(paths): about 2x the
    # observed for OU, 4x for GBM (its sigma-derivative has heavy tails, so its error estimate varies).
    bound = lambda at_1e5: at_1e5 * np.sqrt(1e5 / paths)

    def ou_moment(theta, sigma):
        m, v = em_ou_moments(theta, sigma, 1.0, 0.0, dt, steps)
        return m * m + v

    moments = {"ou": ou_moment, "gbm": lambda mu, sigma: ((1 + mu * dt) ** 2 + sigma**2 * dt) ** steps}
    systems = {
        "ou": (lambda a, b: dkjax.OrnsteinUhlenbeck(a, b, jnp.zeros((), a.dtype)), (1.5, 0.8), ("theta", "sigma"), 0.05),
        "gbm": (dkjax.GeometricBrownianMotion, (0.2, 0.5), ("mu", "sigma"), 0.25),
    }
    for name, (make, (a, b), names, at_1e5) in systems.items():
        exact = jax.grad(moments[name], argnums=(0, 1))(jnp.float64(a), jnp.float64(b))
        for dtype in (jnp.float32, jnp.float64):
            label = f"{name} {jnp.dtype(dtype).name}"
            sde = make(jnp.asarray(a, dtype), jnp.asarray(b, dtype))
            response = {}

            def run(sde=sde, dtype=dtype, response=response):
                response["r"] = dkjax.observable_response(
                    sde, lambda x: x[0] ** 2, jnp.ones((paths, 1), dtype), t1=t1, num_steps=steps, key=jax.random.key(0),
                    kernel_rate=3.0, chunk_size=paths,
                )  # fmt: skip
                return {"dtype": str(response["r"].value.dtype)}

            if sec.attempt(f"{label}: observable_response", run) is None:
                continue
            for i, p in enumerate(names):
                sec.attempt(
                    f"{label}: d/d{p} E[X_T^2]",
                    lambda p=p, i=i, r=response["r"]: _z_check(
                        float(getattr(r.estimate, p)), float(getattr(r.stderr, p)), float(exact[i]), bound(at_1e5), p
                    ),
                )

    # The DK score of OU from a point mass: E[(score - exact score(x)) x^k] = 0, k = 0, 1, 2.
    mean, var = em_ou_moments(1.5, 0.8, 1.0, 0.0, dt, steps)
    for dtype in (jnp.float32, jnp.float64):

        def score_rows(dtype=dtype):
            sde = dkjax.OrnsteinUhlenbeck(jnp.asarray(1.5, dtype), jnp.asarray(0.8, dtype), jnp.asarray(0.0, dtype))
            res = dkjax.divergence_kernel(
                sde, jnp.ones((paths, 1), dtype), t1=t1, num_steps=steps, key=jax.random.key(1), kernel_rate=3.0
            )
            x = np.asarray(res.x[:, 0], np.float64)
            error = np.asarray(res.score[:, 0], np.float64) + (x - mean) / var
            u = (x - x.mean()) / x.std()
            zs, ses = [], []
            for k in range(3):
                m, se = z_score(error * u**k)
                zs.append(m / se)
                ses.append(se)
            scale = 1.0 / np.sqrt(var)  # the exact score's spread
            row = {"dtype": str(res.score.dtype), "z": zs, "rel_stderr": max(ses) / scale}
            if max(abs(z) for z in zs) >= 5.0 or row["rel_stderr"] >= bound(0.05):
                raise AssertionError(f"score: z = {zs}, relative stderr {row['rel_stderr']:.3g}")
            return row

        sec.attempt(f"ou {jnp.dtype(dtype).name}: score against the exact score", score_rows)
    return sec.out


def _copy_bandwidth(jax, num_floats: int, repeats: int) -> float:
    """Bytes per second of one read and one write of a float32 array (the device's memory bandwidth)."""
    import jax.numpy as jnp

    from benchmarks.run import _time_side_by_side

    x = jnp.arange(num_floats, dtype=jnp.float32)  # not zeros: some hardware runs faster on them
    timing = _time_side_by_side({"copy": jax.jit(lambda a: a * 1.0001 + 1.0)}, (x,), 4 * repeats)["copy"]
    return 2 * 4 * num_floats / timing["median_s"]


def _diffrax_vbt(sde, t1, steps):
    """Euler through ``diffrax.diffeqsolve`` on the same grid, noise from one ``VirtualBrownianTree`` per path."""
    import diffrax
    import jax
    import jax.numpy as jnp

    from benchmarks.run import diffrax_euler_paths

    def run(x0, key):
        # diffrax wants ts[-1] == t1 exactly, which (t1 / steps) * steps misses in float32.
        ts = (jnp.arange(steps + 1, dtype=x0.dtype) * (t1 / steps)).at[-1].set(t1)
        shape = jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype)
        brownian = lambda path_id: diffrax.VirtualBrownianTree(
            0.0, t1, tol=t1 / steps / 2, shape=shape, key=jax.random.fold_in(key, path_id)
        )
        return diffrax_euler_paths(sde, brownian, ts, x0)

    return run


def speed_child(spec) -> dict:
    """The scan, simulate, diffrax with a Brownian tree and DK, side by side at growing path counts."""
    import jax
    import numpy as np

    import dkjax
    from benchmarks.core_overhead import hand_written_scan
    from benchmarks.run import _l96_start, _time_side_by_side

    cfg, sec = spec["cfg"], Section(spec["budget_s"])
    dim, steps = cfg["dim"], cfg["sim_steps"]
    t1 = 0.005 * steps
    sde = dkjax.Lorenz96(8.0, 0.5)
    bandwidth = sec.attempt("copy bandwidth", lambda: {"bytes_per_s": _copy_bandwidth(jax, cfg["copy_floats"], cfg["repeats"])})
    functions = {
        "scan": jax.jit(lambda x, k: hand_written_scan(x, k, forcing=8.0, noise=0.5, dt=t1 / steps, num_steps=steps)),
        "simulate": jax.jit(lambda x, k: dkjax.simulate(sde, x, t1=t1, num_steps=steps, key=k)),
        "diffrax_vbt": jax.jit(_diffrax_vbt(sde, t1, steps)),
        "dk": jax.jit(
            lambda x, k: dkjax.divergence_kernel(sde, x, t1=t1, num_steps=steps, key=k, kernel_rate=10.0, on_nonfinite="ignore")
        ),
    }

    def measure(paths):
        x0, key = _l96_start(jax, paths, dim), jax.random.key(0)
        timed = _time_side_by_side(functions, (x0, key), cfg["repeats"])
        # Correctness of what was timed: DK follows simulate's noise; the scan and diffrax draw
        # other noise, so their moments are compared.
        ours, dk = functions["simulate"](x0, key), functions["dk"](x0, key)
        # Equal up to rounding, which the chaotic flow amplifies on a few paths: judge the 99th percentile.
        per_path = np.max(np.abs(np.asarray(dk.x) - np.asarray(ours)), axis=1) / np.max(np.abs(np.asarray(ours)))
        deviation = float(np.quantile(per_path, 0.99))
        if deviation > 1e-3 or int(dk.num_nonfinite):
            raise AssertionError(f"DK states differ from simulate's by {deviation:.2g} (relative), {int(dk.num_nonfinite)} non-finite")
        for name in ("scan", "diffrax_vbt"):
            other = functions[name](x0, key)
            if not (abs(float(ours.mean() - other.mean())) < 0.1 and abs(float(ours.std() / other.std()) - 1) < 0.03):
                raise AssertionError(f"{name}: moments differ from simulate's")
        ms = {name: 1e3 * t["median_s"] / steps for name, t in timed.items()}
        row = {"paths": paths, "steps": steps, **{f"{n}_ms_per_step": v for n, v in ms.items()}}
        row |= {f"{n}_compile_s": t["compile_s"] for n, t in timed.items()}
        row |= {
            "simulate_over_scan": ms["simulate"] / ms["scan"], "dk_over_simulate": ms["dk"] / ms["simulate"],
            "dk_over_scan": ms["dk"] / ms["scan"], "vbt_over_scan": ms["diffrax_vbt"] / ms["scan"],
            "dk_states_rel_deviation_p99": deviation, "dk_states_rel_deviation_max": float(np.max(per_path)),
        }  # fmt: skip
        if bandwidth:
            row["scan_floor_ms_per_step"] = 1e3 * 2 * x0.nbytes / bandwidth["bytes_per_s"]
        return row

    last = None
    for i, paths in enumerate(cfg["sim_paths"]):
        # The next size costs about twice the last (compilation aside): stop before the budget runs out.
        if last is not None and not sec.fits(2.2 * last):
            sec.skip(f"{', '.join(map(str, cfg['sim_paths'][i:]))} paths")
            break
        started = time.perf_counter()
        sec.attempt(f"{paths} paths", lambda paths=paths: measure(paths))
        last = time.perf_counter() - started
    return sec.out


def memory_child(spec) -> dict:
    """Training steps and the Lorenz-96 estimator against backprop through diffrax: memory vs steps, time."""
    import jax

    from benchmarks.run import _time_side_by_side, l96_functions
    from benchmarks.run import memory_child as configuration

    cfg, sec = spec["cfg"], Section(spec["budget_s"])
    train = {"paths": cfg["train_paths"], "batch": cfg["train_batch"], "x64": False}
    # dt = 2^-8: the backprop baseline builds its time grid as t1 * k / steps, which must end
    # exactly at t1 for diffrax; with dt = 0.005 it misses by one float32 rounding.
    l96 = {"paths": cfg["resp_paths"], "dim": cfg["dim"], "x64": False, "dt": 2.0**-8}
    # In order of importance: the training comparison, the estimator's memory, backprop's speed, the rest.
    plan = [
        (f"train:{m}", s, {**train, "time": 2 if s in cfg["time_steps"] else 0})
        for s in cfg["memory_steps"] for m in ("dk_two_pass", "backprop")
    ]  # fmt: skip
    plan += [(k, s, l96) for k in ("divergence_kernel", "observable_response chunk", "backprop (diffrax)") for s in cfg["memory_steps"]]
    plan += [("time:l96", cfg["memory_steps"][0], l96)]
    if cfg["extra_memory"]:
        plan += [(f"train:{m}", s, train) for m in ("dk_chunked", "backprop_batched") for s in cfg["memory_steps"]]

    def l96_timing(steps, extra):
        functions = l96_functions(jax, {**extra, "steps": steps})
        pick = {"dk chunk": functions["observable_response chunk"], "backprop": functions["backprop (diffrax)"]}
        timed = _time_side_by_side(pick, (), cfg["repeats"])
        return {f"{n}_ms_per_step": 1e3 * t["median_s"] / steps for n, t in timed.items()} | {"paths": extra["paths"]}

    last, per_step = 0.0, {}
    for i, (kind, steps, extra) in enumerate(plan):
        # A timed training step costs its compilation (about the last item's wall time) plus its calls.
        calls = 3 * per_step.get(kind, 0.0) * steps if extra.get("time") else 0.0
        if i and not sec.fits(last + calls):
            sec.skip("; ".join(f"{k} at {s} steps" for k, s, _ in plan[i:]))
            break
        started = time.perf_counter()
        if kind == "time:l96":
            sec.attempt(f"Lorenz-96 backprop and DK response chunk, time per step at {steps} steps", lambda: l96_timing(steps, extra))
        else:
            row = sec.attempt(f"{kind} at {steps} steps", lambda: {"kind": kind, "steps": steps, **configuration({"kind": kind, "steps": steps, **extra})})
            if row and "seconds_per_step" in row:
                per_step[kind] = row["seconds_per_step"] / steps
        last = time.perf_counter() - started
    return sec.out


def paper_child(spec) -> dict:
    """One paper reproduction at its full size, through its own command line."""
    import importlib

    module = importlib.import_module(f"benchmarks.{spec['name']}")
    sys.argv = [spec["name"], "--size", "full", "--out", spec["out"]]
    started = time.perf_counter()
    module.main()
    return {"wall_s": time.perf_counter() - started, "results_md": (Path(spec["out"]) / "results.md").read_text()}


# --------------------------------------------------------------------------------------
# The parent: budget, sections, report


def card_name(machine: dict) -> str:
    """``gpu_<card>`` from the device kind ("NVIDIA H200" -> ``gpu_nvidia_h200``), else ``gpu_check_<platform>``."""
    if machine.get("platform") == "gpu":
        return "gpu_" + (re.sub(r"[^a-z0-9]+", "_", machine.get("device_kind", "").lower()).strip("_") or "unknown")
    return f"gpu_check_{machine.get('platform', 'unknown')}"


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows])


def _rows(results, section):
    return results["sections"].get(section, {}).get("rows", [])


def comparison(results) -> tuple[str, str]:
    """The H100 comparison table and the targets table, from whatever was measured."""
    speed = [r for r in _rows(results, "speed") if "paths" in r]
    big, small = (speed[-1], speed[0]) if speed else ({}, {})
    memory = {(r["kind"], r["steps"]): r for r in _rows(results, "memory") if "kind" in r}
    timing = next((r for r in _rows(results, "memory") if "backprop_ms_per_step" in r), {})
    at = lambda r: f" ({r['paths']} paths)" if r and r.get("paths") != 2**20 else ""
    gb = lambda kind, s: memory[(kind, s)]["peak_bytes"] / 1e9 if (kind, s) in memory else None
    steps = sorted({s for _, s in memory})
    rows = [
        ["hand-written scan EM, 2^20 paths" + at(big), "ms/step", H100["scan_ms"], big.get("scan_ms_per_step")],
        ["its bandwidth floor" + at(big), "ms/step", H100["scan_floor_ms"], big.get("scan_floor_ms_per_step")],
        ["dkjax.simulate, 2^20 paths" + at(big), "ms/step", None, big.get("simulate_ms_per_step")],
        ["minimal DK step, 2^20 paths" + at(big), "ms/step", H100["dk_ms"], big.get("dk_ms_per_step")],
        ["  DK / scan", "ratio", H100["dk_over_scan"], big.get("dk_over_scan")],
        ["diffrax Euler + VirtualBrownianTree, 2^16 paths" + at(small) if small.get("paths") != 2**16 else
         "diffrax Euler + VirtualBrownianTree, 2^16 paths", "ms/step", H100["vbt_ms"], small.get("diffrax_vbt_ms_per_step")],
        ["  diffrax VBT / scan", "ratio", H100["vbt_over_scan"], small.get("vbt_over_scan")],
        ["diffrax backprop, 16k paths" + at(timing), "ms/step", H100["backprop_ms"], timing.get("backprop_ms_per_step")],
        ["DK response chunk, same paths" + at(timing), "ms/step", None, timing.get("dk chunk_ms_per_step")],
    ]  # fmt: skip
    for s in steps:
        rows.append([f"diffrax backprop peak memory, {s} steps", "GB", H100["backprop_gb"].get(s), gb("backprop (diffrax)", s)])
        rows.append([f"DK estimator peak memory, {s} steps", "GB", None, gb("divergence_kernel", s)])
    h100 = _table(["measure (Lorenz-96, d = 40, float32)", "unit", "H100", results["machine"].get("device_kind") or "here"], rows)

    def ratio(a, b):
        return a / b if a is not None and b else None

    def status(value, limit):
        return "-" if value is None else ("met" if value <= limit else "missed")

    train = lambda m, s: memory.get((f"train:{m}", s), {}).get("seconds_per_step")
    timed = [s for s in steps if train("dk_two_pass", s) and train("backprop", s)]
    t_steps = 1000 if 1000 in timed or not timed else max(timed)
    targets = []
    for what, value, limit in [
        ("simulate <= 1.1x the scan" + at(big), big.get("simulate_over_scan"), 1.1),
        ("DK <= 3x simulate" + at(big), big.get("dk_over_simulate"), 3.0),
        (f"DK-SDE training step faster than backprop at {t_steps} steps (DK / backprop)",
         ratio(train("dk_two_pass", t_steps), train("backprop", t_steps)), 1.0),
    ]:  # fmt: skip
        targets.append([what, value, status(value, limit)])
    for kind in ("divergence_kernel", "observable_response chunk", "train:dk_two_pass", "train:dk_chunked", "backprop (diffrax)", "train:backprop"):
        have = [s for s in steps if (kind, s) in memory]
        if len(have) >= 2:
            flat = memory[(kind, have[-1])]["peak_bytes"] / memory[(kind, have[0])]["peak_bytes"]
            dk = not ("backprop" in kind)
            targets.append([f"peak memory {have[-1]} / {have[0]} steps: {kind}", flat, status(flat, 1.05) if dk else "(baseline)"])
    return h100, _table(["target", "value", "status"], targets)


def markdown(results) -> str:
    m = results["machine"]
    lines = [
        f"# GPU check ({results['size']} size)\n",
        f"Machine: {m.get('platform')}:{m.get('device_kind')} ({m.get('processor')}), {m.get('cpu_count')} CPU cores, "
        f"jax {m.get('jax')}. float32 unless said. Budget {results['budget_s']:.0f} s; wall time "
        f"{results.get('wall_s', 0.0):.0f} s. Times are medians of warm calls of jitted functions measured side by side.\n",
    ]
    if not results["gpu"]:
        lines.append(
            "**No GPU here: only the CPU-sized parts ran.** The GPU parts were skipped: the 2^16 to 2^20-path speed "
            "comparisons, the 16k-path training and backprop comparisons, and the full-size paper reproductions.\n"
        )
    status = []
    for name, section in results["sections"].items():
        state = "failed" if _errors(section) or section.get("failed") else ("skipped" if section.get("not_run") else "ok")
        notes = [section["not_run"]] if section.get("not_run") else []
        notes += [f"skipped {s}" for s in section.get("skipped", [])]
        notes += [f"FAILED {f['what']}: {f['error']}" for f in section.get("failed", [])]
        notes += [f"ERROR {section['error']}"] if section.get("error") else []
        status.append([name, state, section.get("wall_s"), " ".join("; ".join(notes).replace("|", "/").split()) or "-"])
    lines += ["## Sections\n", _table(["section", "status", "wall s", "notes"], status), ""]
    h100, targets = comparison(results)
    lines += ["## Against the H100 reference figures\n", h100, "", "## Targets\n", targets, ""]
    exact = _rows(results, "exact")
    if exact:
        lines += ["## Exact references (|z| < 5 and a bounded standard error pass)\n"]
        lines.append(_table(["check", "estimate", "exact", "stderr", "z"],
                            [[r["what"], r.get("estimate"), r.get("exact"), r.get("stderr"), _fmt(r.get("z"))] for r in exact if "z" in r]))  # fmt: skip
        lines.append("")
    speed = [r for r in _rows(results, "speed") if "paths" in r]
    if speed:
        bandwidth = next((r["bytes_per_s"] for r in _rows(results, "speed") if "bytes_per_s" in r), None)
        lines.append(f"## Speed (Lorenz-96, d = 40, {speed[0]['steps']} steps; copy bandwidth {_fmt(bandwidth and bandwidth / 1e9)} GB/s)\n")
        keys = ["paths", "scan_ms_per_step", "scan_floor_ms_per_step", "simulate_ms_per_step", "dk_ms_per_step",
                "diffrax_vbt_ms_per_step", "simulate_over_scan", "dk_over_simulate", "vbt_over_scan", "dk_compile_s"]  # fmt: skip
        heads = ["paths", "scan ms", "floor ms", "simulate ms", "DK ms", "diffrax VBT ms", "sim / scan", "DK / sim", "VBT / scan", "DK compile s"]
        lines += [_table(heads, [[r.get(k) for k in keys] for r in speed]), ""]
    memory = [r for r in _rows(results, "memory") if "kind" in r]
    if memory:
        lines.append("## Memory (XLA compiled: arguments + outputs + temporaries) and training-step time\n")
        lines.append(f"Training: NeuralSDE 2-D (width 64, depth 2), {SIZES[results['size']]['train_paths']} paths; Lorenz-96: "
                     f"{SIZES[results['size']]['resp_paths']} paths.\n")  # fmt: skip
        rows = [[r["kind"], r["steps"], r["peak_bytes"] / 2**20, r["temp_bytes"] / 2**20, r.get("seconds_per_step"),
                 r["seconds_per_step"] * 1e3 / r["steps"] if r.get("seconds_per_step") else None] for r in memory]  # fmt: skip
        lines += [_table(["what", "steps", "peak MiB", "temp MiB", "s / training step", "ms / time step"], rows), ""]
    for name, section in results["sections"].items():
        if section.get("results_md"):
            lines += [f"## Paper reproduction: {name.removeprefix('paper:')}\n", section["results_md"].split("\n", 1)[-1], ""]
    return "\n".join(lines)


def _publish(out: Path, results: dict, log: list[str]) -> None:
    """Writes results.{json,md} and log.txt, and copies the outputs flat into ``$OUT`` when it is set."""
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text(markdown(results))
    (out / "log.txt").write_text("\n".join(log) + "\n")
    target = os.environ.get("OUT")
    if not target:
        return
    files = [out / "results.md", out / "results.json", out / "log.txt"]
    files += sorted((p for p in out.glob("paper_*/*") if p.suffix in (".md", ".png")), key=lambda p: (p.suffix != ".md", str(p)))
    for path in files[:8]:  # the device tool returns at most 8 files
        name = path.name if path.parent == out else f"{path.parent.name}_{path.name}"
        shutil.copyfile(path, Path(target) / name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("auto", *SIZES), default="auto", help="auto: gpu on a GPU, else cpu")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all sections (default per size)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/gpu_<card>)")
    parser.add_argument("--sections", nargs="+", choices=("exact", "speed", "memory", "paper"), default=None,
                        help="run only these sections (default all; paper runs on a GPU only)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, spec = args.child
        print("RESULT " + json.dumps(globals()[name](json.loads(spec)), default=float), flush=True)
        return 0

    start = time.perf_counter()
    log = []

    def say(message):
        log.append(f"[{time.perf_counter() - start:6.1f} s] {message}")
        print(log[-1], flush=True)

    machine = _machine()
    gpu = machine.get("platform") == "gpu"
    size = args.size if args.size != "auto" else ("gpu" if gpu else "cpu")
    cfg = SIZES[size]
    budget = args.budget if args.budget is not None else cfg["budget_s"]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / card_name(machine)
    out.mkdir(parents=True, exist_ok=True)
    results = {"size": size, "gpu": gpu, "machine": machine, "budget_s": budget, "config": cfg, "sections": {}}
    say(f"machine {machine}; size {size}, budget {budget:.0f} s, results in {out}")
    if not gpu:
        say("no GPU: running the CPU-sized parts only; the GPU parts (full sizes, paper reproductions) are skipped")

    sections = ["exact", "speed", "memory"] + (["paper:paper_density_1d", "paper:paper_lorenz96_stationary"] if gpu else [])
    sections = [s for s in sections if args.sections is None or s.split(":")[0] in args.sections]
    for i, name in enumerate(sections):
        remaining = budget - (time.perf_counter() - start)
        later = sum(WEIGHTS[s.split(":")[0]] for s in sections[i:])
        share = remaining * WEIGHTS[name.split(":")[0]] / later
        if name.startswith("paper:"):
            share = remaining  # whatever is left; the second paper runs only if the first left enough
        if share < (60 if name.startswith("paper:") else 5):
            results["sections"][name] = {"not_run": f"not run: {max(remaining, 0):.0f} s of the budget left"}
            say(f"section {name}: not run ({remaining:.0f} s left)")
            _publish(out, results, log)
            continue
        if name.startswith("paper:"):
            child, spec = "paper_child", {"name": name.split(":")[1], "out": str(out / name.split(":")[1])}
        else:
            child, spec = f"{name}_child", {"cfg": cfg, "budget_s": share}
        timeout = share + max(30.0, 0.5 * share) if not name.startswith("paper:") else share
        say(f"section {name}: budget {share:.0f} s, hard timeout {timeout:.0f} s")
        started = time.perf_counter()
        section = _run_child(child, spec, timeout=timeout, module=MODULE)
        section["wall_s"] = time.perf_counter() - started
        if name.startswith("paper:") and section.get("error", "").startswith("timed out"):
            # A reproduction that does not fit in the time left is not a failure of the check.
            section["not_run"] = f"did not finish in the {timeout:.0f} s left: stopped"
            del section["error"]
        results["sections"][name] = section
        say(f"section {name}: {len(section.get('rows', []))} rows, skipped {section.get('skipped', [])}, "
            f"failed {section.get('failed', [])}, error {section.get('error')}")  # fmt: skip
        _publish(out, results, log)
    results["wall_s"] = time.perf_counter() - start
    failed = [name for name, s in results["sections"].items() if s.get("error") or s.get("failed")]
    say(f"done in {results['wall_s']:.0f} s; failed sections: {failed or 'none'}")
    _publish(out, results, log)
    print("\n" + markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

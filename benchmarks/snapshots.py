"""Fitting an SDE to population snapshots: DK-SDE (both objectives) against backpropagation
through diffrax on the same loss, and against the snapshot-interpolation baseline.

The problem: a 2-D gradient flow ``dX = -grad V dt + 0.5 dB``, ``V = (x1^2 - 1)^2 / 4 + x2^2 / 4``,
from ``N((-1.8, 1.5), 0.2^2 I)``: the population falls into the left well and drifts down
in x2 (out of equilibrium). Snapshots at t = 0.3, 0.6, 1.2 (1000 points each, from a
3000-step reference grid) train the model; t = 0.9 is held out (interpolation) and t = 1.5
is the forecast. The model is a
``GradientFlowSDE`` with a structured quartic potential (5 coefficients, started as a single
well) and a learned noise level (started at 0.3): every method trains the same model from the same start with Adam (cosine schedule) for
the same number of optimisation steps, at 100 and at 1000 Euler-Maruyama steps.

Reported per method and grid: energy distance and sliced Wasserstein at the held-out time and
at the forecast time (2000 model samples against 1000 held-out points), the noise level, the
training wall time (compilation included, evaluations excluded), and the peak memory of one
training step as XLA's compiled memory analysis (arguments + outputs + temporaries; device
memory statistics are unavailable on the CPU).

Run: ``python -m benchmarks.snapshots`` (2-core CPU, about 10 minutes).
"""

import argparse
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import optax

import dkjax
from dkjax._engine._save_at import grid_steps
from dkjax._generative._train import _make_train_step

from ._common import ROOT, machine, markdown_table, to_json, write_results

TRAIN_TIMES, HELD_OUT, FORECAST, T1, SIGMA = (0.3, 0.6, 1.2), 0.9, 1.5, 1.5, 0.5


class Quartic(eqx.Module):
    """``U(x) = e^{c_0} x1^4 + c_1 x1^2 + c_2 x2^2 + c_3 x1 + c_4 x2``."""

    c: jax.Array

    def __call__(self, x):
        return jnp.concatenate([jnp.exp(self.c[:1]), self.c[1:]]) @ jnp.array([x[0] ** 4, x[0] ** 2, x[1] ** 2, x[0], x[1]])


class DoubleWell(dkjax.AbstractSDE):
    sigma: jax.Array

    def drift(self, t, x):
        return jnp.array([-x[0] * (x[0] ** 2 - 1), -0.5 * x[1]])

    def diffusion(self, t, x):
        return self.sigma * jnp.ones_like(x)


def compiled_memory(jitted, *args) -> dict:
    """XLA's accounting of an ``eqx.filter_jit`` function's memory: arguments + outputs + temporaries - aliases."""
    compiled = jitted.lower(*args).compile()
    stats = getattr(compiled, "compiled", compiled).memory_analysis()
    peak = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return {"temp_bytes": stats.temp_size_in_bytes, "peak_bytes": peak - stats.alias_size_in_bytes}


def start_model():
    return dkjax.GradientFlowSDE(2, key=jr.key(0), sigma_init=0.3,
                                 potential=Quartic(jnp.array([0.0, 0.0, 0.5, 0.0, 0.0])))  # fmt: skip


def make_data(n: int):
    initial = dkjax.GaussianInitial(jnp.array([-1.8, 1.5]), 0.2)
    times = sorted(TRAIN_TIMES + (HELD_OUT, FORECAST))
    x0 = initial(jr.key(100), n)[0]
    fine = dkjax.simulate(DoubleWell(jnp.array(SIGMA)), x0, t1=T1, num_steps=3000, key=jr.key(101), save_at=dkjax.SaveAt(ts=times))
    return {t: fine[times.index(t)] for t in times}, initial


def backprop_fit(model, train, initial, *, num_steps, steps, num_paths, learning_rate, key):
    """Adam on the summed per-time energy distances, gradient by reverse mode through diffrax (Euler)."""
    times = jnp.asarray(sorted(train))
    points = tuple(train[t] for t in sorted(train))
    ts = T1 * jnp.arange(num_steps + 1) / num_steps
    optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.01)))  # fmt: skip
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def states_at_times(sde, x0, key):
        num, dim = x0.shape
        per_path = lambda f: lambda t, y, args: jax.vmap(f, in_axes=(None, 0))(t, y.reshape(num, dim)).reshape(-1)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(per_path(sde.drift)),
            diffrax.ControlTerm(lambda t, y, args: lx.DiagonalLinearOperator(per_path(sde.diffusion)(t, y, args)),
                                dkjax.BrownianIncrements(key, 0.0, T1, num_steps, dim=num * dim)),
        )  # fmt: skip
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), 0.0, T1, None, x0.reshape(-1),
                                  stepsize_controller=diffrax.StepTo(ts=ts), saveat=diffrax.SaveAt(ts=times),
                                  max_steps=num_steps)  # fmt: skip
        return sol.ys.reshape(len(points), num, dim)

    @eqx.filter_jit
    def step(params, opt_state, key):
        init_key, path_key = jr.split(key)
        x0 = initial(init_key, num_paths)[0]

        def loss_fn(p):
            xs = states_at_times(eqx.combine(p, static), x0, path_key)
            return sum(dkjax.energy_distance(xs[k], points[k]) for k in range(len(points)))

        loss, grad = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    memory = compiled_memory(step, params, opt_state, key)
    start = time.perf_counter()
    for s in range(steps):
        params, opt_state, _ = step(params, opt_state, jr.fold_in(key, s))
    jax.block_until_ready(params)
    return eqx.combine(params, static), time.perf_counter() - start, memory


def dk_memory(model, train, initial, *, num_steps, num_paths, objective, method):
    """XLA's peak bytes of one ``dkjax.fit`` training step on these snapshots."""
    snaps = dkjax.Snapshots(train)
    steps = grid_steps(snaps.times, 0.0, T1, num_steps)
    optimizer = optax.adam(1e-2)
    step = _make_train_step(initial, optimizer, num_paths=num_paths, objective=objective, gradient=method, t0=0.0, t1=T1,
                            num_steps=num_steps, batch_size=num_paths, ess_target=32.0, observed=steps,
                            time_weights=snaps.weights)  # fmt: skip
    params, static = eqx.partition(model, eqx.is_inexact_array)
    h = tuple(jnp.asarray(0.1) for _ in snaps.times)
    return compiled_memory(step, params, static, optimizer.init(params), snaps.points, jr.key(0), jnp.asarray(5.0), h,
                           tuple(4 * v for v in h))  # fmt: skip


def score(model, initial, data, num_steps, key):
    x0 = initial(jr.fold_in(key, 0), 2000)[0]
    xs = dkjax.simulate(model, x0, t1=T1, num_steps=num_steps, key=key, save_at=dkjax.SaveAt(ts=[HELD_OUT, FORECAST]))
    out = {}
    for k, (name, t) in enumerate((("held_out", HELD_OUT), ("forecast", FORECAST))):
        out[f"{name}_energy_distance"] = float(dkjax.energy_distance(xs[k], data[t]))
        out[f"{name}_sliced_wasserstein"] = float(dkjax.sliced_wasserstein(xs[k], data[t], key=jr.fold_in(key, 7)))
    return out


def baseline(data, initial, key):
    interpolated = dkjax.interpolate_snapshots(data[0.6], data[1.2], 0.5, key=key)
    return {
        "held_out_energy_distance": float(dkjax.energy_distance(interpolated, data[HELD_OUT])),
        "held_out_sliced_wasserstein": float(dkjax.sliced_wasserstein(interpolated, data[HELD_OUT], key=jr.fold_in(key, 7))),
        "forecast_energy_distance": float(dkjax.energy_distance(data[1.2], data[FORECAST])),
        "forecast_sliced_wasserstein": float(dkjax.sliced_wasserstein(data[1.2], data[FORECAST], key=jr.fold_in(key, 7))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="optimisation steps per method")
    parser.add_argument("--paths", type=int, default=256, help="model paths per step")
    parser.add_argument("--grids", type=int, nargs="+", default=[100, 1000], help="Euler-Maruyama steps to t = 1.5")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "snapshots")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    args.out.mkdir(parents=True, exist_ok=True)
    data, initial = make_data(1000)
    train = {t: data[t] for t in TRAIN_TIMES}
    rows, records = [], []
    base = baseline(data, initial, jr.key(5))
    records.append({"method": "interpolation baseline", **base})
    rows.append(["interpolation / last snapshot", "-", base["held_out_energy_distance"], base["held_out_sliced_wasserstein"],
                 base["forecast_energy_distance"], base["forecast_sliced_wasserstein"], "-", "-", "-"])  # fmt: skip
    options = dict(steps=args.steps, num_paths=args.paths, learning_rate=0.05, key=jr.key(1))
    for num_steps in args.grids:
        for objective in ("energy", "kl"):
            start = time.perf_counter()
            fitted, _ = dkjax.fit(start_model(), train, initial, t1=T1, num_steps=num_steps, batch_size=1000,
                                  final_lr_fraction=0.01, objective=objective, validation=None, progress=False,
                                  **options)  # fmt: skip
            wall = time.perf_counter() - start
            memory = dk_memory(start_model(), train, initial, num_steps=num_steps, num_paths=args.paths,
                               objective=objective, method="per_path")  # fmt: skip
            lean = dk_memory(start_model(), train, initial, num_steps=num_steps, num_paths=args.paths,
                             objective=objective, method="two_pass")  # fmt: skip
            records.append({"method": f"dk_{objective}", "num_steps": num_steps, "wall_s": wall, "memory": memory,
                            "memory_two_pass": lean, "noise_level": float(fitted.noise_level),
                            **score(fitted, initial, data, num_steps, jr.key(9))})  # fmt: skip
        fitted, wall, memory = backprop_fit(start_model(), train, initial, num_steps=num_steps, **options)
        records.append({"method": "backprop_energy", "num_steps": num_steps, "wall_s": wall, "memory": memory,
                        "noise_level": float(fitted.noise_level), **score(fitted, initial, data, num_steps, jr.key(9))})  # fmt: skip
        for r in records[-3:]:
            mib = r["memory"]["peak_bytes"] / 2**20
            if "memory_two_pass" in r:
                mib = f"{mib:.3g} (two-pass {r['memory_two_pass']['peak_bytes'] / 2**20:.3g})"
            rows.append([r["method"], num_steps, r["held_out_energy_distance"], r["held_out_sliced_wasserstein"],
                         r["forecast_energy_distance"], r["forecast_sliced_wasserstein"], r["noise_level"], r["wall_s"],
                         mib])  # fmt: skip
        print(markdown_table(HEADERS, rows), flush=True)
    table = markdown_table(HEADERS, rows)
    setting = (f"{machine()}; {args.paths} paths, {args.steps} Adam steps (lr 0.05 cosine to 1%), float64; "
               f"1000 points per snapshot; true noise level {SIGMA}; held-out t = {HELD_OUT}, forecast t = {FORECAST}")  # fmt: skip
    write_results(args.out, {"setting": setting, "records": to_json(records)}, f"{setting}\n\n{table}",
                  "Snapshots: double-well gradient flow")  # fmt: skip


HEADERS = ["method", "EM steps", "ED held-out t=0.9", "SW held-out", "ED forecast t=1.5", "SW forecast",
           "noise level (0.5)", "train wall s", "step peak MiB (XLA)"]  # fmt: skip

if __name__ == "__main__":
    main()

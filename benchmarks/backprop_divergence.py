"""The divergence of backpropagation: d/dF E[mean(X_T^2)] for Lorenz-96 (d = 40) over growing T.

Backpropagation through ``diffrax.diffeqsolve`` differentiates single chaotic paths, whose
derivatives grow like ``exp(lambda_max T)``: its estimate is fine for short T and then
diverges. DK (kernel rate above the covector growth rate) and finite differences of the
law (common random numbers, a step large enough not to follow single paths) stay bounded.
All methods start from the same spun-up states and use the same Brownian increments.

    python -m benchmarks.backprop_divergence --size small
"""

import jax
import jax.numpy as jnp

import dkjax
from dkjax._response._plots import plot_response_vs_parameter

from ._common import Timer, machine, markdown_table, setup, write_results


def mean_square(x):
    return jnp.mean(x**2)


def main():
    cfg, out, size = setup("backprop_divergence", "backprop_divergence.toml", __doc__.splitlines()[0])
    sde = dkjax.Lorenz96(forcing=cfg["forcing"], noise=cfg["noise"])
    dt, num = cfg["dt"], cfg["num_paths"]
    keys = jax.random.split(jax.random.key(cfg["seed"]), 4)
    start = 8.0 * jax.random.uniform(keys[0], (num, cfg["dim"]))
    attractor = dkjax.simulate(sde, start, t1=cfg["attractor_time"], num_steps=round(cfg["attractor_time"] / dt), key=keys[1])
    # From a uniform start, Euler-Maruyama at dt = 0.01 blows up on about 1 path in 3e4: drop those.
    attractor = attractor[jnp.all(jnp.isfinite(attractor), axis=1)]
    spun = dkjax.divergence_kernel(
        sde, attractor, t1=cfg["score_spinup_time"], num_steps=round(cfg["score_spinup_time"] / dt), key=keys[2],
        kernel_rate=cfg["kernel_rate"],
    )
    x0, score0 = spun.x[spun.finite], spun.score[spun.finite]
    rows, records = [], []
    series = {"backprop (diffrax)": ([], []), "DK": ([], []), "finite differences": ([], [])}
    for i, horizon in enumerate(cfg["horizons"]):
        steps = round(horizon / dt)
        kwargs = dict(t1=horizon, num_steps=steps, key=jax.random.fold_in(keys[3], i))
        with Timer() as t_bp:
            bp = dkjax.backprop_response(sde, mean_square, x0[: cfg["backprop_paths"]], chunk_size=cfg["backprop_paths"], **kwargs)
        with Timer() as t_dk:
            dk = dkjax.observable_response(sde, mean_square, x0, score0=score0, kernel_rate=cfg["kernel_rate"],
                                           chunk_size=cfg["chunk_size"], **kwargs)
        with Timer() as t_fd:
            fd = dkjax.finite_difference_response(sde, mean_square, x0, relative_step=cfg["fd_relative_step"],
                                                  chunk_size=cfg["chunk_size"], **kwargs)
        record = {"T": horizon, "steps": steps}
        for name, res, timer in (("backprop", bp, t_bp), ("dk", dk, t_dk), ("fd", fd, t_fd)):
            record[name] = {
                "estimate": float(res.estimate.forcing), "stderr": float(res.stderr.forcing), "num_paths": res.num_paths,
                "num_nonfinite": res.num_nonfinite, "wall_time_s": timer.seconds,
            }
        records.append(record)
        for label, key in zip(series, ("backprop", "dk", "fd")):
            series[label][0].append(record[key]["estimate"])
            series[label][1].append(record[key]["stderr"])
        rows.append([
            horizon,
            *[f"{record[k]['estimate']:.4g} +- {record[k]['stderr']:.2g}" for k in ("backprop", "dk", "fd")],
            *[round(record[k]["wall_time_s"], 1) for k in ("backprop", "dk", "fd")],
        ])
        print(rows[-1], flush=True)
    table = markdown_table(
        ["T", "backprop d/dF", "DK d/dF", "FD d/dF", "backprop s", "DK s", "FD s"], rows
    ) + (
        f"\n\nL96 additive noise, d = {cfg['dim']}, F = {cfg['forcing']}, noise {cfg['noise']}, dt = {dt}; "
        f"paths: DK and FD {x0.shape[0]}, backprop {cfg['backprop_paths']}; DK kernel rate {cfg['kernel_rate']}; "
        f"FD relative step {cfg['fd_relative_step']}; estimates +- one standard error; {machine()}."
    )
    plot_response_vs_parameter(
        cfg["horizons"], series, out / "backprop_divergence.png", xlabel="T", ylabel="d/dF E[mean(x_T^2)]",
        title="Lorenz-96 (d = 40): backprop diverges, DK does not", symlog=True,
    )
    write_results(out, {"size": size, "config": cfg, "machine": machine(), "horizons": records}, table,
                  f"Backpropagation vs DK vs finite differences over T ({size})")


if __name__ == "__main__":
    main()

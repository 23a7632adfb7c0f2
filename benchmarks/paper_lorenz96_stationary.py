"""Paper reproduction 2: stationary responses of <mean(x^2)> for multiplicative-noise Lorenz-96.

For each (F, s) on a grid: ``dkjax.stationary_response`` (DK along long paths, windowed
``(dlogp_n - dlogp_{n-W})``) against ``dkjax.finite_difference_stationary`` (central
differences of the time average, common random numbers), both w.r.t. the forcing F and the
noise level s, with batch-means error bars and wall times.

    python -m benchmarks.paper_lorenz96_stationary --size small
"""

import itertools

import jax
import jax.numpy as jnp

import dkjax
from dkjax._response._plots import plot_response_vs_parameter, plot_window_plateau

from ._common import Timer, machine, markdown_table, setup, write_results


def mean_square(x):
    return jnp.mean(x**2)


def main():
    cfg, out, size = setup("paper_lorenz96_stationary", "lorenz96_stationary.toml", __doc__.splitlines()[0])
    dt, num = cfg["dt"], cfg["num_paths"]
    report = cfg["windows"].index(cfg["report_window"])
    common = dict(dt=dt, spinup_steps=cfg["spinup_steps"], num_steps=cfg["num_steps"], sample_every=cfg["sample_every"],
                  num_blocks=cfg["num_blocks"])
    rows, records = [], []
    for i, (forcing, level) in enumerate(itertools.product(cfg["forcings"], cfg["noise_levels"])):
        sde = dkjax.Lorenz96Multiplicative(forcing=forcing, noise_level=level)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg["seed"]), i), 3)
        start = 8.0 * jax.random.uniform(keys[0], (num, cfg["dim"]))
        x0 = dkjax.simulate(sde, start, t1=cfg["attractor_time"], num_steps=round(cfg["attractor_time"] / dt), key=keys[1])
        # From a uniform start, Euler-Maruyama at dt = 0.01 blows up on about 1 path in 3e4: drop those.
        x0 = x0[jnp.all(jnp.isfinite(x0), axis=1)]
        with Timer() as t_dk:
            dk = dkjax.stationary_response(sde, mean_square, x0, windows=cfg["windows"], key=keys[2],
                                           kernel_rate=cfg["kernel_rate"], **common)
            jax.block_until_ready(dk.estimate)
        with Timer() as t_fd:
            fd = dkjax.finite_difference_stationary(sde, mean_square, x0, key=keys[2],
                                                    relative_step=cfg["fd_relative_step"], **common)
            jax.block_until_ready(fd.estimate)
        record = {"F": forcing, "s": level, "mean_x2": float(dk.value), "mean_x2_stderr": float(dk.value_stderr),
                  "dk_wall_time_s": t_dk.seconds, "fd_wall_time_s": t_fd.seconds,
                  "dk_num_nonfinite": dk.num_nonfinite, "fd_num_nonfinite": fd.num_nonfinite,
                  "windows_time": dk.window_times}
        for name in ("forcing", "noise_level"):
            record[f"dk_{name}"] = getattr(dk.estimate, name)
            record[f"dk_{name}_stderr"] = getattr(dk.stderr, name)
            record[f"fd_{name}"] = float(getattr(fd.estimate, name))
            record[f"fd_{name}_stderr"] = float(getattr(fd.stderr, name))
        records.append(record)
        cell = lambda e, s: f"{float(e):.3g} +- {float(s):.2g}"
        rows.append([
            forcing, level, round(float(dk.value), 3),
            cell(dk.estimate.forcing[report], dk.stderr.forcing[report]), cell(fd.estimate.forcing, fd.stderr.forcing),
            cell(dk.estimate.noise_level[report], dk.stderr.noise_level[report]),
            cell(fd.estimate.noise_level, fd.stderr.noise_level), round(t_dk.seconds, 1), round(t_fd.seconds, 1),
        ])
        print(rows[-1], flush=True)
        for name in ("forcing", "noise_level"):
            plot_window_plateau(
                dk, out / f"plateau_{name}_F{forcing:g}_s{level:g}.png", parameter=name,
                reference=(float(getattr(fd.estimate, name)), float(getattr(fd.stderr, name))),
                reference_label="finite differences",
                title=f"L96 multiplicative, F = {forcing:g}, s = {level:g}: d<mean x^2>/d{name}",
            )
    for name in ("forcing", "noise_level"):
        for level in cfg["noise_levels"]:
            chosen = [r for r in records if r["s"] == level]
            plot_response_vs_parameter(
                [r["F"] for r in chosen],
                {"DK (W = %g)" % (cfg["report_window"] * dt): ([float(r[f"dk_{name}"][report]) for r in chosen],
                                                                [float(r[f"dk_{name}_stderr"][report]) for r in chosen]),
                 "finite differences": ([r[f"fd_{name}"] for r in chosen], [r[f"fd_{name}_stderr"] for r in chosen])},
                out / f"response_{name}_vs_F_s{level:g}.png", xlabel="forcing F", ylabel=f"d<mean x^2>/d{name}",
                title=f"noise level s = {level:g}",
            )
    table = markdown_table(
        ["F", "s", "<mean x^2>", "DK d/dF", "FD d/dF", "DK d/ds", "FD d/ds", "DK s", "FD s"], rows
    ) + (
        f"\n\nd = {cfg['dim']}, dt = {dt}, {num} paths x {cfg['num_steps']} steps after spin-up, DK kernel rate "
        f"{cfg['kernel_rate']}, DK window W = {cfg['report_window'] * dt:g} time units (plateau plots show all W), "
        f"FD relative step {cfg['fd_relative_step']}; +- one batch-means standard error "
        f"({num} paths x {cfg['num_blocks']} blocks); {machine()}."
    )
    write_results(out, {"size": size, "config": cfg, "machine": machine(), "grid": records}, table,
                  f"Stationary responses of multiplicative-noise Lorenz-96, DK vs finite differences ({size})")


if __name__ == "__main__":
    main()

"""Paper reproduction 2: stationary responses of <mean(x^2)> for multiplicative-noise Lorenz-96.

For each (F, s) on a grid: ``dkjax.stationary_response`` (DK along long paths, windowed
``(dlogp_n - dlogp_{n-W})``, the window chosen on the plateau of the estimate over a grid of
windows from the same run) against ``dkjax.finite_difference_stationary`` (central differences
of the time average, common random numbers), both w.r.t. the forcing F and the noise level s,
with batch-means error bars and wall times. The table, results.json and every figure come from
one run.

    python -m benchmarks.paper_lorenz96_stationary --size small
"""

import itertools
import math

import jax
import jax.numpy as jnp

import dkjax
from dkjax._response._plots import plot_response_vs_parameter, plot_window_plateau
from dkjax._response._stationary import auto_windows

from ._common import Timer, machine, markdown_table, setup, write_results

PARAMETERS = ("forcing", "noise_level")


def mean_square(x):
    return jnp.mean(x**2)


def windows_for(cfg) -> list[int]:
    """The ``windows="auto"`` grid of the run, with ``extra_windows`` added."""
    grid = auto_windows(cfg["sample_every"], cfg["num_steps"], cfg["num_blocks"])
    return sorted(set(grid) | set(cfg.get("extra_windows", [])))


def cell(estimate, stderr) -> str:
    return f"{float(estimate):.3g} +- {float(stderr):.2g}"


def main():
    cfg, out, size = setup("paper_lorenz96_stationary", "lorenz96_stationary.toml", __doc__.splitlines()[0])
    dt, num = cfg["dt"], cfg["num_paths"]
    windows = windows_for(cfg)
    compare = windows.index(cfg["compare_window"])
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
            dk = dkjax.stationary_response(sde, mean_square, x0, windows=windows, key=keys[2],
                                           kernel_rate=cfg["kernel_rate"], **common)
            jax.block_until_ready(dk.estimate)
        with Timer() as t_fd:
            fd = dkjax.finite_difference_stationary(sde, mean_square, x0, key=keys[2],
                                                    relative_step=cfg["fd_relative_step"], **common)
            jax.block_until_ready(fd.estimate)
        record = {"F": forcing, "s": level, "num_paths": int(x0.shape[0]), "mean_x2": float(dk.value),
                  "mean_x2_stderr": float(dk.value_stderr), "dk_wall_time_s": t_dk.seconds,
                  "fd_wall_time_s": t_fd.seconds, "dk_num_nonfinite": dk.num_nonfinite,
                  "fd_num_nonfinite": fd.num_nonfinite, "windows_time": dk.window_times,
                  "chosen_window_time": dk.window_time, "plateau": dk.plateau}
        for name in PARAMETERS:
            est, se = float(getattr(dk.chosen_estimate, name)), float(getattr(dk.chosen_stderr, name))
            fd_est, fd_se = float(getattr(fd.estimate, name)), float(getattr(fd.stderr, name))
            record[f"dk_{name}"] = getattr(dk.estimate, name)
            record[f"dk_{name}_stderr"] = getattr(dk.stderr, name)
            record[f"dk_{name}_difference_stderr"] = getattr(dk.difference_stderr, name)
            record[f"dk_{name}_chosen"], record[f"dk_{name}_chosen_stderr"] = est, se
            record[f"fd_{name}"], record[f"fd_{name}_stderr"] = fd_est, fd_se
            # Agreement in combined standard errors (the two runs share their noise, so this is conservative).
            record[f"{name}_z"] = (est - fd_est) / math.hypot(se, fd_se)
        records.append(record)
        fixed = lambda name: cell(getattr(dk.estimate, name)[compare], getattr(dk.stderr, name)[compare])
        rows.append([
            forcing, level, round(float(dk.value), 3), f"{dk.window_time:.1f}" + ("" if dk.plateau else " (no plateau)"),
            cell(record["dk_forcing_chosen"], record["dk_forcing_chosen_stderr"]), fixed("forcing"),
            cell(fd.estimate.forcing, fd.stderr.forcing), f"{record['forcing_z']:+.1f}",
            cell(record["dk_noise_level_chosen"], record["dk_noise_level_chosen_stderr"]),
            cell(fd.estimate.noise_level, fd.stderr.noise_level), f"{record['noise_level_z']:+.1f}",
            f"{dk.num_nonfinite} / {fd.num_nonfinite}", round(t_dk.seconds, 1), round(t_fd.seconds, 1),
        ])
        print(rows[-1], flush=True)
        for name in PARAMETERS:
            curve = zip(dk.window_times.tolist(), getattr(dk.estimate, name).tolist(), getattr(dk.stderr, name).tolist())
            print(f"  d/d{name} by W:", " ".join(f"{t:g}:{e:.3g}+-{s:.2g}" for t, e, s in curve), flush=True)
        for name in PARAMETERS:
            plot_window_plateau(
                dk, out / f"plateau_{name}_F{forcing:g}_s{level:g}.png", parameter=name,
                reference=(float(getattr(fd.estimate, name)), float(getattr(fd.stderr, name))),
                reference_label="finite differences",
                title=f"L96 multiplicative, F = {forcing:g}, s = {level:g}: d<mean x^2>/d{name}",
            )
    for name in PARAMETERS:
        for level in cfg["noise_levels"]:
            chosen = [r for r in records if r["s"] == level]
            plot_response_vs_parameter(
                [r["F"] for r in chosen],
                {"DK (chosen W)": ([r[f"dk_{name}_chosen"] for r in chosen], [r[f"dk_{name}_chosen_stderr"] for r in chosen]),
                 "DK (W = %g)" % (cfg["compare_window"] * dt): ([float(r[f"dk_{name}"][compare]) for r in chosen],
                                                                 [float(r[f"dk_{name}_stderr"][compare]) for r in chosen]),
                 "finite differences": ([r[f"fd_{name}"] for r in chosen], [r[f"fd_{name}_stderr"] for r in chosen])},
                out / f"response_{name}_vs_F_s{level:g}.png", xlabel="forcing F", ylabel=f"d<mean x^2>/d{name}",
                title=f"noise level s = {level:g}",
            )
    fixed_w = f"DK d/dF, W = {cfg['compare_window'] * dt:g}"
    table = markdown_table(
        ["F", "s", "<mean x^2>", "chosen W", "DK d/dF", fixed_w, "FD d/dF", "z", "DK d/ds", "FD d/ds", "z",
         "lost DK / FD", "DK s", "FD s"], rows
    ) + (
        f"\n\nSize `{size}`: d = {cfg['dim']}, dt = {dt}, {num} paths x {cfg['num_steps']} steps after spin-up "
        f"(sampled every {cfg['sample_every']} steps), DK kernel rate {cfg['kernel_rate']}, FD relative step "
        f"{cfg['fd_relative_step']}; +- one batch-means standard error ({num} paths x {cfg['num_blocks']} blocks); "
        f"{machine()}. DK windows: the `windows=\"auto\"` grid from {windows[0] * dt:g} to "
        f"{max(auto_windows(cfg['sample_every'], cfg['num_steps'], cfg['num_blocks'])) * dt:g} time units plus "
        f"W = {cfg['compare_window'] * dt:g}; \"chosen W\" is the shortest window whose estimate differs from every "
        f"longer one's by at most 2 standard errors of the difference (both parameters; 2 raised for the number of "
        f"comparisons, Bonferroni), and \"DK d/dF\", \"DK d/ds\" are read there. z = (DK - FD) / sqrt(se_DK^2 + se_FD^2). \"lost\": paths excluded as non-finite or diverged."
    )
    write_results(out, {"size": size, "config": cfg, "windows": windows, "machine": machine(), "grid": records}, table,
                  f"Stationary responses of multiplicative-noise Lorenz-96, DK vs finite differences ({size})")


if __name__ == "__main__":
    main()

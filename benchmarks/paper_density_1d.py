"""Paper reproduction 1: density response and score of a 1-D multiplicative-noise SDE at T = 0.3.

DK bin averages ``E[dlogp | X_T in bin]`` and ``E[score | X_T in bin]`` against the exact
bin averages ``d/dparam log P(bin)`` and ``(p(b) - p(a)) / P(bin)`` of the Euler-Maruyama
chain, whose density is propagated on a fine grid (``tests/helpers.grid_density_1d``).
Figure: ``log p_T`` with short segments whose slopes are the DK score (a), and
``log p_T(x; gamma)`` against ``gamma`` with segments whose slopes are the DK response (b).

    python -m benchmarks.paper_density_1d --size small
"""

import jax
import jax.numpy as jnp
import numpy as np

import dkjax
from dkjax._plotting import pyplot
from dkjax._response._plots import plot_density_response, plot_slope_segments
from tests.helpers import grid_density_1d

from ._common import Timer, machine, markdown_table, setup, write_results


class Multiplicative1D(dkjax.AbstractSDE):
    """``dX = (gamma sin(2X) - X) dt + noise (1.5 + cos X) dB``."""

    gamma: jax.Array
    noise: jax.Array

    def drift(self, t, x):
        return self.gamma * jnp.sin(2 * x) - x

    def diffusion(self, t, x):
        return self.noise * (1.5 + jnp.cos(x))


def main():
    cfg, out, size = setup("paper_density_1d", "paper_density_1d.toml", __doc__.splitlines()[0])
    gamma0, noise0, std0 = cfg["gamma"], cfg["noise"], cfg["x0_std"]
    t1, steps = cfg["t1"], cfg["num_steps"]
    dt = t1 / steps
    edges = jnp.linspace(cfg["bins_low"], cfg["bins_high"], cfg["num_bins"] + 1)
    grid = jnp.linspace(cfg["grid_low"], cfg["grid_high"], cfg["grid_points"])
    sde = Multiplicative1D(jnp.asarray(gamma0), jnp.asarray(noise0))

    def p_T(gamma, noise):
        law = Multiplicative1D(gamma, noise)
        p0 = jnp.exp(-0.5 * (grid / std0) ** 2) / (std0 * jnp.sqrt(2 * jnp.pi))
        return grid_density_1d(lambda x: law.drift(0.0, x), lambda x: law.diffusion(0.0, x), p0, grid, dt, steps)

    def bin_mass(gamma, noise):
        p = p_T(gamma, noise)
        cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (p[1:] + p[:-1]) * jnp.diff(grid))])
        return jnp.diff(jnp.interp(edges, grid, cdf))

    with Timer() as t_ref:
        p = p_T(gamma0, noise0)
        mass = bin_mass(gamma0, noise0)
        d_mass = jax.jacfwd(bin_mass, argnums=(0, 1))(gamma0, noise0)
        d_logp = jax.jacfwd(lambda g, s: jnp.log(p_T(g, s)), argnums=(0, 1))(gamma0, noise0)
        p_edges = jnp.interp(edges, grid, p)
    widths = jnp.diff(edges)
    reference = {
        "density": mass / widths,
        "response_gamma": d_mass[0] / widths,
        "response_noise": d_mass[1] / widths,
        "dlogp_gamma": d_mass[0] / mass,
        "dlogp_noise": d_mass[1] / mass,
        "score": jnp.diff(p_edges) / mass,
    }

    def sampler(key, n):
        x0 = std0 * jax.random.normal(key, (n, 1))
        return x0, -x0 / std0**2

    with Timer() as t_dk:
        res = dkjax.density_response(
            sde, sampler, num_paths=cfg["num_paths"], chunk_size=cfg["chunk_size"], t1=t1, num_steps=steps,
            key=jax.random.key(cfg["seed"]), bins=edges, kernel_rate=cfg["kernel_rate"],
        )
        jax.block_until_ready(res.density)
    estimates = {
        "density": (res.density, res.density_stderr),
        "response_gamma": (res.response.gamma, res.response_stderr.gamma),
        "response_noise": (res.response.noise, res.response_stderr.noise),
        "dlogp_gamma": (res.dlogp_mean.gamma, res.dlogp_mean_stderr.gamma),
        "dlogp_noise": (res.dlogp_mean.noise, res.dlogp_mean_stderr.noise),
        "score": (res.score_mean[:, 0], res.score_mean_stderr[:, 0]),
    }
    rows, summary = [], {}
    for name, (est, se) in estimates.items():
        ref = np.asarray(reference[name])
        z = np.abs(np.asarray(est) - ref) / np.asarray(se)
        entry = {
            "rms_reference": float(np.sqrt(np.mean(ref**2))),
            "rms_error": float(np.sqrt(np.mean((np.asarray(est) - ref) ** 2))),
            "rms_stderr": float(np.sqrt(np.mean(np.asarray(se) ** 2))),
            "mean_abs_z": float(np.mean(z)),
            "max_abs_z": float(np.max(z)),
        }
        summary[name] = entry
        rows.append([name, *entry.values()])
    table = markdown_table(["quantity (per bin)", "RMS reference", "RMS error", "RMS stderr", "mean |z|", "max |z|"], rows)
    table += (
        f"\n\n{res.num_paths} paths ({res.num_nonfinite} non-finite), {cfg['num_bins']} bins, T = {t1}, "
        f"{steps} steps; DK wall time {t_dk.seconds:.1f} s, grid reference {t_ref.seconds:.1f} s; {machine()}."
    )

    # Figure (a): tangents from the DK score; (b): log p_T(x; gamma) against gamma, DK response slopes.
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    inside = (grid > edges[0] - 0.3) & (grid < edges[-1] + 0.3)
    centres = np.asarray(res.points[:, 0])
    plot_slope_segments(np.asarray(grid[inside]), np.log(np.asarray(p[inside])), centres, np.asarray(res.score_mean[:, 0]),
                        None, xlabel="x", ylabel="log p_T(x)", title="(a) slopes: DK score E[score | bin]", ax=axes[0])
    gammas = gamma0 + np.linspace(-cfg["gamma_span"], cfg["gamma_span"], 13)
    log_mass = np.log(np.stack([np.asarray(bin_mass(g, noise0)) for g in gammas]))  # (gammas, bins)
    # The law is symmetric in x (odd drift, even noise, symmetric start): show one half.
    chosen = np.linspace(len(centres) // 2, len(centres) - 2, 5).astype(int)
    half = 0.15
    for b in chosen:
        line = axes[1].plot(gammas, log_mass[:, b] - np.log(widths[b]), "-", lw=1, label=f"x = {centres[b]:.2f}")[0]
        at = np.log(float(mass[b] / widths[b]))
        slope = float(res.dlogp_mean.gamma[b])
        axes[1].plot([gamma0 - half, gamma0 + half], [at - slope * half, at + slope * half], "-", lw=3,
                     color=line.get_color(), alpha=0.6)
    axes[1].set(xlabel="gamma", ylabel="log p_T(x; gamma) (bin average)", title="(b) slopes: DK response E[dlogp | bin]")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "log_density_slopes.png", dpi=120)
    plt.close(fig)
    plot_density_response(
        res, out / "density_response.png", parameter="gamma",
        reference={
            "density": (np.asarray(grid[inside]), np.asarray(p[inside])),
            "response": (np.asarray(grid[inside]), np.asarray((p * d_logp[0])[inside])),
            "dlogp": (np.asarray(grid[inside]), np.asarray(d_logp[0][inside])),
            "score": (np.asarray(grid[inside]), np.asarray(jnp.gradient(jnp.log(p), grid)[inside])),
        },
    )
    write_results(
        out,
        {
            "size": size, "config": cfg, "machine": machine(), "wall_time_dk_s": t_dk.seconds,
            "wall_time_reference_s": t_ref.seconds, "num_paths": res.num_paths, "num_nonfinite": res.num_nonfinite,
            "kernel_rate": res.kernel_rate, "summary": summary, "bin_centres": centres,
            "estimates": {k: {"estimate": v[0], "stderr": v[1]} for k, v in estimates.items()},
            "reference": reference,
        },
        table,
        f"DK density response of a 1-D multiplicative-noise SDE at T = {t1} ({size})",
    )


if __name__ == "__main__":
    main()

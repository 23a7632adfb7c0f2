"""Structured prior: recover the forcing and noise level of stochastic Lorenz-96 from snapshots.

A Lorenz-96-structured SDE with learnable forcing F and log noise level is trained by
``dkjax.fit`` on 20-dimensional snapshots at time T of the true system (F = 8, noise 0.5)
from a known Gaussian initial law. Usage:

    python examples/lorenz96_prior.py --objective energy --steps 300 --paths 2048
"""

import argparse
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import dkjax


def lorenz96_drift(x, forcing):
    """``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` with periodic indices."""
    return (jnp.roll(x, -1, axis=-1) - jnp.roll(x, 2, axis=-1)) * jnp.roll(x, 1, axis=-1) - x + forcing


class Lorenz96Prior(dkjax.AbstractSDE):
    """``dX = L96_F(X) dt + exp(log_noise) dB``: the Lorenz-96 structure with two learnable numbers."""

    forcing: jax.Array
    log_noise: jax.Array

    def drift(self, t, x):
        return lorenz96_drift(x, self.forcing)

    def diffusion(self, t, x):
        return jnp.exp(self.log_noise) * jnp.ones_like(x)


def recover(objective="energy", *, steps=300, num_paths=2048, num_data=4096, t1=0.5, num_steps=50, lr=0.05,
            kernel_rate="auto", ess_target=32.0, dtype=jnp.float32):
    """Trains ``Lorenz96Prior`` from F = 6, noise = 1 on snapshots of the true system; returns ``(F, noise, history)``."""
    data, snapshot_initial = dkjax.lorenz96_snapshots(jr.key(0), num_data, dim=20, forcing=8.0, noise=0.5, t1=t1)
    initial = lambda key, n: tuple(a.astype(dtype) for a in snapshot_initial(key, n))
    model = Lorenz96Prior(forcing=jnp.asarray(6.0, dtype), log_noise=jnp.log(jnp.asarray(1.0, dtype)))
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.1))
    model, history = dkjax.fit(
        model, data.astype(dtype), initial, t1=t1, num_steps=num_steps, key=jr.key(1), steps=steps,
        optimizer=optimizer, num_paths=num_paths, batch_size=min(num_data, 2048), kernel_rate=kernel_rate,
        objective=objective, ess_target=ess_target, progress=False,
    )  # fmt: skip
    return float(model.forcing), float(jnp.exp(model.log_noise)), history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", choices=["kl", "energy"], default="energy")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--paths", type=int, default=2048)
    parser.add_argument("--data", type=int, default=4096)
    parser.add_argument("--t1", type=float, default=0.5)
    parser.add_argument("--num-steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--kernel-rate", default="auto")
    parser.add_argument("--ess-target", type=float, default=32.0)
    args = parser.parse_args()
    start = time.perf_counter()
    forcing, noise, history = recover(
        args.objective, steps=args.steps, num_paths=args.paths, num_data=args.data, t1=args.t1,
        num_steps=args.num_steps, lr=args.lr, ess_target=args.ess_target,
        kernel_rate=args.kernel_rate if args.kernel_rate == "auto" else float(args.kernel_rate),
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    print(
        f"objective={args.objective} T={args.t1} paths={args.paths} steps={args.steps}: forcing {forcing:.4f} "
        f"(true 8, error {abs(forcing / 8 - 1):.1%}), noise {noise:.4f} (true 0.5, error {abs(noise / 0.5 - 1):.1%}), "
        f"{elapsed:.0f} s, final bandwidth {history['bandwidth'][-1]:.3g}, ESS {history['ess'][-1]:.3g}, "
        f"kernel rate {history['kernel_rate'][-1]:.3g}, stop: {history.stop_reason}"
    )


if __name__ == "__main__":
    main()

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
from dkjax._systems import lorenz96_drift


class Lorenz96Prior(dkjax.AbstractSDE):
    """``dX = L96_F(X) dt + exp(log_noise) dB``: the Lorenz-96 structure with two learnable numbers."""

    forcing: jax.Array
    log_noise: jax.Array

    def drift(self, t, x):
        return lorenz96_drift(x, self.forcing)

    def diffusion(self, t, x):
        return jnp.exp(self.log_noise) * jnp.ones_like(x)


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
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    rate = args.kernel_rate if args.kernel_rate == "auto" else float(args.kernel_rate)
    data, initial = dkjax.lorenz96_snapshots(jr.key(0), args.data, dim=20, forcing=8.0, noise=0.5, t1=args.t1)
    model = Lorenz96Prior(forcing=jnp.asarray(6.0), log_noise=jnp.log(jnp.asarray(1.0)))
    optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, args.steps, 0.1))
    start = time.perf_counter()
    model, history = dkjax.fit(
        model, data, initial, t1=args.t1, num_steps=args.num_steps, key=jr.key(1), steps=args.steps,
        optimizer=optimizer, num_paths=args.paths, batch_size=min(args.data, 2048), kernel_rate=rate,
        objective=args.objective, ess_target=args.ess_target, progress=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    forcing, noise = float(model.forcing), float(jnp.exp(model.log_noise))
    print(
        f"objective={args.objective} T={args.t1} paths={args.paths} steps={args.steps}: forcing {forcing:.4f} "
        f"(true 8, error {abs(forcing / 8 - 1):.1%}), noise {noise:.4f} (true 0.5, error {abs(noise / 0.5 - 1):.1%}), "
        f"{elapsed:.0f} s, final bandwidth {history['bandwidth'][-1]:.3g}, ESS {history['ess'][-1]:.3g}, "
        f"kernel rate {history['kernel_rate'][-1]:.3g}, stop: {history.stop_reason}"
    )


if __name__ == "__main__":
    main()

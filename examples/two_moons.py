"""A 2-D generative model: a neural SDE carries N(0, I) to the two-moons data, trained forward only.

The Python-API version of ``dkjax train --config configs/two_moons.toml``: ``dkjax.fit`` with
the smoothed-likelihood ("kl") objective and the automatic bandwidth and kernel-rate rules,
then samples and the energy distance to held-out data, against a best-fit Gaussian. Usage
(a few minutes on 2 CPU cores):

    python examples/two_moons.py --steps 800
"""

import argparse
import time

import jax.numpy as jnp
import jax.random as jr
import optax

import dkjax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--paths", type=int, default=1024)
    parser.add_argument("--plot", default=None, help="write a PNG of samples beside the data")
    args = parser.parse_args()

    data_key, heldout_key, model_key, fit_key, sample_key = jr.split(jr.key(0), 5)
    data = dkjax.toy_data("two_moons", data_key, 4096)
    heldout = dkjax.toy_data("two_moons", heldout_key, 2048)
    model = dkjax.NeuralSDE(2, key=model_key, width=64, depth=2, noise="scalar", sigma_init=0.5)
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    schedule = optax.cosine_decay_schedule(3e-3, args.steps, 0.1)
    start = time.perf_counter()
    model, history = dkjax.fit(
        model, data, initial, t1=1.0, num_steps=50, key=fit_key, steps=args.steps, optimizer=optax.adam(schedule),
        num_paths=args.paths, batch_size=512, kernel_rate="auto", ess_target=16.0,
    )  # fmt: skip
    if history.stop_reason is not None:
        raise SystemExit(history.stop_reason)
    samples = dkjax.sample(model, initial, 2048, t1=1.0, num_steps=50, key=sample_key)
    gaussian = jnp.mean(data, 0) + jr.normal(sample_key, (2048, 2)) @ jnp.linalg.cholesky(jnp.cov(data.T)).T
    print(f"trained in {time.perf_counter() - start:.0f} s, final loss {history.loss[-1]:.4g}")
    print(f"energy distance to held-out data: model {float(dkjax.energy_distance(samples, heldout)):.4f}, "
          f"best-fit Gaussian {float(dkjax.energy_distance(gaussian, heldout)):.4f}")  # fmt: skip
    if args.plot:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True, layout="constrained")
        for ax, points, label in ((axes[0], heldout, "held-out data"), (axes[1], samples, "DK-SDE samples")):
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, linewidths=0)
            ax.set_title(label)
        fig.suptitle("two moons")
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

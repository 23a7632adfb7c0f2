"""Learn a landscape and its noise level from population snapshots of a double-well gradient flow.

Data: 2000 samples at each of t = 0.25, 0.5, 1.0, 1.5 of dX = -grad V dt + 0.7 dB with
V = (x1^2 - 1)^2 + x2^2 / 2, from N(0, 0.3^2 I); t = 0.75 is held out. The model is a
dkjax.GradientFlowSDE whose potential is a quartic with learned coefficients (any Equinox
module x -> scalar works; the default is an MLP) and whose noise level is learned.

    python docs/examples/snapshots_double_well.py --steps 300 --paths 512
"""

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax

HERE = Path(__file__).resolve().parent
TIMES, HELD_OUT, SIGMA = (0.25, 0.5, 1.0, 1.5), 0.75, 0.7


class Quartic(eqx.Module):
    """``U(x) = e^{c_0} x1^4 + c_1 x1^2 + c_2 x2^2 + c_3 x1 + c_4 x2`` (quartic term kept positive)."""

    c: jax.Array

    def __call__(self, x):
        return jnp.concatenate([jnp.exp(self.c[:1]), self.c[1:]]) @ jnp.array([x[0] ** 4, x[0] ** 2, x[1] ** 2, x[0], x[1]])


class DoubleWell(dkjax.AbstractSDE):
    sigma: jax.Array

    def drift(self, t, x):
        return jnp.array([-4 * x[0] * (x[0] ** 2 - 1), -x[1]])

    def diffusion(self, t, x):
        return self.sigma * jnp.ones_like(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--paths", type=int, default=512)
    parser.add_argument("--figure", type=Path, default=HERE / "snapshots_double_well.png")
    args = parser.parse_args()

    initial = dkjax.GaussianInitial(jnp.zeros(2), 0.3)
    times = sorted(TIMES + (HELD_OUT,))
    x0 = initial(jr.key(100), 2000)[0]
    truth = dkjax.simulate(DoubleWell(jnp.array(SIGMA)), x0, t1=times[-1], num_steps=1200, key=jr.key(101),
                           save_at=dkjax.SaveAt(ts=times))
    data = {t: truth[times.index(t)] for t in TIMES}
    held_out = {HELD_OUT: truth[times.index(HELD_OUT)]}

    start = dkjax.GradientFlowSDE(2, key=jr.key(0), sigma_init=0.4,
                                  potential=Quartic(jnp.array([np.log(0.5), -0.5, 0.2, 0.0, 0.0])))  # fmt: skip
    fitted, history = dkjax.fit(start, data, initial, num_steps=60, key=jr.key(1), steps=args.steps,
                                num_paths=args.paths, learning_rate=0.05, final_lr_fraction=0.01, objective="kl",
                                validation=None, progress=False)  # fmt: skip
    c = np.asarray(fitted.potential_net.c)
    print(f"noise level sigma: {float(fitted.noise_level):.3f} (true {SIGMA})")
    print(f"potential: {np.exp(c[0]):.2f} x1^4 {c[1]:+.2f} x1^2 {c[2]:+.2f} x2^2 {c[3]:+.2f} x1 {c[4]:+.2f} x2 "
          "(true 1 x1^4 - 2 x1^2 + 0.5 x2^2)")  # fmt: skip
    score = dkjax.score_held_out(fitted, data, held_out, initial, t1=1.5, num_steps=60, key=jr.key(2))[0]
    print(f"held-out t = {HELD_OUT}: energy distance {score.energy_distance:.4f} "
          f"(interpolation baseline {score.baseline_energy_distance:.4f})")  # fmt: skip
    model = dkjax.GenerativeModel(fitted, initial, dkjax.DataScaling.identity(2), 0.0, 1.5, 60)
    dkjax.plot_snapshots(model, {**data, **held_out}, args.figure, key=jr.key(3), held_out=[HELD_OUT])
    print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()

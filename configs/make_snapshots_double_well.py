"""Writes configs/snapshots_double_well.npz, the data of configs/snapshots_double_well.toml.

Population snapshots of the 2-D gradient flow dX = -grad V(X) dt + 0.7 dB with the double-well
potential V = (x1^2 - 1)^2 + x2^2 / 2, started from N(0, 0.3^2 I): 600 points at each of
t = 0, 0.25, 0.5, 1.0 and 1.5. Each time has its own paths, as when every measurement destroys
what it measures. The arrays are named by their time ("t0.25", ...), float32.

    python configs/make_snapshots_double_well.py
"""

import sys
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "docs" / "examples"))
from snapshots_double_well import SIGMA, DoubleWell  # noqa: E402  the worked example's SDE

OUT = HERE / "snapshots_double_well.npz"
TIMES, POINTS = (0.25, 0.5, 1.0, 1.5), 600


def main():
    groups = len(TIMES) + 1  # one independent group of paths per time, the first one observed at t = 0
    x0 = dkjax.GaussianInitial(jnp.zeros(2), 0.3)(jr.key(100), groups * POINTS)[0]
    states = dkjax.simulate(DoubleWell(jnp.array(SIGMA)), x0, t1=TIMES[-1], num_steps=1200, key=jr.key(101),
                            save_at=dkjax.SaveAt(ts=TIMES))
    arrays = {"t0": x0[:POINTS]}
    for k, time in enumerate(TIMES, start=1):
        arrays[f"t{time:g}"] = states[k - 1, k * POINTS : (k + 1) * POINTS]
    np.savez_compressed(OUT, **{name: np.asarray(rows, np.float32) for name, rows in arrays.items()})
    print(f"{OUT}: {', '.join(f'{name} {rows.shape}' for name, rows in arrays.items())}")


if __name__ == "__main__":
    main()

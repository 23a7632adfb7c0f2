"""Where the KL objective's gradient settles a model of the data's own law: its spread, plain and jackknifed.

Model ``N(0, s^2 I)``, data ``N(0, I)``: the smoothed likelihood is smallest at ``s = 1``. The
exact score ``d/ds log p_s(X) = |X|^2 / s^3 - d / s`` stands in for the DK response, so only the
objective's weights are judged, at ``fit``'s defaults (1024 paths, the ESS rule at 32), with 256
data points a step. The expected gradient in ``s``, averaged over seeds, is measured at a few ``s``;
its zero, interpolated linearly between the two values that bracket it, is where training
settles. Run (about 2 minutes on a 2-core CPU)::

    python -m benchmarks.kl_ratio_bias
"""

import argparse
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax
from dkjax._generative._objective import ess_bandwidth, kl_weights

from ._common import ROOT, machine, markdown_table, write_results

SCALES = (0.85, 0.9, 0.95, 1.0, 1.05)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _gradients(key, s, dim, num_paths, num_data):
    """Plain and jackknifed KL gradient estimates in ``s`` for one seed."""
    x = s * jr.normal(jr.fold_in(key, 0), (num_paths, dim))
    data = jr.normal(jr.fold_in(key, 1), (num_data, dim))
    score = jnp.sum(x**2, axis=1) / s**3 - dim / s
    h = ess_bandwidth(data, x, dkjax.TRAIN_DEFAULTS.ess_target, 0.05, 4.0)
    return jnp.stack([kl_weights(x, data, h, jr.fold_in(key, 2), jackknife)[1] @ score for jackknife in (False, True)])


def _zero(scales, means) -> float | None:
    """The linearly interpolated zero of ``means`` over ``scales`` (first sign change), or ``None``."""
    for (s0, g0), (s1, g1) in zip(zip(scales, means), zip(scales[1:], means[1:])):
        if g0 <= 0.0 <= g1:
            return s0 + (s1 - s0) * (-g0) / (g1 - g0)
    return None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="2,5,10", help="comma-separated dimensions")
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kl_ratio_bias")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # 256 data points a step, not fit's 1024: each point's bias is the same, only the noise differs.
    paths, data = dkjax.TRAIN_DEFAULTS.num_paths, 256
    keys = jr.split(jr.key(0), args.seeds)
    rows, results = [], {}
    for dim in (int(d) for d in args.dims.split(",")):
        per_scale = []
        for s in SCALES:
            g = np.asarray(jax.lax.map(lambda k: _gradients(k, s, dim, paths, data), keys, batch_size=50), np.float64)
            per_scale.append((g.mean(0), g.std(0, ddof=1) / np.sqrt(args.seeds)))
        means = np.array([m for m, _ in per_scale])
        zeros = [_zero(SCALES, list(means[:, j])) for j in range(2)]
        results[dim] = {"scales": SCALES, "mean": means.tolist(), "se": [se.tolist() for _, se in per_scale],
                        "zero_plain": zeros[0], "zero_jackknife": zeros[1]}  # fmt: skip
        at_one = per_scale[SCALES.index(1.0)]
        rows.append([dim, f"{at_one[0][0]:+.3f} +- {at_one[1][0]:.3f}", zeros[0],
                     f"{at_one[0][1]:+.3f} +- {at_one[1][1]:.3f}", zeros[1]])  # fmt: skip
        print(rows[-1], flush=True)
    table = markdown_table(["d", "gradient at s = 1, plain", "zero, plain", "gradient at s = 1, jackknife",
                            "zero, jackknife"], rows)  # fmt: skip
    header = (f"Machine: {machine()}; {args.seeds} seeds, {paths} paths, {data} data points a step, ESS target "
              f"{dkjax.TRAIN_DEFAULTS.ess_target}; float32. The exact gradient is zero at s = 1.\n\n")  # fmt: skip
    title = "KL ratio bias: where training settles"
    write_results(args.out, {"dims": results, "seeds": args.seeds}, header + table, title)
    return results


if __name__ == "__main__":
    main()

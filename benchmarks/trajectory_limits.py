"""What limits the embryoid-body score: cheap diagnostics on the models ``benchmarks.trajectory`` saved.

For every fit in ``--out/fits.jsonl`` whose model file is there (``model_seed{s}_k{k}.eqx``), the
cells of k - 1 are pushed to k again, as ``dkjax.push_forward_score`` does (same key, same grid),
and the exact W1 against all real cells at k is set beside:

- the metric's own floor: W1 between two random halves of the real cells at k (half the sample
  size, so an upper bound on the floor at full size);
- where the error sits: the distance between the means, and W1 after centring both sets;
- the noise level: the fitted diffusion's root-mean-square at the pushed cells, and W1 with the
  fitted noise switched off, halved and doubled;
- the step size: W1 with 4 times as many Euler-Maruyama steps over the interval;
- training length: the validation energy distance at the last two evaluations (still falling?).

These use the left-out time and are diagnosis only: none of them selects a setting. Writes
``limits.md`` and ``limits.json`` to ``--out``; a fit already in ``limits.json`` is not diagnosed again.

Run: ``python -m benchmarks.trajectory_limits --data DIR`` after ``python -m benchmarks.trajectory``.
"""

import argparse
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax

from ._common import ROOT, markdown_table, to_json
from .trajectory import load

STEPS_PER_UNIT = 20   # benchmarks.trajectory's default grid


class _NoiseScaled(dkjax.AbstractSDE):
    """A fitted model with its diffusion multiplied by ``factor`` (the drift unchanged)."""

    base: dkjax.AbstractSDE
    factor: float

    def drift(self, t, x):
        return self.base.drift(t, x)

    def diffusion(self, t, x):
        return self.factor * self.base.diffusion(t, x)


def diagnose(model, data, k: float, key) -> dict:
    """The diagnostics of one fitted model at left-out time ``k`` (see the module docstring)."""
    before, real = jnp.asarray(data[k - 1]), data[k]

    def push(sde, refine=1):
        return np.asarray(dkjax.simulate(sde, before, t0=k - 1, t1=k, num_steps=STEPS_PER_UNIT * refine, key=key))

    pushed = push(model)
    halves = np.random.default_rng(0).permutation(len(real))
    sigma = np.asarray(jax.vmap(lambda x: model.diffusion(jnp.float32(k), x))(jnp.asarray(pushed)))
    return {
        "w1": dkjax.wasserstein1(pushed, real),
        "floor_halves": dkjax.wasserstein1(real[halves[: len(real) // 2]], real[halves[len(real) // 2:]]),
        "mean_gap": float(np.linalg.norm(pushed.mean(0) - real.mean(0))),
        "w1_centred": dkjax.wasserstein1(pushed - pushed.mean(0), real - real.mean(0)),
        "noise_rms": float(np.sqrt(np.mean(sigma**2))),
        **{f"w1_noise_x{f:g}": dkjax.wasserstein1(push(_NoiseScaled(model, f)), real) for f in (0.0, 0.5, 2.0)},
        "w1_steps_x4": dkjax.wasserstein1(push(model, refine=4), real),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with data.npy and sample_labels.npy")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trajectory")
    args = parser.parse_args()
    data = load(args.data)
    rows, found, saved = [], [], args.out / "limits.json"
    earlier = {(d["seed"], d["left_out"]): d for d in (json.loads(saved.read_text()) if saved.is_file() else [])}
    for record in map(json.loads, (args.out / "fits.jsonl").read_text().splitlines()):
        seed, k = record["seed"], record["left_out"]
        path = args.out / f"model_seed{seed}_k{k:g}.eqx"
        if (seed, k) in earlier:   # diagnosed by an earlier call (the models do not change)
            found.append(earlier[seed, k])
        elif path.is_file():
            model = eqx.tree_deserialise_leaves(path, dkjax.NeuralSDE.for_snapshots(5, key=jr.key(1000 + seed)))
            found.append({"seed": seed, "left_out": k, **diagnose(model, data, k, jr.key(10_000 + seed))})
        else:
            continue
        validation = [v["energy_distance"] for v in record.get("validation", [])][-2:]
        found[-1]["validation_last_two"] = validation
        d = found[-1]
        rows.append([seed, f"{k:g}", f"{d['w1']:.3f}", f"{d['floor_halves']:.3f}", f"{d['mean_gap']:.3f}",
                     f"{d['w1_centred']:.3f}", f"{d['noise_rms']:.3f}",
                     " / ".join(f"{d[f'w1_noise_x{f:g}']:.3f}" for f in (0.0, 0.5, 2.0)), f"{d['w1_steps_x4']:.3f}",
                     " -> ".join(f"{v:.4f}" for v in validation)])  # fmt: skip
    table = markdown_table(["seed", "k", "W1", "W1 of two halves of real k", "mean gap", "W1 centred",
                            "noise rms", "W1 noise x0 / x0.5 / x2", "W1 4x steps",
                            "validation energy, last two"], rows)  # fmt: skip
    saved.write_text(json.dumps(to_json(found), indent=2))
    (args.out / "limits.md").write_text(f"# What limits the EB score (diagnosis on the left-out time)\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

"""Trajectory inference on the embryoid-body (EB) data: the published leave-one-time-out protocol, exactly.

The data: EB scRNA-seq (Moon et al. 2019), 16819 cells at 5 time points (labels 0-4, one unit
apart), the first 5 principal components, standardised: TrajectoryNet's ``eb_velocity_v5.npz``
(KrishnaswamyLab/TrajectoryNet, ``data/``), ``pcs[:, :5]`` after ``StandardScaler`` on all its
PCs, as used by OT-CFM and [SF]2M. It is third-party data and not part of this repository: give
its folder with ``--data DIR`` holding ``data.npy`` (float, ``(16819, 5)``) and
``sample_labels.npy`` (int time labels, ``(16819,)``).

The protocol ([SF]2M, arXiv 2307.03672, Table 4 and section F.6; torchcfm's runner):

- leave out t = 1, 2, 3 in turn; fit one model per left-out time on the other four times;
- push **all** real cells of time k - 1 forward to k with the model (``dkjax.push_forward_score``:
  Euler-Maruyama from k - 1 on the model's own grid);
- score with exact W1 (POT's ``ot.emd2``, uniform weights, Euclidean cost) against **all** real
  cells at k; report the mean over k = 1, 2, 3, as mean +- std over seeds (default 5).

The model is ``dkjax.NeuralSDE.for_snapshots(5)`` started from the real t = 0 cells (the t = 0
snapshot is the initial law), fitted with ``dkjax.fit``'s defaults (KL objective) and the path
prior ``dkjax.Kinetic(weight)`` on a grid of ``--steps-per-unit`` Euler-Maruyama steps per unit
time over [0, 4]. Every setting is fixed before any score at a left-out time is seen: the model
and training settings are the library's documented defaults (command-line values below); the
model kept from each fit is chosen by ``fit``'s own validation: the energy distance to 10% of the
cells of each *training* time, held out from training (``validation=0.1``); the prior's weight is
chosen for each left-out time k from ``--kinetic`` by nested fits that leave out k and one more
interior time j and are scored at j (``select_kinetic``). The left-out time enters only the final
score. ``--kinetic 0`` fits without the prior.

Baselines beside the published table: no motion (the cells of k - 1 scored against k) and the
exact optimal-transport displacement interpolation of k - 1 and k + 1 at k (which uses the later
snapshot, unavailable to a forward model).

Writes ``results.json``, ``results.md`` and ``pushed.png`` (pushed against real cells at each k,
first two PCs, the first seed whose pushed cells are on disk) to ``--out``. Needs POT
(``pip install pot``, in the ``bench`` extra) and matplotlib for the figure.

Run: ``python -m benchmarks.trajectory --data DIR`` (10 nested fits, then 5 seeds x 3 fits of 300
steps; 5 to 7 minutes of CPU a fit at 1024 paths on a 2-core CPU; ``--first-seed`` and
``--select-only`` share the work between processes). A smoke run:
``python -m benchmarks.trajectory --data DIR --seeds 1 --steps 3 --paths 64 --kinetic 0 --out /tmp/trajectory``.
"""

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax

from ._common import ROOT, machine, markdown_table, to_json, write_results

# [SF]2M (arXiv 2307.03672) Table 4, EB, mean W1 over the left-out times (lower is better).
PUBLISHED = [
    ("OT-CFM", 0.790, 0.068), ("[SF]2M-Exact", 0.793, 0.066), ("Reg. CNF", 0.825, None),
    ("TrajectoryNet", 0.848, None), ("DSB", 0.862, None), ("I-CFM", 0.872, None), ("[SF]2M-Geo", 0.879, None),
    ("NLSB", 0.970, None), ("DSBM", 1.775, None),
]  # fmt: skip
LEFT_OUT = (1, 2, 3)
# The weights of dkjax.Kinetic the nested choice tries (0: no prior); 0.3 joined after the inner scores of the others.
KINETIC_GRID = [0.0, 0.1, 0.3, 1.0, 10.0]
# The nested choice of the path prior's weight: for left-out k, the interior training time j left out
# again; the fit on the remaining times is scored at j from the cells of the training time before it.
# k = 1 and k = 3 share one inner fit (times 0, 2, 4); k = 2 uses times 0, 3, 4. Time k never enters.
INNER = {1.0: 3.0, 2.0: 1.0, 3.0: 1.0}


def load(folder: Path) -> dict[float, np.ndarray]:
    """``{time: cells}`` from ``data.npy`` and ``sample_labels.npy`` in ``folder``."""
    for name in ("data.npy", "sample_labels.npy"):
        if not (folder / name).is_file():
            raise SystemExit(f"--data {folder}: no {name} (see the module docstring for where to get the EB data).")
    points, labels = np.load(folder / "data.npy"), np.load(folder / "sample_labels.npy")
    if points.ndim != 2 or labels.shape != (len(points),):
        raise SystemExit(f"--data {folder}: data.npy {points.shape} and sample_labels.npy {labels.shape} do not match.")
    return {float(t): points[labels == t].astype(np.float32) for t in np.unique(labels)}


def fit_times(data, left_out: tuple[float, ...], *, seed: int, kinetic: float, args):
    """Fits the preset model on every time but those in ``left_out``, with ``dkjax.Kinetic(kinetic)`` if > 0.

    Returns ``(fitted, num_steps, (wall seconds, process CPU seconds), history)``."""
    times = sorted(data)
    train = {t: x for t, x in data.items() if t not in left_out}
    t1, num_steps = times[-1], round(args.steps_per_unit * (times[-1] - times[0]))
    model = dkjax.NeuralSDE.for_snapshots(data[times[0]].shape[1], key=jr.key(1000 + seed), width=args.width,
                                          depth=args.depth)  # fmt: skip
    initial = dkjax.EmpiricalInitial(jnp.asarray(data[times[0]]))   # the t = 0 snapshot is the initial law
    path_cost = dkjax.Kinetic(kinetic) if kinetic > 0 else None
    start, cpu = time.perf_counter(), time.process_time()
    fitted, history = dkjax.fit(model, train, initial, t0=times[0], t1=t1, num_steps=num_steps, key=jr.key(seed),
                                steps=args.steps, num_paths=args.paths, validation=args.validation,
                                path_cost=path_cost, progress=args.progress)  # fmt: skip
    return fitted, num_steps, (time.perf_counter() - start, time.process_time() - cpu), history


def select_kinetic(data, args) -> tuple[dict[float, float], list[dict]]:
    """The kinetic prior's weight for each left-out ``k``, chosen without time ``k`` (seed 0).

    Each candidate of ``--kinetic`` is fitted on the times left after taking out ``k`` and
    ``INNER[k]``, and scored by the exact W1 at ``INNER[k]`` of the pushed cells of the training
    time before it; the lowest score wins. Inner scores are logged to ``selection.jsonl``
    (``--resume`` keeps them). Returns ``({k: weight}, records)``.
    """
    log = args.out / "selection.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.is_file() else []
    if not args.resume:
        log.unlink(missing_ok=True)
    served = {}  # inner fit (times left out) -> the (k, j) it scores
    for k in map(float, LEFT_OUT):
        served.setdefault(tuple(sorted((k, INNER[k]))), []).append((k, INNER[k]))
    for left_out, uses in served.items():
        for weight in args.kinetic:
            missing = [(k, j) for k, j in uses if not any(r["for_left_out"] == k and r["kinetic"] == weight
                                                          for r in records)]  # fmt: skip
            if not missing:
                continue
            fitted, num_steps, (wall, cpu), _ = fit_times(data, left_out, seed=0, kinetic=weight, args=args)
            for k, j in missing:
                visible = {t: x for t, x in data.items() if t != k}
                score = dkjax.push_forward_score(fitted, visible, time=j, num_steps=num_steps, key=jr.key(10_000),
                                                 t0=0.0, t1=4.0, baselines=False)  # fmt: skip
                records.append({"for_left_out": k, "fit_without": list(left_out), "scored_at": j, "kinetic": weight,
                                "w1": score.distance, "fit_s": wall, "fit_cpu_s": cpu})  # fmt: skip
                with log.open("a") as f:
                    f.write(json.dumps(to_json(records[-1])) + "\n")
                print(f"selection for k = {k:g}: fit without {left_out}, kinetic {weight:g}: W1 at {j:g} "
                      f"{score.distance:.4f}", flush=True)  # fmt: skip
    chosen = {}
    for k in map(float, LEFT_OUT):
        scores = {r["kinetic"]: r["w1"] for r in records if r["for_left_out"] == k and r["kinetic"] in args.kinetic}
        chosen[k] = min(sorted(scores), key=scores.get)  # a tie goes to the weaker prior
    return chosen, records


def pushed_cells(fitted, data, k: float, num_steps: int, key) -> np.ndarray:
    """The cells of the time before ``k`` pushed to ``k`` (the same paths as ``push_forward_score``'s)."""
    times = sorted(data)
    start = times[times.index(k) - 1]
    steps = round(num_steps * (k - start) / (times[-1] - times[0]))
    return np.asarray(dkjax.simulate(fitted, jnp.asarray(data[start]), t0=start, t1=k, num_steps=steps, key=key))


def figure(path: Path, data, pushed: dict, scores: dict, seed: int) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib missing: no figure"
    fig, axes = plt.subplots(1, len(pushed), figsize=(4.2 * len(pushed), 4.0), squeeze=False)
    for ax, (k, cells) in zip(axes[0], pushed.items()):
        real = data[k]
        ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, color="0.5", label=f"real t = {k:g} ({len(real)})")
        ax.scatter(cells[:, 0], cells[:, 1], s=2, alpha=0.3, color="tab:red",
                   label=f"pushed from t = {k - 1:g} ({len(cells)})")  # fmt: skip
        ax.set_title(f"left out t = {k:g}: W1 {scores[k]:.3f} (seed {seed})")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(loc="lower left", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def run_fits(data, kinetic: dict[float, float], args) -> tuple[list, tuple[int, dict] | None, dict]:
    """All seeds x left-out times. Each finished fit is appended to ``fits.jsonl`` in ``--out`` (its
    pushed cells beside it, never committed) so that ``--resume`` skips it after an interruption.

    Returns ``(records, pushed, baselines)``: ``pushed`` holds the pushed cells of the first seed
    whose three fits' cells are on disk (a resume on another machine has lost earlier seeds'),
    as ``(seed, {k: cells})``, or ``None`` if no seed's are."""
    log, records, pushed, baselines = args.out / "fits.jsonl", [], {}, {}
    done = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.is_file() else []
    if not args.resume:
        log.unlink(missing_ok=True)
    for seed in range(args.first_seed, args.seeds):
        for k in map(float, LEFT_OUT):
            cells = args.out / f"pushed_seed{seed}_k{k:g}.npy"
            record = next((r for r in done if (r["seed"], r["left_out"], r.get("kinetic", 0.0)) == (seed, k, kinetic[k])),
                          None)  # fmt: skip
            if record is None:
                fitted, num_steps, (wall, cpu), history = fit_times(data, (k,), seed=seed, kinetic=kinetic[k],
                                                                     args=args)  # fmt: skip
                key, scoring = jr.key(10_000 + seed), time.perf_counter()
                score = dkjax.push_forward_score(fitted, data, time=k, num_steps=num_steps, key=key, t0=0.0, t1=4.0,
                                                 baselines=k not in baselines)  # model-free: once per k  # fmt: skip
                record = {"seed": seed, "left_out": k, "kinetic": kinetic[k], "w1": score.distance, "fit_s": wall,
                          "fit_cpu_s": cpu,
                          "score_s": time.perf_counter() - scoring, "num_nonfinite": score.num_nonfinite,
                          "best_step": history.best_step, "validation": history.validation,
                          "final_loss": float(history.loss[-1]), "no_motion": score.no_motion,
                          "interpolation": score.interpolation}  # fmt: skip
                # The fitted model, for analyses after the run (noise level, step size); gitignored.
                eqx.tree_serialise_leaves(args.out / f"model_seed{seed}_k{k:g}.eqx", fitted)
                with log.open("a") as f:
                    f.write(json.dumps(to_json(record)) + "\n")
                np.save(cells, pushed_cells(fitted, data, k, num_steps, key))
            if record["no_motion"] is not None:
                baselines[k] = (record["no_motion"], record["interpolation"])
            print(f"seed {seed} left out {k:g}: W1 {record['w1']:.4f} (no motion {baselines[k][0]:.4f}, OT midpoint "
                  f"{baselines[k][1]:.4f}), fit {record['fit_s']:.0f} s wall, {record['fit_cpu_s']:.0f} s process "
                  f"CPU, best step {record['best_step']}", flush=True)  # fmt: skip
            records.append(record)
            if cells.is_file():
                pushed.setdefault(seed, {})[k] = np.load(cells)
    complete = [seed for seed in sorted(pushed) if len(pushed[seed]) == len(LEFT_OUT)]
    return records, (complete[0], pushed[complete[0]]) if complete else None, baselines


def _prior_text(kinetic: dict, candidates: list[float]) -> str:
    if not any(kinetic.values()):
        return "none"
    chosen = ", ".join(f"k = {k:g}: {w:g}" for k, w in kinetic.items())
    if len(candidates) == 1:
        return f"dkjax.Kinetic({candidates[0]:g}) for every k"
    return (f"dkjax.Kinetic(weight), the weight chosen per left-out k from {sorted(candidates)} by the nested fits "
            f"below ({chosen})")


def selection_table(selection: list[dict]) -> str:
    """One row per inner fit and left-out time it serves: the inner score at the time it leaves out."""
    rows = [[f"{r['for_left_out']:g}", ", ".join(f"{t:g}" for t in r["fit_without"]), f"{r['scored_at']:g}",
             f"{r['kinetic']:g}", f"{r['w1']:.3f}", f"{r['fit_cpu_s']:.0f}"]
            for r in sorted(selection, key=lambda r: (r["for_left_out"], r["kinetic"]))]  # fmt: skip
    return markdown_table(["for left-out k", "fitted without", "scored at", "kinetic weight", "W1",
                           "fit s process CPU"], rows)  # fmt: skip


def fits_table(records: list[dict]) -> str:
    """One row per fit: its score, its time and the step the validation kept."""
    rows = [[r["seed"], f"{r['left_out']:g}", f"{r.get('kinetic', 0.0):g}", f"{r['w1']:.3f}", f"{r['fit_s']:.0f}",
             f"{r['fit_cpu_s']:.0f}", r["best_step"], r["num_nonfinite"]] for r in records]  # fmt: skip
    return markdown_table(["seed", "left out k", "kinetic weight", "W1", "fit s wall", "fit s process CPU",
                           "step kept by validation", "non-finite pushed paths"], rows)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with data.npy and sample_labels.npy")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS - 1")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per fit")
    parser.add_argument("--paths", type=int, default=dkjax.TRAIN_DEFAULTS.num_paths, help="paths per step")
    parser.add_argument("--width", type=int, default=64, help="hidden width of the model's MLPs")
    parser.add_argument("--depth", type=int, default=2, help="hidden layers of the model's MLPs")
    parser.add_argument("--steps-per-unit", type=int, default=20, help="Euler-Maruyama steps per unit time")
    parser.add_argument("--validation", type=float, default=0.1,
                        help="fraction of each training time's cells held out for model selection")  # fmt: skip
    parser.add_argument("--kinetic", type=lambda text: [float(w) for w in text.split(",")], default=KINETIC_GRID,
                        help="weight of the kinetic path prior dkjax.Kinetic (0: none); several, comma-separated: "
                             "chosen per left-out time by the nested fits of select_kinetic")  # fmt: skip
    parser.add_argument("--first-seed", type=int, default=0,
                        help="start at this seed (to share the seeds between processes; merge their fits.jsonl)")
    parser.add_argument("--select-only", action="store_true", help="stop after the nested choice of --kinetic")
    parser.add_argument("--progress", action="store_true", help="show fit's progress bar")
    parser.add_argument("--resume", action="store_true", help="keep the fits already in --out/fits.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trajectory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load(args.data)
    if sorted(data) != [0.0, 1.0, 2.0, 3.0, 4.0]:
        raise SystemExit(f"--data: expected time labels 0..4, got {sorted(data)}.")
    if len(args.kinetic) > 1:
        kinetic, selection = select_kinetic(data, args)
        print(f"kinetic weight chosen per left-out time: {kinetic}", flush=True)
        if args.select_only:
            return
    else:
        kinetic, selection = {float(k): args.kinetic[0] for k in LEFT_OUT}, []
    records, pushed, baselines = run_fits(data, kinetic, args)
    seeds = range(args.first_seed, args.seeds)
    w1 = np.array([[r["w1"] for r in records if r["seed"] == s] for s in seeds])   # (seeds, 3)
    means = w1.mean(axis=1)
    fit_s = {k: [float(np.mean([r[name] for r in records if r["left_out"] == k])) for name in ("fit_s", "fit_cpu_s")]
             for k in map(float, LEFT_OUT)}  # fmt: skip
    spread = f" +- {means.std():.3f}" if len(seeds) > 1 else ""
    rows = [[name, f"{m:.3f}" + (f" +- {s:.3f}" if s is not None else ""), "-", "-", "-", "-"]
            for name, m, s in PUBLISHED]  # fmt: skip
    for name, index in (("no motion (cells of t - 1)", 0), ("exact OT midpoint of t - 1, t + 1", 1)):
        per_k = [baselines[k][index] for k in map(float, LEFT_OUT)]
        rows.append([name, f"{np.mean(per_k):.3f}", *(f"{v:.3f}" for v in per_k), "-"])
    prior = " + Kinetic" if any(kinetic.values()) else ""
    rows.append([f"DK-SDE NeuralSDE.for_snapshots{prior} ({len(seeds)} seed(s))", f"{means.mean():.3f}{spread}",
                 *(f"{v:.3f}" for v in w1.mean(axis=0)),
                 " / ".join(f"{wall:.0f} ({cpu:.0f})" for wall, cpu in fit_s.values())])  # fmt: skip
    table = markdown_table(["method", "mean W1 (k = 1, 2, 3)", "W1 k = 1", "W1 k = 2", "W1 k = 3",
                            "fit s wall (process CPU) per left-out time, k = 1 / 2 / 3"], rows)  # fmt: skip
    setting = (f"{machine()}; EB 5 PCs (16819 cells, 5 times); model NeuralSDE.for_snapshots(5, width={args.width}, "
               f"depth={args.depth}), initial law the "
               f"t = 0 cells; fit defaults (objective {dkjax.TRAIN_DEFAULTS.objective}), {args.steps} Adam steps, "
               f"{args.paths} paths, {args.steps_per_unit} Euler-Maruyama steps per unit on [0, 4]; model selection "
               f"by fit's validation on {args.validation:.0%} of each training time's cells (the left-out time is "
               f"used only for the score); push-forward of all cells of t - 1, exact W1 (POT emd2) against all "
               f"cells at t; seeds {seeds.start}..{seeds.stop - 1}; published rows: [SF]2M (arXiv 2307.03672) "
               f"Table 4; path prior: {_prior_text(kinetic, args.kinetic)}")
    if pushed is None:  # every fit resumed from a log whose pushed cells stayed on another machine
        fig = "not drawn (no seed's pushed cells are on disk)"
    else:
        figure_seed, cells = pushed
        scores = {k: w1[seeds.index(figure_seed), i] for i, k in enumerate(map(float, LEFT_OUT))}
        fig = figure(args.out / "pushed.png", data, cells, scores, figure_seed)
        fig = Path(fig).name if fig else "not drawn (matplotlib missing)"  # beside results.md, not a machine's path
    payload = {"setting": setting, "records": records, "mean_w1_per_seed": means, "baselines": baselines,
               "published": PUBLISHED, "figure": fig, "kinetic": kinetic, "selection": selection}  # fmt: skip
    text = f"{setting}\n\n{table}\n\nEach fit:\n\n{fits_table(records)}\n\nFigure: {fig}"
    if selection:
        text += f"\n\nThe nested choice of the kinetic weight (seed 0; time k never enters):\n\n{selection_table(selection)}"
    write_results(args.out, to_json(payload), text, "Trajectory inference: embryoid body, leave one time out")


if __name__ == "__main__":
    main()

"""Time to quality: DK-SDE against a normalizing flow, a best-fit Gaussian and the data itself.

    python -m benchmarks.generative --size small                 # a 2-core CPU in a few minutes
    python -m benchmarks.generative --size full                  # the table: 2-D sets, real sets
    python -m benchmarks.generative --size small --datasets two_moons,wine
    python -m benchmarks.generative --merge RUN_A RUN_B  # one table from runs that shared the sets

All models run side by side in one process on one machine, in the default float dtype:

- **DK-SDE**: ``dkjax.fit_generative(data, t1=1, num_steps=..., steps=..., standardize=False,
  validation=val)``, i.e. ``dkjax.fit`` of ``dkjax.NeuralSDE(d)`` from ``N(0, I)`` (the parts come
  standardised) with every other setting at the library's defaults, so the benchmark follows them;
  a set's discrete columns are dequantised for training and sampled back onto their values.
  ``fit`` records the energy distance on ``val`` every ``validate_every`` steps against its
  training time and returns the model its selection rule keeps.
- **Flow**: flowjax's masked autoregressive flow with rational-quadratic spline transformers
  (8 knots on [-4, 4]), trained by ``flowjax.train.fit_to_data`` at its defaults (Adam 5e-4,
  batch 100, 10% validation split, early stopping after 5 fruitless epochs, the best epoch
  returned).
- **Gaussian**: the training split's mean and covariance.
- **Data itself**: a second held-out draw (toy sets) or split (real sets): the noise floor
  a perfect model would reach (on the small real sets a noisy one).

Data: the built-in 2-D sets (``dkjax.toy_data``) and real tabular sets bundled with
scikit-learn: wine (13 columns, 178 rows), diabetes (10 columns, 442 rows, one binary column),
iris, breast cancer, and ``digits_pca8`` (the digits images projected on the 8 leading
principal components of the training split). Every set is standardised with its training split's
mean and standard deviation. Each set has four disjoint parts: ``train`` (the flow fits on
90% of it and stops early on the other 10%; DK-SDE fits on the same 90%), ``val`` (DK-SDE's
model selection and the time-to-quality curves), ``test`` (the table's measures) and ``ref`` (the data-itself row).

Measures, all on ``test``: energy distance (``dkjax.energy_distance``), sliced 2-Wasserstein
(``dkjax.sliced_wasserstein``, the same directions for every model), and the mean held-out
log-likelihood under a Gaussian KDE of each model's samples whose bandwidth follows one rule
for every model: Scott's ``h = n^(-1 / (d + 4))`` times the samples' mean per-coordinate
standard deviation; the spread (each column's standard deviation over the ``test`` part's,
lowest and highest); on sets with discrete columns (at most 10 values in ``train``), the share
of samples within 0.1 of one of a discrete column's values (the lowest over such columns). Times are wall seconds of training, compilation included. "Time to
flow's ED" is when a model's energy distance on ``val`` first falls to the flow's final
energy distance on ``val``: for DK-SDE the training time ``fit`` records with the first
evaluation at or below it (the evaluations themselves not counted), for the flow its whole
training (validation passes and early stopping included), for the Gaussian its fit if it is
that good.

flowjax and scikit-learn are optional: ``pip install 'dkjax[bench]'``.
"""

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import dkjax
from dkjax._generative._data import TOY_DATA
from dkjax._generative._metrics import distance_column_sums

from ._common import ROOT, Timer, machine, markdown_table, write_results

SIZES = {
    "small": {
        "datasets": ["two_moons", "digits_pca8"],
        "dk_steps": 200, "eval_every": None, "num_steps": 50,
        "toy_sizes": {"train": 4096, "val": 2048, "test": 4096, "ref": 4096},
        "num_samples": 4096, "flow_max_epochs": 100, "seed": 0,
    },
    "full": {
        "datasets": [*TOY_DATA, "wine", "diabetes", "digits_pca8"],
        "dk_steps": 800, "eval_every": None, "num_steps": 50,
        "toy_sizes": {"train": 4096, "val": 4096, "test": 8192, "ref": 8192},
        "num_samples": 8192, "flow_max_epochs": 100, "seed": 0,
    },
}  # fmt: skip
# eval_every: steps between DK-SDE's held-out evaluations, None for fit's default.

# Fractions of a real set's rows in each part (real sets are small; the rest is as above).
REAL_SPLIT = {"train": 0.5, "val": 0.15, "test": 0.2, "ref": 0.15}
REAL_SETS = {  # name: (scikit-learn loader, principal components kept or None)
    "iris": ("load_iris", None),
    "wine": ("load_wine", None),
    "breast_cancer": ("load_breast_cancer", None),
    "digits_pca8": ("load_digits", 8),
    "diabetes": ("load_diabetes", None),  # last: _stable_index keeps the others' seeds
}
MODELS = ("DK-SDE", "flow", "Gaussian", "data itself")
FLOW_VALIDATION = 0.1  # flowjax's default validation fraction, mirrored for DK-SDE's training set


def _require(module: str, package: str):
    """Imports an optional benchmark dependency, or says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"benchmarks.generative needs {package}: pip install 'dkjax[bench]' (or pip install {package})."
        ) from None


# --------------------------------------------------------------------------------------
# Data


# One compilation per (set, size) instead of dispatching every operation of every draw.
_toy_data = jax.jit(dkjax.toy_data, static_argnums=(0, 2))


def check_datasets(names: list[str]) -> None:
    """Raises ValueError naming the unknown data sets in ``names``."""
    unknown = [name for name in names if name not in TOY_DATA and name not in REAL_SETS]
    if unknown:
        raise ValueError(f"datasets: unknown {unknown}; choose from {','.join([*TOY_DATA, *REAL_SETS])}.")


def _standardised(parts: dict) -> dict:
    mean, std = parts["train"].mean(0), parts["train"].std(0)
    return {name: (x - mean) / std for name, x in parts.items()}


def load_dataset(name: str, cfg: dict, key) -> dict:
    """The four disjoint parts ``train``, ``val``, ``test``, ``ref`` of a data set, standardised.

    Toy sets are four independent draws of ``cfg["toy_sizes"]`` points; real sets a seeded
    random split by ``REAL_SPLIT``. Arrays are numpy, in the default float dtype.
    """
    dtype = jnp.result_type(float)
    if name in TOY_DATA:
        keys = jr.split(key, len(cfg["toy_sizes"]))
        parts = {
            part: np.asarray(_toy_data(name, k, n), np.float64)
            for k, (part, n) in zip(keys, cfg["toy_sizes"].items(), strict=True)
        }
    elif name in REAL_SETS:
        loader, components = REAL_SETS[name]
        rows = np.asarray(getattr(_require("sklearn.datasets", "scikit-learn"), loader)().data, np.float64)
        order = np.asarray(jr.permutation(key, len(rows)))
        ends = np.round(np.cumsum(list(REAL_SPLIT.values())) * len(rows)).astype(int)
        parts = dict(zip(REAL_SPLIT, np.split(rows[order], ends[:-1]), strict=True))
        if components is not None:
            # Principal components of the (standardised) training split only; constant pixels
            # have zero deviation and are dropped before dividing by it.
            varying = parts["train"].std(0) > 0
            parts = _standardised({part: x[:, varying] for part, x in parts.items()})
            basis = np.linalg.svd(parts["train"], full_matrices=False)[2][:components].T
            parts = {part: x @ basis for part, x in parts.items()}
    else:
        check_datasets([name])
    return {part: x.astype(dtype) for part, x in _standardised(parts).items()}


# --------------------------------------------------------------------------------------
# Measures


def scott_bandwidth(samples) -> float:
    """Scott's rule ``n^(-1 / (d + 4))`` times the samples' mean per-coordinate standard deviation."""
    n, d = samples.shape
    return float(np.mean(np.std(np.asarray(samples), axis=0)) * n ** (-1.0 / (d + 4)))


def discrete_values(train) -> dict:
    """The distinct values of each column of ``train`` that takes at most 10 of them."""
    train = np.asarray(train)
    values = {j: np.unique(train[:, j]) for j in range(train.shape[1])}
    return {j: v for j, v in values.items() if len(v) <= 10}


def measures(samples, test, key, discrete: dict | None = None) -> dict:
    """Energy distance, sliced Wasserstein, KDE log-likelihood (nats per point), spread and discreteness.

    Spread: each column's standard deviation in ``samples`` over its deviation in ``test``
    (lowest and highest). ``discrete`` (column: values): the lowest share, over those columns,
    of samples within 0.1 of one of the column's values (``None`` without such columns).
    """
    samples, test = jnp.asarray(samples), jnp.asarray(test)
    h = scott_bandwidth(samples)
    spread = np.std(np.asarray(samples), axis=0) / np.std(np.asarray(test), axis=0)
    columns = np.asarray(samples)
    near = [np.mean(np.min(np.abs(columns[:, [j]] - v[None]), axis=1) < 0.1) for j, v in (discrete or {}).items()]
    return {
        "spread_min": float(spread.min()),
        "spread_max": float(spread.max()),
        "discrete_near": float(min(near)) if near else None,
        "energy_distance": float(dkjax.energy_distance(samples, test)),
        "sliced_wasserstein": float(dkjax.sliced_wasserstein(samples, test, key=key)),
        "kde_log_likelihood": -float(dkjax.smoothed_nll(samples, test, h)),
        "kde_bandwidth": h,
        "num_nonfinite": int(np.sum(~np.all(np.isfinite(np.asarray(samples)), axis=1))),
    }


def paired_standard_error(samples_a, samples_b, test) -> float:
    """The standard error of ``ED(a, test) - ED(b, test)`` over the held-out points.

    Only the cross terms ``2 E|X - y_j|`` depend on the held-out point ``y_j``; their per-point
    differences give the standard error of the difference (the models' own terms are averages
    over their many samples, whose noise is far smaller).
    """
    test = jnp.asarray(test)
    cross = lambda x: 2 * np.asarray(distance_column_sums(jnp.asarray(x), test)) / len(x)
    terms = cross(samples_a) - cross(samples_b)
    return float(np.std(terms, ddof=1) / np.sqrt(len(terms)))


def first_reaching(curve: list[dict], threshold: float) -> float | None:
    """The training time of the first curve point whose energy distance is at most ``threshold``."""
    return next((point["time"] for point in curve if point["energy_distance"] <= threshold), None)


# --------------------------------------------------------------------------------------
# Models. Each trainer returns (sampler(key, n) -> samples, info with "seconds").


def train_gaussian(train):
    with Timer() as timer:
        mean = jnp.mean(train, 0)
        chol = jnp.linalg.cholesky(jnp.atleast_2d(jnp.cov(train, rowvar=False)))
        jax.block_until_ready(chol)
    sampler = lambda k, n: mean + jr.normal(k, (n, train.shape[1]), train.dtype) @ chol.T
    return sampler, {"seconds": timer.seconds}


def train_flow(train, cfg, key):
    """flowjax's masked autoregressive spline flow, fitted with early stopping at flowjax's defaults."""
    _require("flowjax", "flowjax")
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow
    from flowjax.train import fit_to_data

    init_key, fit_key = jr.split(key)
    flow = masked_autoregressive_flow(
        init_key, base_dist=Normal(jnp.zeros(train.shape[1], train.dtype)),
        transformer=RationalQuadraticSpline(knots=8, interval=4),
    )  # fmt: skip
    with Timer() as timer:
        flow, losses = fit_to_data(
            fit_key, flow, jnp.asarray(train), max_epochs=cfg["flow_max_epochs"], val_prop=FLOW_VALIDATION,
            show_progress=False,
        )  # fmt: skip
        jax.block_until_ready(eqx.filter(flow, eqx.is_array))
    info = {
        "seconds": timer.seconds,
        "epochs": len(losses["val"]),
        "best_epoch": int(np.argmin(losses["val"])) + 1,
        "best_val_loss": float(np.min(losses["val"])),
    }
    return lambda k, n: flow.sample(k, (n,)), info


def train_dk(train, val, cfg, key, log=print):
    """DK-SDE at ``fit``'s defaults through ``fit_generative``, selected on ``val``; its held-out energy distance
    against training time.

    The parts come standardised, so ``fit_generative`` runs with ``standardize=False``: without
    discrete columns this is ``dkjax.fit`` of ``dkjax.NeuralSDE(d)`` from ``N(0, I)``, and a
    set's discrete columns are dequantised for training and its samples moved back onto their
    values, as for any user of ``fit_generative``. ``val`` is passed as the validation set, so the
    curve (``history.validation``: step, training seconds, energy distance) is measured on the
    points the flow's threshold is measured on. ``cfg["eval_every"]`` (``None``: ``fit``'s
    default) sets its spacing.
    """
    spacing = {} if cfg["eval_every"] is None else {"validate_every": cfg["eval_every"]}
    with Timer() as timer:
        model, history = dkjax.fit_generative(
            jnp.asarray(train), key=key, steps=cfg["dk_steps"], t1=1.0, num_steps=cfg["num_steps"], standardize=False,
            validation=jnp.asarray(val), progress=False, **spacing,
        )  # fmt: skip
        jax.block_until_ready(eqx.filter(model, eqx.is_array))
    for point in history.validation:
        log(f"    DK step {point['step']:5d}  {point['time']:7.1f} s  val ED {point['energy_distance']:.5f}")
    losses = history.loss
    window = min(100, len(losses))
    window_means = np.convolve(losses, np.ones(window) / window, "valid")
    info = {
        "seconds": timer.seconds,
        # Stability: how far the last window's mean loss sits above the best window's (nats).
        "late_rise": float(window_means[-1] - window_means.min()),
        "curve": history.validation,
        "best_step": history.best_step,
        "final_kernel_rate": history.records[-1]["kernel_rate"] if history.records else None,
        "stop_reason": history.stop_reason,
        "discrete_columns": [] if model.discrete is None else list(model.discrete.columns),
    }
    return lambda k, n: model.sample(n, key=k), info


# --------------------------------------------------------------------------------------
# One data set, the table, the figure


def run_dataset(name: str, cfg: dict, key, log=print) -> tuple[dict, dict]:
    """Trains and measures every model on one data set; returns its results and each model's samples."""
    data_key, dk_key, flow_key, sample_key, sw_key = jr.split(key, 5)
    parts = load_dataset(name, cfg, data_key)
    discrete = discrete_values(parts["train"])
    fit_rows = len(parts["train"]) - round(FLOW_VALIDATION * len(parts["train"]))
    log(f"{name}: d = {parts['train'].shape[1]}, " + ", ".join(f"{p} {len(x)}" for p, x in parts.items()))
    val, test, n = jnp.asarray(parts["val"]), jnp.asarray(parts["test"]), cfg["num_samples"]

    trained = {}
    log("  flow")
    trained["flow"] = train_flow(parts["train"], cfg, flow_key)
    log(f"  flow: {trained['flow'][1]['seconds']:.1f} s, {trained['flow'][1]['epochs']} epochs")
    log("  DK-SDE")
    trained["DK-SDE"] = train_dk(parts["train"][:fit_rows], val, cfg, dk_key, log)
    trained["Gaussian"] = train_gaussian(jnp.asarray(parts["train"]))

    samples = {model: sampler(jr.fold_in(sample_key, i), n) for i, (model, (sampler, _)) in enumerate(trained.items())}
    samples["data itself"] = jnp.asarray(parts["ref"])
    val_ed = {model: float(dkjax.energy_distance(x, val)) for model, x in samples.items()}
    target = val_ed["flow"]
    models = {}
    for model in MODELS:
        info = trained[model][1] if model in trained else {}
        row = {**measures(samples[model], test, sw_key, discrete), "val_energy_distance": val_ed[model]}
        if model == "flow":
            row["time_to_flow_ed"] = info["seconds"]
        elif model == "DK-SDE":
            row["time_to_flow_ed"] = first_reaching(info["curve"], target)
        elif model == "Gaussian":
            row["time_to_flow_ed"] = info["seconds"] if val_ed[model] <= target else None
        models[model] = {**row, **info}
    gaussian = models["Gaussian"]["energy_distance"]
    for model in ("DK-SDE", "flow"):  # the distances are the rows' own; only the error needs the samples again
        error = paired_standard_error(samples[model], samples["Gaussian"], test)
        models[model]["minus_gaussian"] = (models[model]["energy_distance"] - gaussian, error)
    dk, flow = models["DK-SDE"], models["flow"]
    ratio = None if dk["time_to_flow_ed"] is None else dk["time_to_flow_ed"] / flow["seconds"]
    log(f"  flow val ED {target:.5f} in {flow['seconds']:.1f} s; DK-SDE reached it at {dk['time_to_flow_ed']} s")
    result = {
        "d": int(parts["train"].shape[1]),
        "sizes": {p: len(x) for p, x in parts.items()},
        "fit_rows": fit_rows,
        "flow_val_energy_distance": target,
        "dk_time_over_flow_time": ratio,
        "models": models,
    }
    return result, {model: np.asarray(x) for model, x in samples.items()} | {"held-out data": np.asarray(test)}


def _time(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def results_markdown(results: dict) -> str:
    headers = [
        "dataset", "d", "n_train", "model", "energy distance", "sliced W", "KDE LL", "spread (min-max)",
        "near discrete values", "ED minus Gaussian's (+- se)", "time to flow's ED (s)", "total time (s)",
    ]  # fmt: skip
    rows = []
    for name, r in results["datasets"].items():
        for model, m in r["models"].items():
            rows.append([
                name, r["d"], r["sizes"]["train"], model, m["energy_distance"], m["sliced_wasserstein"],
                m["kde_log_likelihood"], f"{m['spread_min']:.2f}-{m['spread_max']:.2f}",
                "-" if m["discrete_near"] is None else f"{m['discrete_near']:.2f}",
                "-" if "minus_gaussian" not in m else "{:+.4f} +- {:.4f}".format(*m["minus_gaussian"]),
                _time(m.get("time_to_flow_ed")), _time(m.get("seconds")),
            ])  # fmt: skip
    ratios = [
        [name, f"{r['flow_val_energy_distance']:.4g}", _time(r["models"]["flow"]["seconds"]),
         f"{min(point['energy_distance'] for point in r['models']['DK-SDE']['curve']):.4g}",
         _time(r["models"]["DK-SDE"]["time_to_flow_ed"]),
         "not reached" if r["dk_time_over_flow_time"] is None else f"{r['dk_time_over_flow_time']:.2f}",
         f"{r['models']['DK-SDE']['late_rise']:.3f}"]
        for name, r in results["datasets"].items()
    ]  # fmt: skip
    env, cfg = results["environment"], results["config"]
    defaults = env["fit_defaults"]
    header = (
        f"Machine: {env['machine']}, {env['cpu_count']} CPU cores, load average {env['load_start']} at start and "
        f"{env['load_end']} at the end. jax {env['jax']}, flowjax {env['flowjax']}, {env['dtype']}; {env['date']}. "
        f"Size `{results['size']}`: DK-SDE {cfg['dk_steps']} steps of {cfg['num_steps']} time steps, `fit`'s "
        f"defaults otherwise ({defaults}), evaluated on `val` every {cfg['eval_every'] or defaults['validate_every']} "
        f"steps; {cfg['num_samples']} samples per model for the measures.\n\n"
        "Measures on the held-out `test` part; KDE LL: mean held-out log-likelihood (nats per point, higher is "
        "better) of a Gaussian KDE of each model's samples, bandwidth by Scott's rule on those samples. "
        "Spread: each column's standard deviation over the test part's, lowest-highest. Near discrete values: "
        "on sets with columns of at most 10 values, the share of samples within 0.1 of such a value (lowest "
        "column). ED minus Gaussian's: the model's energy distance minus the best-fit Gaussian's, with the "
        "standard error of that difference over the test points (paired: both scored on the same points). "
        "Time to flow's ED: training time until the energy distance on the `val` part first falls to the flow's "
        "final one (the flow: its whole training, validation passes and early stopping included; DK-SDE: the "
        "training-step time `fit` records with each held-out evaluation, which leaves out the evaluations "
        "themselves; `-`: not reached). Total time: the whole training call. "
        "n_train: the `train` part; the flow fits on 90% of it and stops early on the rest; DK-SDE fits on the "
        "same 90% and returns the model that `fit`'s selection rule keeps on `val`. The data-itself row is a second "
        "held-out draw (real sets: split), the noise floor; on the real sets it holds only the `ref` part's few "
        "points, so its measures are noisy and its KDE LL (wider kernels for fewer points) is no floor.\n\n"
    )
    ratio_headers = [
        "dataset", "flow val ED", "flow time (s)", "DK-SDE best val ED", "DK-SDE time to flow's ED (s)", "DK / flow",
        "DK-SDE late loss rise (nats)",
    ]
    return (
        header + markdown_table(headers, rows)
        + "\n\nTime to quality (late loss rise: the last 100 steps' mean loss minus the best 100-step window's; "
        "a stable run has about 0):\n\n" + markdown_table(ratio_headers, ratios)
        + f"\n\nTotal wall time {results['wall_s']:.0f} s."
    )


def plot_samples(samples: dict, path: Path, max_points: int = 2000) -> None:
    """One row per 2-D data set: held-out data, then each model's samples, on the data's axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["held-out data", "DK-SDE", "flow", "Gaussian"]
    size = (3.0 * len(columns), 3.0 * len(samples))
    fig, axes = plt.subplots(len(samples), len(columns), figsize=size, squeeze=False)
    for row, (name, (by_model, eds)) in zip(axes, samples.items(), strict=True):
        data = by_model["held-out data"]
        low, high = data.min(0), data.max(0)
        # The data's full range plus a margin: nothing of the data is cut, and a model's strays are counted.
        low, high = low - 0.08 * (high - low), high + 0.08 * (high - low)
        for ax, model in zip(row, columns, strict=True):
            x = by_model[model]
            outside = np.mean(np.any((x < low) | (x > high) | ~np.isfinite(x), axis=1))
            color = "C0" if model == "held-out data" else "C1"
            ax.scatter(*x[:max_points].T, s=1.5, alpha=0.4, color=color, rasterized=True)
            ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), xticks=[], yticks=[], aspect="equal")
            title = model if model == "held-out data" else f"{model}  ED {eds[model]:.4f}"
            if outside > 0:
                title += f"\n{100 * outside:.1f}% outside this view"
            ax.set_title(title, fontsize=9)
        row[0].set_ylabel(name, fontsize=11)
    fig.suptitle("Samples on the held-out data's range (ED: held-out energy distance)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(datasets: list[str], cfg: dict, out: Path, size: str = "custom", log=print) -> dict:
    """Runs the benchmark on ``datasets`` with configuration ``cfg``; writes results.{md,json} and samples.png."""
    check_datasets(datasets)
    _require("flowjax", "flowjax")  # both before any work
    if any(name in REAL_SETS for name in datasets):
        _require("sklearn.datasets", "scikit-learn")
    out.mkdir(parents=True, exist_ok=True)
    start, load_start = time.perf_counter(), _load()
    key = jr.key(cfg["seed"])
    results, plotted = {}, {}
    for name in datasets:
        result, samples = run_dataset(name, cfg, jr.fold_in(key, _stable_index(name)), log)
        results[name] = result
        if result["d"] == 2:
            plotted[name] = (samples, {model: m["energy_distance"] for model, m in result["models"].items()})
    payload = {
        "size": size,
        "config": cfg,
        "environment": {
            "machine": machine(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "flowjax": importlib.metadata.version("flowjax"), "dtype": str(jnp.result_type(float)),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_start": load_start, "load_end": _load(),
            "fit_defaults": {field.name: _setting(getattr(dkjax.TRAIN_DEFAULTS, field.name))
                             for field in dataclasses.fields(dkjax.TRAIN_DEFAULTS)},
        },  # fmt: skip
        "datasets": results,
        "wall_s": time.perf_counter() - start,
    }
    if plotted:
        plot_samples(plotted, out / "samples.png")
    write_results(out, payload, results_markdown(payload), f"Generative models: time to quality ({size})")
    return payload


def merge(parts: list[Path], out: Path) -> dict:
    """One table from runs that shared the sets between processes (``--datasets`` each, the same size).

    The sets come in the benchmark's order; the header gives the first run's machine and the load
    averages of every run; ``samples.png`` is copied from the one run that drew 2-D sets.
    """
    import shutil

    payloads = [json.loads((part / "results.json").read_text()) for part in parts]
    if len({p["size"] for p in payloads}) != 1:
        raise ValueError(f"--merge: the runs have different sizes {[p['size'] for p in payloads]}.")
    datasets = {name: r for p in payloads for name, r in p["datasets"].items()}
    order = [*TOY_DATA, *REAL_SETS]
    merged = dict(payloads[0], datasets={name: datasets[name] for name in sorted(datasets, key=order.index)},
                  wall_s=max(p["wall_s"] for p in payloads))  # fmt: skip
    environment = merged["environment"] = dict(merged["environment"])
    for end in ("load_start", "load_end"):
        environment[end] = " / ".join(p["environment"][end] for p in payloads)
    drawn = [part for part, p in zip(parts, payloads) if any(r["d"] == 2 for r in p["datasets"].values())]
    if len(drawn) > 1:
        raise ValueError("--merge: more than one run drew 2-D sets; give those sets to one process.")
    out.mkdir(parents=True, exist_ok=True)
    if drawn and drawn[0] != out:
        shutil.copy(drawn[0] / "samples.png", out / "samples.png")
    title = f"Generative models: time to quality ({merged['size']}; {len(parts)} processes side by side)"
    write_results(out, merged, results_markdown(merged), title)
    return merged


def _setting(value):
    """A fit default as the results print it: a module (the path schedule) by its repr, not its fields."""
    return repr(value) if isinstance(value, dkjax.AbstractPathSchedule) else value


def _stable_index(name: str) -> int:
    """A data set's own seed offset, so adding a set to the list does not change the others' results."""
    return [*TOY_DATA, *REAL_SETS].index(name)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size", choices=tuple(SIZES), default="small", help="small: a 2-core CPU in minutes; full: the table"
    )
    parser.add_argument("--datasets", default=None, help=f"comma-separated, from {','.join([*TOY_DATA, *REAL_SETS])}")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/generative)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="write one table from these runs' folders (each ran some --datasets) to --out")
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    datasets = args.datasets.split(",") if args.datasets else cfg["datasets"]
    try:
        check_datasets(datasets)
    except ValueError as error:
        parser.error(f"--{error}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "generative"
    if args.merge:
        return merge(args.merge, out)
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.0f} s] {msg}", flush=True)
    try:
        return run(datasets, cfg, out, args.size, log)
    except ImportError as error:
        parser.exit(2, f"{error}\n")


if __name__ == "__main__":
    main()

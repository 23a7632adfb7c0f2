"""A trained run's evaluation: ``eval.json`` (distances to held-out data), its notes and the figures."""

import json
from pathlib import Path

from ._run_setup import _Data


_METRICS = ("energy_distance", "energy_distance_gaussian", "energy_distance_data", "sliced_wasserstein",
            "sliced_wasserstein_gaussian", "heldout_nll", "heldout_nll_gaussian")  # fmt: skip
_NOTES = {
    "units": "the distances compare points in the units the model trains in: standardised (each column minus its "
    "training mean, over its training standard deviation) when data.standardize is on, so that every column "
    "counts alike; else the data's own units",
    "energy_distance": "between eval.num_samples model samples and the held-out data, which training never saw; "
    "lower is better. It is estimated without bias (U-statistics within each sample), so it fluctuates around "
    "its true value: a small negative value means a distance below the estimate's noise, as close to the "
    "held-out data as more data of the same law (compare energy_distance_data)",
    "sliced_wasserstein": "the same comparison by the sliced 2-Wasserstein distance: the root mean square, over "
    "random directions and quantile levels, of the difference between the quantiles of the two projected samples",
    "columns": "the names of the data's columns (a CSV file's header, else x1, x2, ...), as on the figures' axes",
    "heldout_nll": "negative log-likelihood (nats per point) of the held-out data under a Gaussian kernel density "
    "estimate of the model samples of bandwidth eval.bandwidth; lower is better",
    "*_gaussian": "the same measure for samples of the best-fit Gaussian (the training data's mean and "
    "covariance): the baseline a model should beat",
    "energy_distance_data": "the same measure for further points of the data law (fresh draws of toy or "
    "simulated data; training rows of a data file): what a perfect model scores with these sample sizes",
    "selected_step": "the step whose model was kept: the latest one whose energy distance to the validation split "
    "(train.validation_fraction) is within two standard errors of the lowest seen (the standard error of the "
    "difference of two scores over the same validation points) and lower than the untrained model's by more than "
    "two such errors (0: training never showed that it helps), or the last step without a validation split",
}


def _evaluate(config, model, data: _Data, history, run_dir: Path, quiet: bool) -> dict:
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr

    from ._datafile import column_names
    from .._generative._metrics import energy_distance, sliced_wasserstein, smoothed_nll
    from .._generative._plots import plot_loss, plot_samples
    from .._plotting import can_plot

    eval_cfg = config["eval"]
    key = jr.key(eval_cfg["seed"])
    samples = model.sample(eval_cfg["num_samples"], key=key)

    @eqx.filter_jit  # one compilation instead of one per operation: most of the time of a short run
    def compare(samples, points, scaling):
        # In the model's units (see _NOTES["units"]).
        fitted, train, heldout, reference = map(scaling.standardize, (samples, *points))
        mean, cov = jnp.mean(train, 0), jnp.atleast_2d(jnp.cov(train.T))  # a 1x1 matrix for 1-D data
        gaussian = mean + jr.normal(jr.fold_in(key, 1), fitted.shape, mean.dtype) @ jnp.linalg.cholesky(cov).T
        slice_key = jr.fold_in(key, 3)
        return {
            "energy_distance": energy_distance(fitted, heldout),
            "energy_distance_gaussian": energy_distance(gaussian, heldout),
            "energy_distance_data": energy_distance(reference, heldout),
            "sliced_wasserstein": sliced_wasserstein(fitted, heldout, key=slice_key),
            "sliced_wasserstein_gaussian": sliced_wasserstein(gaussian, heldout, key=slice_key),
            "heldout_nll": smoothed_nll(fitted, heldout, eval_cfg["bandwidth"]),
            "heldout_nll_gaussian": smoothed_nll(gaussian, heldout, eval_cfg["bandwidth"]),
        }

    values = compare(samples, (data.train, data.heldout, data.reference), model.scaling)
    metrics = {name: float(values[name]) for name in _METRICS}  # in this order (jit returns dicts sorted)
    metrics["selected_step"] = history.best_step if history.best_step is not None else len(history.records)
    metrics["columns"] = column_names(config["data"]["path"] or None, model.dim, config["data"]["time_column"])
    if config["model"]["name"] != "neural":
        metrics["parameters"] = _fitted_parameters(model.sde)
    (run_dir / "eval.json").write_text(json.dumps({**metrics, "notes": _NOTES}, indent=2) + "\n")
    plots = can_plot("the figures samples.png and loss.png")
    if plots and model.dim >= 2:  # a scatter of the first two coordinates, in the data's units
        title = (
            f"energy distance to held-out data: model {metrics['energy_distance']:.4f}, best-fit Gaussian "
            f"{metrics['energy_distance_gaussian']:.4f},\nmore data of the same law "
            f"{metrics['energy_distance_data']:.4f} (the floor; lower is better, see eval.json)"
        )
        plot_samples(samples, data.heldout, run_dir / "samples.png", title, metrics["columns"])
    if plots and history.records:
        plot_loss(history.records, run_dir / "loss.png", history.validation, history.best_step)
    if not quiet:
        _print_metrics(metrics)
    return metrics


def _fitted_parameters(sde) -> dict:
    """``{label: value}`` of a named model's fitted parameters, for eval.json."""
    import jax
    import numpy as np

    from ._systems import parameter_labels
    from .._sde._abstract import parameters

    values = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(parameters(sde))])
    return dict(zip(parameter_labels(sde), map(float, values)))


def _print_metrics(metrics: dict) -> None:
    """One line per number: a dict's entries under its name, a list joined."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            for label, number in value.items():
                print(f"  {name + ' ' + label:28s} {number:.5g}")
        elif isinstance(value, list):
            print(f"  {name:28s} {', '.join(value)}")
        else:
            print(f"  {name:28s} {value:.5g}")


def _evaluate_snapshots(config, model, data: _Data, history, run_dir: Path, quiet: bool) -> dict:
    """Per held-out time: the model's energy distance and sliced Wasserstein to the held-out points,
    and the data's own (more training points of that time); ``snapshots.png`` and ``loss.png``."""
    import jax.random as jr

    from ._datafile import column_names
    from .._generative._metrics import energy_distance, sliced_wasserstein
    from .._generative._plots import plot_loss, plot_snapshots

    key = jr.key(config["eval"]["seed"])
    times = [t for t in data.heldout if t > model.t0]
    per_time = {}
    for k, time in enumerate(times):
        fitted, heldout, reference = (model.scaling.standardize(x) for x in
                                      (model.sample(config["eval"]["num_samples"], key=jr.fold_in(key, k), t=time),
                                       data.heldout[time], data.reference[time]))  # fmt: skip
        per_time[str(time)] = {
            "energy_distance": float(energy_distance(fitted, heldout)),
            "energy_distance_data": float(energy_distance(reference, heldout)),
            "sliced_wasserstein": float(sliced_wasserstein(fitted, heldout, key=jr.fold_in(key, 1000 + k))),
        }
    mean = lambda name: sum(v[name] for v in per_time.values()) / len(per_time)
    metrics = {"energy_distance": mean("energy_distance"), "energy_distance_data": mean("energy_distance_data"),
               "selected_step": history.best_step if history.best_step is not None else len(history.records),
               "times": per_time,
               "columns": column_names(config["data"]["path"] or None, model.dim, config["data"]["time_column"])}
    notes = {"units": _NOTES["units"], "energy_distance": "mean over the held-out times of the per-time values",
             "columns": _NOTES["columns"]}  # fmt: skip
    (run_dir / "eval.json").write_text(json.dumps({**metrics, "notes": notes}, indent=2) + "\n")
    plot_snapshots(model, data.heldout, run_dir / "snapshots.png", key=key, columns=metrics["columns"])
    if history.records:
        plot_loss(history.records, run_dir / "loss.png", history.validation, history.best_step)
    if not quiet:
        for time, values in per_time.items():
            print(f"  t = {time:10s} " + ", ".join(f"{name} {value:.5g}" for name, value in values.items()))
    return metrics


def _diverged(history) -> bool:
    """Whether training stopped on a non-finite loss (not by early stopping)."""
    return history.stop_reason is not None and not history.stopped_early

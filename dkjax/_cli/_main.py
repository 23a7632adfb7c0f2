"""The ``dkjax`` command line: ``train``, ``sample``, ``response`` and ``bench`` (argparse subcommands).

Each subcommand is added by an ``_add_<name>(subparsers)`` function that sets its handler and
its own parser (so that a usage error shows the subcommand's usage line); further subcommands
plug in the same way.
"""

import argparse
import dataclasses
import datetime
import json
import sys
import tomllib
from pathlib import Path

_DEFAULT_CONFIG = Path("configs/two_moons.toml")
_CONFIG_FILE = "config.toml"
_MODEL_FILE = "model.eqx"
# What a resumed run may change: settings that act after training or only on when checkpoints are written.
_FREE_ON_RESUME = ("eval.", "run.name", "train.checkpoint_every")


def _dtype(config):
    import jax
    import jax.numpy as jnp

    if config["train"]["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    return jnp.dtype(config["train"]["dtype"])


def _initial(config, dtype, dim: int):
    import jax.numpy as jnp

    from .._generative._data import gaussian_initial

    mean = jnp.full(dim, config["model"]["initial_mean"], dtype)
    return gaussian_initial(mean, config["model"]["initial_std"])


def _sde_class_model(config, dtype):
    """The config's SDE class (``model.name`` other than ``"neural"``) with its initial parameters."""
    from ._systems import build_system

    model_cfg = config["model"]
    return build_system(
        model_cfg["name"], model_cfg["parameters"], dtype, name_key="model.name", parameters_key="model.parameters"
    )


def _model(config, dtype, dim: int, what: str | None):
    """The model to train: a ``NeuralSDE`` or the config's SDE class, checked against ``dim``."""
    import equinox as eqx
    import jax
    import jax.random as jr

    from ._systems import check_dimension
    from .._sde._neural import NeuralSDE

    model_cfg = config["model"]
    if model_cfg["name"] == "neural":
        model = NeuralSDE(
            dim, key=jr.key(model_cfg["seed"]), width=model_cfg["width"], depth=model_cfg["depth"],
            noise=model_cfg["noise"], sigma_init=model_cfg["sigma_init"],
            state_dependent=model_cfg["state_dependent"],
        )  # fmt: skip
    else:
        model = _sde_class_model(config, dtype)
        check_dimension(model, dim, dtype, "data.dim", model_cfg["name"], what=what)
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)


@dataclasses.dataclass
class _Plan:
    """What a train config describes, read and built before any work: errors come first."""

    dtype: object
    dim: int
    model: object  # the SDE to train, at its initial parameters
    rows: object  # a data file's rows (float64), {time: rows} for snapshots, or None for generated data
    data_system: object  # the SDE that simulates the data, or None


def _plan(config) -> _Plan:
    """Reads the data file, builds the model (and the data's SDE) and checks their dimensions.

    Raises:
        ConfigError, DataFileError: naming the config key.
    """
    from ._config import data_source
    from ._systems import build_system, check_dimension
    from ._datafile import is_snapshot_file, load_data_file, load_snapshot_file

    dtype = _dtype(config)
    data_cfg = config["data"]
    source = data_source(config)
    rows, data_system, what = None, None, None
    if source == "file":
        if is_snapshot_file(data_cfg["path"], data_cfg["time_column"]):
            rows = load_snapshot_file(data_cfg["path"], data_cfg["time_column"])
            dim = next(iter(rows.values())).shape[1]
        else:
            rows = load_data_file(data_cfg["path"])
            dim = rows.shape[1]
        what = f"data.path: {data_cfg['path']} with {dim} column(s)"
    else:
        dim = data_cfg["dim"] if source == "simulated" else 2
    if source == "simulated":
        data_system = build_system(
            data_cfg["system"], data_cfg["parameters"], dtype, name_key="data.system",
            parameters_key="data.parameters",
        )  # fmt: skip
        check_dimension(data_system, dim, dtype, "data.dim", data_cfg["system"])
    return _Plan(dtype, dim, _model(config, dtype, dim, what), rows, data_system)


@dataclasses.dataclass
class _Data:
    """A run's data, in the data's own units."""

    train: object
    heldout: object  # never trained on: the points of eval.json's distances
    reference: object  # further points of the data law, independent of the held-out ones


def _generated(config, plan: _Plan, key, n: int):
    """``n`` points: a toy set, or snapshots at ``train.t1`` of ``data.system`` from the initial law."""
    import jax.random as jr

    from .._generative._data import toy_data
    from .._engine._simulate import simulate

    if plan.data_system is None:
        return toy_data(config["data"]["name"], key, n).astype(plan.dtype)
    init_key, path_key = jr.split(key)
    x0 = _initial(config, plan.dtype, plan.dim)(init_key, n)[0]
    return simulate(
        plan.data_system, x0, t1=config["train"]["t1"], num_steps=config["data"]["num_steps"], key=path_key
    )


def _data(config, plan: _Plan) -> _Data:
    """The training, held-out and reference points (a data file split by ``data.heldout_fraction``).

    Raises:
        ConfigError, DataFileError: a split leaving fewer than 2 rows, or simulated data
            that are not finite.
    """
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    from ._config import ConfigError
    from ._datafile import split_rows

    data_cfg, num_eval = config["data"], config["eval"]["num_samples"]
    if isinstance(plan.rows, dict):
        return _snapshot_data(plan, data_cfg, num_eval)
    if plan.rows is not None:
        train, heldout = split_rows(plan.rows, data_cfg["heldout_fraction"], data_cfg["seed"])
        as_array = lambda rows: jnp.asarray(rows, plan.dtype)  # noqa: E731
        # The split shuffled the rows, so the first ones are a random subset.
        return _Data(as_array(train), as_array(heldout), as_array(train[:num_eval]))
    key = jr.key(data_cfg["seed"])
    sizes = (data_cfg["num_points"], data_cfg["heldout_points"], num_eval)
    data = _Data(*(_generated(config, plan, jr.fold_in(key, i), n) for i, n in enumerate(sizes)))
    bad = sum(int(np.sum(~np.all(np.isfinite(np.asarray(x)), axis=1))) for x in dataclasses.astuple(data))
    if bad:
        raise ConfigError(
            f"data.system: {bad} simulated snapshot(s) of {data_cfg['system']} are not finite; "
            "raise data.num_steps or change data.parameters."
        )
    return data


def _snapshot_data(plan: _Plan, data_cfg, num_eval: int) -> _Data:
    """Each time's rows split by ``data.heldout_fraction``: ``_Data`` of ``{time: array}`` mappings."""
    import jax.numpy as jnp

    from ._datafile import split_rows

    train, heldout, reference = {}, {}, {}
    for k, (time, rows) in enumerate(plan.rows.items()):
        key = f"data.heldout_fraction (time {time})"
        train[time], heldout[time] = (
            jnp.asarray(part, plan.dtype) for part in split_rows(rows, data_cfg["heldout_fraction"], data_cfg["seed"] + k, key=key)
        )  # fmt: skip
        reference[time] = train[time][:num_eval]
    return _Data(train, heldout, reference)


def _pooled(points):
    """One array of all the points: a mapping's times stacked, or the array itself."""
    import jax.numpy as jnp

    return jnp.concatenate(list(points.values())) if isinstance(points, dict) else points


def _scaling(config, plan: _Plan, train):
    """The run's ``DataScaling``: standardising per column, or the identity (``data.standardize``)."""
    from ._config import ConfigError, standardizes
    from .._generative._model import DataScaling

    if not standardizes(config):
        return DataScaling.identity(plan.dim, plan.dtype)
    try:
        return DataScaling.fit(_pooled(train))
    except ValueError as error:
        raise ConfigError(
            f"data.standardize: {str(error).rstrip('.')} (columns counted from 0). Drop the column, or set "
            "data.standardize = false."
        ) from error


def _check_validation_split(config, train) -> None:
    """The split that ``fit`` will make for model selection, checked now (it draws only a permutation)."""
    import jax.random as jr

    from ._config import ConfigError
    from .._generative._train import _split_validation

    fraction = config["train"]["validation_fraction"]
    if fraction:
        try:
            for points in train.values() if isinstance(train, dict) else [train]:
                _split_validation(points, float(fraction), points.shape[1], jr.key(0))
        except ValueError as error:
            raise ConfigError(f"train.validation_fraction: {error}") from error


def _new_run_dir(config, out) -> Path:
    """``--out`` if given, else ``runs/<run.name>-<timestamp>``."""
    if out is not None:
        return Path(out)
    return Path("runs") / f"{config['run']['name']}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _run_config(run_dir: Path, option: str, overrides=()):
    """The train config of the run folder ``run_dir`` (given by ``option``), with ``overrides``.

    Raises:
        ConfigError: ``run_dir`` is not a run folder, or is one of ``dkjax response``.
    """
    from ._config import ConfigError, train_config

    path = run_dir / _CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{option}: {path} does not exist; is {run_dir} a dkjax train run folder?")
    try:
        sections = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        sections = {}  # train_config names the error
    if "response" in sections or "system" in sections:
        raise ConfigError(
            f"{option}: {run_dir} is a run folder of dkjax response (results.json, response.png), which has no "
            "trained model; give a run folder of dkjax train."
        )
    return train_config(path, overrides)


def _resume_config(run_dir: Path, overrides) -> tuple[dict, bool, int]:
    """``(config, changed, step)`` of a run to resume: its config with ``overrides``, whether
    those changed it, and the step of its latest checkpoint (0 if none).

    Raises:
        ConfigError: an override that contradicts the run's checkpoints (each one named), or
            a checkpoint of another step count than the config's.
    """
    from .._generative._checkpoint import latest_record
    from ._config import ConfigError

    saved = _run_config(run_dir, "--resume")
    config = _run_config(run_dir, "--resume", overrides)
    changed = [
        (f"{section}.{name}", value, saved[section][name])
        for section, values in config.items()
        for name, value in values.items()
        if value != saved[section][name]
    ]
    conflicts = [entry for entry in changed if not entry[0].startswith(_FREE_ON_RESUME)]
    if conflicts:
        listed = "; ".join(f"{key} = {new!r} (the run has {old!r})" for key, new, old in conflicts)
        raise ConfigError(
            f"--resume: {listed}. A resumed run keeps the settings its checkpoints were made with; only "
            "eval.* and train.checkpoint_every may change. For other settings start a new run: "
            f"dkjax train --config {run_dir / _CONFIG_FILE} --set ... --out NEW_FOLDER."
        )
    record = latest_record(run_dir / "checkpoints")
    if record is None:
        return config, bool(changed), 0
    steps = config["train"]["steps"]
    if record.get("steps", steps) != steps:
        raise ConfigError(
            f"--resume: the checkpoint at step {record['step']} belongs to a run of train.steps = "
            f"{record['steps']}, but {run_dir / _CONFIG_FILE} says {steps}; the learning-rate schedule spans "
            "train.steps, so a run cannot be lengthened or shortened. Start a new run instead."
        )
    return config, bool(changed), record["step"]


def _auto(value):
    return None if value == "auto" else value


_METRICS = ("energy_distance", "energy_distance_gaussian", "energy_distance_data", "sliced_wasserstein",
            "sliced_wasserstein_gaussian", "heldout_nll", "heldout_nll_gaussian")  # fmt: skip
_NOTES = {
    "units": "the distances compare points in the units the model trains in: standardised (each column minus its "
    "training mean, over its training standard deviation) when data.standardize is on, so that every column "
    "counts alike; else the data's own units",
    "energy_distance": "between eval.num_samples model samples and the held-out data, which training never saw; "
    "lower is better",
    "sliced_wasserstein": "the same comparison by the sliced 1-Wasserstein distance",
    "heldout_nll": "negative log-likelihood (nats per point) of the held-out data under a Gaussian kernel density "
    "estimate of the model samples of bandwidth eval.bandwidth; lower is better",
    "*_gaussian": "the same measure for samples of the best-fit Gaussian (the training data's mean and "
    "covariance): the baseline a model should beat",
    "energy_distance_data": "the same measure for further points of the data law (fresh draws of toy or "
    "simulated data; training rows of a data file): what a perfect model scores with these sample sizes",
    "selected_step": "the step whose model was kept: the latest one whose energy distance to the validation split "
    "(train.validation_fraction) is within two standard errors of the lowest seen, or the last step without one",
}


def _evaluate(config, model, data: _Data, history, run_dir: Path, quiet: bool) -> dict:
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr

    from ._systems import parameter_labels
    from .._generative._metrics import energy_distance, sliced_wasserstein, smoothed_nll
    from .._generative._plots import can_plot, plot_loss, plot_samples

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
    if config["model"]["name"] != "neural":
        import jax
        import numpy as np

        from .._sde._abstract import parameters

        values = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(parameters(model.sde))])
        metrics["parameters"] = dict(zip(parameter_labels(model.sde), map(float, values)))
    (run_dir / "eval.json").write_text(json.dumps({**metrics, "notes": _NOTES}, indent=2) + "\n")
    plots = can_plot("the figures samples.png and loss.png")
    if plots and model.dim >= 2:  # a scatter of the first two coordinates, in the data's units
        title = (
            f"energy distance to held-out data: model {metrics['energy_distance']:.4f}, best-fit Gaussian "
            f"{metrics['energy_distance_gaussian']:.4f},\nmore data of the same law "
            f"{metrics['energy_distance_data']:.4f} (the floor; lower is better, see eval.json)"
        )
        plot_samples(samples, data.heldout, run_dir / "samples.png", title)
    if plots and history.records:
        plot_loss(history.records, run_dir / "loss.png", history.validation, history.best_step)
    if not quiet:
        for name, value in metrics.items():
            if isinstance(value, dict):
                for label, number in value.items():
                    print(f"  {name + ' ' + label:28s} {number:.5g}")
            else:
                print(f"  {name:28s} {value:.5g}")
    return metrics


def _evaluate_snapshots(config, model, data: _Data, history, run_dir: Path, quiet: bool) -> dict:
    """Per held-out time: the model's energy distance and sliced Wasserstein to the held-out points,
    and the data's own (more training points of that time); ``snapshots.png`` and ``loss.png``."""
    import jax.random as jr

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
               "times": per_time}  # fmt: skip
    notes = {"units": _NOTES["units"], "energy_distance": "mean over the held-out times of the per-time values"}
    (run_dir / "eval.json").write_text(json.dumps({**metrics, "notes": notes}, indent=2) + "\n")
    plot_snapshots(model, data.heldout, run_dir / "snapshots.png", key=key)
    if history.records:
        plot_loss(history.records, run_dir / "loss.png", history.validation, history.best_step)
    if not quiet:
        for time, values in per_time.items():
            print(f"  t = {time:10s} " + ", ".join(f"{name} {value:.5g}" for name, value in values.items()))
    return metrics


def _diverged(history) -> bool:
    """Whether training stopped on a non-finite loss (not by early stopping)."""
    return history.stop_reason is not None and not history.stopped_early


def _fit(config, plan: _Plan, data: _Data, scaling, run_dir: Path, resume: bool, progress: bool):
    """Trains the plan's model on the standardised training data; returns ``(GenerativeModel, history)``."""
    import jax.random as jr

    from .._generative._model import GenerativeModel
    from .._generative._train import fit
    from .._generative._settings import TrainSettings

    cfg = config["train"]
    settings = {
        field.name: cfg[field.name] for field in dataclasses.fields(TrainSettings) if field.name != "validation_fraction"
    }
    initial, t1 = _initial(config, plan.dtype, plan.dim), cfg["t1"]
    if isinstance(data.train, dict):
        initial, train, t1 = _snapshot_setup(initial, data.train, scaling, t1)
    else:
        train = scaling.standardize(data.train)
    model, history = fit(
        plan.model, train, initial, t1=t1, num_steps=cfg["num_steps"],
        key=jr.key(cfg["seed"]), steps=cfg["steps"], **settings,
        validation=float(cfg["validation_fraction"]) or None, patience=cfg["patience"] or None,
        bandwidth=_auto(cfg["bandwidth"]), min_bandwidth=_auto(cfg["min_bandwidth"]),
        path_chunk=None if cfg["path_chunk"] == "all" else cfg["path_chunk"],
        checkpoint_dir=run_dir / "checkpoints", checkpoint_every=cfg["checkpoint_every"], resume=resume,
        metrics_file=run_dir / "metrics.jsonl", progress=progress,
    )  # fmt: skip
    return GenerativeModel(model, initial, scaling, 0.0, float(t1), cfg["num_steps"]), history


def _snapshot_setup(initial, snapshots: dict, scaling, t1: float):
    """``(initial, training snapshots, t1)`` in standardised units for a snapshot file.

    A snapshot at time 0 is the initial law (its samples, drawn with replacement); otherwise
    the config's Gaussian one. The grid runs to ``train.t1`` or the last time, whichever is later.
    """
    from .._generative._snapshots import EmpiricalInitial

    train = {time: scaling.standardize(points) for time, points in snapshots.items()}
    if 0.0 in train:
        initial = EmpiricalInitial(train.pop(0.0))
    return initial, train, _grid_end(t1, snapshots)


def _grid_end(t1: float, snapshots: dict) -> float:
    """The end of a snapshot run's time grid: ``train.t1`` or the last time, whichever is later."""
    return max(float(t1), max(snapshots))


def _check_snapshot_times(config, train) -> None:
    """The snapshot times, checked against the time grid now rather than when training starts.

    Raises:
        ConfigError: a time before 0 or off the grid, named with the keys that set the grid.
    """
    from ._config import ConfigError
    from .._generative._snapshots import grid_steps

    if not isinstance(train, dict):
        return
    cfg = config["train"]
    t1 = _grid_end(cfg["t1"], train)
    try:
        grid_steps([time for time in train if time != 0.0], 0.0, t1, cfg["num_steps"])
    except ValueError as error:
        raise ConfigError(
            f"data.path: {config['data']['path']}: {str(error).rstrip('.')}. Snapshot times must lie after t = 0 "
            f"(a snapshot at 0 is the initial law) on the grid of train.num_steps = {cfg['num_steps']} steps to "
            f"{t1:g} (train.t1 or the last time); choose train.num_steps so that every time is a multiple of the step."
        ) from error


def _train(args, parser) -> int:
    from ._config import ConfigError, applicable, data_source, dump_config, train_config
    from ._datafile import DataFileError
    from .._generative._model import save_model

    if args.resume is not None and (args.config is not None or args.out is not None):
        parser.error("--resume RUN_DIR continues RUN_DIR with its own config.toml; do not also give --config or --out.")
    try:
        if args.resume is not None:
            run_dir = Path(args.resume)
            config, changed, start = _resume_config(run_dir, args.set)
        else:
            path = args.config if args.config is not None else (_DEFAULT_CONFIG if _DEFAULT_CONFIG.is_file() else None)
            config, changed, start = train_config(path, args.set), True, 0
            run_dir = _new_run_dir(config, args.out)
            if (run_dir / "checkpoints").exists():
                raise ConfigError(f"--out: {run_dir} already holds a run; use --resume {run_dir} to continue it.")
        plan = _plan(config)
        data = _data(config, plan)
        scaling = _scaling(config, plan, data.train)
        _check_validation_split(config, data.train)
        _check_snapshot_times(config, data.train)
    except (ConfigError, DataFileError) as error:
        parser.error(str(error))

    run_dir.mkdir(parents=True, exist_ok=True)
    if changed:
        (run_dir / _CONFIG_FILE).write_text(dump_config(applicable(config)))
    cfg = config["train"]
    source = config["data"]["path"] if data_source(config) == "file" else config["data"]["name"]
    if not args.quiet:
        resuming = f", resuming from step {start}" if args.resume is not None else ""
        print(f"dkjax train: {source}, {cfg['steps']} steps{resuming}, run folder {run_dir}")
    model, history = _fit(config, plan, data, scaling, run_dir, args.resume is not None, not args.quiet)
    save_model(run_dir / _MODEL_FILE, model)
    if _diverged(history):
        print(f"dkjax train: {history.stop_reason}", file=sys.stderr)
        print(f"dkjax train: run folder {run_dir} ({_MODEL_FILE}: the model kept before the failure)", file=sys.stderr)
        return 1
    if isinstance(data.train, dict):
        metrics = _evaluate_snapshots(config, model, data, history, run_dir, args.quiet)
        print(
            f"dkjax train: {len(history.records)} steps, kept step {metrics['selected_step']}, mean energy distance "
            f"to the held-out snapshots {metrics['energy_distance']:.4g} (the data's own "
            f"{metrics['energy_distance_data']:.4g}); run folder {run_dir}"
        )
        return 0
    metrics = _evaluate(config, model, data, history, run_dir, args.quiet)
    done = len(history.records)
    stopped = f"stopped early after {done} of {cfg['steps']} steps" if done < cfg["steps"] else f"finished {done} steps"
    resumed = f" (resumed from step {start})" if args.resume is not None else ""
    print(
        f"dkjax train: {stopped}{resumed}, kept step {metrics['selected_step']}, final loss {history.loss[-1]:.4g}, "
        f"energy distance to held-out data {metrics['energy_distance']:.4g} (best-fit Gaussian "
        f"{metrics['energy_distance_gaussian']:.4g}, the data's own {metrics['energy_distance_data']:.4g}); "
        f"run folder {run_dir}"
    )
    return 0


def _sample(args, parser) -> int:
    import numpy as np

    from ._config import ConfigError
    from .._generative._model import load_model

    run_dir, out = Path(args.run), Path(args.out)
    out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")  # as numpy.save names it
    try:
        config = _run_config(run_dir, "--run")
        if not (run_dir / _MODEL_FILE).is_file():
            raise ConfigError(
                f"--run: {run_dir} has no {_MODEL_FILE}, so its training has not finished; continue it with "
                f"dkjax train --resume {run_dir}."
            )
        if args.num < 1:
            raise ConfigError(f"--num must be >= 1; got {args.num}.")
        if out.is_dir():
            raise ConfigError(f"--out: {out} is a folder; give a file name such as {out / 'samples.npy'}.")
        dtype = _dtype(config)
        # A NeuralSDE is rebuilt from the file; an SDE class needs its structure from the config.
        like = None if config["model"]["name"] == "neural" else _sde_class_model(config, dtype)
        model = load_model(run_dir / _MODEL_FILE, like=like)
        existing = next(folder for folder in (out.parent, *out.parent.parents) if folder.exists())
        if not existing.is_dir():
            raise ConfigError(f"--out: {existing} is a file, so the folder {out.parent} cannot be made.")
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    import jax.random as jr

    t = model.t1 if args.time is None else args.time
    try:
        xs = model.sample(args.num, key=jr.key(args.seed), t=t)
    except ValueError as error:  # t off the model's time grid, found before any simulation
        parser.error(f"--time: {error}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(xs))
    print(f"dkjax sample: {args.num} samples at t = {t:g} from {run_dir / _MODEL_FILE} written to {out}")
    return 0


def _add_config_arguments(parser, default_config: str) -> None:
    parser.add_argument("--config", type=Path, help=f"TOML config (default: {default_config})")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key (repeatable)"
    )
    parser.add_argument("--out", help="run folder (default: runs/<run.name>-<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or tables; only the final summary line")


def _subparser(subparsers, name: str, help: str, description: str, examples: str):
    return subparsers.add_parser(
        name, help=help, description=description, epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _add_train(subparsers) -> None:
    train = _subparser(
        subparsers, "train",
        help="train a generative SDE (or fit an SDE's parameters) on data, with forward-only DK gradients",
        description="Train a NeuralSDE (or an SDE class) on a toy set, simulated data or your own .npy/.csv file "
        "([data] path) from a TOML config; writes a run folder with the config, model.eqx (the trained model, "
        "which samples itself), checkpoints, metrics.jsonl, eval.json, samples.png and loss.png.",
        examples="  dkjax train --config configs/two_moons.toml\n"
        "  dkjax train --config configs/two_moons.toml --set train.steps=100 --set data.name=pinwheel --out runs/pw\n"
        "  dkjax train --set data.path=measurements.csv --out runs/mine   # your own data, standardised\n"
        "  dkjax train --resume runs/pw          # continue after an interruption, bit-identically\n",
    )  # fmt: skip
    _add_config_arguments(train, f"{_DEFAULT_CONFIG} if present")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.set_defaults(handler=_train, parser=train)


def _add_sample(subparsers) -> None:
    sample = _subparser(
        subparsers, "sample", help="draw samples from a trained run",
        description="Draw samples of a dkjax train run's model (RUN_DIR/model.eqx) into a .npy file, in the "
        "data's own units. In Python: dkjax.load_model('RUN_DIR/model.eqx').sample(n, key=...).",
        examples="  dkjax sample --run runs/pw --num 10000 --out samples.npy --seed 1\n"
        "  dkjax sample --run runs/pw --num 1000 --out out/half_way.npy --time 0.5\n",
    )  # fmt: skip
    sample.add_argument("--run", required=True, metavar="RUN_DIR", help="a folder written by dkjax train")
    sample.add_argument("--num", type=int, required=True, help="number of samples")
    sample.add_argument("--out", required=True, help="output .npy file (its folder is created)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed")
    sample.add_argument("--time", type=float, help="a time on the model's grid in (0, t1] (default: t1, the data)")
    sample.set_defaults(handler=_sample, parser=sample)


def _response(args, parser) -> int:
    from . import _response_command as command
    from ._config import ConfigError, dump_config, load_config

    try:
        config = load_config(args.config, args.set, command.RESPONSE_SCHEMA)
        plan = command.prepare(config)
    except ConfigError as error:
        parser.error(str(error))
    run_dir = _new_run_dir(config, args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _CONFIG_FILE).write_text(dump_config(config))
    cfg = config["response"]
    if not args.quiet:
        print(f"dkjax response: {config['system']['name']}, {cfg['num_paths']} paths to T = {cfg['t1']}, "
              f"run folder {run_dir}")  # fmt: skip
    try:
        results = command.run(config, plan, run_dir, args.quiet)
    except (ValueError, FloatingPointError) as error:  # the library's own checks, e.g. a singular Sigma
        print(f"dkjax response: {error}", file=sys.stderr)
        return 1
    print(
        f"dkjax response: {len(results['observables'])} observable(s) x {len(plan.labels)} parameter(s) from "
        f"{results['num_paths']} paths ({results['num_nonfinite']} non-finite excluded, "
        f"{results['num_nonfinite_spinup']} lost in the spin-up) in "
        f"{results['seconds']:.1f} s; kernel rate {results['kernel_rate']:.3g}; run folder {run_dir}"
    )
    return 0


def _add_response(subparsers) -> None:
    from ._response_command import OBSERVABLES, SYSTEMS

    response = _subparser(
        subparsers, "response",
        help="linear responses d/dparam E[phi(X_T)] of a built-in or user SDE",
        description="Estimate the derivative of E[phi(X_T)] with respect to every parameter of an SDE by the "
        "divergence-kernel method (dkjax.observable_response), with standard errors. The system is one of "
        f"{', '.join(SYSTEMS)} or a user class given as module:Class (or path/to/file.py:Class); observables "
        f"are {', '.join(f'{name} ({what})' for name, what in OBSERVABLES.items())} or module:function. Writes config.toml, results.json and response.png.",
        examples="  dkjax response --config configs/lorenz96_response.toml\n"
        "  dkjax response --config configs/lorenz96_response.toml --set response.num_paths=20000 --quiet\n"
        "  dkjax response --set system.name=my_sdes:Duffing --set 'system.parameters={ a = 1.0, s = 0.5 }' "
        "--set initial.dim=1\n",
    )  # fmt: skip
    _add_config_arguments(response, "an Ornstein-Uhlenbeck example")
    response.set_defaults(handler=_response, parser=response)


def _bench(args, parser) -> int:
    import importlib

    root = Path(__file__).resolve().parent.parent
    try:
        if (root / "benchmarks" / "run.py").is_file() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
        suite = importlib.import_module("benchmarks.run")
    except ImportError as error:
        print(
            f"dkjax bench: the benchmark suite (benchmarks/run.py) is not importable ({error}). It ships with the "
            "dkjax repository, not with the installed package: run dkjax bench from a clone of the repository.",
            file=sys.stderr,
        )
        return 2
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    suite.main(["--suite", args.suite, *extra])  # returns its results; failures raise
    print(f"dkjax bench: suite {args.suite} finished")
    return 0


def _add_bench(subparsers) -> None:
    bench = _subparser(
        subparsers, "bench", help="run the benchmark suite (needs the repository's benchmarks/ folder)",
        description="Run the benchmark suite benchmarks/run.py of the dkjax repository. Arguments after -- go "
        "to the suite unchanged.",
        examples="  dkjax bench --suite quick\n  dkjax bench --suite full -- --help\n",
    )  # fmt: skip
    bench.add_argument("--suite", choices=("quick", "full"), default="quick", help="quick: minutes on a CPU; full: a GPU")
    bench.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed on to the suite (after --)")
    bench.set_defaults(handler=_bench, parser=bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``dkjax`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="dkjax", description="Divergence-kernel responses and DK-SDE training.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_response(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dkjax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, args.parser)

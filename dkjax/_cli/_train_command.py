"""The ``dkjax train`` and ``dkjax sample`` handlers: training a run, and sampling a trained one."""

import dataclasses
import sys
from pathlib import Path

from ._evaluation import _diverged, _evaluate, _evaluate_snapshots
from ._run_dir import _CONFIG_FILE, _DEFAULT_CONFIG, _MODEL_FILE, _new_run_dir, _resume_config, _run_config
from ._run_setup import (
    _check_snapshot_times,
    _check_validation_split,
    _Data,
    _data,
    _dtype,
    _initial,
    _Plan,
    _plan,
    _scaling,
    _sde_class_model,
    _snapshot_setup,
)


def _auto(value):
    return None if value == "auto" else value


def path_schedule_setting(value):
    """``[train] path_schedule``'s module: ``"constant"`` or ``GrowingPaths``'s first count."""
    from .._generative._path_schedule import ConstantPaths, GrowingPaths

    return ConstantPaths() if value == "constant" else GrowingPaths(value)


def _is_table(config, train) -> bool:
    """Whether the run trains on one table of the user's (not toy, simulated or snapshot data)."""
    from ._config import data_source

    return data_source(config) == "file" and not isinstance(train, dict)


def _dequantized(config, train):
    """``(train, discrete)``: a table's discrete columns (``data.discrete_columns``) and the rows with
    those columns drawn in their cells, as ``fit_generative`` does; ``discrete`` is ``None`` without such columns."""
    import jax.random as jr

    from .._generative._discrete import dequantized

    if not _is_table(config, train):
        return train, None
    return dequantized(train, config["data"]["discrete_columns"], jr.key(config["train"]["seed"]))


def _check_discrete_columns(config, train) -> None:
    """``data.discrete_columns`` checked against the table before training (detection only, no draws)."""
    from ._config import ConfigError
    from .._generative._discrete import DiscreteColumns

    if not _is_table(config, train):
        return
    try:
        DiscreteColumns.detect(train, config["data"]["discrete_columns"])
    except ValueError as error:
        raise ConfigError(f"data.{error}") from error


def _fit(config, plan: _Plan, data: _Data, scaling, run_dir: Path, resume: bool, progress: bool):
    """Trains the plan's model on the standardised training data; returns ``(GenerativeModel, history)``."""
    import jax.random as jr

    from .._generative._model import GenerativeModel
    from .._generative._path_cost import Kinetic
    from .._generative._train import fit
    from .._generative._settings import TrainSettings

    cfg = config["train"]
    settings = {
        field.name: cfg[field.name] for field in dataclasses.fields(TrainSettings) if field.name != "validation_fraction"
    }
    settings["path_schedule"] = path_schedule_setting(settings["path_schedule"])
    initial, t1, discrete = _initial(config, plan.dtype, plan.dim), cfg["t1"], None
    if isinstance(data.train, dict):
        initial, train, t1 = _snapshot_setup(initial, data.train, scaling, t1)
    else:
        train, discrete = _dequantized(config, data.train)
        train = scaling.standardize(train)
    model, history = fit(
        plan.model, train, initial, t1=t1, num_steps=cfg["num_steps"],
        key=jr.key(cfg["seed"]), steps=cfg["steps"], **settings,
        validation=float(cfg["validation_fraction"]) or None, patience=cfg["patience"] or None,
        bandwidth=_auto(cfg["bandwidth"]), min_bandwidth=_auto(cfg["min_bandwidth"]),
        path_chunk=None if cfg["path_chunk"] == "all" else cfg["path_chunk"],
        path_cost=Kinetic(float(cfg["kinetic"])) if cfg["kinetic"] else None,
        checkpoint_dir=run_dir / "checkpoints", checkpoint_every=cfg["checkpoint_every"], resume=resume,
        metrics_file=run_dir / "metrics.jsonl", progress=progress,
    )  # fmt: skip
    return GenerativeModel(model, initial, scaling, 0.0, float(t1), cfg["num_steps"], discrete), history


def _write_metrics(path: Path, history) -> None:
    """Rewrites ``metrics.jsonl`` from ``history``, each step's record with the held-out score that followed it.

    ``fit`` writes one record per step as it trains; the held-out evaluations (the lower panel
    of ``loss.png``) are added here: ``validation_energy_distance`` on the record of the step
    after which the model was evaluated, and ``initial_validation_energy_distance`` (the
    untrained model) on the record of step 0.
    """
    import json

    after = {v["step"]: v["energy_distance"] for v in history.validation}
    lines = []
    for record in history.records:
        record = dict(record)
        if record["step"] == 0 and 0 in after:
            record["initial_validation_energy_distance"] = after[0]
        if record["step"] + 1 in after:
            record["validation_energy_distance"] = after[record["step"] + 1]
        lines.append(json.dumps(record) + "\n")
    path.write_text("".join(lines))


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
        _check_discrete_columns(config, data.train)
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
    _write_metrics(run_dir / "metrics.jsonl", history)
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


def _columns(run_dir: Path, dim: int) -> list[str]:
    """The data's column names recorded in the run's ``eval.json`` (``x1``, ... for runs without them)."""
    import json

    try:
        columns = json.loads((run_dir / "eval.json").read_text()).get("columns")
    except (OSError, ValueError):
        columns = None
    return columns if isinstance(columns, list) and len(columns) == dim else [f"x{i + 1}" for i in range(dim)]


def _sample(args, parser) -> int:
    import numpy as np

    from ._config import ConfigError
    from .._generative._model import load_model

    run_dir, out = Path(args.run), Path(args.out)
    try:
        if out.suffix.lower() not in (".npy", ".csv"):
            raise ConfigError(
                f"--out: {out} must end in .npy (a NumPy array) or .csv (a table with a header row); "
                f"got {out.suffix or 'no suffix'!r}."
            )
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
    if out.suffix.lower() == ".csv":
        np.savetxt(out, np.asarray(xs, np.float64), delimiter=",", header=",".join(_columns(run_dir, model.dim)),
                   comments="", fmt="%.17g")  # fmt: skip
    else:
        np.save(out, np.asarray(xs))
    print(f"dkjax sample: {args.num} samples at t = {t:g} from {run_dir / _MODEL_FILE} written to {out}")
    return 0

"""How a ``dkjax train`` run is built from its config: the model, the data and their checks."""

import dataclasses


def _dtype(config):
    import jax
    import jax.numpy as jnp

    if config["train"]["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    return jnp.dtype(config["train"]["dtype"])


def _initial(config, dtype, dim: int):
    import jax.numpy as jnp

    from .._generative._data import GaussianInitial

    mean = jnp.full(dim, config["model"]["initial_mean"], dtype)
    return GaussianInitial(mean, config["model"]["initial_std"])


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
            noise=model_cfg["noise"], sigma_init=model_cfg["sigma_init"], sigma_min=model_cfg["sigma_min"],
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
    from .._engine._save_at import grid_steps

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

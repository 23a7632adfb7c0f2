"""TOML configurations of the ``dkjax`` subcommands: schemas, defaults, overrides and validation.

Every key has a type, a default and a check; any error names the key and what is allowed,
and is raised before any data is generated or any model is built. ``SCHEMA`` is the schema
of ``dkjax train``; other subcommands pass their own to ``load_config``.
"""

import dataclasses
import inspect
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._references import ConfigError, is_reference, resolve_reference
from ._systems import SYSTEMS
from .._generative._data import TOY_DATA
from .._generative._gradient import GRADIENTS
from .._generative._objective import OBJECTIVES
from .._generative._path_schedule import GrowingPaths
from .._generative._settings import TRAIN_DEFAULTS, TrainSettings
from .._sde._neural import NeuralSDE
from .._validation import is_positive


@dataclasses.dataclass(frozen=True)
class _Key:
    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool]
    allowed: str


def _positive_int(default):
    return _Key(default, (int,), lambda v: is_positive(v, integer=True), "an integer >= 1")


def _positive_float(default):
    return _Key(default, (int, float), is_positive, "a finite number > 0")


def _choice(default, choices):
    return _Key(default, (str,), lambda v: v in choices, f"one of {list(choices)}")


def is_number(v) -> bool:
    """A finite int or float (not a bool)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_numeric_array(v) -> bool:
    """A finite number or a (nested) list of them, as TOML writes vectors and matrices."""
    if isinstance(v, list):
        return len(v) > 0 and all(_is_numeric_array(x) for x in v)
    return is_number(v)


def numeric_table(default):
    """A table of constructor arguments: names to numbers or (nested) lists of numbers."""
    return _Key(
        default, (dict,), lambda v: all(_is_numeric_array(x) for x in v.values()),
        "a table of finite numbers or lists of them, e.g. { forcing = 8.0, noise = 0.5 }",
    )  # fmt: skip


def _auto_or_positive(default):
    return _Key(
        default, (str, int, float), lambda v: v == "auto" or (not isinstance(v, str) and v > 0 and math.isfinite(v)),
        '"auto" or a finite number > 0',
    )  # fmt: skip


def _fraction(default, low_open: bool):
    """A number in ``(0, 1)`` (``low_open``) or ``[0, 1)``."""
    if low_open:
        return _Key(default, (int, float), lambda v: 0 < v < 1, "a number in (0, 1)")
    return _Key(default, (int, float), lambda v: 0 <= v < 1, "a number in [0, 1); 0 turns it off")


# The check of every ``dkjax.TrainSettings`` field; the defaults come from ``TRAIN_DEFAULTS``, so the
# command line trains as ``dkjax.fit`` does unless a config says otherwise.
_TRAIN_SETTING_CHECKS: dict[str, Callable[[Any], _Key]] = {
    "num_paths": lambda d: _Key(d, (int,), lambda v: v >= 2, "an integer >= 2"),
    "path_schedule": lambda d: _Key(
        d.start if isinstance(d, GrowingPaths) else "constant", (str, int),
        lambda v: v == "constant" or (not isinstance(v, str) and v >= 2),
        '"constant" or the first stage\'s paths of dkjax.GrowingPaths, an integer >= 2',
    ),  # fmt: skip
    "batch_size": _positive_int,
    "learning_rate": _positive_float,
    "final_lr_fraction": lambda d: _Key(d, (int, float), lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "kernel_rate": lambda d: _Key(
        d, (str, int, float), lambda v: v == "auto" or (not isinstance(v, str) and 0 <= v < math.inf),
        '"auto" or a finite number >= 0',
    ),  # fmt: skip
    "kernel_rate_every": _positive_int,
    "ess_target": _positive_float,
    "objective": lambda d: _choice(d, OBJECTIVES),
    "gradient": lambda d: _choice(d, GRADIENTS),
    "lean_threshold": _positive_int,
    "clip_norm": _positive_float,
    "validation_fraction": lambda d: _fraction(d, low_open=False),
    "validate_every": _positive_int,
    "validation_samples": lambda d: _Key(d, (int,), lambda v: v >= 2, "an integer >= 2"),
}
_TRAIN_SETTINGS = {
    field.name: _TRAIN_SETTING_CHECKS[field.name](getattr(TRAIN_DEFAULTS, field.name))
    for field in dataclasses.fields(TrainSettings)
}
# The NeuralSDE keys of [model] take their defaults from its constructor, as [train] takes its own from
# TRAIN_DEFAULTS. The other sections have no settings object: a dataclass for each, plus this table of
# checks (ranges and choices are not in the types), measured 3.4 times as long for [model] and [eval].
_NEURAL_DEFAULTS = {name: p.default for name, p in inspect.signature(NeuralSDE).parameters.items()}

SCHEMA: dict[str, dict[str, _Key]] = {
    "run": {
        "name": _Key("two_moons", (str,), lambda v: v != "" and "/" not in v, "a non-empty name without '/'"),
    },
    "data": {
        # path, when given, takes the place of name; neither means name = "two_moons" (resolve_train_config).
        "name": _Key(
            "", (str,), lambda v: v in ("",) + tuple(sorted(TOY_DATA)) + ("simulated",),
            f"one of {sorted(TOY_DATA) + ['simulated']}",
        ),  # fmt: skip
        "path": _Key("", (str,), lambda v: True, "a .npy, .csv or .npz file"),
        # Snapshots: a CSV column holding each row's time (a .npz file needs none: one array per time).
        "time_column": _Key("", (str,), lambda v: True, "the name of a CSV column, or empty"),
        "heldout_fraction": _fraction(0.2, low_open=True),
        # A table of one law: columns trained on as cells and sampled back onto their values (DiscreteColumns).
        "discrete_columns": _Key(
            "auto", (str, list), lambda v: v == "auto" or (isinstance(v, list) and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v)),
            '"auto" (columns of at most 10 values) or a list of column indices ([]: none)',
        ),  # fmt: skip
        "standardize": _Key(
            "auto", (str, bool), lambda v: v == "auto" or isinstance(v, bool),
            '"auto" (true for model.name = "neural", false for an SDE class), true or false',
        ),  # fmt: skip
        "num_points": _Key(4096, (int,), lambda v: v >= 2, "an integer >= 2"),
        "heldout_points": _Key(2048, (int,), lambda v: v >= 2, "an integer >= 2"),
        "seed": _Key(0, (int,), lambda v: v >= 0, "an integer >= 0"),
        # name = "simulated": snapshots at train.t1 of this SDE from the model's initial law.
        "system": _Key(
            "Lorenz96", (str,), lambda v: v in SYSTEMS or is_reference(v),
            f"one of {list(SYSTEMS)} or module:Class (a dkjax.AbstractSDE subclass)",
        ),  # fmt: skip
        "parameters": numeric_table({}),
        "dim": _Key(2, (int,), lambda v: v >= 1, "an integer >= 1"),
        "num_steps": _positive_int(400),
    },
    "model": {
        "name": _Key(
            "neural", (str,), lambda v: v in ("neural",) + SYSTEMS or is_reference(v),
            f"\"neural\" (dkjax.NeuralSDE), one of {list(SYSTEMS)} or module:Class",
        ),  # fmt: skip
        "parameters": numeric_table({}),
        "initial_mean": _Key(0.0, (int, float), is_number, "a finite number"),
        "initial_std": _positive_float(1.0),
        "width": _positive_int(_NEURAL_DEFAULTS["width"]),
        "depth": _positive_int(_NEURAL_DEFAULTS["depth"]),
        "noise": _choice(_NEURAL_DEFAULTS["noise"], ("scalar", "diagonal")),
        "sigma_init": _positive_float(_NEURAL_DEFAULTS["sigma_init"]),
        "sigma_min": _Key(
            _NEURAL_DEFAULTS["sigma_min"], (int, float), lambda v: math.isfinite(v) and v >= 0,
            "a number >= 0 (below model.sigma_init)",
        ),  # fmt: skip
        "state_dependent": _Key(_NEURAL_DEFAULTS["state_dependent"], (bool,), lambda v: True, "true or false"),
        "seed": _Key(1, (int,), lambda v: v >= 0, "an integer >= 0"),
    },
    "train": {
        "steps": _positive_int(800),
        "t1": _positive_float(1.0),
        "num_steps": _positive_int(50),
        **_TRAIN_SETTINGS,
        "bandwidth": _auto_or_positive("auto"),
        "min_bandwidth": _auto_or_positive("auto"),
        "path_chunk": _Key(
            "all", (str, int), lambda v: v == "all" or (not isinstance(v, str) and v >= 1), '"all" or an integer >= 1'
        ),
        "patience": _Key(0, (int,), lambda v: v >= 0, "an integer >= 0 (0: never stop early)"),
        "kinetic": _Key(
            0.0, (int, float), lambda v: math.isfinite(v) and v >= 0, "a number >= 0 (0: no path prior)"
        ),  # fmt: skip
        "checkpoint_every": _positive_int(100),
        "seed": _Key(2, (int,), lambda v: v >= 0, "an integer >= 0"),
        "dtype": _choice("float32", ("float32", "float64")),
    },
    "eval": {
        "num_samples": _Key(2048, (int,), lambda v: v >= 2, "an integer >= 2"),
        "bandwidth": _positive_float(0.1),
        "seed": _Key(3, (int,), lambda v: v >= 0, "an integer >= 0"),
    },
}

Schema = dict[str, dict[str, _Key]]


def defaults(schema: Schema = SCHEMA) -> dict[str, dict[str, Any]]:
    """The default configuration of ``schema`` (default: ``dkjax train``'s), section by section."""
    return {section: {name: key.default for name, key in keys.items()} for section, keys in schema.items()}


def _check_value(schema: Schema, section: str, name: str, value) -> None:
    key = schema[section][name]
    # bool is an int in Python; only bool-typed keys accept it.
    wrong_bool = isinstance(value, bool) and bool not in key.types
    if wrong_bool or not isinstance(value, key.types) or not key.check(value):
        raise ConfigError(f"{section}.{name} must be {key.allowed}; got {value!r}.")


def _merge(schema: Schema, config: dict, updates: dict, origin: str) -> None:
    for section, values in updates.items():
        if section not in schema:
            raise ConfigError(f"unknown section [{section}] in {origin}; allowed sections: {list(schema)}.")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {origin} must be a table of keys; got {values!r}.")
        for name, value in values.items():
            if name not in schema[section]:
                raise ConfigError(
                    f"unknown key {section}.{name} in {origin}; allowed keys of [{section}]: {list(schema[section])}."
                )
            _check_value(schema, section, name, value)
            config[section][name] = value


def _parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set needs section.key=value; got {text!r}.")
    path, raw = text.split("=", 1)
    if path.count(".") != 1:
        raise ConfigError(f"--set needs section.key=value (e.g. train.steps=100); got {text!r}.")
    section, name = path.strip().split(".")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word such as auto or kl
    return section, name, value


def load_config(
    path: str | Path | None, overrides: list[str] = (), schema: Schema = SCHEMA
) -> dict[str, dict[str, Any]]:
    """Defaults, then the TOML file at ``path`` (if any), then ``section.key=value`` overrides.

    ``schema`` is the subcommand's schema (default: that of ``dkjax train``).

    Raises:
        ConfigError: a missing or unparsable file, an unknown section or key, a value of
            the wrong type or out of range; the message names the key and the allowed values.

    Example:
        >>> config = load_config("configs/two_moons.toml", ["train.steps=100"])
    """
    config = defaults(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        try:
            _merge(schema, config, tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    for text in overrides:
        section, name, value = _parse_override(text)
        _merge(schema, config, {section: {name: value}}, f"--set {text}")
    return config


def data_source(config) -> str:
    """Where a ``dkjax train`` config's data come from: ``"file"``, ``"simulated"`` or ``"toy"``."""
    data = config["data"]
    if data["path"]:
        return "file"
    return "simulated" if data["name"] == "simulated" else "toy"


def standardizes(config) -> bool:
    """Whether a ``dkjax train`` run standardises its data (``data.standardize``, ``"auto"`` resolved).

    ``"auto"`` standardises for a ``NeuralSDE``, whose weights have no units, and not for an SDE
    class, whose parameters (a rate, a noise level) are meant in the data's own units.
    """
    value = config["data"]["standardize"]
    return config["model"]["name"] == "neural" if value == "auto" else value


def resolve_train_config(config) -> dict[str, dict[str, Any]]:
    """Checks the keys of a ``dkjax train`` config that constrain each other, and settles ``data.name``.

    ``data.path``, when given, takes the place of ``data.name`` (so that ``--set data.path=FILE``
    works on any config), and a ``run.name`` that names a toy set becomes the file's name (so
    that the run folder of ``two_moons.toml --set data.path=mine.csv`` is ``runs/mine-...``);
    without either, the data are ``two_moons``.

    Raises:
        ConfigError: ``data.standardize = true`` for a model that is an SDE class, a fixed
            ``train.kernel_rate`` above ``1 / dt``, or ``model.sigma_min`` not below ``model.sigma_init``.
    """
    data, train, model = config["data"], config["train"], config["model"]
    data["name"] = "" if data["path"] else data["name"] or "two_moons"
    if data["path"] and config["run"]["name"] in TOY_DATA:  # e.g. two_moons.toml's name, for a user's file
        config["run"]["name"] = Path(data["path"]).stem or "data"
    if model["name"] == "neural" and not model["sigma_min"] < model["sigma_init"]:
        raise ConfigError(
            f"model.sigma_min must be below model.sigma_init = {model['sigma_init']}; got {model['sigma_min']}."
        )
    if train["kernel_rate"] != "auto" and train["kernel_rate"] * train["t1"] > train["num_steps"]:
        raise ConfigError(
            f"train.kernel_rate must be <= 1 / dt = {train['num_steps'] / train['t1']:.4g} (dt = t1 / num_steps); "
            f"got {train['kernel_rate']}. Raise train.num_steps or lower the rate."
        )
    if data["standardize"] is True and config["model"]["name"] != "neural":
        raise ConfigError(
            f"data.standardize = true needs model.name = \"neural\"; the parameters of {config['model']['name']} "
            "are meant in the data's own units. Leave data.standardize at \"auto\" (or false)."
        )
    return config


def train_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, dict[str, Any]]:
    """A ``dkjax train`` config: ``load_config`` with the train schema, then ``resolve_train_config``.

    Raises:
        ConfigError: as ``load_config`` and ``resolve_train_config``.

    Example:
        >>> config = train_config("configs/two_moons.toml", ["train.steps=100"])
    """
    return resolve_train_config(load_config(path, overrides))


def applicable(config) -> dict[str, dict[str, Any]]:
    """The keys of a resolved ``dkjax train`` config that take part in its run (the rest are dropped).

    A file run has no toy or simulated-data keys, a toy run no file or simulation keys, a
    ``NeuralSDE`` run no SDE parameters (and the reverse), the energy objective no bandwidth
    keys, a fixed kernel rate no re-measuring interval, a run without validation no
    validation keys.
    """
    model, train = config["model"], config["train"]
    source = data_source(config)
    unused = {
        "file": {"name", "num_points", "heldout_points", "system", "parameters", "dim", "num_steps"},
        "toy": {"path", "time_column", "heldout_fraction", "discrete_columns", "system", "parameters", "dim",
                "num_steps"},
        "simulated": {"path", "time_column", "heldout_fraction", "discrete_columns"},
    }[source]
    drop = {("data", name) for name in unused}
    if not config["data"]["time_column"]:  # a table without a time column: one law, not snapshots
        drop.add(("data", "time_column"))
    elif source == "file":
        drop.add(("data", "discrete_columns"))
    structured = {"width", "depth", "noise", "sigma_init", "sigma_min", "state_dependent", "seed"}
    drop |= {("model", name) for name in ({"parameters"} if model["name"] == "neural" else structured)}
    if train["objective"] == "energy":
        drop |= {("train", name) for name in ("bandwidth", "min_bandwidth", "ess_target")}
    if train["kernel_rate"] != "auto":
        drop.add(("train", "kernel_rate_every"))
    if train["validation_fraction"] == 0:
        drop |= {("train", name) for name in ("validate_every", "validation_samples", "patience")}
    return {
        section: {name: value for name, value in values.items() if (section, name) not in drop}
        for section, values in config.items()
    }


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def dump_config(config: dict[str, dict[str, Any]]) -> str:
    """The configuration as TOML text that ``load_config`` reads back to the same values."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in values.items())
        lines.append("")
    return "\n".join(lines)

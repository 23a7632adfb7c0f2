"""The TOML configuration of ``dkjax train``: schema, defaults, overrides and validation.

Every key has a type, a default and a check; any error names the key and what is allowed,
and is raised before any data is generated or any model is built.
"""

import dataclasses
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._data import TOY_DATA
from ._objective import GRADIENT_METHODS, OBJECTIVES


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or has an impossible value."""


@dataclasses.dataclass(frozen=True)
class _Key:
    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool]
    allowed: str


def _positive_int(default):
    return _Key(default, (int,), lambda v: v >= 1, "an integer >= 1")


def _positive_float(default):
    return _Key(default, (int, float), lambda v: v > 0 and math.isfinite(v), "a finite number > 0")


def _choice(default, choices):
    return _Key(default, (str,), lambda v: v in choices, f"one of {list(choices)}")


def _auto_or_positive(default):
    return _Key(
        default, (str, int, float), lambda v: v == "auto" or (not isinstance(v, str) and v > 0 and math.isfinite(v)),
        '"auto" or a finite number > 0',
    )  # fmt: skip


SCHEMA: dict[str, dict[str, _Key]] = {
    "run": {
        "name": _Key("two_moons", (str,), lambda v: v != "" and "/" not in v, "a non-empty name without '/'"),
    },
    "data": {
        "name": _choice("two_moons", tuple(sorted(TOY_DATA))),
        "num_points": _Key(4096, (int,), lambda v: v >= 2, "an integer >= 2"),
        "heldout_points": _Key(2048, (int,), lambda v: v >= 2, "an integer >= 2"),
        "seed": _Key(0, (int,), lambda v: v >= 0, "an integer >= 0"),
    },
    "model": {
        "width": _positive_int(64),
        "depth": _positive_int(2),
        "noise": _choice("scalar", ("scalar", "diagonal")),
        "sigma_init": _positive_float(0.5),
        "state_dependent": _Key(False, (bool,), lambda v: True, "true or false"),
        "seed": _Key(1, (int,), lambda v: v >= 0, "an integer >= 0"),
    },
    "train": {
        "steps": _positive_int(800),
        "t1": _positive_float(1.0),
        "num_steps": _positive_int(50),
        "num_paths": _Key(1024, (int,), lambda v: v >= 2, "an integer >= 2"),
        "batch_size": _positive_int(512),
        "learning_rate": _positive_float(3e-3),
        "final_lr_fraction": _Key(0.1, (int, float), lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        "kernel_rate": _Key(
            "auto", (str, int, float), lambda v: v == "auto" or (not isinstance(v, str) and 0 <= v < math.inf),
            '"auto" or a finite number >= 0',
        ),  # fmt: skip
        "kernel_rate_every": _positive_int(100),
        "bandwidth": _auto_or_positive("auto"),
        "min_bandwidth": _auto_or_positive("auto"),
        "ess_target": _positive_float(16.0),
        "objective": _choice("kl", OBJECTIVES),
        "gradient": _choice("auto", ("auto",) + GRADIENT_METHODS),
        "clip_norm": _positive_float(1.0),
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


def defaults() -> dict[str, dict[str, Any]]:
    """The default configuration, section by section."""
    return {section: {name: key.default for name, key in keys.items()} for section, keys in SCHEMA.items()}


def _check_value(section: str, name: str, value) -> None:
    key = SCHEMA[section][name]
    # bool is an int in Python; only bool-typed keys accept it.
    wrong_bool = isinstance(value, bool) and bool not in key.types
    if wrong_bool or not isinstance(value, key.types) or not key.check(value):
        raise ConfigError(f"{section}.{name} must be {key.allowed}; got {value!r}.")


def _merge(config: dict, updates: dict, origin: str) -> None:
    for section, values in updates.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}] in {origin}; allowed sections: {list(SCHEMA)}.")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {origin} must be a table of keys; got {values!r}.")
        for name, value in values.items():
            if name not in SCHEMA[section]:
                raise ConfigError(
                    f"unknown key {section}.{name} in {origin}; allowed keys of [{section}]: {list(SCHEMA[section])}."
                )
            _check_value(section, name, value)
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


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, dict[str, Any]]:
    """Defaults, then the TOML file at ``path`` (if any), then ``section.key=value`` overrides.

    Raises:
        ConfigError: a missing or unparsable file, an unknown section or key, a value of
            the wrong type or out of range; the message names the key and the allowed values.

    Example:
        >>> config = load_config("configs/two_moons.toml", ["train.steps=100"])
    """
    config = defaults()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        try:
            _merge(config, tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    for text in overrides:
        section, name, value = _parse_override(text)
        _merge(config, {section: {name: value}}, f"--set {text}")
    return config


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def dump_config(config: dict[str, dict[str, Any]]) -> str:
    """The configuration as TOML text that ``load_config`` reads back to the same values."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in values.items())
        lines.append("")
    return "\n".join(lines)

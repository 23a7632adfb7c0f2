"""Run folders of the command line and the train configs they hold (new runs, resumed runs)."""

import datetime
import tomllib
from pathlib import Path

_DEFAULT_CONFIG = Path("configs/two_moons.toml")
_CONFIG_FILE = "config.toml"
_MODEL_FILE = "model.eqx"
# What a resumed run may change: settings that act after training or only on when checkpoints are written.
_FREE_ON_RESUME = ("eval.", "run.name", "train.checkpoint_every")


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

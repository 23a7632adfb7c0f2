"""Atomic training checkpoints: equinox-serialised arrays plus a JSON record that commits them.

A checkpoint is ``step_XXXXXXXX.eqx`` (the model and optimiser state) and ``latest.json``
(the step, the scalar training state and the history). Each file is written to a temporary
name in the same folder and moved into place with ``os.replace``, and ``latest.json`` is
written last: a crash at any point leaves the previous checkpoint intact and loadable.
"""

import json
import os
import tempfile
from pathlib import Path

import equinox as eqx

_LATEST = "latest.json"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(directory, step: int, tree, record: dict, keep: int = 2) -> Path:
    """Writes ``tree`` (a pytree of arrays) and ``record`` (JSON-able) as the checkpoint of ``step``.

    Keeps the newest ``keep`` array files and removes older ones. Returns the array file's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = directory / f"step_{step:08d}.eqx"
    _atomic_write(arrays, lambda file: eqx.tree_serialise_leaves(file, tree))
    payload = json.dumps({"step": step, "arrays": arrays.name, **record}).encode()
    _atomic_write(directory / _LATEST, lambda file: file.write(payload))
    for old in sorted(directory.glob("step_*.eqx"))[:-keep]:
        old.unlink()
    return arrays


def _latest(directory) -> tuple[Path, dict] | None:
    record = latest_record(directory)
    if record is None:
        return None
    arrays = Path(directory) / record["arrays"]
    if not arrays.exists():
        raise ValueError(f"checkpoint record {Path(directory) / _LATEST} names {arrays.name}, which is missing.")
    return arrays, record


def latest_record(directory) -> dict | None:
    """The record of the latest checkpoint in ``directory`` (``step``, ``steps``, history, ...), or ``None``.

    Reads only the small JSON record, not the arrays.
    """
    latest = Path(directory) / _LATEST
    return json.loads(latest.read_text()) if latest.exists() else None


def load_checkpoint(directory, like):
    """The latest checkpoint in ``directory`` as ``(tree, record)``, or ``None`` if there is none.

    ``like`` is a pytree with the structure, shapes and dtypes of the saved ``tree``.

    Raises:
        ValueError: if the record names an array file that is missing or does not match ``like``.
    """
    found = _latest(directory)
    if found is None:
        return None
    arrays, record = found
    try:
        tree = eqx.tree_deserialise_leaves(arrays, like)
    except Exception as error:
        raise ValueError(
            f"checkpoint {arrays} does not match this model and optimiser (different configuration?): {error}"
        ) from error
    return tree, record

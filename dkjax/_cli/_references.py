"""Config errors and ``module:name`` references: the base of ``_cli`` that imports no other module of it.

``_config`` (schemas) and ``_systems`` (SDE classes named in configs) both build on it, so
neither imports the other's names back.
"""

import importlib
import importlib.util
import sys
from pathlib import Path


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or has an impossible value."""


def is_reference(text: str) -> bool:
    """Whether ``text`` has the form ``module:name`` (or ``path/to/file.py:name``)."""
    module, _, name = text.partition(":")
    return bool(module) and name.isidentifier()


def resolve_reference(text: str, key: str):
    """The object that ``module:name`` or ``path/to/file.py:name`` names, for config key ``key``.

    A module is imported as usual, with the working directory on the import path; a
    ``.py`` file is loaded from its path.

    Raises:
        ConfigError: the text is not of that form, the module or file cannot be found or
            fails to import, or it has no attribute ``name``; the message names ``key``.

    Example:
        >>> resolve_reference("dkjax:Lorenz96", "system.name")
    """
    if not is_reference(text):
        raise ConfigError(f"{key} must be module:name or path/to/file.py:name; got {text!r}.")
    module_name, _, name = text.partition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(
                    f"{key}: the file {path} does not exist (relative to the working directory {Path.cwd()})."
                )
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # console scripts leave the working directory off the path
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"{key}: cannot import {module_name!r} ({type(error).__name__}: {error}).") from error
    if not hasattr(module, name):
        raise ConfigError(f"{key}: {module_name!r} has no attribute {name!r}.")
    return getattr(module, name)

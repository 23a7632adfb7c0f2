"""SDEs named in configs: a built-in system or a user ``module:Class``, built with its parameters."""

import inspect

from ._references import ConfigError, resolve_reference

SYSTEMS = ("OrnsteinUhlenbeck", "LinearSDE", "GeometricBrownianMotion", "Lorenz96", "Lorenz96Multiplicative")


def system_class(name: str, key: str):
    """The ``dkjax.AbstractSDE`` subclass that ``name`` (built-in or ``module:Class``) names.

    Raises:
        ConfigError: the reference cannot be resolved or is not an ``AbstractSDE`` subclass;
            the message names the config ``key``.
    """
    import dkjax

    from .._sde._abstract import AbstractSDE

    cls = getattr(dkjax, name) if name in SYSTEMS else resolve_reference(name, key)
    if not (isinstance(cls, type) and issubclass(cls, AbstractSDE)):
        raise ConfigError(f"{key}: {name} is not a dkjax.AbstractSDE subclass.")
    return cls


def build_system(name: str, parameters: dict, dtype, *, name_key: str, parameters_key: str):
    """``Class(**parameters)`` with every floating array in ``dtype``; errors name the config keys.

    Raises:
        ConfigError: an unknown class, a parameter the constructor does not take, or a
            constructor that rejects the values.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    cls = system_class(name, name_key)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise ConfigError(f"{parameters_key}: {cls.__name__} has no parameter {unknown}; allowed: {accepted}.")
    try:
        sde = cls(**{name_: jnp.asarray(value, dtype) for name_, value in parameters.items()})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{parameters_key}: {cls.__name__}({parameters}) failed: {error}") from error
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, sde)


def check_dimension(sde, dim: int, dtype, key: str, name: str, *, what: str | None = None) -> None:
    """Raises ``ConfigError`` naming ``key`` if ``sde`` does not accept states of dimension ``dim``.

    ``what`` replaces the message's ``key = dim`` when the dimension comes from elsewhere
    (the columns of a data file).
    """
    import jax
    import jax.numpy as jnp
    from .._sde._abstract import noise_dimension

    try:
        noise_dimension(sde, jnp.zeros((), dtype), jax.ShapeDtypeStruct((dim,), dtype))
    except ValueError as error:
        raise ConfigError(f"{what or f'{key} = {dim}'} does not fit {name}: {error}") from error


def parameter_labels(sde) -> list[str]:
    """One label per scalar parameter entry, e.g. ``forcing`` or ``theta[1]``, in flattening order."""
    import jax
    import numpy as np

    from .._sde._abstract import parameters

    labels = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(parameters(sde))[0]:
        name = jax.tree_util.keystr(path).lstrip(".")
        shape = np.shape(leaf)
        labels += [name] if shape == () else [f"{name}{list(i)}" for i in np.ndindex(shape)]
    return labels

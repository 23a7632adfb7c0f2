"""Running costs on the model's paths: a prior on how the law moves between the observed times.

A path cost ``phi(sde, t, x)`` adds ``E[sum_n dt phi(t_n, X_n)]`` (the left-point rule on the
training grid, ``n = 0 .. N - 1``) to ``dkjax.fit``'s loss. Its forward-only gradient has two
parts: the pathwise one, ``E[sum_n dt d_theta phi(t_n, X_n)]`` at fixed states, and the
response of the law, ``sum_n E[dt phi(t_n, X_n) eta(t_n)]``, with ``eta(t_n)`` each path's
divergence-kernel response at step ``n``: every grid step is an observation time.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Scalar, State, States
from .._sde._abstract import AbstractSDE
from .._validation import check_positive


class AbstractPathCost(eqx.Module):
    """A running cost along the model's paths, added to ``dkjax.fit``'s loss: ``fit(path_cost=...)``.

    Subclasses implement ``__call__(sde, t, x)``, the cost rate at one state ``x`` ``(d,)``
    and time ``t``, a scalar that may depend on the model's parameters; ``fit`` adds
    ``E[sum_n dt phi(t_n, X_n)]`` over its grid to the loss and trains through both the
    cost's parameters and the law of ``X_n`` (two-pass gradient route).

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> print(isinstance(dkjax.Kinetic(0.1), dkjax.AbstractPathCost))
        True
    """

    @abc.abstractmethod
    def __call__(self, sde: AbstractSDE, t: Scalar, x: State) -> Scalar:
        """The cost rate ``phi(t, x)`` of one state, a scalar."""


class Kinetic(AbstractPathCost):
    """``weight |F(t, x)|^2 / 2``: the drift's kinetic energy, a least-action prior on the paths.

    Among the models that fit the snapshots equally well it prefers the one that moves the
    population along the shortest, steadiest paths, as optimal transport does; it decides
    what the law does between two observed times, which the data cannot. Larger weights
    trade fit at the observed times for straighter paths.

    Arguments:
        weight: the prior's weight, in units of the objective per unit of ``|F|^2 / 2``
            integrated over time.

    Raises:
        ValueError: ``weight`` not a positive finite number.

    Example:
        >>> cost = dkjax.Kinetic(0.5)
        >>> print(float(cost(dkjax.OrnsteinUhlenbeck(2.0, 1.0), 0.0, jnp.array([1.0]))))  # 0.5 * (2 * 1)^2 / 2
        1.0
    """

    weight: float = eqx.field(static=True)

    def __check_init__(self):
        check_positive("weight", self.weight)

    def __call__(self, sde, t, x):
        return self.weight * 0.5 * jnp.sum(sde.drift(t, x) ** 2)


def path_costs(path_cost: AbstractPathCost, sde: AbstractSDE, t: Scalar, x: States) -> Array:
    """``phi(t, x_m)`` for every path ``m`` of ``x`` ``(M, d)``: shape ``(M,)``."""
    return jax.vmap(lambda x_: path_cost(sde, t, x_))(x)


def check_path_cost(path_cost) -> "AbstractPathCost | None":
    """``path_cost`` itself; raises unless it is ``None`` or a ``dkjax.AbstractPathCost``."""
    if path_cost is not None and not isinstance(path_cost, AbstractPathCost):
        raise TypeError(f"path_cost must be a dkjax.AbstractPathCost or None; got {type(path_cost).__name__}.")
    return path_cost

"""A gradient-flow SDE: drift down a learned potential landscape, with a learned noise level."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Key, Scalar, State
from ._neural import inverse_softplus
from ._abstract import AbstractSDE


class GradientFlowSDE(AbstractSDE):
    """``dX = -grad V_theta(X) dt + sigma dB`` with a learned potential and a learned scalar noise level.

    ``V_theta(x) = U_theta(x) + confinement |x|^2 / 2`` with ``U_theta`` an MLP, or any
    Equinox module ``x -> scalar`` given as ``potential`` (a structured landscape, e.g. a
    polynomial whose coefficients are the parameters). The fixed quadratic keeps the landscape
    confining far from the data, where an MLP (linear growth at most) is unconstrained.
    ``sigma = sigma_min + softplus(s)`` is positive and bounded below. Drift and noise are
    time-independent, so the model forecasts past its last observation time with the same
    law of motion; with the drift a gradient, drift and noise level are identifiable from
    marginals observed out of equilibrium.

    Arguments:
        dim: state dimension ``d``.
        key: PRNG key for the potential's initial weights.
        width, depth: the potential MLP's hidden width and number of hidden layers.
        sigma_init: initial noise level (``> sigma_min``).
        sigma_min: the noise level's lower bound (``>= 0``).
        confinement: the quadratic's curvature (``>= 0``; a constant, not trained).
        potential: a module ``x -> scalar`` to use for ``U_theta`` instead of the MLP
            (``width`` and ``depth`` are then unused).

    Raises:
        ValueError: ``dim``, ``width`` or ``depth`` < 1, ``sigma_init <= sigma_min``,
            a negative ``sigma_min`` or ``confinement``.

    Example:
        >>> sde = dkjax.GradientFlowSDE(2, key=jax.random.key(0), width=32)
        >>> print(sde.drift(0.0, jnp.zeros(2)).shape, round(float(sde.noise_level), 3))
        (2,) 0.5
    """

    potential_net: eqx.Module
    sigma_raw: Array
    dim: int = eqx.field(static=True)
    sigma_min: float = eqx.field(static=True)
    confinement: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        sigma_init: float = 0.5,
        sigma_min: float = 0.0,
        confinement: float = 0.0,
        potential: eqx.Module | None = None,
    ):
        for name, value in (("dim", dim), ("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if not 0 <= sigma_min < sigma_init:
            raise ValueError(
                f"need 0 <= sigma_min < sigma_init; got sigma_min={sigma_min!r}, sigma_init={sigma_init!r}."
            )
        if not confinement >= 0:
            raise ValueError(f"confinement must be >= 0; got {confinement!r}.")
        if potential is None:
            potential = eqx.nn.MLP(dim, "scalar", width, depth, activation=jax.nn.silu, key=key)
        self.potential_net = potential
        dtype = jnp.result_type(*jax.tree.leaves(eqx.filter(potential, eqx.is_inexact_array)) or [float])
        self.sigma_raw = jnp.asarray(inverse_softplus(sigma_init - sigma_min), dtype)
        self.dim, self.sigma_min, self.confinement = dim, float(sigma_min), float(confinement)

    def potential(self, x: State) -> Scalar:
        """The potential ``V_theta(x)``."""
        return self.potential_net(x) + 0.5 * self.confinement * jnp.sum(x**2)

    @property
    def noise_level(self) -> Scalar:
        """The noise level ``sigma``."""
        return self.sigma_min + jax.nn.softplus(self.sigma_raw)

    def drift(self, t: Scalar, x: State) -> State:
        return -jax.grad(self.potential)(x)

    def diffusion(self, t: Scalar, x: State) -> State:
        return self.noise_level * jnp.ones_like(x)


def gradient_flow_template(spec: dict) -> GradientFlowSDE:
    """A ``GradientFlowSDE`` of the structure recorded by ``spec`` (weights to be replaced)."""
    return GradientFlowSDE(
        spec["dim"], key=jr.key(0), width=spec["width"], depth=spec["depth"],
        sigma_init=spec["sigma_min"] + 1.0, sigma_min=spec["sigma_min"], confinement=spec["confinement"],
    )  # fmt: skip

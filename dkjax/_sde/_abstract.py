"""The SDE abstraction: a parameterised Ito SDE as an Equinox module."""

import abc
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._custom_types import Array, Diffusion, Params, Scalar, State

NoiseKind = Literal["diagonal", "general"]


class AbstractSDE(eqx.Module):
    """An Ito SDE ``dX = drift(t, X) dt + diffusion(t, X) dB`` with learnable parameters.

    Subclass it, declare the parameters as fields and implement ``drift`` and
    ``diffusion``. Every field holding a floating-point JAX array is a parameter: the
    divergence-kernel weights carry a derivative for each of its entries. Python
    scalars and integer arrays are constants.

    The noise kind is read from the shape that ``diffusion`` returns for a state of
    shape ``(d,)``:

    - ``(d,)``: diagonal noise, ``diffusion(t, x) * dB`` with ``dB`` of dimension ``d``;
    - ``(d, m)``: general noise, ``diffusion(t, x) @ dB`` with ``dB`` of dimension ``m``.

    Additive noise is simply a diffusion that does not depend on ``x``.

    Arguments:
        The fields the subclass declares (Equinox generates ``__init__`` unless the
        subclass writes one). Parameters may be any pytree of arrays: a dict, a nested
        ``eqx.Module``, a neural network.

    Keep the dtype of ``drift`` and ``diffusion`` that of ``x`` (e.g.
    ``jnp.eye(d, dtype=x.dtype)``): mixing float64 into a float32 model fails inside
    JAX's autodiff.

    Raises:
        ValueError: from the entry points (``dkjax.simulate``, ``dkjax.divergence_kernel``,
            ...), before any work, if ``drift`` or ``diffusion`` return the wrong shape for
            the states given.

    Example:
        >>> class OU(dkjax.AbstractSDE):
        ...     theta: jax.Array
        ...     sigma: jax.Array
        ...     def drift(self, t, x):
        ...         return -self.theta * x
        ...     def diffusion(self, t, x):
        ...         return self.sigma * jnp.ones_like(x)
        >>> sde = OU(theta=jnp.asarray(1.0), sigma=jnp.asarray(0.5))
        >>> x = dkjax.simulate(sde, jnp.ones((10_000, 1)), t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(f"mean {float(x.mean()):.2f} (exp(-1) = 0.37)")
        mean 0.37 (exp(-1) = 0.37)
    """

    @abc.abstractmethod
    def drift(self, t: Scalar, x: State) -> State:
        """The drift ``F(t, x)``: a state of shape ``(d,)`` maps to shape ``(d,)``."""

    @abc.abstractmethod
    def diffusion(self, t: Scalar, x: State) -> Diffusion:
        """The diffusion ``sigma(t, x)``: shape ``(d,)`` (diagonal) or ``(d, m)`` (general)."""

    def terms(self, brownian_path: diffrax.AbstractPath) -> diffrax.MultiTerm:
        """The SDE as diffrax terms, for solving it with ``diffrax.diffeqsolve``.

        Arguments:
            brownian_path: a diffrax path whose increments are the Brownian increments
                (shape ``(d,)`` for diagonal noise, ``(m,)`` for general noise), such as
                ``diffrax.VirtualBrownianTree`` or ``dkjax.BrownianIncrements``.

        Returns:
            ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian_path))``; diagonal
            noise is wrapped as a ``lineax.DiagonalLinearOperator``.

        Example:
            >>> bm = dkjax.BrownianIncrements(key, t0=0.0, t1=1.0, num_steps=100, dim=2)
            >>> sol = diffrax.diffeqsolve(sde.terms(bm), diffrax.Euler(), 0.0, 1.0,
            ...                           0.01, x0, adjoint=diffrax.DirectAdjoint())
        """

        def diffusion_operator(t, x, args):
            sigma = self.diffusion(t, x)
            if sigma.ndim == 1:
                return lx.DiagonalLinearOperator(sigma)
            return lx.MatrixLinearOperator(sigma)

        return diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, x, args: self.drift(t, x)),
            diffrax.ControlTerm(diffusion_operator, brownian_path),
        )


def parameters(sde: AbstractSDE) -> Params:
    """The parameters of ``sde``: its floating-point array leaves, other leaves ``None``.

    This is the pytree structure of ``DKResult.dlogp`` (with a leading path axis).

    Arguments:
        sde: any ``dkjax.AbstractSDE`` (or Equinox module).

    Returns:
        A module of the same structure as ``sde`` holding only its floating-point arrays.

    Example:
        >>> params = dkjax.parameters(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5))
        >>> print([name for name in ("theta", "sigma", "mean") if getattr(params, name) is not None])
        ['theta', 'sigma', 'mean']
    """
    return eqx.filter(sde, eqx.is_inexact_array)


def noise_dimension(sde: AbstractSDE, t: Scalar, x: State) -> tuple[NoiseKind, int]:
    """Reads the noise kind and Brownian dimension from the shapes of ``sde``.

    Raises:
        ValueError: if the drift does not return shape ``(d,)`` or the diffusion is
            neither ``(d,)`` nor ``(d, m)``.
    """
    (d,) = x.shape
    try:
        drift = jax.eval_shape(sde.drift, t, x)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"sde.drift must map a state of shape ({d},) to shape ({d},); it failed on shape ({d},) with "
            f"{type(error).__name__}: {str(error).splitlines()[0].rstrip('.')}. Check x0 (shape (num_paths, {d})) against "
            "the SDE's dimension."
        ) from error
    if drift.shape != (d,):
        raise ValueError(
            f"sde.drift must map a state of shape ({d},) to shape ({d},); it returned "
            f"shape {drift.shape}. Check x0 (shape (num_paths, {d})) against the SDE's dimension."
        )
    sigma = jax.eval_shape(sde.diffusion, t, x)
    if sigma.shape == (d,):
        return "diagonal", d
    if sigma.ndim == 2 and sigma.shape[0] == d and sigma.shape[1] >= 1:
        return "general", sigma.shape[1]
    raise ValueError(
        f"sde.diffusion must return shape ({d},) (diagonal noise) or ({d}, m) (general "
        f"noise) for a state of shape ({d},); it returned shape {sigma.shape}."
    )


def apply_diffusion(sigma: Diffusion, dw: Array) -> State:
    """``sigma dW`` for diagonal (elementwise) or general (matrix) noise."""
    return sigma * dw if sigma.ndim == 1 else sigma @ dw


def em_increment(sde: AbstractSDE, t: Scalar, x: State, z: Array, dt: Scalar) -> State:
    """The Euler-Maruyama increment ``F(t, x) dt + sigma(t, x) z sqrt(dt)`` for noise ``z``."""
    return sde.drift(t, x) * dt + apply_diffusion(sde.diffusion(t, x), z) * jnp.sqrt(dt)

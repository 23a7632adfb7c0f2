"""Built-in SDEs with known structure: exact references and standard test beds."""

import jax.numpy as jnp

from .._custom_types import Array, ArrayLike, Scalar, State
from ._abstract import AbstractSDE


def _float_array(value: ArrayLike) -> Array:
    array = jnp.asarray(value)
    return array if jnp.issubdtype(array.dtype, jnp.floating) else array.astype(float)


class OrnsteinUhlenbeck(AbstractSDE):
    """Ornstein-Uhlenbeck process ``dX = -theta (X - mean) dt + sigma dB`` (diagonal, additive).

    ``theta``, ``sigma`` and ``mean`` are scalars or arrays of shape ``(d,)``; all three are
    parameters. The state dimension ``d`` is set by ``x0``; scalars broadcast.

    Arguments:
        theta: mean-reversion rate; sigma: noise level; mean: long-time mean (default 0).

    Raises:
        TypeError: a non-numeric argument (from ``jnp.asarray``).

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.5, sigma=0.8)
        >>> print(sde.drift(0.0, jnp.array([1.0, -2.0])))  # -theta (x - mean), mean 0
        [-1.5  3. ]
    """

    theta: Array
    sigma: Array
    mean: Array

    def __init__(self, theta: ArrayLike, sigma: ArrayLike, mean: ArrayLike = 0.0):
        self.theta = _float_array(theta)
        self.sigma = _float_array(sigma)
        self.mean = _float_array(mean)

    def drift(self, t: Scalar, x: State) -> State:
        return -self.theta * (x - self.mean)

    def diffusion(self, t: Scalar, x: State) -> State:
        return self.sigma * jnp.ones_like(x)


class LinearSDE(AbstractSDE):
    """Linear SDE ``dX = (A X + b) dt + S dB`` with general noise matrix ``S`` of shape ``(d, m)``.

    Its marginals are Gaussian for a Gaussian start, which makes it an exact reference for
    parameters inside the drift matrix and inside the noise matrix.

    Arguments:
        A: drift matrix ``(d, d)``; S: noise matrix ``(d, m)``; b: drift offset ``(d,)``
            (default zero). All three are parameters.

    Raises:
        ValueError: ``A`` not square, or ``S`` not of shape ``(d, m)``.

    Example:
        >>> sde = dkjax.LinearSDE(A=-jnp.eye(2), S=0.5 * jnp.eye(2))
        >>> print(sde.drift(0.0, jnp.ones(2)), sde.diffusion(0.0, jnp.ones(2)).shape)
        [-1. -1.] (2, 2)
    """

    A: Array
    S: Array
    b: Array

    def __init__(self, A: ArrayLike, S: ArrayLike, b: ArrayLike | None = None):
        self.A = _float_array(A)
        self.S = _float_array(S)
        self.b = jnp.zeros(self.A.shape[0], self.A.dtype) if b is None else _float_array(b)
        if self.A.ndim != 2 or self.A.shape[0] != self.A.shape[1]:
            raise ValueError(f"A must be a square matrix; got shape {self.A.shape}.")
        if self.S.ndim != 2 or self.S.shape[0] != self.A.shape[0]:
            raise ValueError(f"S must have shape (d, m) with d = {self.A.shape[0]}; got shape {self.S.shape}.")

    def drift(self, t: Scalar, x: State) -> State:
        return self.A @ x + self.b

    def diffusion(self, t: Scalar, x: State) -> Array:
        return self.S


class GeometricBrownianMotion(AbstractSDE):
    """Geometric Brownian motion ``dX = mu X dt + sigma X dB`` (diagonal multiplicative noise).

    Its marginals are log-normal: an exact reference for multiplicative noise.

    Arguments:
        mu: growth rate; sigma: volatility (scalars or ``(d,)`` arrays; both parameters).

    Raises:
        TypeError: a non-numeric argument (from ``jnp.asarray``).

    Example:
        >>> sde = dkjax.GeometricBrownianMotion(mu=0.1, sigma=0.3)
        >>> x = dkjax.simulate(sde, jnp.ones((10_000, 1)), t1=1.0, num_steps=100, key=jax.random.key(0))
        >>> print(f"mean {float(x.mean()):.2f} (exp(0.1) = 1.11)")
        mean 1.11 (exp(0.1) = 1.11)
    """

    mu: Array
    sigma: Array

    def __init__(self, mu: ArrayLike, sigma: ArrayLike):
        self.mu = _float_array(mu)
        self.sigma = _float_array(sigma)

    def drift(self, t: Scalar, x: State) -> State:
        return self.mu * x

    def diffusion(self, t: Scalar, x: State) -> State:
        return self.sigma * x


def lorenz96_drift(x: State, forcing: Array) -> State:
    """``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` with periodic indices."""
    # Slices of one wrapped copy rather than three jnp.roll calls: the same values, but the
    # transposes (in every VJP of a DK step) become one pad per slice instead of a
    # slice-pad-add per roll, which made the matrix-free step 15% slower on the CPU.
    wrapped = jnp.concatenate([x[..., -2:], x, x[..., :1]], axis=-1)
    return (wrapped[..., 3:] - wrapped[..., :-3]) * wrapped[..., 1:-2] - x + forcing


class Lorenz96(AbstractSDE):
    """Stochastic Lorenz-96 with additive noise: ``dX = L96_F(X) dt + noise dB``.

    Parameters: ``forcing`` (F) and ``noise`` (scalars). Chaotic for F = 8 and d >= 8.
    The dimension ``d`` (at least 4) is set by ``x0``.

    Arguments:
        forcing: the forcing F (default 8); noise: the additive noise level (default 0.5).

    Raises:
        TypeError: a non-numeric argument (from ``jnp.asarray``).

    Example:
        >>> sde = dkjax.Lorenz96(forcing=8.0, noise=0.5)
        >>> print(sde.drift(0.0, jnp.zeros(5)))  # at rest only the forcing acts
        [8. 8. 8. 8. 8.]
    """

    forcing: Array
    noise: Array

    def __init__(self, forcing: ArrayLike = 8.0, noise: ArrayLike = 0.5):
        self.forcing = _float_array(forcing)
        self.noise = _float_array(noise)

    def drift(self, t: Scalar, x: State) -> State:
        return lorenz96_drift(x, self.forcing)

    def diffusion(self, t: Scalar, x: State) -> State:
        return self.noise * jnp.ones_like(x)


class Lorenz96Multiplicative(AbstractSDE):
    """Lorenz-96 with multiplicative noise, the test bed of the DK paper.

    ``dx_i = (x_{i-1}(x_{i+1} - x_{i-2}) - x_i + F - 0.01 x_i^2) dt + sigma(x) dB_i`` with
    the scalar ``sigma(x) = exp(-|x|^2 / 2) + noise_level`` multiplying a d-dimensional
    Brownian motion. Parameters: ``forcing`` and ``noise_level``.

    Arguments:
        forcing: the forcing F (default 8); noise_level: the floor of the noise (default 0.5).

    Raises:
        TypeError: a non-numeric argument (from ``jnp.asarray``).

    Example:
        >>> sde = dkjax.Lorenz96Multiplicative(forcing=8.0, noise_level=0.5)
        >>> print(sde.drift(0.0, jnp.zeros(5)))
        [8. 8. 8. 8. 8.]
    """

    forcing: Array
    noise_level: Array

    def __init__(self, forcing: ArrayLike = 8.0, noise_level: ArrayLike = 0.5):
        self.forcing = _float_array(forcing)
        self.noise_level = _float_array(noise_level)

    def drift(self, t: Scalar, x: State) -> State:
        return lorenz96_drift(x, self.forcing) - 0.01 * x**2

    def diffusion(self, t: Scalar, x: State) -> State:
        return (jnp.exp(-0.5 * jnp.sum(x**2)) + self.noise_level) * jnp.ones_like(x)

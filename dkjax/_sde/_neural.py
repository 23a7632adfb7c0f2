"""A neural SDE generative model: MLP drift with time input, positive learnable noise level."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Key, Scalar, State
from ._abstract import AbstractSDE

_NOISE_KINDS = ("scalar", "diagonal")


def inverse_softplus(y: float) -> float:
    return float(jnp.log(jnp.expm1(jnp.asarray(y, float))))


class NeuralSDE(AbstractSDE):
    """``dX = f_theta(t, X) dt + sigma_theta(t, X) dB``, trained to carry ``N(0, I)`` at ``t = 0`` to data at ``T``.

    The drift is an MLP of ``(x, t)``. The noise level is positive through a softplus:
    ``sigma(t) = softplus(a + b t)`` with ``a, b`` scalars (``noise="scalar"``) or vectors
    of size ``dim`` (``noise="diagonal"``), plus, with ``state_dependent=True``, an MLP of
    ``(x, t)`` inside the softplus: state-dependent diagonal noise. ``sigma_min > 0`` adds a
    floor, ``sigma = sigma_min + softplus(...)``, so the noise stays bounded below wherever the
    paths go (the DK kernel step divides by it). With ``preserve_normal=True`` the drift is
    ``MLP(x, t) - sigma^2 x / 2``, under which ``N(0, I)`` is invariant for noise that does not
    depend on ``x`` (the untrained noise never does), and the MLP's last layer starts at zero:
    the untrained model carries ``N(0, I)`` to itself, so training on whitened data starts from
    their best-fit Gaussian. Every weight is a parameter of the DK estimator.

    Arguments:
        dim: state dimension ``d``.
        key: PRNG key for the initial weights.
        width: hidden width of the MLPs.
        depth: number of hidden layers.
        noise: ``"scalar"`` or ``"diagonal"``.
        sigma_init: initial noise level (positive).
        state_dependent: whether the noise level also depends on ``x``.
        sigma_min: the noise level's lower bound (``>= 0``, below ``sigma_init``).
        preserve_normal: subtract ``sigma^2 x / 2`` from the drift (see above).

    Raises:
        ValueError: ``dim``, ``width`` or ``depth`` < 1, unknown ``noise``, ``sigma_init <= 0``,
            ``sigma_min`` negative or not below ``sigma_init``.

    Example:
        >>> sde = dkjax.NeuralSDE(2, key=jax.random.key(0), width=64, depth=2)
        >>> sde.drift(0.0, jnp.zeros(2)).shape
        (2,)
    """

    drift_net: eqx.nn.MLP
    sigma_bias: Array
    sigma_slope: Array
    sigma_net: eqx.nn.MLP | None
    dim: int = eqx.field(static=True)
    sigma_min: float = eqx.field(static=True, default=0.0)
    preserve_normal: bool = eqx.field(static=True, default=False)

    def __init__(
        self,
        dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        noise: Literal["scalar", "diagonal"] = "scalar",
        sigma_init: float = 0.5,
        state_dependent: bool = False,
        sigma_min: float = 0.0,
        preserve_normal: bool = False,
    ):
        for name, value in (("dim", dim), ("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if noise not in _NOISE_KINDS:
            raise ValueError(f"noise must be one of {list(_NOISE_KINDS)}; got {noise!r}.")
        if not sigma_init > 0:
            raise ValueError(f"sigma_init must be > 0; got {sigma_init!r}.")
        if not 0 <= sigma_min < sigma_init:
            raise ValueError(f"sigma_min must be >= 0 and below sigma_init = {sigma_init}; got {sigma_min!r}.")
        drift_key, sigma_key = jr.split(key)
        drift_net = eqx.nn.MLP(dim + 1, dim, width, depth, activation=jax.nn.silu, key=drift_key)
        # A small last layer starts the model near pure diffusion, so early paths stay tame; a zero
        # one starts it exactly at the law preserve_normal keeps (its gradient is still nonzero).
        last = drift_net.layers[-1]
        zero = (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias))
        start = zero if preserve_normal else (0.1 * last.weight, last.bias)
        self.drift_net = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), drift_net, start)
        size = 1 if noise == "scalar" else dim
        dtype = self.drift_net.layers[0].weight.dtype
        self.sigma_bias = jnp.full((size,), inverse_softplus(sigma_init - sigma_min), dtype)
        self.sigma_slope = jnp.zeros((size,), dtype)
        if state_dependent:
            net = eqx.nn.MLP(dim + 1, size, width, depth, activation=jax.nn.silu, key=sigma_key)
            self.sigma_net = eqx.tree_at(lambda m: m.layers[-1].weight, net, net.layers[-1].weight * 0.0)
        else:
            self.sigma_net = None
        self.dim = dim
        self.sigma_min = float(sigma_min)
        self.preserve_normal = bool(preserve_normal)

    @classmethod
    def for_snapshots(
        cls, dim: int, *, key: Key, width: int = 64, depth: int = 2, sigma_init: float = 0.5, sigma_min: float = 0.05
    ) -> "NeuralSDE":
        """The recommended neural model for population snapshots: state-dependent diagonal noise with a floor.

        The same as ``NeuralSDE(dim, key=key, width=64, depth=2, noise="diagonal", state_dependent=True,
        sigma_min=0.05)``: an MLP drift of ``(x, t)`` and a noise level per coordinate
        ``sigma_min + softplus(a + b t + MLP(x, t))``, bounded below so that the DK kernel step
        stays tame wherever the paths go (docs/snapshots.md, "Models").

        Arguments:
            dim: state dimension ``d``.
            key: PRNG key for the initial weights.
            width, depth: the MLPs' hidden width and number of hidden layers.
            sigma_init: initial noise level; sigma_min: its floor (``0 <= sigma_min < sigma_init``).

        Returns:
            A ``NeuralSDE``.

        Raises:
            ValueError: as ``NeuralSDE``.

        Example:
            >>> sde = dkjax.NeuralSDE.for_snapshots(5, key=jax.random.key(0))
            >>> print(sde.sigma_min, sde.sigma_net is not None, sde.diffusion(0.0, jnp.zeros(5)).shape)
            0.05 True (5,)
        """
        return cls(dim, key=key, width=width, depth=depth, noise="diagonal", sigma_init=sigma_init,
                   state_dependent=True, sigma_min=sigma_min)  # fmt: skip

    def _features(self, t: Scalar, x: State) -> Array:
        return jnp.concatenate([x, jnp.reshape(t, (1,)).astype(x.dtype)])

    def drift(self, t: Scalar, x: State) -> State:
        learned = self.drift_net(self._features(t, x))
        if not self.preserve_normal:
            return learned
        return learned - 0.5 * self.diffusion(t, x) ** 2 * x

    def diffusion(self, t: Scalar, x: State) -> State:
        raw = self.sigma_bias + self.sigma_slope * t
        if self.sigma_net is not None:
            raw = raw + self.sigma_net(self._features(t, x))
        return (self.sigma_min + jax.nn.softplus(raw)) * jnp.ones_like(x)

"""Training data generated in code: 2-D toy sets and stochastic Lorenz-96 snapshots."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, ArrayLike, Float, Key
from .._engine._simulate import simulate
from .._sde._systems import Lorenz96
from .._validation import check_finite, is_concrete

Points = Float[Array, "n 2"]


def _two_moons(key: Key, n: int) -> Points:
    angle_key, side_key, noise_key = jr.split(key, 3)
    t = jr.uniform(angle_key, (n,)) * math.pi
    upper = jr.bernoulli(side_key, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(t), 1 - jnp.cos(t))
    y = jnp.where(upper, jnp.sin(t), 0.5 - jnp.sin(t))
    return jnp.stack([x, y], 1) + 0.08 * jr.normal(noise_key, (n, 2))


def _eight_gaussians(key: Key, n: int) -> Points:
    centre_key, noise_key = jr.split(key)
    angle = jr.randint(centre_key, (n,), 0, 8) * (math.pi / 4)
    centres = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], 1)
    return centres + 0.2 * jr.normal(noise_key, (n, 2))


def _checkerboard(key: Key, n: int) -> Points:
    x_key, y_key, row_key = jr.split(key, 3)
    x = jr.uniform(x_key, (n,), minval=-2.0, maxval=2.0)
    # Within each unit column only every other unit square is filled.
    y = jr.uniform(y_key, (n,)) - 2.0 * jr.randint(row_key, (n,), 0, 2) + jnp.floor(x) % 2
    return jnp.stack([x, y], 1) * 2.0


def _swiss_roll(key: Key, n: int) -> Points:
    angle_key, noise_key = jr.split(key)
    t = 1.5 * math.pi * (1 + 2 * jr.uniform(angle_key, (n,)))
    return jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], 1) / 5.0 + 0.1 * jr.normal(noise_key, (n, 2))


def _pinwheel(key: Key, n: int) -> Points:
    arm_key, noise_key = jr.split(key)
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    arm = jr.randint(arm_key, (n,), 0, arms)
    features = jr.normal(noise_key, (n, 2)) * jnp.array([radial_std, tangential_std]) + jnp.array([1.0, 0.0])
    angle = arm * (2 * math.pi / arms) + rate * jnp.exp(features[:, 0])
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    rotated = jnp.stack([cos * features[:, 0] - sin * features[:, 1], sin * features[:, 0] + cos * features[:, 1]], 1)
    return 2.0 * rotated


TOY_DATA: dict[str, Callable[[Key, int], Points]] = {
    "two_moons": _two_moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "swiss_roll": _swiss_roll,
    "pinwheel": _pinwheel,
}


def toy_data(name: str, key: Key, n: int) -> Points:
    """``n`` points of a 2-D toy set, centred and scaled to unit standard deviation overall.

    Arguments:
        name: one of ``"two_moons"``, ``"eight_gaussians"``, ``"checkerboard"``,
            ``"swiss_roll"``, ``"pinwheel"``.
        key: PRNG key.
        n: number of points.

    Returns:
        Array of shape ``(n, 2)``.

    Raises:
        ValueError: unknown ``name`` or ``n < 2``.

    Example:
        >>> data = dkjax.toy_data("two_moons", jax.random.key(0), 4096)
        >>> print(data.shape)
        (4096, 2)
    """
    if name not in TOY_DATA:
        raise ValueError(f"name must be one of {sorted(TOY_DATA)}; got {name!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2; got {n!r}.")
    points = TOY_DATA[name](key, n)
    # Fixed constants (not this sample's moments) so that every draw is from one law.
    reference = TOY_DATA[name](jr.key(2**31 - 1), 65536)
    return (points - jnp.mean(reference, 0)) / jnp.std(reference)


class GaussianInitial(eqx.Module):
    """The initial law ``N(mean, diag(std^2))``: ``initial(key, n) -> (x0, score0)``.

    An Equinox module, so a trained generative model can carry (and save) its initial law.

    Arguments:
        mean: vector ``(d,)``; its floating dtype is the samples' dtype (integers become the
            default float).
        std: positive scalar or vector ``(d,)``, stored as a vector ``(d,)``.

    Raises:
        ValueError: ``mean`` not a vector, or ``std`` not a scalar or ``(d,)``, not positive,
            or ``mean`` or ``std`` holding a non-finite value (checked when the values are
            known, not inside a JAX transform).

    Example:
        >>> initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
        >>> x0, score0 = initial(jax.random.key(0), 3)
        >>> print(x0.shape, initial.std, bool(jnp.allclose(score0, -x0)))
        (3, 2) [1. 1.] True
    """

    mean: Float[Array, " d"]
    std: Float[Array, " d"]

    def __init__(self, mean: Float[ArrayLike, " d"], std: Float[ArrayLike, ""] | Float[ArrayLike, " d"]):
        mean = jnp.asarray(mean)
        if not jnp.issubdtype(mean.dtype, jnp.inexact):
            mean = mean.astype(jnp.result_type(float))
        std = jnp.asarray(std, mean.dtype)
        # A scalar std is one per coordinate: a saved model's template has the vector's shape.
        self.mean, self.std = mean, jnp.broadcast_to(std, mean.shape) if std.ndim == 0 else std

    def __check_init__(self):
        if self.mean.ndim != 1:
            raise ValueError(f"mean must be a vector (d,); got shape {self.mean.shape}.")
        if self.std.shape != self.mean.shape:
            raise ValueError(
                f"std must be a positive scalar or a vector of shape {self.mean.shape}; got shape {self.std.shape}."
            )
        if not (is_concrete(self.mean) and is_concrete(self.std)):
            return
        check_finite("mean", self.mean)
        check_finite("std", self.std)
        with jax.ensure_compile_time_eval():  # concrete values met while an outer jit traces
            positive = bool(jnp.all(self.std > 0))
        if not positive:
            raise ValueError(f"std must be a positive scalar or a vector of shape {self.mean.shape}; got {self.std}.")

    def __call__(self, key: Key, n: int) -> tuple[Float[Array, "n d"], Float[Array, "n d"]]:
        x0 = self.mean + self.std * jr.normal(key, (n, self.mean.shape[0]), self.mean.dtype)
        return x0, -(x0 - self.mean) / self.std**2


def lorenz96_snapshots(
    key: Key,
    n: int,
    *,
    dim: int = 20,
    forcing: float = 8.0,
    noise: float = 0.5,
    t1: float = 1.0,
    num_steps: int = 400,
    initial_std: float = 0.5,
) -> tuple[Float[Array, "n dim"], Callable]:
    """Snapshots at ``t1`` of stochastic Lorenz-96 (additive noise) from a known initial law.

    The initial law is ``N(0, initial_std^2 I)``; it is returned so a model can start from it.

    Arguments:
        key: PRNG key; ``n``: number of snapshots.
        dim, forcing, noise: the Lorenz-96 system (``dkjax.Lorenz96``).
        t1, num_steps: the snapshot time and the Euler-Maruyama steps to reach it.
        initial_std: standard deviation of the initial law.

    Raises:
        ValueError: ``dim < 4``.

    Returns:
        ``(data, initial)``: ``data`` of shape ``(n, dim)`` and ``initial(key, n) -> (x0, score0)``.

    Example:
        >>> data, initial = dkjax.lorenz96_snapshots(jax.random.key(0), 512, dim=8, t1=0.5, num_steps=50)
        >>> print(data.shape, initial(jax.random.key(1), 3)[0].shape)
        (512, 8) (3, 8)
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 4:
        raise ValueError(f"dim must be an int >= 4; got {dim!r}.")
    initial = GaussianInitial(jnp.zeros(dim), initial_std)
    init_key, path_key = jr.split(key)
    x0 = initial(init_key, n)[0]
    sde = Lorenz96(forcing=forcing, noise=noise)
    return simulate(sde, x0, t1=t1, num_steps=num_steps, key=path_key), initial

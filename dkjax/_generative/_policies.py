"""Policies of ``dkjax.fit`` between steps: the kernel-rate control and the stiffness check, run by pilot runs."""

import abc
import dataclasses
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Key, Scalar, States
from .._engine._kernel_rate import AutoRate
from .._sde._abstract import AbstractSDE

_POWER_ITERATIONS = 20
PILOT_PATHS = 256
# A fold_in salt that keeps the pilot runs off the training steps' keys (fold_in(key, step), step < 2**31).
_TRAINING_PILOT_SALT = 2**31 + 1


class AbstractRateControl(eqx.Module):
    """How the kernel rate of the training steps is chosen."""

    @abc.abstractmethod
    def start(self) -> float:
        """The rate before the first pilot run."""

    @abc.abstractmethod
    def resume(self, saved: float) -> float:
        """The rate of a resumed run whose checkpoint holds ``saved``."""

    @abc.abstractmethod
    def update(self, rate: float, model: AbstractSDE, x0: States, key: Key, grid: dict) -> float:
        """The rate after a pilot run of ``model`` from ``x0`` on ``grid`` (``t0``, ``t1``, ``num_steps``)."""


class FixedRate(AbstractRateControl):
    """A constant kernel rate; one given on resume wins over the checkpoint's."""

    rate: float

    def start(self):
        return self.rate

    def resume(self, saved):
        return self.rate

    def update(self, rate, model, x0, key, grid):
        return rate


class RisingRate(AbstractRateControl):
    """The rate measured as ``dkjax.estimate_kernel_rate`` measures it at every pilot run, never lowered."""

    def start(self):
        return 0.0

    def resume(self, saved):
        return saved

    def update(self, rate, model, x0, key, grid):
        # fit checked the model and the grid once; the pilot's initial states are the initial law's.
        return max(rate, AutoRate().measure(model, x0, key=key, **grid))


@eqx.filter_jit
def drift_stiffness(sde: AbstractSDE, t: Scalar, xs: States, key: Key) -> Scalar:
    """Largest ``||grad_x F(t, x)||_2`` over the rows of ``xs``, by power iteration (matrix free).

    Euler-Maruyama amplifies modes with ``|1 + lambda dt| > 1``; ``||grad F|| dt <= 1``
    keeps every mode of a decaying flow resolved.
    """

    def norm_at(x, v):
        value_and_jvp = jax.linearize(lambda x_: sde.drift(t, x_), x)[1]
        transpose = jax.linear_transpose(value_and_jvp, x)

        def iterate(v, _):
            w = transpose(value_and_jvp(v))[0]
            return w / (jnp.linalg.norm(w) + jnp.finfo(w.dtype).tiny), None

        v, _ = jax.lax.scan(iterate, v, None, length=_POWER_ITERATIONS)
        return jnp.linalg.norm(value_and_jvp(v))

    probes = jr.normal(key, xs.shape, xs.dtype)
    return jnp.max(jax.vmap(norm_at)(xs, probes))


@dataclasses.dataclass
class StiffnessCheck:
    """Warns once when the drift's stiffness ``||grad F|| dt`` exceeds ``limit``."""

    dt: float
    limit: float = 1.0
    warned: bool = False

    def __call__(self, model: AbstractSDE, t: Scalar, states: States, key: Key, step: int) -> None:
        if self.warned:
            return
        stiffness = float(drift_stiffness(model, t, states, key)) * self.dt
        if stiffness > self.limit:
            warnings.warn(
                f"step {step}: the drift's stiffness ||grad F|| dt = {stiffness:.3g} exceeds "
                f"{self.limit}; Euler-Maruyama may turn unstable. Use more time steps.",
                RuntimeWarning,
                stacklevel=4,
            )
            self.warned = True


@dataclasses.dataclass
class Pilot:
    """A pilot run every ``every`` steps: updates the kernel rate and checks the stiffness.

    The stiffness is checked at the initial states until a training step has run, then at
    the latest step's final states.
    """

    initial: Callable
    key: Key
    grid: dict
    dtype: object
    control: AbstractRateControl
    stiffness: StiffnessCheck
    every: int

    def __call__(self, step: int, rate: float, model: AbstractSDE, recent_states: States | None) -> float:
        if step % self.every:
            return rate
        pilot_key = jr.fold_in(jr.fold_in(self.key, _TRAINING_PILOT_SALT), step)
        x0 = self.initial(pilot_key, PILOT_PATHS)[0]
        rate = self.control.update(rate, model, x0, pilot_key, self.grid)
        at_start = recent_states is None
        t = jnp.asarray(self.grid["t0"] if at_start else self.grid["t1"], self.dtype)
        self.stiffness(model, t, x0 if at_start else recent_states, pilot_key, step)
        return rate

"""The step driver: one ``lax.scan`` over Euler-Maruyama steps that every step loop runs.

A step (``AbstractStep``) advances all paths by one step on the noise of ``(key, n, path)``
and says what it produced; a fold (``AbstractFold``) says what is kept of it: nothing but
the final states, per-path response weights, one weighted response, or covector growth
rates. ``simulate``, the divergence-kernel estimator, the kernel-rate pilot, the stationary
segments, the snapshot recorder and both passes of the memory-lean trainer all run ``drive``, so two runs with the
same key, grid and paths follow bit-identical states.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Int, PathIds, Scalar
from ._noise import step_key


class AbstractStep(eqx.Module):
    """Advances every path by one step: ``(n, t, dt, key_n, path_ids, carry) -> (carry, output)``.

    ``carry`` holds the states first (and whatever else the step carries); ``key_n`` is
    the raw per-step key (``step_key(key, n)``) from which each path draws its noise.
    """

    @abc.abstractmethod
    def __call__(self, n: Int[Array, ""], t: Scalar, dt: Scalar, key_n: Array, path_ids: PathIds, carry):
        """One step of all paths; returns the new carry and the step's output for the fold."""


class AbstractFold(eqx.Module):
    """What the driver keeps of each step's output: ``update(acc, n, output) -> acc``."""

    @abc.abstractmethod
    def update(self, acc, n: Int[Array, ""], output):
        """Folds one step's output into the accumulator."""


class KeepNothing(AbstractFold):
    """Keeps only the final carry (``simulate``)."""

    def update(self, acc, n, output):
        return acc


class FoldWith(AbstractFold):
    """Folds with a function ``update(acc, *output)``: the response accumulators of the DK step."""

    function: object = eqx.field(static=True)

    def update(self, acc, n, output):
        return self.function(acc, *output)


def drive(step: AbstractStep, fold: AbstractFold, carry, acc, *, path_ids, t0, dt, key, first, stop):
    """Runs steps ``first .. stop - 1`` of the grid ``t_n = t0 + n dt``; returns ``(carry, acc)``.

    The step counter is carried, not scanned over: no ``O(num_steps)`` array of step indices.
    """

    def body(state, _):
        carry, acc, n = state
        t = t0 + n * dt
        carry, output = step(n, t, dt, step_key(key, n), path_ids, carry)
        return (carry, fold.update(acc, n, output), n + 1), None

    (carry, acc, _), _ = jax.lax.scan(body, (carry, acc, jnp.int32(first)), None, length=stop - first)
    return carry, acc

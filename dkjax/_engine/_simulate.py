"""Euler-Maruyama simulation of many paths: the step driver with a plain EM step, vmapped over paths."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Float, Key, PathIds, RealScalarLike, States
from ._driver import AbstractFold, AbstractStep, KeepNothing, drive
from ._noise import brownian_normal
from ._save_at import SaveAt, grid_steps
from .._sde._abstract import AbstractSDE, em_increment, noise_dimension
from .._validation import check_finite, check_key, check_parameter_dtypes, check_states, check_time_grid


def time_grid(t0, t1, num_steps: int, dtype):
    """``(t0, dt)`` as arrays of ``dtype``; arrays keep a new ``t1`` from retracing."""
    t0 = jnp.asarray(t0, dtype)
    # A product, not a quotient: XLA turns division by a constant into this product inside a
    # jit, so eager and compiled callers must both form it to get the same dt to the bit.
    return t0, (jnp.asarray(t1, dtype) - t0) * jnp.asarray(1.0 / num_steps, dtype)


def path_ids_for(num_paths: int, path_offset) -> PathIds:
    """Global indices ``path_offset + arange(num_paths)`` that address each path's noise."""
    return jnp.asarray(path_offset, jnp.int32) + jnp.arange(num_paths, dtype=jnp.int32)


def check_common(sde, x0, t0, t1, num_steps, key) -> tuple[int, int]:
    """Checks shared by every entry point that integrates ``sde`` from ``x0``."""
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be a dkjax.AbstractSDE; got {type(sde).__name__}.")
    num_paths, dim = check_states(x0)
    check_time_grid(t0, t1, num_steps)
    check_key(key)
    check_finite("x0", x0)
    check_parameter_dtypes(sde, x0)
    noise_dimension(sde, jnp.asarray(t0, jnp.result_type(x0)), jax.ShapeDtypeStruct((dim,), jnp.result_type(x0)))
    return num_paths, dim


def em_update(sde: AbstractSDE, t, dt, x: States, z) -> States:
    """``x + F dt + sigma z sqrt(dt)`` for every path: the one state update of every step kind.

    Shared by the plain and the DK step so that their passes over the same noise round alike
    (on a chaotic system one differing ulp grows to the attractor's size).
    """
    return x + jax.vmap(lambda xi, zi: em_increment(sde, t, xi, zi, dt))(x, z)


def path_increment(static, t, dt, z):
    """``(x, params) -> F dt + sigma z sqrt(dt)`` for one state ``(d,)`` at frozen noise ``z``."""
    return lambda x, params: em_increment(eqx.combine(params, static), t, x, z, dt)


def batch_increment(static, t, dt, z):
    """``path_increment`` for a batch of states ``(B, d)`` and noises ``z`` (the parameters shared)."""
    one = lambda params, x, z_: path_increment(static, t, dt, z_)(x, params)
    return lambda x, params: jax.vmap(one, in_axes=(None, 0, 0))(params, x, z)


class EulerMaruyama(AbstractStep):
    """The plain Euler-Maruyama step of every path; the carry is the states."""

    sde: AbstractSDE
    noise_dim: int = eqx.field(static=True)

    def __call__(self, n, t, dt, key_n, path_ids, x):
        z = jax.vmap(lambda i: brownian_normal(key_n, i, self.noise_dim, x.dtype))(path_ids)
        return em_update(self.sde, t, dt, x, z), None


def simulate_paths(sde, x0, path_ids, t0, dt, key, num_steps: int) -> States:
    """The final states of ``num_steps`` EM steps from ``x0`` on the grid ``t0 + n dt`` (unchecked)."""
    _, noise_dim = noise_dimension(sde, t0, x0[0])
    step = EulerMaruyama(sde, noise_dim)
    return drive(step, KeepNothing(), x0, None, path_ids=path_ids, t0=t0, dt=dt, key=key, first=0, stop=num_steps)[0]


def record_at(recorded, value, n, steps):
    """``recorded[k] = value`` where ``steps[k] == n`` (at most one ``k``); one slice touched."""
    k = jnp.clip(jnp.searchsorted(steps, n), 0, steps.shape[0] - 1)
    hit = steps[k] == n
    return jax.tree.map(lambda r, v: r.at[k].set(jnp.where(hit, v, r[k])), recorded, value)


class _StatesOut(AbstractStep):
    """The Euler-Maruyama step of ``dkjax.simulate``, handing each step's new states to the fold."""

    step: EulerMaruyama

    def __call__(self, n, t, dt, key_n, path_ids, x):
        x, _ = self.step(n, t, dt, key_n, path_ids, x)
        return x, x


class _RecordAt(AbstractFold):
    """Keeps the states after the steps in ``steps`` (increasing step indices)."""

    steps: Array

    def update(self, acc, n, x):
        return record_at(acc, x, n + 1, self.steps)


@eqx.filter_jit
def record_states(sde, x0, t0, t1, key, num_steps, steps, path_offset=0):
    """States at the step indices ``steps`` (increasing), shape ``(K, M, d)``, and at ``num_steps``.

    The engine's driver with ``dkjax.simulate``'s step (noise addressed by ``(key, step,
    path_offset + path)``), so the divergence-kernel replay follows the same paths.
    """
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    _, noise_dim = noise_dimension(sde, t0, x0[0])
    steps = jnp.asarray(steps, jnp.int32)
    recorded = jnp.zeros((steps.shape[0],) + x0.shape, x0.dtype)
    step, fold = _StatesOut(EulerMaruyama(sde, noise_dim)), _RecordAt(steps)
    path_ids = path_ids_for(x0.shape[0], path_offset)
    x, recorded = drive(step, fold, x0, recorded, path_ids=path_ids, t0=t0, dt=dt, key=key, first=0, stop=num_steps)
    return recorded, x


class _StatesAndCosts(AbstractStep):
    """The EM step handing the fold the new states and ``cost(t_n, X_n)`` of the states it started from.

    The cost at the step's own states shares the drift the update evaluates there.
    """

    step: EulerMaruyama
    cost: object

    def __call__(self, n, t, dt, key_n, path_ids, x):
        x_next, _ = self.step(n, t, dt, key_n, path_ids, x)
        return x_next, (x_next, self.cost(t, x))


class _RecordCosts(AbstractFold):
    """``_RecordAt`` that also keeps every path's cost at every step."""

    at: _RecordAt

    def update(self, acc, n, output):
        recorded, costs = acc
        x_next, cost = output
        return self.at.update(recorded, n, x_next), costs.at[n].set(cost)


def record_states_and_costs(sde, x0, t0, t1, key, num_steps, steps, cost):
    """``record_states`` that also returns ``cost(t_n, X_n)`` ``(M,)`` at steps ``n = 0 .. num_steps - 1``.

    Returns ``(recorded (K, M, d), costs (num_steps, M), x_final)``: one scalar per path and
    step, never the states of every step.
    """
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    _, noise_dim = noise_dimension(sde, t0, x0[0])
    at = _RecordAt(jnp.asarray(steps, jnp.int32))
    acc = (jnp.zeros((at.steps.shape[0],) + x0.shape, x0.dtype), jnp.zeros((num_steps, x0.shape[0]), x0.dtype))
    step = _StatesAndCosts(EulerMaruyama(sde, noise_dim), cost)
    path_ids = path_ids_for(x0.shape[0], 0)
    x, (recorded, costs) = drive(step, _RecordCosts(at), x0, acc, path_ids=path_ids, t0=t0, dt=dt, key=key, first=0,
                                 stop=num_steps)  # fmt: skip
    return recorded, costs, x


@eqx.filter_jit
def _simulate(sde, x0, path_offset, t0, t1, key, num_steps):
    # Path ids made inside the jit follow x0's sharding, also of a global multi-process array.
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    return simulate_paths(sde, x0, path_ids_for(x0.shape[0], path_offset), t0, dt, key, num_steps)


def _saved_states(sde, x0, path_offset, t0, t1, key, num_steps: int, save_at: SaveAt, steps):
    """The states ``save_at`` asks for, stacked ``(K, M, d)`` in the order ``t0``, ``ts`` (at ``steps``), ``t1``."""
    rows = [x0[None]] if save_at.t0 else []
    if steps is None:
        final = _simulate(sde, x0, path_offset, t0, t1, key, num_steps)
    else:
        recorded, final = record_states(sde, x0, t0, t1, key, num_steps, steps, path_offset)
        rows.append(recorded)
    if save_at.t1:
        rows.append(final[None])
    return jnp.concatenate(rows)


def simulate(
    sde: AbstractSDE,
    x0: States,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    path_offset: int = 0,
    save_at: SaveAt = SaveAt(t1=True),
) -> States | Float[Array, "K paths d"]:
    """Simulates ``num_paths`` paths of ``sde`` by Euler-Maruyama and returns their states.

    The noise of path ``i`` at step ``n`` is addressed by ``(key, n, path_offset + i)``, so
    ``dkjax.divergence_kernel`` with the same arguments follows the same paths (the same
    noise; the states agree up to floating-point rounding). Whatever ``save_at`` asks for,
    the paths are the same, and memory does not grow with ``num_steps``.

    Arguments:
        sde: the SDE.
        x0: initial states, shape ``(num_paths, d)``.
        t1: final time.
        num_steps: number of Euler-Maruyama steps (``dt = (t1 - t0) / num_steps``).
        key: a JAX PRNG key.
        t0: initial time.
        path_offset: global index of the first path (to split one ensemble over chunks
            or calls without reusing noise; a multi-process array from ``shard_paths``
            needs none: its global rows number the paths).
        save_at: which states to return, a ``dkjax.SaveAt`` (default: the final states).

    Returns:
        With the default ``SaveAt(t1=True)``, the states at ``t1``, shape ``(num_paths, d)``.
        Otherwise an array ``(K, num_paths, d)``: the states at ``t0`` (if saved), at each of
        ``save_at.ts``, then at ``t1`` (if saved). Paths that blow up hold non-finite
        values; they are not removed.

    Raises:
        ValueError: if ``x0`` is not ``(num_paths, d)`` or does not match the SDE, holds
            non-finite values, ``num_steps < 1`` or ``t1 <= t0``, a save time lies outside
            ``(t0, t1]`` or off the step grid (named), or the SDE's parameters have a wider
            floating dtype than ``x0`` (both dtypes are named).
        TypeError: if ``sde`` is not an ``AbstractSDE``, ``key`` is not a PRNG key or
            ``save_at`` is not a ``dkjax.SaveAt``.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)  # scalar parameters: any dimension
        >>> xT = dkjax.simulate(sde, jnp.zeros((1000, 2)), t1=1.0, num_steps=100,
        ...                     key=jax.random.key(0))
        >>> print(xT.shape)
        (1000, 2)
        >>> xs = dkjax.simulate(sde, jnp.zeros((1000, 2)), t1=1.0, num_steps=100,
        ...                     key=jax.random.key(0), save_at=dkjax.SaveAt(ts=[0.25, 0.5]))
        >>> print(xs.shape)
        (2, 1000, 2)
    """
    check_common(sde, x0, t0, t1, num_steps, key)
    if not isinstance(save_at, SaveAt):
        raise TypeError(f"save_at must be a dkjax.SaveAt; got {type(save_at).__name__}.")
    x0 = jnp.asarray(x0)
    # On the grid of the times as given (not rounded to x0's dtype), before any work.
    steps = None if save_at.ts is None else grid_steps(save_at.ts, t0, t1, num_steps)
    t0, t1 = jnp.asarray(t0, x0.dtype), jnp.asarray(t1, x0.dtype)
    path_offset = jnp.asarray(path_offset, jnp.int32)
    if save_at.final_only:
        return _simulate(sde, x0, path_offset, t0, t1, key, num_steps)
    return _saved_states(sde, x0, path_offset, t0, t1, key, num_steps, save_at, steps)

"""The gradient routes of DK-SDE training: how ``sum_k sum_m c_km eta_m(t_k)`` is formed.

An objective gives per-path weights ``c`` such that ``grad loss = sum_m c_m eta_m`` in
expectation, ``eta_m`` being path ``m``'s divergence-kernel response. The sum is formed from
the per-path responses (one pass, memory ``O(M size(theta))``, ``PerPathGradient``) or by the
memory-lean two passes (``TwoPassGradient``): simulate, compute ``c``, replay the same noise
and fold ``c``-weighted response increments into one parameter-shaped accumulator (memory
``O(M d + size(theta))``). ``AutoGradient`` picks one of them by the model's size. Both routes
follow the same paths (noise addressed by ``(key, step, path)``) and give the same gradient up
to rounding.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Params, Scalar, States
from .._engine._dk_step import StepWeights, SumResponses, dk_scan
from .._engine._driver import AbstractFold
from .._engine._simulate import path_ids_for, record_at, record_states, record_states_and_costs, time_grid
from .._sde._abstract import AbstractSDE, parameters
from .._validation import check_positive
from ._path_cost import AbstractPathCost, path_costs
from ._settings import TRAIN_DEFAULTS

# ``(loss, grad, aux, x_T)`` of a route: ``grad`` shaped like ``dkjax.parameters(sde)``.
Gradient = tuple[Scalar, Params, Any, States]


class AbstractGradient(eqx.Module):
    """How ``dkjax.fit`` forms the DK gradient ``sum_k sum_m c_km eta_m(t_k)`` from the path weights ``c``.

    ``c`` comes from the objective at the observation times and is a constant for the
    gradient; the route only decides how the weighted sum of the paths' DK responses is
    formed, and with what memory. ``fit(gradient=...)`` takes a route or its shorthand
    ``"auto"``, ``"per_path"`` or ``"two_pass"``.

    Subclasses implement ``__call__``; a route that depends on the model (``AutoGradient``)
    overrides ``resolve``, which ``fit`` calls once before training. A path cost
    (``fit(path_cost=...)``) observes every grid step, which only ``TwoPassGradient`` affords.

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> routes = dkjax.PerPathGradient(), dkjax.TwoPassGradient(path_chunk=64), dkjax.AutoGradient()
        >>> print(all(isinstance(route, dkjax.AbstractGradient) for route in routes))
        True
    """

    def resolve(self, sde: AbstractSDE, path_cost: AbstractPathCost | None = None) -> "AbstractGradient":
        """The route that trains ``sde`` (with ``path_cost``): this one, unless it chooses by the model.

        Raises:
            ValueError: the route cannot carry ``path_cost``.
        """
        return self

    @abc.abstractmethod
    def __call__(self, sde: AbstractSDE, x0: States, score0: States | None, per_time: Callable,
                 observed: tuple[int, ...], t0: Scalar, t1: Scalar, *, num_steps: int, key, kernel_rate: Scalar,
                 mode, path_cost: AbstractPathCost | None = None) -> Gradient:  # fmt: skip
        """``(loss, grad, aux, x_T)`` for ``per_time(states (K, M, d)) -> (loss, c (K, M), aux)``.

        ``observed`` are the observation steps (increasing grid indices, the last one at most
        ``num_steps``); ``t0``, ``t1`` arrays of the states' dtype; ``path_cost`` a running
        cost added to the loss (see ``dkjax.AbstractPathCost``).
        """


class PerPathGradient(AbstractGradient):
    """Every path carries its own DK response, read off at the observation steps: one pass.

    Memory ``O(K M size(theta))`` for ``M`` paths and ``K`` observation times: the faster
    route for small models (a few hundred parameters), where the per-path arrays are small.

    Arguments:
        None.

    Example:
        >>> route = dkjax.PerPathGradient()  # pass it to dkjax.fit(gradient=...); shorthand "per_path"
        >>> print(route.resolve(dkjax.OrnsteinUhlenbeck(1.0, 0.5)) is route)
        True
    """

    def resolve(self, sde, path_cost=None):
        if path_cost is not None:
            raise ValueError("a path_cost observes every grid step: use the two-pass gradient route "
                             "(gradient='two_pass' or 'auto', or dkjax.TwoPassGradient()), not per-path responses.")  # fmt: skip
        return self

    def __call__(self, sde, x0, score0, per_time, observed, t0, t1, *, num_steps, key, kernel_rate, mode,
                 path_cost=None):  # fmt: skip
        self.resolve(sde, path_cost)
        states, eta_at, x_final = _per_path_responses(sde, x0, score0, observed, t0, t1, num_steps, key,
                                                      kernel_rate, mode)  # fmt: skip
        loss, c, aux = per_time(states)
        grad = jax.tree.map(lambda eta: jnp.einsum("km,km...->...", jax.lax.stop_gradient(c), eta), eta_at)
        return loss, grad, aux, x_final


class TwoPassGradient(AbstractGradient):
    """The memory-lean route: simulate and weigh the paths, then replay them folding ``c``-weighted increments.

    The first pass records the states at the observation steps and computes ``c``; the
    second replays the same noise and adds each step's response increments, path ``m``
    weighted by its ``c``, into one parameter-shaped accumulator. Memory ``O(K M d +
    size(theta))``: no per-path parameter arrays, the route for large models.

    Arguments:
        path_chunk: replay the paths this many at a time, so that the replay's working
            memory scales with ``path_chunk`` instead of the number of paths; ``None``: all
            at once.

    Raises:
        ValueError: ``path_chunk`` not a positive int or ``None``.

    Example:
        >>> route = dkjax.TwoPassGradient(path_chunk=128)  # pass it to dkjax.fit(gradient=...)
        >>> print(route.path_chunk)
        128
    """

    path_chunk: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_positive("path_chunk", self.path_chunk, integer=True, allow_none=True)

    def __call__(self, sde, x0, score0, per_time, observed, t0, t1, *, num_steps, key, kernel_rate, mode,
                 path_cost=None):  # fmt: skip
        if path_cost is None:
            states, x_final = record_states(sde, x0, t0, t1, key, num_steps, observed)
        else:
            cost = lambda t, x: path_costs(path_cost, sde, t, x)
            states, costs, x_final = record_states_and_costs(sde, x0, t0, t1, key, num_steps, observed, cost)
        loss, c, aux = per_time(states)
        step_weights = StepWeights(jax.lax.stop_gradient(c).T, jnp.asarray(observed, jnp.int32))
        if path_cost is not None:
            dt = time_grid(t0, t1, num_steps, x0.dtype)[1]
            running_loss, step_weights = _with_running_cost(step_weights, costs, dt)
            loss = loss + running_loss
        grad = weighted_replay(sde, x0, score0, step_weights, t1=t1, num_steps=num_steps, key=key,
                               kernel_rate=kernel_rate, t0=t0, mode=mode, path_chunk=self.path_chunk,
                               running_cost=path_cost)  # fmt: skip
        return loss, grad, aux, x_final


def _with_running_cost(objective: StepWeights, costs, dt) -> tuple[Scalar, StepWeights]:
    """The running cost's value, and the objective's step weights with the cost's joined to them.

    ``costs`` ``(N, M)`` are ``phi(t_n, X_n)``; the value is ``sum_n dt mean_m phi``. Every
    step ``n >= 1`` is an observation with weights ``dt (phi_n - mean phi_n) / M``: the mean
    is a baseline (the responses have mean zero) that removes most of the variance. Each
    path's pathwise gradient weighs ``1 / M``.
    """
    num_steps, num_paths = costs.shape
    costs = jax.lax.stop_gradient(costs)
    value = dt * jnp.sum(jnp.mean(costs, axis=1))
    running = dt * (costs[1:] - jnp.mean(costs[1:], axis=1, keepdims=True)) / num_paths
    weights = jnp.concatenate([objective.c, running.T], axis=1)
    steps = jnp.concatenate([objective.steps, jnp.arange(1, num_steps, dtype=jnp.int32)])
    return value, StepWeights(weights, steps, jnp.full((num_paths,), 1.0 / num_paths, costs.dtype))


class AutoGradient(AbstractGradient):
    """``TwoPassGradient`` for a model with more than ``lean_threshold`` parameters (or a path cost), else ``PerPathGradient``.

    The two-pass route was measured faster above a few hundred parameters: it never forms
    per-path parameter arrays. The shorthand ``gradient="auto"`` (``fit``'s default) is this
    route with ``fit``'s ``lean_threshold``.

    Arguments:
        lean_threshold: the parameter count above which the two-pass route is taken.

    Raises:
        ValueError: ``lean_threshold`` not a positive int.

    Example:
        >>> route = dkjax.AutoGradient(lean_threshold=256).resolve(dkjax.NeuralSDE(2, key=jax.random.key(0)))
        >>> print(type(route).__name__)  # the default NeuralSDE has thousands of parameters
        TwoPassGradient
    """

    lean_threshold: int = eqx.field(static=True, default=TRAIN_DEFAULTS.lean_threshold)

    def __check_init__(self):
        check_positive("lean_threshold", self.lean_threshold, integer=True)

    def resolve(self, sde, path_cost=None):
        lean = path_cost is not None or parameter_count(sde) > self.lean_threshold
        return TwoPassGradient() if lean else PerPathGradient()

    def __call__(self, sde, x0, score0, per_time, observed, t0, t1, *, num_steps, key, kernel_rate, mode,
                 path_cost=None):  # fmt: skip
        return self.resolve(sde, path_cost)(sde, x0, score0, per_time, observed, t0, t1, num_steps=num_steps,
                                            key=key, kernel_rate=kernel_rate, mode=mode, path_cost=path_cost)  # fmt: skip


_SHORTHANDS = {"auto": AutoGradient, "per_path": PerPathGradient, "two_pass": TwoPassGradient}
GRADIENTS = tuple(_SHORTHANDS)


def as_gradient(gradient: "str | AbstractGradient", lean_threshold: int = TRAIN_DEFAULTS.lean_threshold,
                path_chunk: int | None = None) -> AbstractGradient:  # fmt: skip
    """``gradient`` itself, or the route its shorthand names (with ``fit``'s ``lean_threshold`` and ``path_chunk``).

    ``path_chunk`` belongs to the two-pass route: with ``"auto"`` it chooses that route.

    Raises:
        ValueError: an unknown shorthand, ``path_chunk`` with ``"per_path"`` or with a route
            module (give it to ``TwoPassGradient``), or a bad ``path_chunk`` or ``lean_threshold``.
    """
    if isinstance(gradient, AbstractGradient):
        if path_chunk is not None:
            raise ValueError("path_chunk goes with a gradient shorthand; with a route, TwoPassGradient(path_chunk).")
        return gradient
    if not isinstance(gradient, str) or gradient not in _SHORTHANDS:
        raise ValueError(f"gradient must be one of {sorted(_SHORTHANDS)} or an AbstractGradient; got {gradient!r}.")
    if path_chunk is not None and gradient == "per_path":
        raise ValueError("path_chunk applies to the two-pass gradient; use gradient='two_pass' or 'auto'.")
    if gradient == "per_path":
        return PerPathGradient()
    if gradient == "two_pass" or path_chunk is not None:
        return TwoPassGradient(path_chunk)
    return AutoGradient(lean_threshold)


def dk_gradient(
    sde: AbstractSDE,
    x0: States,
    score0: States | None,
    weights: Callable,
    steps: tuple[int, ...] | None = None,
    *,
    t1: Scalar,
    num_steps: int,
    key,
    kernel_rate: Scalar,
    gradient: "str | AbstractGradient" = "two_pass",
    t0: Scalar = 0.0,
    mode: str = "matrix_free",
    path_cost: AbstractPathCost | None = None,
) -> Gradient:
    """Loss and its forward-only gradient ``sum_k sum_m c_km eta_m(t_k)`` for path weights from the states.

    With ``steps=None`` the objective reads the final states: ``weights(X_T)`` with ``X_T``
    ``(M, d)`` returns ``(loss, c, aux)``, ``c`` of shape ``(M,)``. With observation steps
    ``steps`` (increasing grid indices, for snapshots) ``weights`` reads the states at those
    steps, ``(K, M, d)``, and returns ``c`` of shape ``(K, M)``: one final time is the case
    ``K = 1``. ``c`` is treated as a constant and ``aux`` passed through.

    Arguments:
        sde: the model; its parameters are ``dkjax.parameters(sde)``.
        x0: initial states ``(M, d)``; ``score0`` their initial score or ``None``.
        weights: the objective's path weights, see above.
        steps: observation steps, or ``None`` for the final time alone.
        t1, num_steps, key, kernel_rate, t0, mode: as for ``dkjax.divergence_kernel``.
        gradient: the route, a module or its shorthand (see ``as_gradient``).
        path_cost: a running cost added to the loss (``dkjax.AbstractPathCost``), or ``None``.

    Returns:
        ``(loss, grad, aux, x_T)``; ``grad`` is shaped like ``dkjax.parameters(sde)``.
    """
    observed = (num_steps,) if steps is None else tuple(int(n) for n in steps)
    per_time = _as_per_time(weights) if steps is None else weights
    t0_arr, t1_arr = jnp.asarray(t0, x0.dtype), jnp.asarray(t1, x0.dtype)
    return as_gradient(gradient)(sde, x0, score0, per_time, observed, t0_arr, t1_arr, num_steps=num_steps, key=key,
                                 kernel_rate=kernel_rate, mode=mode, path_cost=path_cost)  # fmt: skip


def _as_per_time(weights):
    """A final-time objective ``X_T -> (loss, c, aux)`` as the case ``X (1, M, d) -> (loss, c (1, M), aux)``."""

    def per_time(states):
        loss, c, aux = weights(states[0])
        return loss, c[None], aux

    return per_time


class _RecordResponses(AbstractFold):
    """Adds each path's response increment to its own and keeps the responses after ``steps`` (not the last)."""

    steps: Array

    def update(self, acc, n, output):
        x_next, d_eta = output
        eta, eta_at, x_at = acc
        eta = jax.tree.map(jnp.add, eta, d_eta)
        if self.steps.shape[0]:
            eta_at, x_at = record_at((eta_at, x_at), (eta, x_next), n + 1, self.steps)
        return eta, eta_at, x_at


def _per_path_responses(sde, x0, score0, steps, t0, t1, num_steps, key, kernel_rate, mode):
    """Each path's states and DK responses at the observation steps: ``(K, M, d)`` and ``(K, M, ...)`` leaves.

    The responses at the last step are the final accumulator; only earlier steps are recorded.
    """
    params = parameters(sde)
    point_mass = score0 is None
    earlier = steps[:-1] if steps[-1] == num_steps else steps
    eta0 = jax.tree.map(lambda p: jnp.zeros(x0.shape[:1] + p.shape, p.dtype), params)
    acc0 = (eta0, jax.tree.map(lambda e: jnp.zeros((len(earlier),) + e.shape, e.dtype), eta0),
            jnp.zeros((len(earlier),) + x0.shape, x0.dtype))  # fmt: skip
    x_final, _, (eta, eta_at, x_at), _ = dk_scan(
        sde, x0, jnp.zeros_like(x0) if point_mass else score0, path_ids_for(x0.shape[0], 0), t0=t0, t1=t1,
        num_steps=num_steps, key=key, kernel_rate=jnp.asarray(kernel_rate, x0.dtype),
        fold=_RecordResponses(jnp.asarray(earlier, jnp.int32)), acc0=acc0, jacobian=mode, point_mass=point_mass,
    )  # fmt: skip
    if len(earlier) < len(steps):
        eta_at = jax.tree.map(lambda at, e: jnp.concatenate([at, e[None]]), eta_at, eta)
        x_at = jnp.concatenate([x_at, x_final[None]])
    return x_at, eta_at, x_final


def weighted_replay(
    sde: AbstractSDE,
    x0: States,
    score0: States | None,
    step_weights: StepWeights,
    *,
    t1: Scalar,
    num_steps: int,
    key,
    kernel_rate: Scalar,
    t0: Scalar = 0.0,
    mode: str = "matrix_free",
    path_chunk: int | None = None,
    running_cost: AbstractPathCost | None = None,
) -> Params:
    """The second pass of the two-pass gradient: ``sum_n sum_m w_nm (eta_{n+1} - eta_n)_m``.

    Replays the paths of ``x0`` under ``key`` and folds each step's response increments,
    path ``m`` at step ``n`` weighted by ``step_weights(n)[m]``, into one parameter-shaped
    accumulator: one reverse pass over the whole batch per step, no per-path parameter arrays.
    With ``running_cost``, each step also adds its pathwise gradient at the step's states,
    path ``m`` weighted by ``step_weights.running[m]``.
    """
    params = parameters(sde)
    point_mass = score0 is None
    grid = dict(t0=jnp.asarray(t0, x0.dtype), t1=jnp.asarray(t1, x0.dtype), num_steps=num_steps)

    def replay(x0_chunk, score0_chunk, ids_chunk, c_chunk, running_chunk):
        return dk_scan(
            sde, x0_chunk, score0_chunk, ids_chunk, **grid, key=key, kernel_rate=jnp.asarray(kernel_rate, x0.dtype),
            fold=SumResponses(), acc0=jax.tree.map(jnp.zeros_like, params), jacobian=mode, point_mass=point_mass,
            weights=StepWeights(c_chunk, step_weights.steps, running_chunk), running_cost=running_cost,
        )[2]  # fmt: skip

    num_paths = x0.shape[0]
    c = step_weights.c
    running = step_weights.running if running_cost is not None else jnp.zeros((num_paths,), x0.dtype)
    inputs = (x0, jnp.zeros_like(x0) if point_mass else score0, path_ids_for(num_paths, 0), c, running)
    if path_chunk is None or path_chunk >= num_paths:
        return replay(*inputs)
    # Padded paths replay path 0 with weight zero; noise is addressed by path id, so every
    # chunk replays exactly the paths of the first pass.
    num_chunks = -(-num_paths // path_chunk)
    padding = num_chunks * path_chunk - num_paths
    chunked = lambda leaf, fill: jnp.concatenate([leaf, fill]).reshape((num_chunks, path_chunk) + leaf.shape[1:])
    chunks = [chunked(leaf, jnp.repeat(leaf[:1], padding, axis=0)) for leaf in inputs[:3]]
    chunks += [chunked(w, jnp.zeros((padding,) + w.shape[1:], w.dtype)) for w in inputs[3:]]
    add_chunk = lambda total, chunk: (jax.tree.map(jnp.add, total, replay(*chunk)), None)
    return jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, params), chunks)[0]


def parameter_count(sde: AbstractSDE) -> int:
    """Number of scalar parameters of ``sde``."""
    return sum(leaf.size for leaf in jax.tree.leaves(parameters(sde)))

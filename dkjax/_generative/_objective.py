"""Training objectives of DK-SDE and their forward-only gradients.

An objective maps the final states ``X_T^m`` of ``M`` model paths and a data batch to a
loss and per-path weights ``c_m`` such that ``grad loss = sum_m c_m eta_m`` in expectation,
``eta_m`` being path ``m``'s divergence-kernel response. That sum is formed either from
the per-path responses (one pass, memory ``O(M size(theta))``) or by the memory-lean two
passes: simulate, compute ``c``, replay the same noise and fold ``c``-weighted response
increments into one parameter-shaped accumulator (memory ``O(M d + size(theta))``).
"""

import abc
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Float, Key, Params, Scalar, States
from .._engine._dk_step import StepWeights, SumResponses, dk_scan
from .._engine._driver import AbstractFold
from ._metrics import energy_terms, kde_sums
from .._sde._abstract import AbstractSDE, parameters
from .._engine._simulate import path_ids_for, record_at, record_states
from ._settings import TRAIN_DEFAULTS

GradientMethod = Literal["per_path", "two_pass"]
OBJECTIVES = ("kl", "energy")
GRADIENT_METHODS = ("per_path", "two_pass")
_ESS_ROWS = 256
_BISECTIONS = 12


def ess_bandwidth(data: Float[Array, "j d"], x: States, ess_target: Scalar, h_min: Scalar, h_max: Scalar) -> Scalar:
    """The smallest bandwidth in ``[h_min, h_max]`` whose weights keep ``mean ESS >= ess_target``.

    The Nadaraya-Watson weights ``w_jm = softmax_m(-|y_j - X_m|^2 / (2 h^2))`` collapse onto
    one path per data point as ``h -> 0``; the self-normalised ratio's bias is of order
    one over their effective sample size, so ``h`` shrinks only as far
    as the model's samples allow. The ESS grows with ``h``; bisection on ``log h`` over the
    first ``_ESS_ROWS`` data points finds the crossing to within ``(h_max / h_min)^(2^-_BISECTIONS)``.
    Returns ``h_max`` if even that misses the target.
    """
    rows = data[:_ESS_ROWS]
    ess_at = lambda log_h: kde_sums(rows, x, jnp.exp(log_h))["ess"] / rows.shape[0]

    def bisect(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        enough = ess_at(mid) >= ess_target
        return jnp.where(enough, low, mid), jnp.where(enough, mid, high)

    bounds = (jnp.log(h_min), jnp.log(h_max))
    low, high = jax.lax.fori_loop(0, _BISECTIONS, bisect, bounds)
    return jnp.where(ess_at(bounds[0]) >= ess_target, h_min, jnp.exp(high))


def kl_weights(
    x: States, data: Float[Array, "j d"], bandwidth: Scalar, key: Key
) -> tuple[Scalar, Float[Array, " m"], Scalar]:
    """Smoothed negative log-likelihood ``L_h`` and its DK path weights.

    ``L_h = -mean_j log q_h(y_j + h e_j)`` with ``q_h(y) = (1/M) sum_m K_h(y - X_m)``, a
    Gaussian kernel of standard deviation ``h`` on both sides (data jittered afresh by
    ``key``), so the minimiser is the data law for every ``h``. Weights:
    ``c_m = -(1/J) sum_j w_jm + 1/M``; the constant ``1/M`` is a baseline (``E[eta] = 0``)
    that removes the common part of the responses without bias.

    Returns:
        ``(loss, c, mean_ess)``.
    """
    jittered = data + bandwidth * jr.normal(key, data.shape, data.dtype)
    num_data = data.shape[0]
    sums = kde_sums(jittered, x, bandwidth)
    c = -sums["weights"] / num_data + 1.0 / x.shape[0]
    return tuple(v.astype(x.dtype) for v in (-sums["log_q"] / num_data, c, sums["ess"] / num_data))


def energy_weights(x: States, data: Float[Array, "j d"]) -> tuple[Scalar, Float[Array, " m"], Scalar]:
    """Energy distance to the data batch and its unbiased DK path weights.

    ``d/dtheta [2 E|X - Y| - E|X - X'|] = E[(2 E_Y|X - Y| - 2 E_X'|X - X'|) eta_X]`` with
    ``X'`` an independent path: no density estimate, no bandwidth, no ratio bias. Path ``m``'s
    baseline is the mean weight of the other paths as if ``m`` had not been drawn, so it does
    not depend on path ``m`` and adds no bias (a batch mean that holds path ``m`` biases the
    gradient by ``O(1/M)``).

    Returns:
        ``(loss, c, ess)`` with ``ess`` the number of paths (every path carries weight).

    Raises:
        ValueError: fewer than 3 paths.
    """
    m = x.shape[0]
    if m < 3:
        raise ValueError(f"x must hold at least 3 paths for the leave-one-out baseline; got {m}.")
    loss, to_data, to_paths = energy_terms(x, data)
    to_data = to_data / data.shape[0]
    weight = 2 * to_data - 2 * to_paths / (m - 1)
    others_to_data = (jnp.sum(to_data) - to_data) / (m - 1)
    others_to_paths = (jnp.sum(to_paths) - 2 * to_paths) / ((m - 1) * (m - 2))
    c = (weight - 2 * others_to_data + 2 * others_to_paths) / m
    return loss.astype(x.dtype), c.astype(x.dtype), jnp.asarray(m, x.dtype)


Weights = tuple[Scalar, Float[Array, " m"], tuple[Scalar, Scalar]]


class BandwidthRule(eqx.Module):
    """The kernel bandwidth of ``KL``: fixed, or the smallest in a range that keeps the weights' ESS.

    Attributes:
        ess_target: the rule's target mean effective sample size.
        bandwidth: a fixed bandwidth, or ``None`` for the rule.
        min_bandwidth: the rule's lower end (``None``: 0.05 times the data's mean
            per-coordinate standard deviation); its upper end is 4 times that deviation.
    """

    ess_target: float
    bandwidth: float | None = None
    min_bandwidth: float | None = None

    def range(self, points: Float[Array, "j d"]) -> tuple[float, float]:
        """``(h_min, h_max)`` of the rule for data ``points``, or the fixed bandwidth twice."""
        if self.bandwidth is not None:
            return self.bandwidth, self.bandwidth
        scale = float(jnp.mean(jnp.std(points, axis=0)))
        h_min = self.min_bandwidth if self.min_bandwidth is not None else 0.05 * scale
        return h_min, max(4.0 * scale, h_min)

    def __call__(self, data: Float[Array, "j d"], x: States, h_min: Scalar, h_max: Scalar) -> Scalar:
        """The bandwidth for model states ``x`` against ``data``, within ``[h_min, h_max]``."""
        return ess_bandwidth(data, x, self.ess_target, h_min, h_max)


class AbstractObjective(eqx.Module):
    """A training objective of ``dkjax.fit``: model states and a data batch to a loss and DK path weights.

    Subclasses implement ``bandwidth_range`` (fixed per data set, before training) and
    ``weights``, which returns the loss and per-path weights ``c`` with
    ``grad loss = sum_m c_m eta_m`` in expectation (``eta_m`` path ``m``'s DK response).

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> isinstance(dkjax.KL(), dkjax.AbstractObjective), isinstance(dkjax.Energy(), dkjax.AbstractObjective)
        (True, True)
    """

    @abc.abstractmethod
    def bandwidth_range(self, points: Float[Array, "j d"]) -> tuple[float, float]:
        """``(h_min, h_max)`` for data ``points``, passed back to ``weights`` at every step."""

    @abc.abstractmethod
    def weights(self, x: States, data: Float[Array, "j d"], key: Key, h_min: Scalar, h_max: Scalar) -> Weights:
        """``(loss, c, (ess, bandwidth))`` for final states ``x`` and a data batch."""


class KL(AbstractObjective):
    """The smoothed negative log-likelihood ``L_h``: maximum likelihood through a Gaussian kernel of width ``h``.

    The same kernel smooths the model's samples and the (jittered) data, so the data law
    minimises ``L_h`` for every ``h``. ``h`` is fixed, or chosen at every step as the smallest
    width (between ``min_bandwidth`` and 4 data standard deviations) whose kernel weights keep a
    mean effective sample size of at least ``ess_target``. The string ``objective="kl"`` is its
    shorthand, with ``fit``'s ``ess_target``, ``bandwidth`` and ``min_bandwidth``.

    Arguments:
        ess_target: the bandwidth rule's target mean effective sample size.
        bandwidth: a fixed kernel width, or ``None`` for the rule.
        min_bandwidth: the rule's lower end (``None``: 0.05 times the data's mean
            per-coordinate standard deviation).

    Raises:
        ValueError: a non-positive ``ess_target``, ``bandwidth`` or ``min_bandwidth``.

    Example:
        >>> objective = dkjax.KL(ess_target=16.0)  # pass it to dkjax.fit(objective=...)
        >>> print([round(h, 3) for h in objective.bandwidth_range(jnp.ones((4, 2)) * jnp.arange(4.0)[:, None])])
        [0.056, 4.472]
    """

    rule: BandwidthRule

    def __init__(self, ess_target: float = TRAIN_DEFAULTS.ess_target, bandwidth=None, min_bandwidth=None):
        for name, value in (("ess_target", ess_target), ("bandwidth", bandwidth), ("min_bandwidth", min_bandwidth)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0; got {value!r}.")
        self.rule = BandwidthRule(ess_target, bandwidth, min_bandwidth)

    def bandwidth_range(self, points):
        return self.rule.range(points)

    def weights(self, x, data, key, h_min, h_max):
        h = self.rule(data, x, h_min, h_max)
        loss, c, ess = kl_weights(x, data, h, key)
        return loss, c, (ess, h)


class Energy(AbstractObjective):
    """The energy distance to the data: no density estimate, no bandwidth (reported as 0), no ratio bias.

    Its DK path weights are unbiased for any number of paths (three or more). The string
    ``objective="energy"`` is its shorthand.

    Arguments:
        None.

    Example:
        >>> print(dkjax.Energy().bandwidth_range(jnp.zeros((3, 2))))
        (0.0, 0.0)
    """

    def bandwidth_range(self, points):
        return 0.0, 0.0

    def weights(self, x, data, key, h_min, h_max):
        loss, c, ess = energy_weights(x, data)
        return loss, c, (ess, jnp.zeros((), x.dtype))


def as_objective(objective: "str | AbstractObjective", ess_target: float = TRAIN_DEFAULTS.ess_target,
                 bandwidth=None, min_bandwidth=None) -> AbstractObjective:  # fmt: skip
    """``objective`` itself, or the module its shorthand ``"kl"`` / ``"energy"`` names."""
    if isinstance(objective, AbstractObjective):
        return objective
    if objective == "energy":
        return Energy()
    return KL(ess_target, bandwidth, min_bandwidth)


def dk_gradient(
    sde: AbstractSDE,
    x0: States,
    score0: States | None,
    weights: Callable,
    steps: tuple[int, ...] | None = None,
    *,
    t1: Scalar,
    num_steps: int,
    key: Key,
    kernel_rate: Scalar,
    method: GradientMethod = "two_pass",
    t0: Scalar = 0.0,
    mode: str = "matrix_free",
    path_chunk: int | None = None,
) -> tuple[Scalar, Params, Any, States]:
    """Loss and its forward-only gradient ``sum_k sum_m c_km eta_m(t_k)`` for path weights from the states.

    With ``steps=None`` the objective reads the final states: ``weights(X_T)`` with ``X_T``
    ``(M, d)`` returns ``(loss, c, aux)``, ``c`` of shape ``(M,)``. With observation steps
    ``steps`` (increasing grid indices, for snapshots) ``weights`` reads the states at those
    steps, ``(K, M, d)``, and returns ``c`` of shape ``(K, M)``: one final time is the case
    ``K = 1``. ``c`` is treated as a constant and ``aux`` passed through. Both methods follow
    the same paths (noise addressed by ``(key, step, path)``) and give the same gradient up to
    rounding.

    Arguments:
        sde: the model; its parameters are ``dkjax.parameters(sde)``.
        x0: initial states ``(M, d)``; ``score0`` their initial score or ``None``.
        weights: the objective's path weights, see above.
        steps: observation steps, or ``None`` for the final time alone.
        t1, num_steps, key, kernel_rate, t0, mode: as for ``dkjax.divergence_kernel``.
        method: ``"two_pass"`` (record the states at the observation steps, compute ``c``, then
            replay the paths folding the ``c``-weighted response increments into one
            accumulator: memory ``O(K M d + size(theta))``) or ``"per_path"`` (every path's
            response, read off at the observation steps: memory ``O(K M size(theta))``).
        path_chunk: two-pass only: replay the paths this many at a time, so the replay's
            working memory scales with ``path_chunk`` instead of ``M``; ``None``: all at once.

    Returns:
        ``(loss, grad, aux, x_T)``; ``grad`` is shaped like ``dkjax.parameters(sde)``.
    """
    if path_chunk is not None and (method != "two_pass" or path_chunk < 1):
        raise ValueError(
            f"path_chunk must be an integer >= 1 with method='two_pass'; got {path_chunk!r} with method={method!r}."
        )
    observed = (num_steps,) if steps is None else tuple(int(n) for n in steps)
    per_time = _as_per_time(weights) if steps is None else weights
    t0_arr, t1_arr = jnp.asarray(t0, x0.dtype), jnp.asarray(t1, x0.dtype)
    if method == "per_path":
        states, eta_at, x_final = _per_path_responses(sde, x0, score0, observed, t0_arr, t1_arr, num_steps, key,
                                                      kernel_rate, mode)  # fmt: skip
        loss, c, aux = per_time(states)
        grad = jax.tree.map(lambda eta: jnp.einsum("km,km...->...", jax.lax.stop_gradient(c), eta), eta_at)
        return loss, grad, aux, x_final
    states, x_final = record_states(sde, x0, t0_arr, t1_arr, key, num_steps, observed)
    loss, c, aux = per_time(states)
    step_weights = StepWeights(jax.lax.stop_gradient(c).T, jnp.asarray(observed, jnp.int32))
    grad = weighted_replay(sde, x0, score0, step_weights, t1=t1, num_steps=num_steps, key=key,
                           kernel_rate=kernel_rate, t0=t0, mode=mode, path_chunk=path_chunk)  # fmt: skip
    return loss, grad, aux, x_final


def _as_per_time(weights):
    """A final-time objective ``X_T -> (loss, c, aux)`` as the one-time case ``X (1, M, d) -> (loss, c (1, M), aux)``."""

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
    key: Key,
    kernel_rate: Scalar,
    t0: Scalar = 0.0,
    mode: str = "matrix_free",
    path_chunk: int | None = None,
) -> Params:
    """The second pass of the two-pass gradient: ``sum_n sum_m w_nm (eta_{n+1} - eta_n)_m``.

    Replays the paths of ``x0`` under ``key`` and folds each step's response increments,
    path ``m`` at step ``n`` weighted by ``step_weights(n)[m]``, into one parameter-shaped
    accumulator: one reverse pass over the whole batch per step, no per-path parameter arrays.
    """
    params = parameters(sde)
    point_mass = score0 is None
    grid = dict(t0=jnp.asarray(t0, x0.dtype), t1=jnp.asarray(t1, x0.dtype), num_steps=num_steps)

    def replay(x0_chunk, score0_chunk, ids_chunk, c_chunk):
        return dk_scan(
            sde, x0_chunk, score0_chunk, ids_chunk, **grid, key=key, kernel_rate=jnp.asarray(kernel_rate, x0.dtype),
            fold=SumResponses(), acc0=jax.tree.map(jnp.zeros_like, params), jacobian=mode, point_mass=point_mass,
            weights=StepWeights(c_chunk, step_weights.steps),
        )[2]  # fmt: skip

    num_paths = x0.shape[0]
    c = step_weights.c
    inputs = (x0, jnp.zeros_like(x0) if point_mass else score0, path_ids_for(num_paths, 0), c)
    if path_chunk is None or path_chunk >= num_paths:
        return replay(*inputs)
    # Padded paths replay path 0 with weight zero; noise is addressed by path id, so every
    # chunk replays exactly the paths of the first pass.
    num_chunks = -(-num_paths // path_chunk)
    padding = num_chunks * path_chunk - num_paths
    chunked = lambda leaf, fill: jnp.concatenate([leaf, fill]).reshape((num_chunks, path_chunk) + leaf.shape[1:])
    chunks = [chunked(leaf, jnp.repeat(leaf[:1], padding, axis=0)) for leaf in inputs[:3]]
    chunks.append(chunked(c, jnp.zeros((padding,) + c.shape[1:], c.dtype)))
    add_chunk = lambda total, chunk: (jax.tree.map(jnp.add, total, replay(*chunk)), None)
    return jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, params), chunks)[0]


def parameter_count(sde: AbstractSDE) -> int:
    """Number of scalar parameters of ``sde``."""
    return sum(leaf.size for leaf in jax.tree.leaves(parameters(sde)))


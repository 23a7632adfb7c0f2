"""Training objectives of DK-SDE: losses and their DK path weights.

An objective maps the final states ``X_T^m`` of ``M`` model paths and a data batch to a
loss and per-path weights ``c_m`` such that ``grad loss = sum_m c_m eta_m`` in expectation,
``eta_m`` being path ``m``'s divergence-kernel response; how that sum is formed is the
gradient route's business (``_gradient.py``).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Float, Key, Scalar, States
from .._validation import check_choice, check_positive
from ._metrics import energy_terms, kde_sums
from ._settings import TRAIN_DEFAULTS

OBJECTIVES = ("kl", "energy")
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
    x: States, data: Float[Array, "j d"], bandwidth: Scalar, key: Key, jackknife: bool = False
) -> tuple[Scalar, Float[Array, " m"], Scalar]:
    """Smoothed negative log-likelihood ``L_h`` and its DK path weights.

    ``L_h = -mean_j log q_h(y_j + h e_j)`` with ``q_h(y) = (1/M) sum_m K_h(y - X_m)``, a
    Gaussian kernel of standard deviation ``h`` on both sides (data jittered afresh by
    ``key``), so the minimiser is the data law for every ``h``. Weights:
    ``c_m = -(1/J) sum_j w_jm + 1/M``; the constant ``1/M`` is a baseline (``E[eta] = 0``)
    that removes the common part of the responses without bias. With ``jackknife``, each row's
    ``w_j`` is replaced by its ``jackknife_coefficients``, which cancel the self-normalised
    ratio's ``O(1 / ESS)`` bias; the baseline stays valid, since those also sum to one.

    Returns:
        ``(loss, c, mean_ess)``.
    """
    jittered = data + bandwidth * jr.normal(key, data.shape, data.dtype)
    num_data = data.shape[0]
    sums = kde_sums(jittered, x, bandwidth, jackknife=jackknife)
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

    Each data point's pull on the paths is a self-normalised kernel average over the paths,
    which is biased by about one over its effective sample size. The bias is towards a narrower
    model: data in the tails, which few paths reach, pull less than they should. In a few
    dimensions it is small; at fit's defaults in 10 dimensions it settles a model of the data's
    own law at 0.90 of the data's spread. ``jackknife=True`` (the default) replaces each
    average by its jackknife, which cancels the bias's leading order (0.95 there) at the cost
    of a little more variance.

    Arguments:
        ess_target: the bandwidth rule's target mean effective sample size.
        bandwidth: a fixed kernel width, or ``None`` for the rule.
        min_bandwidth: the rule's lower end (``None``: 0.05 times the data's mean
            per-coordinate standard deviation).
        jackknife: correct the self-normalised averages' leading-order bias.

    Raises:
        ValueError: ``ess_target``, ``bandwidth`` or ``min_bandwidth`` not a positive finite number.
        TypeError: ``jackknife`` not a bool.

    Example:
        >>> objective = dkjax.KL(ess_target=16.0)  # pass it to dkjax.fit(objective=...)
        >>> print([round(h, 3) for h in objective.bandwidth_range(jnp.ones((4, 2)) * jnp.arange(4.0)[:, None])])
        [0.056, 4.472]
    """

    rule: BandwidthRule
    jackknife: bool

    def __init__(self, ess_target: float = TRAIN_DEFAULTS.ess_target, bandwidth=None, min_bandwidth=None,
                 jackknife: bool = True):  # fmt: skip
        check_positive("ess_target", ess_target)
        check_positive("bandwidth", bandwidth, allow_none=True)
        check_positive("min_bandwidth", min_bandwidth, allow_none=True)
        if not isinstance(jackknife, bool):
            raise TypeError(f"jackknife must be True or False; got {jackknife!r}.")
        self.rule = BandwidthRule(ess_target, bandwidth, min_bandwidth)
        self.jackknife = jackknife

    def bandwidth_range(self, points):
        return self.rule.range(points)

    def weights(self, x, data, key, h_min, h_max):
        h = self.rule(data, x, h_min, h_max)
        loss, c, ess = kl_weights(x, data, h, key, self.jackknife)
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
    """``objective`` itself, or the module its shorthand ``"kl"`` / ``"energy"`` names.

    Raises:
        ValueError: an unknown shorthand, or a bad ``KL`` setting (named).
    """
    if isinstance(objective, AbstractObjective):
        return objective
    check_choice("objective", objective, OBJECTIVES)
    kl = KL(ess_target, bandwidth, min_bandwidth)  # checks the shorthand's settings whichever it names
    return Energy() if objective == "energy" else kl

"""The kernel rate ``alpha(t)`` as modules: constant, a schedule, or chosen by a pilot run.

The score recursion mixes the kernel score in with weight ``a_n = alpha(t_n) dt`` per step,
so ``alpha(t) dt <= 1`` on every step; the automatic rate measures how fast covectors pushed
forward by ``J^{-T}`` grow and stays above it.
"""

import abc
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Key, RealScalarLike, Scalar, States
from ._driver import AbstractFold, AbstractStep, drive
from ._jacobian import AbstractJacobian, as_jacobian, tangent_images
from ._noise import brownian_normal
from .._sde._abstract import AbstractSDE, noise_dimension
from ._simulate import batch_increment, check_common, path_ids_for, time_grid
from .._validation import is_concrete

# fold_in values above every int32 step index: the pilot's key and its covectors' key
# never coincide with a step key of the run they serve.
_PILOT_SALT, _COVECTOR_SALT = 2**32 - 2, 2**32 - 1


def _rate_tolerance(dt) -> float:
    """Rounding slack on ``alpha dt <= 1``: ``alpha = 1 / dt`` computed in float64 exceeds it by ulps."""
    return 4 * float(jnp.finfo(jnp.result_type(dt)).eps)


class AbstractKernelRate(eqx.Module):
    """The kernel rate ``alpha(t)``: ``rate(t)`` inside the step, ``check`` before any work.

    Pass an instance as ``kernel_rate`` to ``dkjax.divergence_kernel`` and the responses;
    a number, a callable and ``"auto"`` are shorthands for the three subclasses.

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> isinstance(dkjax.ConstantRate(1.0), dkjax.AbstractKernelRate)
        True
    """

    @abc.abstractmethod
    def __call__(self, t: Scalar) -> Scalar:
        """The rate at time ``t``."""

    @abc.abstractmethod
    def check(self, t0, dt, num_steps: int) -> None:
        """Raises ``ValueError`` unless ``0 <= alpha(t_n) dt <= 1`` on the grid ``t_n = t0 + n dt``."""

    def resolve(self, sde, x0, *, t0, t1, num_steps, key, jacobian) -> "AbstractKernelRate":
        """The rate to run with (``AutoRate`` measures it; the others are already resolved)."""
        return self

    @property
    def value(self) -> float | None:
        """The rate as a Python float when it is one constant known now, else ``None``."""
        return None


class ConstantRate(AbstractKernelRate):
    """One rate for every step.

    Arguments:
        rate: ``alpha >= 0``; ``0`` turns the kernel part off (needs ``score0``).

    Raises:
        ValueError: from ``check`` (called by the estimator before any work), if the rate is
            not a finite scalar ``>= 0`` or ``alpha dt > 1``.

    Example:
        >>> rate = dkjax.ConstantRate(2.0)
        >>> print(float(rate(0.5)))
        2.0
    """

    rate: Array | float

    def __call__(self, t):
        return jnp.asarray(self.rate, jnp.result_type(t))

    def check(self, t0, dt, num_steps):
        if jnp.ndim(self.rate) != 0:
            raise ValueError(f"kernel_rate must be a scalar or a callable t -> rate; got shape {jnp.shape(self.rate)}.")
        if not is_concrete(self.rate):
            return
        rate = float(self.rate)
        if not rate >= 0.0 or rate == float("inf"):
            raise ValueError(f"kernel_rate must be finite and >= 0; got {rate}.")
        if is_concrete(dt) and rate * float(dt) > 1.0 + _rate_tolerance(dt):
            raise ValueError(
                f"kernel_rate * dt must be <= 1 (the kernel weight per step); got {rate} * {float(dt):.4g}. "
                "Use more steps or a smaller kernel_rate."
            )

    @property
    def value(self):
        return float(self.rate) if is_concrete(self.rate) else None


class RateSchedule(AbstractKernelRate):
    """A rate that depends on time, ``alpha(t) = schedule(t)``, read at every step's time.

    Arguments:
        schedule: a traceable function ``t -> alpha``.

    Raises:
        ValueError: from ``check`` (called by the estimator before any work), naming the
            first step where ``alpha(t_n) < 0``, not finite, or ``alpha(t_n) dt > 1``.

    Example:
        >>> rate = dkjax.RateSchedule(lambda t: 1.0 + 2.0 * t)
        >>> rate.check(jnp.asarray(0.0), jnp.asarray(0.1), 10)  # alpha dt <= 1 on the grid: no error
        >>> print(float(rate(jnp.asarray(0.5))))
        2.0
    """

    schedule: Callable[[Scalar], Scalar]

    def __call__(self, t):
        return jnp.asarray(self.schedule(t), jnp.result_type(t))

    def check(self, t0, dt, num_steps):
        if not (is_concrete(t0) and is_concrete(dt)):
            return
        times = jnp.asarray(t0) + jnp.asarray(dt) * jnp.arange(num_steps, dtype=jnp.result_type(dt))
        with jax.ensure_compile_time_eval():
            rates = np.asarray(jax.vmap(self)(times), np.float64)
        bad = ~np.isfinite(rates) | (rates < 0) | (rates * float(dt) > 1.0 + _rate_tolerance(dt))
        if np.any(bad):
            n = int(np.argmax(bad))
            raise ValueError(
                f"the kernel-rate schedule must give 0 <= alpha(t) and alpha(t) * dt <= 1 at every step; at step {n} "
                f"(t = {float(times[n]):.6g}) it gives alpha = {rates[n]:.6g}, alpha * dt = {rates[n] * float(dt):.6g}."
            )


class AutoRate(AbstractKernelRate):
    """Chosen before the run by ``dkjax.estimate_kernel_rate`` from a pilot run with its own key.

    Arguments:
        num_pilot_paths, safety, min_rate: as for ``dkjax.estimate_kernel_rate``.

    Raises:
        ValueError: from ``check``, for ``safety < 1``, ``min_rate < 0`` or no pilot paths;
            from the pilot run, if it went non-finite.

    Example:
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(1.5, 0.8), jnp.zeros((512, 1)), t1=1.0,
        ...                               num_steps=100, key=jax.random.key(0), kernel_rate=dkjax.AutoRate())
        >>> print(round(res.kernel_rate, 1))  # twice OU's contraction rate theta
        3.0
    """

    num_pilot_paths: int = eqx.field(static=True, default=256)
    safety: float = eqx.field(static=True, default=2.0)
    min_rate: float = eqx.field(static=True, default=1.0)

    def __call__(self, t):
        raise TypeError("AutoRate is resolved into a ConstantRate before the run; call resolve first.")

    def check(self, t0, dt, num_steps):
        if self.safety < 1.0 or self.min_rate < 0.0 or self.num_pilot_paths < 1:
            raise ValueError(
                f"need safety >= 1, min_rate >= 0 and num_pilot_paths >= 1; "
                f"got {self.safety}, {self.min_rate}, {self.num_pilot_paths}."
            )

    def resolve(self, sde, x0, *, t0, t1, num_steps, key, jacobian):
        # The estimator checked sde, x0 and the grid already: the pilot run skips those checks.
        rate = self.measure(sde, x0, t1=t1, num_steps=num_steps, key=jr.fold_in(key, _PILOT_SALT), t0=t0,
                            mode=jacobian)  # fmt: skip
        return ConstantRate(rate)

    def measure(self, sde, x0, *, t1, num_steps, key, t0=0.0, mode="matrix_free") -> float:
        """``dkjax.estimate_kernel_rate`` with these settings, for arguments its caller has checked."""
        x0 = jnp.asarray(x0)[: self.num_pilot_paths]
        w0 = jr.normal(jr.fold_in(key, _COVECTOR_SALT), x0.shape, x0.dtype)
        w0 = w0 / jnp.linalg.norm(w0, axis=1, keepdims=True)
        t0_arr, dt = time_grid(t0, t1, num_steps, x0.dtype)
        t1_arr = jnp.asarray(t1, x0.dtype)
        growth, empty = _covector_growth(sde, x0, w0, t0_arr, t1_arr, key, as_jacobian(mode), num_steps)
        if int(empty) or not bool(jnp.isfinite(growth)):
            raise ValueError("the kernel-rate pilot run went non-finite; use a smaller time step.")
        rate = max(self.min_rate, self.safety * float(growth))
        if rate * float(dt) > 1.0:
            warnings.warn(
                f"the measured covector growth needs a kernel rate {rate:.3g} above 1/dt = {1 / float(dt):.3g}; "
                "capped at 1/dt. Use more time steps.",
                RuntimeWarning,
                stacklevel=3,
            )
            rate = 1.0 / float(dt)
        return rate


def as_kernel_rate(kernel_rate) -> AbstractKernelRate:
    """A kernel-rate module from a module, a number, a callable ``t -> alpha`` or ``"auto"``."""
    if isinstance(kernel_rate, AbstractKernelRate):
        return kernel_rate
    if isinstance(kernel_rate, str):
        if kernel_rate != "auto":
            raise ValueError(f"kernel_rate must be a number, a callable or 'auto'; got {kernel_rate!r}.")
        return AutoRate()
    if callable(kernel_rate):
        return RateSchedule(kernel_rate)
    return ConstantRate(kernel_rate)


class CovectorStep(AbstractStep):
    """The EM step with a unit covector per path pushed forward by ``J^{-T}`` and renormalised."""

    params: object
    static: object
    jacobian: AbstractJacobian
    noise_dim: int = eqx.field(static=True)

    def __call__(self, n, t, dt, key_n, path_ids, carry):
        x, w = carry
        z = jax.vmap(lambda i: brownian_normal(key_n, i, self.noise_dim, x.dtype))(path_ids)
        increment = batch_increment(self.static, t, dt, z)
        step, transpose = jax.vjp(lambda x_: increment(x_, self.params), x)
        at = lambda v: transpose(v)[0]
        tangents = self.jacobian.tangents(w)
        images = tangent_images(increment, tangents, 1)(x, self.params)[1]
        pushed, _ = self.jacobian.pushforward(at, w, self.jacobian.duals(at, tangents, images))
        norm = jnp.linalg.norm(pushed, axis=-1, keepdims=True)
        return (x + step, pushed / norm), jnp.log(norm[:, 0])


class GrowthRate(AbstractFold):
    """Sums the per-step mean log-growth over finite paths from step ``skip`` on; counts empty steps."""

    skip: int = eqx.field(static=True)

    def update(self, acc, n, log_growth):
        total, empty = acc
        finite = jnp.isfinite(log_growth)
        mean = jnp.sum(jnp.where(finite, log_growth, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        counted = n >= self.skip
        return total + jnp.where(counted, mean, 0.0), empty + (counted & ~jnp.any(finite))


@eqx.filter_jit
def _covector_growth(sde, x0, w0, t0, t1, key, jacobian, num_steps):
    """Mean log-growth per unit time of unit covectors over the last three quarters of the steps."""
    t0, dt = time_grid(t0, t1, num_steps, x0.dtype)
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    step = CovectorStep(params, static, jacobian, noise_dimension(sde, t0, x0[0])[1])
    acc = (jnp.zeros((), x0.dtype), jnp.int32(0))
    path_ids = path_ids_for(x0.shape[0], 0)
    fold = GrowthRate(num_steps // 4)
    _, (total, empty) = drive(step, fold, (x0, w0), acc, path_ids=path_ids, t0=t0, dt=dt, key=key, first=0, stop=num_steps)
    return total / ((num_steps - num_steps // 4) * dt), empty


def estimate_kernel_rate(
    sde: AbstractSDE,
    x0: States,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
    num_pilot_paths: int = 256,
    safety: float = 2.0,
    min_rate: float = 1.0,
    mode: str | AbstractJacobian = "matrix_free",
) -> float:
    """Chooses the kernel rate ``alpha`` from a short pilot run.

    Rule: push random unit covectors forward by ``J^{-T}`` along ``num_pilot_paths``
    paths over the same time grid, measure their growth rate ``r`` (the mean log-growth
    per unit time over the last three quarters of the steps, after the covectors have
    aligned with the fastest-growing direction: the flow's strongest contraction), and
    return ``max(min_rate, safety * r)``, capped at ``1 / dt``. A rate below ``r`` lets
    the score weights grow without bound; above it they stay bounded and the variance
    grows only slowly with ``alpha``.

    Arguments:
        sde, x0, t1, num_steps, key, t0: as for ``dkjax.divergence_kernel`` (only the first
            ``num_pilot_paths`` rows of ``x0`` are used). Pass a key of its own, not the
            key of the run the rate is for (``kernel_rate="auto"`` derives one).
        num_pilot_paths: paths in the pilot run.
        safety: factor above the measured growth rate.
        min_rate: lower bound on the returned rate.
        mode: ``"matrix_free"``, ``"exact"`` or a Jacobian module, as for the estimator.

    Returns:
        The kernel rate, a Python float.

    Raises:
        ValueError: as ``dkjax.divergence_kernel`` for bad inputs, or if at some step every
            pilot path had gone non-finite.

    Example:
        >>> x0 = 8.0 + jax.random.normal(jax.random.key(1), (64, 8))
        >>> alpha = dkjax.estimate_kernel_rate(dkjax.Lorenz96(8.0, 0.5), x0, t1=1.0,
        ...                                    num_steps=100, key=jax.random.key(0))
        >>> print(alpha > 1.0)  # chaotic: faster than the floor min_rate = 1
        True
    """
    check_common(sde, x0, t0, t1, num_steps, key)
    rule = AutoRate(num_pilot_paths, safety, min_rate)
    rule.check(None, None, num_steps)
    return rule.measure(sde, x0, t1=t1, num_steps=num_steps, key=key, t0=t0, mode=mode)

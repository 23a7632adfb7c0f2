"""How a step's Jacobian ``J = I + A`` enters the divergence-kernel recursion.

``A = D_x increment`` is the derivative of the Euler-Maruyama increment at frozen noise.
The recursion needs ``J^{-T} w`` (the pushforward of a covector) and a scalar whose
gradient is that of ``log|det J|``. ``Dense`` forms ``J`` and inverts it (a reference for
``d`` up to about 100); ``MatrixFree`` uses VJPs and one Hutchinson probe per step, with
cost linear in ``d``, and expands ``J^{-T} = I - A^T + (A^T)^2 - ...`` to a given order:
valid while ``|A|`` is small, which it reports.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Scalar, State
from ._linalg import inverse_and_logabsdet


class AbstractJacobian(eqx.Module):
    """How the Jacobian of the step map is treated; ``increment(x, params)`` is the EM increment.

    Subclasses implement ``prepare`` (per path and step, the data that ``pushforward`` and
    ``logdet_carrier`` hold fixed, computed once and reused by the response), ``pushforward``
    and ``logdet_carrier``; pass an instance as ``mode`` to ``dkjax.divergence_kernel``.

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> isinstance(dkjax.MatrixFree(), dkjax.AbstractJacobian)
        True
    """

    @abc.abstractmethod
    def prepare(self, increment, x: State, params, probe: State) -> Array:
        """Data held fixed in one step: ``J^{-T}`` (``Dense``) or the dual probe (``MatrixFree``)."""

    @abc.abstractmethod
    def pushforward(self, increment, x: State, params, w: State, prepared) -> tuple[State, Scalar]:
        """``(J^{-T} w, |A^T w| / |w|)``; the ratio measures the expansion's validity (``0`` if unused)."""

    @abc.abstractmethod
    def logdet_carrier(self, increment, x: State, params, probe: State, prepared) -> Scalar:
        """A scalar whose gradients in ``x`` and the parameters are those of ``log|det J|``."""


def _step_jacobian(increment, x, params) -> Array:
    """The dense Jacobian ``J = I + D_x increment`` of the step map at frozen noise."""
    return jnp.eye(x.shape[0], dtype=x.dtype) + jax.jacfwd(lambda x_: increment(x_, params))(x)


class Dense(AbstractJacobian):
    """Dense Jacobians: exact ``J^{-T}`` and ``log|det J|`` at ``O(d^3)`` per path and step.

    The string ``mode="exact"`` is its shorthand.

    Arguments:
        None.

    Raises:
        FloatingPointError: only through ``dkjax.divergence_kernel(on_nonfinite="raise")``,
            when a singular ``J`` makes paths non-finite.

    Example:
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(1.0, 0.5), jnp.zeros((100, 1)),
        ...                               t1=1.0, num_steps=10, key=jax.random.key(0), mode=dkjax.Dense())
        >>> print(res.expansion_ratio is None)
        True
    """

    def prepare(self, increment, x, params, probe):
        return inverse_and_logabsdet(_step_jacobian(increment, x, params))[0].T

    def pushforward(self, increment, x, params, w, prepared):
        return prepared @ w, jnp.zeros((), x.dtype)

    def logdet_carrier(self, increment, x, params, probe, prepared):
        # d log|det J| = tr(J^{-1} dJ) with J^{-1} held fixed; ``prepared`` is J^{-T}.
        return jnp.sum(jax.lax.stop_gradient(prepared) * _step_jacobian(increment, x, params))


class MatrixFree(AbstractJacobian):
    """VJPs and a Hutchinson probe: ``J^{-T} w ~ sum_{k <= order} (-A^T)^k w``, cost linear in ``d``.

    The truncation error of one pushforward is about ``r^(order + 1)`` relative to ``w``,
    with ``r = |A^T w| / |w|`` (reported per path as ``DKResult.expansion_ratio``); it is
    small when the drift's and diffusion's derivatives times the step are small.

    The string ``mode="matrix_free"`` is its shorthand (``order=2``).

    Arguments:
        order: terms of the expansion of ``J^{-T}`` beyond the identity (``>= 1``; default 2).

    Raises:
        ValueError: ``order`` not a positive int.

    Example:
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(2.0, 0.5), jnp.zeros((100, 1)),
        ...                               t1=1.0, num_steps=10, key=jax.random.key(0),
        ...                               mode=dkjax.MatrixFree(order=3))
        >>> print(f"{float(res.expansion_ratio.max()):.2f}")  # theta dt
        0.20
    """

    order: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1:
            raise ValueError(f"MatrixFree order must be a positive int; got {self.order!r}.")

    def prepare(self, increment, x, params, probe):
        # The log|det J| carrier's dual probe J^{-T} v ~ v - A^T v, held fixed.
        return self.pushforward(increment, x, params, probe, None, order=1)[0]

    def pushforward(self, increment, x, params, w, prepared, order=None):
        _, vjp_increment = jax.vjp(lambda x_: increment(x_, params), x)
        at_w = vjp_increment(w)[0]
        ratio = jnp.linalg.norm(at_w) / jnp.linalg.norm(w)
        total, term = w - at_w, at_w
        for k in range(2, (self.order if order is None else order) + 1):
            term = vjp_increment(term)[0]
            total = total + term if k % 2 == 0 else total - term
        return total, jnp.where(jnp.isfinite(ratio), ratio, 0.0)

    def logdet_carrier(self, increment, x, params, probe, prepared):
        # With one Rademacher probe v: (J^{-T} v) . (A v), where A acts by a JVP and the dual
        # probe J^{-T} v ~ v - A^T v is held fixed. Its gradient has mean tr(dA) - tr(A dA), the
        # gradient of tr A - tr(A^2)/2; the exact gradient adds terms of conditional mean
        # O(dt^2), like those the expansion drops. Without the second-order part of the dual
        # probe, OU at dt = 0.02 showed an O(dt) bias of about ten standard errors.
        _, a_probe = jax.jvp(lambda x_: increment(x_, params), (x,), (probe,))
        return jax.lax.stop_gradient(prepared) @ a_probe


_SHORTHANDS = {"matrix_free": MatrixFree, "exact": Dense}


def as_jacobian(mode) -> AbstractJacobian:
    """An ``AbstractJacobian`` from a module or a shorthand (``"matrix_free"``, ``"exact"``)."""
    if isinstance(mode, AbstractJacobian):
        return mode
    if isinstance(mode, str) and mode in _SHORTHANDS:
        return _SHORTHANDS[mode]()
    raise ValueError(f"mode must be one of {sorted(_SHORTHANDS)} or a dkjax.AbstractJacobian; got {mode!r}.")

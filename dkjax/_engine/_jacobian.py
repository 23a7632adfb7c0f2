"""How a step's Jacobian ``J = I + A`` enters the divergence-kernel recursion.

``A = D_x increment`` is the derivative of the Euler-Maruyama increment at frozen noise. The
recursion needs ``J^{-T} w`` (the pushforward of a covector) and the gradients of
``log|det J|``. Both come from one linearisation of the increment per step: ``A^T w`` is a
vector-Jacobian product with it, and ``log|det J|`` enters through a carrier
``h = sum_k P_k . (A V_k)``: tangent directions ``V_k`` and dual probes ``P_k`` held fixed,
whose gradient in the state and the parameters (one reverse pass) is that of ``log|det J|``.

``Dense`` uses the ``d`` unit vectors and ``P = J^{-1}``: exact, a reference for ``d`` up to
about 100. ``MatrixFree`` uses one Rademacher probe ``v`` and its dual ``v - A^T v``, and
expands ``J^{-T} = I - A^T + (A^T)^2 - ...`` to a given order: cost linear in ``d``, valid
while ``|A|`` is small, which it reports.

Every method acts on a batch of ``B`` paths; ``at(w)`` is the batch's ``A^T w`` (``(B, d)``).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, State
from ._linalg import inverse_and_logabsdet

Transpose = Callable[[Array], Array]


def tangent_images(increment, tangents, axis):
    """``(x, params) -> (increment, A V_k)``: the increment and its derivative along each ``V_k``.

    ``tangents`` holds the ``V_k`` along ``axis`` (``(B, K, d)`` for a batch, ``(K, d)`` for one path).
    """

    def images(x, params):
        along = lambda v: jax.jvp(lambda x_: increment(x_, params), (x,), (v,))
        if tangents.shape[axis] == 1:  # one probe: a vmap of size one doubles XLA's cost of the reverse pass
            step, image = along(jnp.squeeze(tangents, axis))
            return step, jnp.expand_dims(image, axis)
        return jax.vmap(along, in_axes=axis, out_axes=(None, axis))(tangents)

    return images


class AbstractJacobian(eqx.Module):
    """How the Jacobian of the step map is treated, for a batch of paths.

    Subclasses implement ``tangents`` (the directions ``V_k`` of the log-determinant
    carrier), ``duals`` (its dual probes ``P_k``, held fixed) and ``pushforward``
    (``J^{-T} w``); pass an instance as ``mode`` to ``dkjax.divergence_kernel``.

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> isinstance(dkjax.MatrixFree(), dkjax.AbstractJacobian)
        True
    """

    @abc.abstractmethod
    def tangents(self, probe: Array) -> Array:
        """The carrier's directions ``V``, shape ``(B, K, d)``, from the step's probes ``(B, d)``."""

    @abc.abstractmethod
    def duals(self, at: Transpose, tangents: Array, images: Array) -> Array:
        """The dual probes ``P`` ``(B, K, d)``, from ``A^T`` and the images ``A V_k`` ``(B, K, d)``.

        ``E[sum_k P_k . dA V_k]`` must equal ``d log|det J|`` (to the module's order).
        """

    @abc.abstractmethod
    def pushforward(self, at: Transpose, w: Array, duals: Array) -> tuple[Array, Array]:
        """``(J^{-T} w, |A^T w| / |w|)`` per path; the ratio measures the expansion's validity (``0`` if unused)."""


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

    def tangents(self, probe):
        batch, dim = probe.shape
        return jnp.broadcast_to(jnp.eye(dim, dtype=probe.dtype), (batch, dim, dim))

    def duals(self, at, tangents, images):
        # images[:, k] = A e_k is column k of A; with P = J^{-1}, sum_k P_k . dA e_k = tr(J^{-1} dA).
        eye = jnp.eye(images.shape[-1], dtype=images.dtype)
        jacobian = eye + jnp.swapaxes(images, 1, 2)
        return jax.vmap(lambda j: inverse_and_logabsdet(j)[0])(jacobian)

    def pushforward(self, at, w, duals):
        # J^{-T} w = (J^{-1})^T w.
        return jnp.einsum("bki,bk->bi", duals, w), jnp.zeros(w.shape[:1], w.dtype)


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

    def tangents(self, probe):
        return probe[:, None, :]

    def duals(self, at, tangents, images):
        # With one Rademacher probe v and its dual p = v - A^T v ~ J^{-T} v held fixed, the
        # carrier p . (A v) has gradient of mean tr(dA) - tr(A dA), that of tr A - tr(A^2)/2;
        # the exact gradient adds terms of conditional mean O(dt^2), like those the expansion
        # drops. Without the second-order part of the dual, OU at dt = 0.02 showed an O(dt)
        # bias of about ten standard errors.
        v = tangents[:, 0]
        return (v - at(v))[:, None, :]

    def pushforward(self, at, w, duals):
        at_w = at(w)
        ratio = jnp.linalg.norm(at_w, axis=-1) / jnp.linalg.norm(w, axis=-1)
        total, term = w - at_w, at_w
        for k in range(2, self.order + 1):
            term = at(term)
            total = total + term if k % 2 == 0 else total - term
        return total, jnp.where(jnp.isfinite(ratio), ratio, 0.0)


_SHORTHANDS = {"matrix_free": MatrixFree, "exact": Dense}


def as_jacobian(mode) -> AbstractJacobian:
    """An ``AbstractJacobian`` from a module or a shorthand (``"matrix_free"``, ``"exact"``)."""
    if isinstance(mode, AbstractJacobian):
        return mode
    if isinstance(mode, str) and mode in _SHORTHANDS:
        return _SHORTHANDS[mode]()
    raise ValueError(f"mode must be one of {sorted(_SHORTHANDS)} or a dkjax.AbstractJacobian; got {mode!r}.")

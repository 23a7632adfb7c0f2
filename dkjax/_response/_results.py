"""The results of the response estimators: observables, densities and stationary averages."""

import equinox as eqx
import jax

from .._custom_types import Array, Params


class ResponseResult(eqx.Module):
    """Estimated derivative ``d/dparam E[phi(X_T)]`` with Monte-Carlo standard errors.

    Attributes:
        estimate: pytree shaped like ``dkjax.parameters(sde)``; each leaf has shape
            ``param.shape + phi_shape`` (``phi_shape`` is the shape ``phi`` returns).
        stderr: standard errors, same structure (i.i.d. over paths).
        value: ``E[phi(X_T)]``, shape ``phi_shape``.
        value_stderr: its standard error.
        num_paths: paths that entered the averages.
        num_nonfinite: paths excluded because they went non-finite (``DKResult.finite``).
        kernel_rate: the kernel rate used (``None`` for methods without one).

    Example:
        >>> res = dkjax.observable_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), lambda x: x[0],
        ...                                 jnp.ones((4096, 1)), t1=1.0, num_steps=50, key=jax.random.key(0))
        >>> print(res.num_paths, res.num_nonfinite, res.estimate.theta.shape)
        4096 0 ()
    """

    estimate: Params
    stderr: Params
    value: Array
    value_stderr: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    kernel_rate: float | None = eqx.field(static=True, default=None)


class DensityResponse(eqx.Module):
    """Density, density response and conditional DK weights on points or histogram bins.

    With ``k`` selected coordinates and ``G`` points (bin centres, row-major over the
    ``grid_shape`` for 2-D bins):

    Attributes:
        points: shape ``(G, k)``.
        grid_shape: ``(G,)`` for 1-D, ``(nx, ny)`` for 2-D bins (reshape the last axis).
        density: ``p_T`` (bin average, or kernel-smoothed), shape ``(G,)``; ``density_stderr``.
        response: ``d/dparam p_T``, pytree like the parameters with leaves
            ``param.shape + (G,)``; ``response_stderr``.
        dlogp_mean: ``E[dlogp | X_T]`` (estimates ``d/dparam log p_T``), leaves
            ``param.shape + (G,)``; ``dlogp_mean_stderr``. NaN where fewer than 2
            effective paths landed.
        score_mean: ``E[score | X_T]`` for the selected coordinates, shape ``(G, k)``;
            ``score_mean_stderr``. NaN where fewer than 2 effective paths landed.
        effective_paths: per point, ``(sum w)^2 / sum w^2`` (paths per bin for histograms).
        num_paths, num_nonfinite: as in ``ResponseResult``.
        kernel_rate: the kernel rate used.

    Example:
        >>> res = dkjax.density_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), jnp.zeros((4096, 1)),
        ...                              t1=1.0, num_steps=50, key=jax.random.key(0), bins=jnp.linspace(-1, 1, 11))
        >>> print(res.points.shape, res.density.shape, res.response.sigma.shape)
        (10, 1) (10,) (10,)
    """

    points: Array
    grid_shape: tuple[int, ...] = eqx.field(static=True)
    density: Array
    density_stderr: Array
    response: Params
    response_stderr: Params
    dlogp_mean: Params
    dlogp_mean_stderr: Params
    score_mean: Array
    score_mean_stderr: Array
    effective_paths: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    kernel_rate: float | None = eqx.field(static=True, default=None)


class StationaryResponse(eqx.Module):
    """Long-time response ``d/dparam <phi>`` for each window ``W``, and the window chosen on the plateau.

    Attributes:
        windows: window lengths in steps, shape ``(nW,)``; ``window_times`` in time units.
        estimate: pytree like the parameters, leaves ``(nW,) + param.shape + phi_shape``: the
            plateau curve, one estimate per window.
        stderr: batch-means standard errors (see ``stationary_response``), same structure.
        value: the time average ``<phi>``, shape ``phi_shape``; ``value_stderr``.
        num_paths: paths that entered the averages; ``num_nonfinite``: paths excluded.
        num_batches: per window, the batches (paths x blocks) behind its standard error.
        kernel_rate: the kernel rate used.
        window_index: index into ``windows`` of the chosen window: the shortest one past which
            the estimate no longer moves beyond ``plateau_threshold`` standard errors of the
            difference, or the longest one when there is no such window.
        plateau: whether a plateau was found (``False`` also for a single window, which
            cannot be judged); when it is ``False`` the chosen estimate may still be biased.
        difference_stderr: like ``stderr``: the standard error of ``estimate[k] -
            estimate[window_index]`` over the batches both windows share (smaller than the two
            errors combined: the windows are read off the same paths).

    The chosen window is ``window`` (steps) and ``window_time``; its estimate and error are
    ``chosen_estimate`` and ``chosen_stderr`` (leaves ``param.shape + phi_shape``).

    Example:
        >>> res = dkjax.stationary_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), lambda x: x[0] ** 2,
        ...     jnp.zeros((256, 1)), dt=0.05, spinup_steps=100, num_steps=2000, windows=[20, 40, 80],
        ...     key=jax.random.key(0))
        >>> print(res.windows, res.window_times, res.estimate.theta.shape, res.window, res.plateau)
        [20 40 80] [1. 2. 4.] (3,) 40 True
    """

    windows: Array
    window_times: Array
    estimate: Params
    stderr: Params
    value: Array
    value_stderr: Array
    num_paths: int = eqx.field(static=True)
    num_nonfinite: int = eqx.field(static=True)
    num_batches: Array
    kernel_rate: float | None = eqx.field(static=True, default=None)
    window_index: int = eqx.field(static=True, default=-1)
    plateau: bool = eqx.field(static=True, default=False)
    difference_stderr: Params | None = None

    @property
    def window(self) -> int:
        """The chosen window in steps."""
        return int(self.windows[self.window_index])

    @property
    def window_time(self) -> float:
        """The chosen window in time units."""
        return float(self.window_times[self.window_index])

    @property
    def chosen_estimate(self) -> Params:
        """The estimate at the chosen window: leaves ``param.shape + phi_shape``."""
        return jax.tree.map(lambda leaf: leaf[self.window_index], self.estimate)

    @property
    def chosen_stderr(self) -> Params:
        """The standard error at the chosen window."""
        return jax.tree.map(lambda leaf: leaf[self.window_index], self.stderr)

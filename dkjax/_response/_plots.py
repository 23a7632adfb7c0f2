"""PNG figures of linear responses (matplotlib, Agg backend, imported only when plotting)."""

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from .._plotting import pyplot, save_figure
from ._results import DensityResponse, StationaryResponse


def _leaf(tree, parameter: str, index) -> np.ndarray:
    leaf = getattr(tree, parameter, None)
    if leaf is None:
        names = [k for k in vars(tree) if getattr(tree, k) is not None] if hasattr(tree, "__dict__") else []
        raise ValueError(f"parameter must name a parameter field; got {parameter!r} (parameters: {names}).")
    return np.asarray(leaf)[index]


def plot_response_vs_parameter(
    values: Sequence[float],
    series: Mapping[str, tuple[Sequence[float], Sequence[float] | None]],
    path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    symlog: bool = False,
) -> None:
    """Plots one response curve per method, with error bars, against a parameter or a time.

    Arguments:
        values: the x-axis values (parameter values or horizons).
        series: ``{label: (estimates, standard errors or None)}``.
        path: output PNG path.
        xlabel, ylabel, title: labels.
        symlog: symmetric-log y-axis (for responses that diverge, e.g. backpropagation).

    Returns:
        None (writes ``path``).

    Raises:
        ValueError: if a series does not have one entry per value.

    Example:
        >>> dkjax.plot_response_vs_parameter([0.5, 2.0], {"DK": ([3.1, 3.6], [0.1, 0.1])}, "r.png",
        ...                                  xlabel="T", ylabel="dE/dF")
        >>> import os; print(os.path.exists("r.png"))
        True
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    x = np.asarray(values, float)
    for offset, (label, (y, err)) in enumerate(series.items()):
        y = np.asarray(y, float)
        if y.shape != x.shape:
            raise ValueError(f"series {label!r} has {y.shape} entries; expected {x.shape}.")
        shift = 1.0 + 0.01 * (offset - (len(series) - 1) / 2)  # keep overlapping error bars apart
        ax.errorbar(x * shift, y, yerr=None if err is None else np.asarray(err, float), marker="o", capsize=3, label=label)
    if symlog:
        ax.set_yscale("symlog", linthresh=10.0)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    save_figure(fig, path, tight=True)


def plot_density_response(
    result: DensityResponse,
    path,
    *,
    parameter: str,
    index: tuple = (),
    reference: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """Four panels on a 1-D grid: ``p_T``, ``d/dparam p_T``, ``E[dlogp | x]`` and ``E[score | x]``.

    Arguments:
        result: a 1-D ``DensityResponse``.
        path: output PNG path.
        parameter: the parameter field to show; ``index`` selects an entry of an array parameter.
        reference: optional exact curves ``{"density" | "response" | "dlogp" | "score": (x, y)}``.

    Returns:
        None (writes ``path``).

    Raises:
        ValueError: for 2-D results or an unknown ``parameter``.

    Example:
        >>> res = dkjax.density_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), jnp.zeros((4096, 1)),
        ...                              t1=1.0, num_steps=50, key=jax.random.key(0), bins=jnp.linspace(-1, 1, 21))
        >>> dkjax.plot_density_response(res, "density.png", parameter="theta")
        >>> import os; print(os.path.exists("density.png"))
        True
    """
    if result.points.shape[1] != 1:
        raise ValueError("plot_density_response draws 1-D results; reshape 2-D ones with result.grid_shape.")
    plt = pyplot()
    x = np.asarray(result.points[:, 0])
    panels = [
        ("density", "p_T(x)", np.asarray(result.density), np.asarray(result.density_stderr)),
        ("response", f"d p_T / d {parameter}", _leaf(result.response, parameter, index), _leaf(result.response_stderr, parameter, index)),
        ("dlogp", f"E[dlogp | x] ({parameter})", _leaf(result.dlogp_mean, parameter, index), _leaf(result.dlogp_mean_stderr, parameter, index)),
        ("score", "E[score | x]", np.asarray(result.score_mean[:, 0]), np.asarray(result.score_mean_stderr[:, 0])),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    for ax, (key, label, y, err) in zip(axes.ravel(), panels):
        ax.errorbar(x, y, yerr=err, fmt="o", ms=3, capsize=2, label="DK")
        if reference is not None and key in reference:
            ax.plot(*reference[key], "k-", lw=1, label="exact")
        ax.set(xlabel="x", ylabel=label)
        ax.legend(fontsize=8)
    save_figure(fig, path, tight=True)


def plot_window_plateau(
    result: StationaryResponse,
    path,
    *,
    parameter: str,
    index: tuple = (),
    reference: tuple[float, float | None] | None = None,
    reference_label: str = "reference",
    title: str = "",
) -> None:
    """The stationary response against the window length ``W``, with the chosen window marked.

    The estimate should plateau; a dashed vertical line marks the window the result chose
    (``result.window_time``), labelled with whether a plateau was found. Logarithmic window
    axis when the windows span more than a factor of 10.

    Arguments:
        result: a ``StationaryResponse``.
        path: output PNG path.
        parameter: the parameter field; ``index`` selects an entry (after the window axis).
        reference: optional ``(value, standard error or None)`` drawn as a line with a
            two-standard-error band (e.g. finite differences); ``reference_label`` names it.
        title: plot title.

    Returns:
        None (writes ``path``).

    Raises:
        ValueError: for an unknown ``parameter``.

    Example:
        >>> res = dkjax.stationary_response(dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5), lambda x: x[0] ** 2,
        ...     jnp.zeros((16, 1)), dt=0.05, spinup_steps=100, num_steps=2000, windows=[20, 40, 80], key=jax.random.key(0))
        >>> dkjax.plot_window_plateau(res, "plateau.png", parameter="theta", reference=(-0.125, None))
        >>> import os; print(os.path.exists("plateau.png"))
        True
    """
    plt = pyplot()
    est = _leaf(result.estimate, parameter, (slice(None),) + tuple(index))
    err = _leaf(result.stderr, parameter, (slice(None),) + tuple(index))
    t = np.asarray(result.window_times)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(t, est, yerr=err, marker="o", capsize=3, label="DK")
    if 0 <= result.window_index < t.size:
        chosen = f"chosen W = {result.window_time:g}" + ("" if result.plateau else " (no plateau)")
        ax.axvline(result.window_time, color="tab:red", ls="--", lw=1, label=chosen)
        ax.plot([result.window_time], [est[result.window_index]], "o", color="tab:red", ms=8, mfc="none")
    if t.size > 1 and t.max() > 10 * t.min():
        ax.set_xscale("log")
    if reference is not None:
        value, se = reference
        ax.axhline(value, color="k", lw=1, label=reference_label)
        if se is not None:
            ax.axhspan(value - 2 * se, value + 2 * se, color="k", alpha=0.15)
    ax.set(xlabel="window W (time)", ylabel=f"d<phi>/d{parameter}")
    # Long titles wrap instead of running off the figure.
    ax.set_title(textwrap.fill(title, 48), fontsize=10)
    ax.legend()
    save_figure(fig, path, tight=True)


def plot_slope_segments(
    x: np.ndarray,
    y: np.ndarray,
    centres: np.ndarray,
    slopes: np.ndarray,
    path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    half_width: float | None = None,
    ax=None,
) -> None:
    """A reference curve ``y(x)`` with short segments through ``(c, y(c))`` of the given slopes.

    The segments visualise derivative estimates (e.g. DK scores against ``log p_T``): they
    should be tangent to the curve. NaN slopes are skipped.

    Arguments:
        x, y: the reference curve.
        centres: where the segments sit; ``slopes``: their slopes (same length).
        path: output PNG path (ignored when ``ax`` is given).
        xlabel, ylabel, title: labels; half_width: half the segment length along x.
        ax: draw into this matplotlib axis instead of a new figure.

    Returns:
        None.

    Raises:
        ValueError: if ``centres`` and ``slopes`` differ in length.

    Example:
        >>> grid = jnp.linspace(-2, 2, 101)
        >>> centres = jnp.array([-1.0, 0.0, 1.0])
        >>> dkjax.plot_slope_segments(grid, -grid**2 / 2, centres, -centres, "tangents.png", xlabel="x", ylabel="log p")
        >>> import os; print(os.path.exists("tangents.png"))
        True
    """
    centres, slopes = np.asarray(centres, float), np.asarray(slopes, float)
    if centres.shape != slopes.shape:
        raise ValueError(f"centres and slopes must have the same shape; got {centres.shape} and {slopes.shape}.")
    own = ax is None
    if own:
        fig, ax = pyplot().subplots(figsize=(5.5, 4))
    half = half_width if half_width is not None else 0.3 * float(np.min(np.diff(centres))) if centres.size > 1 else 0.1
    ax.plot(x, y, "k-", lw=1, label="reference")
    at = np.interp(centres, np.asarray(x), np.asarray(y))
    for c, yc, s in zip(centres, at, slopes):
        if np.isfinite(s):
            ax.plot([c - half, c + half], [yc - s * half, yc + s * half], "r-", lw=2)
    ax.plot([], [], "r-", lw=2, label="DK slopes")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    if own:
        save_figure(fig, path, tight=True)


"""PNG plots of a training run (matplotlib with the Agg backend, imported only when plotting)."""

from pathlib import Path

import numpy as np

from .._engine._save_at import SaveAt
from .._engine._simulate import simulate
from .._plotting import pyplot, save_figure

_PANEL_INCHES = 4.0
_MARGIN = 0.05  # of the data's range, on each side


def plot_samples(samples, data, path: str | Path, title: str = "", columns=None) -> None:
    """Scatter of data beside model samples (first two coordinates), written to ``path``.

    Both panels show every finite point: the limits span the data and the samples together,
    with a margin. When the two coordinates have comparable ranges the panels keep their
    true aspect ratio, shaped to the points' extent so that no blank bands appear.
    ``columns`` names the coordinates on the axes (e.g. a CSV file's header).
    """
    save_figure(samples_figure(samples, data, title, columns), path)


def samples_figure(samples, data, title: str = "", columns=None):
    """The figure of ``plot_samples`` (a matplotlib ``Figure``, left open)."""
    plt = pyplot()
    panels = []
    for points, label in ((data, "data"), (samples, "model samples")):
        points = np.asarray(points)[:, :2]
        finite = np.all(np.isfinite(points), axis=1)
        lost = int(np.sum(~finite))
        panels.append((points[finite], label + (f" ({lost} non-finite not shown)" if lost else "")))
    both = np.concatenate([points for points, _ in panels])
    low, high = both.min(axis=0), both.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    low, high = low - _MARGIN * span, high + _MARGIN * span
    ratio = span[1] / span[0]
    equal = 0.25 <= ratio <= 4.0
    if equal:  # the panel takes the shape of the points' extent
        width, height = (_PANEL_INCHES, _PANEL_INCHES * ratio) if ratio <= 1 else (_PANEL_INCHES / ratio, _PANEL_INCHES)
    else:  # ranges in unrelated units: square panels
        width = height = _PANEL_INCHES
    fig, axes = plt.subplots(
        1, 2, figsize=(2 * width + 0.8, height + (1.2 if title else 0.6)), sharex=True, sharey=True,
        layout="constrained",
    )  # fmt: skip
    for ax, (points, label) in zip(axes, panels):
        # Dots shrink as points grow in number, so that a few stay visible and many do not merge.
        ax.scatter(points[:, 0], points[:, 1], s=float(np.clip(4000 / max(len(points), 1), 1, 12)), alpha=0.5,
                   linewidths=0)  # fmt: skip
        ax.set_title(label)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        if equal:
            ax.set_aspect("equal")
    if columns is not None and len(columns) >= 2:
        for ax in axes:
            ax.set_xlabel(columns[0])
        axes[0].set_ylabel(columns[1])
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


# What the training loss is, above loss.png: it is not comparable across steps as the held-out score is.
_LOSS_KERNEL = (
    "Training loss: smoothed negative log-likelihood of a batch of training points under the model's\n"
    "paths at that step's kernel bandwidth h (right axis). h adapts every step, so losses at different h\n"
    "do not compare, and the loss may rise while the model improves: judge the model by the held-out panel."
)
_LOSS_ENERGY = (
    "Training loss: energy distance of the model's paths to a batch of training points, a noisy estimate\n"
    "on new paths every step: judge the model by the held-out panel (fixed noise, the same points)."
)


def plot_loss(records: list[dict], path: str | Path, validation: list[dict] = (), best_step: int | None = None) -> None:
    """Loss and bandwidth per step, and the held-out energy distance when recorded, written to ``path``.

    Arguments:
        records: ``TrainHistory.records`` (``step``, ``loss``, optionally ``bandwidth``).
        path: the PNG file.
        validation: ``TrainHistory.validation`` (``step``, ``energy_distance``); a second panel.
        best_step: the step of the model kept, marked in both panels.
    """
    save_figure(loss_figure(records, validation, best_step), path)


def loss_figure(records: list[dict], validation: list[dict] = (), best_step: int | None = None):
    """The figure of ``plot_loss`` (a matplotlib ``Figure``, left open)."""
    plt = pyplot()
    steps = np.array([r["step"] for r in records])
    rows = 2 if len(validation) else 1
    fig, axes = plt.subplots(rows, 1, figsize=(6.5, 3.2 * rows + 0.4), sharex=True, layout="constrained", squeeze=False)
    ax = axes[0, 0]
    handles = ax.plot(steps, [r["loss"] for r in records], lw=0.8, label="training loss")
    bandwidths = np.array([r.get("bandwidth", 0.0) for r in records])
    kernel = bool(np.any(bandwidths > 0))
    ax.set_ylabel("training loss (nats)" if kernel else "training loss")
    fig.suptitle(_LOSS_KERNEL if kernel else _LOSS_ENERGY, fontsize="small")
    if kernel:
        # The KL loss is L_h at that step's h, so read it together with h.
        twin = ax.twinx()
        handles += twin.plot(steps, bandwidths, color="tab:orange", lw=0.8, label="kernel bandwidth h (right)")
        twin.set_ylabel("bandwidth h")
    if len(validation):
        held = axes[1, 0]
        at = [r["step"] for r in validation]
        distance = np.array([r["energy_distance"] for r in validation])
        held.plot(at, distance, "o-", ms=3, lw=0.8, color="tab:green")
        finite = distance[np.isfinite(distance)]
        if finite.size and np.all(finite > 0) and finite.max() > 10 * finite.min():
            held.set_yscale("log")
        held.set_ylabel("held-out energy distance")
        held.set_title(
            "energy distance of model samples to the validation points (held out from training; fixed noise, "
            "so\nevaluations compare across steps; lower is better, and about 0 means as close as more data)",
            fontsize="small",
        )  # fmt: skip
    if best_step is not None:
        for row in axes[:, 0]:
            marker = row.axvline(best_step, color="tab:red", ls="--", lw=0.8, label=f"model kept (step {best_step})")
        handles.append(marker)
    axes[-1, 0].set_xlabel("step")
    # Above the panel, so that it covers neither the curves nor the tick labels.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False, fontsize="small")
    return fig


def plot_snapshots(
    model, snapshots, path: str | Path, *, key, num_samples: int = 2000, num_paths: int = 8, held_out=(),
    columns=None,
) -> None:
    """Snapshots beside the model's marginals at their times, and a few of its sample paths.

    One panel per time: the snapshot (black) and as many model samples (orange), a scatter of
    the first two coordinates on shared axes (a histogram for 1-D data); a last panel:
    ``num_paths`` model paths of the first coordinate over time, with the snapshots drawn as
    dots at their times.

    Arguments:
        model: a ``dkjax.GenerativeModel`` (units: the data's).
        snapshots: ``{time: array (n, d)}`` or ``dkjax.Snapshots``, times on the model's grid
            (a time equal to ``t0`` is drawn against the initial law).
        path: the PNG file to write.
        key: PRNG key; num_samples: model samples per time (at most the snapshot's size are
            drawn, so the two clouds weigh the same); num_paths: paths drawn.
        held_out: times never trained on, marked in their panel's title.
        columns: names of the coordinates for the axes (e.g. a CSV file's header; default
            ``coordinate 1``, ``coordinate 2``).

    Returns:
        ``None``; the figure is written to ``path``.

    Raises:
        ValueError: a time off the model's grid.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5, mean=jnp.array([1.0, -1.0]))
        >>> model = dkjax.GenerativeModel(sde=sde, initial=dkjax.GaussianInitial(jnp.zeros(2), jnp.ones(2)),
        ...                               scaling=dkjax.DataScaling.identity(2), t0=0.0, t1=1.0, num_steps=20)
        >>> data = {0.5: model.sample(300, key=jax.random.key(1), t=0.5), 1.0: model.sample(300, key=jax.random.key(2))}
        >>> dkjax.plot_snapshots(model, data, "snapshots.png", key=jax.random.key(0))
        >>> import os; print(os.path.exists("snapshots.png"))
        True
    """
    figure = snapshots_figure(
        model, snapshots, key=key, num_samples=num_samples, num_paths=num_paths, held_out=held_out, columns=columns
    )
    save_figure(figure, path)


def snapshots_figure(model, snapshots, *, key, num_samples: int = 2000, num_paths: int = 8, held_out=(), columns=None):
    """The figure of ``plot_snapshots`` (a matplotlib ``Figure``, left open)."""
    import jax.random as jr

    from ._snapshots import Snapshots

    if isinstance(snapshots, Snapshots):
        snapshots = dict(zip(snapshots.times, snapshots.points))
    times = sorted(snapshots)
    plt = pyplot()
    two_d = np.shape(snapshots[times[0]])[1] > 1
    fig, axes = plt.subplots(1, len(times) + 1, figsize=(3.2 * (len(times) + 1), 3.4), layout="constrained")
    if two_d:  # the time panels share their axes, so motion between times shows
        for ax in axes[1:-1]:
            ax.sharex(axes[0])
            ax.sharey(axes[0])
    for k, (ax, time) in enumerate(zip(axes, times)):
        data = np.asarray(snapshots[time])
        n, sample_key = min(num_samples, data.shape[0]), jr.fold_in(key, k)
        at_start = time <= model.t0
        samples = model.scaling.unstandardize(model.initial(sample_key, n)[0]) if at_start else model.sample(
            n, key=sample_key, t=time)  # fmt: skip
        samples = np.asarray(samples)
        if two_d:
            ax.scatter(data[:, 0], data[:, 1], s=2, color="black", alpha=0.3, linewidths=0, label="snapshot")
            ax.scatter(samples[:, 0], samples[:, 1], s=2, color="C1", alpha=0.3, linewidths=0, label="model")
        else:
            bins = np.histogram_bin_edges(np.concatenate([data[:, 0], samples[:, 0]]), 40)
            ax.hist(data[:, 0], bins, density=True, color="0.7", label="snapshot")
            ax.hist(samples[:, 0], bins, density=True, histtype="step", lw=1.5, color="C1", label="model")
        note = " (initial law)" if at_start else " (held out)" if time in held_out else ""
        ax.set_title(f"t = {time:g}{note}")
    names = list(columns) if columns is not None else [f"coordinate {i + 1}" for i in range(data.shape[1])]
    for ax in axes[:-1]:
        ax.set_xlabel(names[0])
    axes[0].set_ylabel(names[1] if two_d else "density")
    axes[0].legend(loc="best", fontsize="small", markerscale=3)
    _draw_paths(axes[-1], model, snapshots, times, jr.fold_in(key, len(times)), num_paths, names[0])
    return fig


def _draw_paths(ax, model, snapshots, times, key, num_paths: int, name: str = "coordinate 1") -> None:
    """``num_paths`` model paths of the first coordinate over the whole grid, snapshots as dots."""
    import jax.random as jr

    init_key, path_key = jr.split(key)
    grid = model.t0 + (model.t1 - model.t0) * np.arange(1, model.num_steps + 1) / model.num_steps
    x0 = model.initial(init_key, num_paths)[0]
    states = simulate(model.sde, x0, t1=model.t1, num_steps=model.num_steps, key=path_key, t0=model.t0,
                      save_at=SaveAt(t0=True, ts=grid))  # fmt: skip
    paths = np.asarray(model.scaling.unstandardize(states))[:, :, 0]
    rng = np.random.default_rng(0)
    for time in times:
        column = np.asarray(snapshots[time])[:300, 0]
        ax.scatter(time + rng.uniform(-0.01, 0.01, column.shape) * (model.t1 - model.t0), column, s=2, color="0.6",
                   alpha=0.5, linewidths=0)  # fmt: skip
    ax.plot(np.concatenate([[model.t0], grid]), paths, lw=0.8, color="C0")
    ax.set_xlabel("t")
    ax.set_title(f"{num_paths} model paths ({name})")

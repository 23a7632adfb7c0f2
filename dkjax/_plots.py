"""PNG plots of a training run (matplotlib with the Agg backend, imported only when plotting)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

_PANEL_INCHES = 4.0
_MARGIN = 0.05  # of the data's range, on each side


INSTALL_HINT = "pip install 'dkjax[plot]'"


def can_plot(files: str) -> bool:
    """Whether matplotlib is installed; if not, says on stderr that ``files`` are skipped and how to get them."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    print(f"dkjax: skipped {files}: matplotlib is not installed (for figures: {INSTALL_HINT}).", file=sys.stderr)
    return False


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"figures need matplotlib, an optional extra: {INSTALL_HINT}") from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samples(samples, data, path: str | Path, title: str = "") -> None:
    """Scatter of data beside model samples (first two coordinates), written to ``path``.

    Both panels show every finite point: the limits span the data and the samples together,
    with a margin. When the two coordinates have comparable ranges the panels keep their
    true aspect ratio, shaped to the points' extent so that no blank bands appear.
    """
    _save(samples_figure(samples, data, title), path)


def _save(fig, path) -> None:
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def samples_figure(samples, data, title: str = ""):
    """The figure of ``plot_samples`` (a matplotlib ``Figure``, left open)."""
    plt = _pyplot()
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
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def plot_loss(records: list[dict], path: str | Path, validation: list[dict] = (), best_step: int | None = None) -> None:
    """Loss and bandwidth per step, and the held-out energy distance when recorded, written to ``path``.

    Arguments:
        records: ``TrainHistory.records`` (``step``, ``loss``, optionally ``bandwidth``).
        path: the PNG file.
        validation: ``TrainHistory.validation`` (``step``, ``energy_distance``); a second panel.
        best_step: the step of the model kept, marked in both panels.
    """
    _save(loss_figure(records, validation, best_step), path)


def loss_figure(records: list[dict], validation: list[dict] = (), best_step: int | None = None):
    """The figure of ``plot_loss`` (a matplotlib ``Figure``, left open)."""
    plt = _pyplot()
    steps = np.array([r["step"] for r in records])
    rows = 2 if len(validation) else 1
    fig, axes = plt.subplots(rows, 1, figsize=(6.5, 3.2 * rows + 0.4), sharex=True, layout="constrained", squeeze=False)
    ax = axes[0, 0]
    handles = ax.plot(steps, [r["loss"] for r in records], lw=0.8, label="training loss")
    ax.set_ylabel("loss")
    bandwidths = np.array([r.get("bandwidth", 0.0) for r in records])
    if np.any(bandwidths > 0):
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
        held.set_ylabel("energy distance")
        held.set_title("model samples against the validation points (held out from training)", fontsize="small")
    if best_step is not None:
        for row in axes[:, 0]:
            marker = row.axvline(best_step, color="tab:red", ls="--", lw=0.8, label=f"model kept (step {best_step})")
        handles.append(marker)
    axes[-1, 0].set_xlabel("step")
    # Above the panel, so that it covers neither the curves nor the tick labels.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False, fontsize="small")
    return fig

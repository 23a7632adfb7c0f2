"""PNG plots of a training run (matplotlib with the Agg backend, imported only when plotting)."""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samples(samples, data, path: str | Path, title: str = "") -> None:
    """Scatter of model samples beside data (first two coordinates), written to ``path``."""
    plt = _pyplot()
    samples, data = np.asarray(samples), np.asarray(data)
    both = np.concatenate([samples[:, :2], data[:, :2]])
    low, high = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, points, label in ((axes[0], data, "data"), (axes[1], samples, "model samples")):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
        ax.set_title(label)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss(records: list[dict], path: str | Path) -> None:
    """Loss per step (and the bandwidth, on a second axis, when present), written to ``path``."""
    plt = _pyplot()
    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [r["loss"] for r in records], lw=0.8, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    bandwidths = np.array([r.get("bandwidth", 0.0) for r in records])
    if np.any(bandwidths > 0):
        twin = ax.twinx()
        twin.plot(steps, bandwidths, color="tab:orange", lw=0.8, label="bandwidth")
        twin.set_ylabel("bandwidth h")
    # The KL loss is L_h at that step's h, so read it together with h.
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Figures' shared ground: matplotlib (an optional extra) imported only when plotting, with the Agg backend.

Below every subpackage that draws, so that none imports another's plots to reach pyplot.
"""

import importlib.util
import sys

INSTALL_HINT = "pip install 'dkjax[plot]'"


def can_plot(files: str) -> bool:
    """Whether matplotlib is installed; if not, says on stderr that ``files`` are skipped and how to get them."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    print(f"dkjax: skipped {files}: matplotlib is not installed (for figures: {INSTALL_HINT}).", file=sys.stderr)
    return False


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; a ``ModuleNotFoundError`` that says how to install it."""
    try:
        import matplotlib
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"figures need matplotlib, an optional extra: {INSTALL_HINT}") from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, tight: bool = False) -> None:
    """Writes ``fig`` to ``path`` at 120 dpi and closes it (``tight``: lay it out tightly first)."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)

"""Callbacks of ``dkjax.fit`` after every step: checkpoints, JSONL metrics and a progress bar.

Under ``jax.distributed`` every process trains the same model; only process 0 writes.
"""

import json
import sys

import jax

from ._state import TrainState


class Callback:
    """Told of every completed step, of the end of a run that did not fail, and closed in any case."""

    def on_step(self, state: TrainState, record: dict) -> None:
        """After the step that ``record`` describes, and its held-out evaluation if one was due."""

    def on_end(self, state: TrainState) -> None:
        """After the last step of a run that finished or stopped early, not of one that failed."""

    def close(self) -> None:
        """Releases what the callback holds (also on an exception)."""


class Checkpoints(Callback):
    """Checkpoints every ``every`` steps (``None``: never) and at the end of a finished run."""

    def __init__(self, directory, every: int | None, steps: int):
        self.directory, self.every, self.steps = directory, every, steps
        self.last = None

    def on_step(self, state: TrainState, record: dict) -> None:
        if self.every is not None and state.step % self.every == 0:
            state.save(self.directory, self.steps)
            self.last = state.step

    def on_end(self, state: TrainState) -> None:
        if self.last != state.step:
            state.save(self.directory, self.steps)


class MetricsLog(Callback):
    """One JSON record per step in ``path``, rewritten from the history (so also on resume)."""

    def __init__(self, path, records: list[dict]):
        self.file = open(path, "w")  # noqa: SIM115
        self.file.writelines(json.dumps(r) + "\n" for r in records)

    def on_step(self, state: TrainState, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Lines:
    """A text stream for tqdm off a terminal: each redraw becomes its own short line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


# Off a terminal (a log file, a pipe, CI) the bar writes one line at most this often.
LOG_INTERVAL_SECONDS = 30.0


def progress_bar(iterable=None, *, stream=None, **options):
    """A tqdm progress bar on ``stream`` (default stderr) that suits where it is written.

    On a terminal (or as a notebook widget) it redraws in place. Anywhere else (a log file, a pipe, CI) tqdm's
    carriage-return redraws would pile up into one line of tens of thousands of characters,
    so each redraw becomes its own 80-column line, at most one every
    ``LOG_INTERVAL_SECONDS`` (and the final state on close).
    """
    from tqdm import autonotebook, std
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if autonotebook.tqdm is not std.tqdm or (isatty is not None and isatty()):  # a notebook, or a terminal
        return tqdm(iterable, file=stream, dynamic_ncols=True, **options)
    return std.tqdm(iterable, file=_Lines(stream), ncols=80, mininterval=LOG_INTERVAL_SECONDS, ascii=True, **options)


class Progress(Callback):
    """A progress bar over ``steps`` with the loss and the bandwidth (see ``progress_bar``)."""

    def __init__(self, steps: int, done: int):
        self.bar = progress_bar(total=steps, initial=done, desc="dkjax fit")

    def on_step(self, state: TrainState, record: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record['loss']:.4g}", h=f"{record['bandwidth']:.3g}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def make_callbacks(state: TrainState, steps: int, output) -> list[Callback]:
    """The callbacks ``fit``'s ``output`` settings ask for; none but the checkpoint bookkeeping off process 0."""
    writer = jax.process_index() == 0
    callbacks = []
    if output.metrics_file is not None and writer:
        callbacks.append(MetricsLog(output.metrics_file, state.history.records))
    if output.progress and writer:
        callbacks.append(Progress(steps, state.step))
    if output.checkpoint_dir is not None:
        callbacks.append(Checkpoints(output.checkpoint_dir, output.checkpoint_every, steps))
    return callbacks


def last_checkpoint(callbacks) -> int | None:
    """The step of the last checkpoint written in this run, if any."""
    return next((c.last for c in callbacks if isinstance(c, Checkpoints)), None)

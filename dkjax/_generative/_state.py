"""The state of ``dkjax.fit``: what a checkpoint holds, the history and the model selection."""

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from ._checkpoint import load_checkpoint, save_checkpoint
from ._policies import AbstractRateControl

_SELECTION_Z = 2.0


@dataclasses.dataclass
class TrainHistory:
    """Per-step training records and why training stopped early, if it did.

    Attributes:
        records: one dict per completed step with ``step``, ``loss``, ``grad_norm``,
            ``bandwidth``, ``ess`` (mean effective sample size of the weights),
            ``kernel_rate``, ``num_nonfinite`` (paths that went non-finite), ``num_paths`` (the
            step's path count, see ``path_schedule``) and ``time`` (seconds spent in training
            steps and pilot runs so far, evaluations excluded).
        stop_reason: ``None`` if all steps ran, else why training stopped early.
        stopped_early: whether it stopped because ``patience`` ran out (not on a failure).
        validation: one dict per held-out evaluation with ``step`` (steps done), ``time``
            and ``energy_distance`` (model samples against the held-out points).
        best_step: the step count of the returned model when a validation set was used.

    Example:
        >>> history = dkjax.TrainHistory([{"step": 0, "loss": 2.5}, {"step": 1, "loss": 2.25}])
        >>> print(history.loss, history["step"])
        [2.5  2.25] [0 1]
    """

    records: list[dict] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None
    validation: list[dict] = dataclasses.field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False

    def __getitem__(self, name: str) -> np.ndarray:
        return np.array([record[name] for record in self.records])

    @property
    def loss(self) -> np.ndarray:
        """The loss of every completed step."""
        return self["loss"]


@dataclasses.dataclass
class _Selection:
    """Keeps the latest model whose held-out score is within noise of the lowest one seen.

    With a few hundred held-out points the energy distance of two good models differs by
    less than its own noise, and the plain minimum picks an early, blurrier model by chance
    (seen on two moons with 410 held-out points). So a later model is kept unless it is
    worse than the lowest score by more than ``_SELECTION_Z`` standard errors of the
    difference, estimated from the per-point terms over the same held-out points. A trained
    model must also score below the first one evaluated (the untrained model) by more than
    ``_SELECTION_Z`` standard errors of their difference: otherwise training has not shown
    that it helps. On a few dozen held-out points a trained model that scores lower than the
    start by chance can be worse (seen on a 10-column set of 35-66 held-out points, where the
    untrained model is the data's best-fit Gaussian and the kept model was worse on test data).
    """

    lowest: float = math.inf
    lowest_step: int | None = None
    lowest_terms: Any = None
    start: float | None = None
    start_terms: Any = None

    def within_noise(self, value: float, terms: np.ndarray) -> bool:
        if not math.isfinite(value):
            return False
        if self.start is not None and self.start - value <= self._noise(terms, self.start_terms):
            return False
        return value <= self.lowest or value - self.lowest <= self._noise(terms, self.lowest_terms)

    @staticmethod
    def _noise(terms: np.ndarray, reference: np.ndarray | None) -> float:
        """``_SELECTION_Z`` standard errors of a score's difference to the ``reference`` terms' score (0: none known)."""
        if reference is None:
            return 0.0
        return _SELECTION_Z * 2 * float(np.std(terms - reference)) / math.sqrt(terms.shape[0])

    def update(self, step: int, value: float, terms: np.ndarray) -> None:
        if self.start is None:
            self.start, self.start_terms = value, terms
        if value < self.lowest:
            self.lowest, self.lowest_step, self.lowest_terms = value, step, terms

    def record(self) -> dict:
        as_list = lambda terms: None if terms is None else terms.tolist()
        return {"lowest": self.lowest, "lowest_step": self.lowest_step, "lowest_terms": as_list(self.lowest_terms),
                "start": self.start, "start_terms": as_list(self.start_terms)}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict | None) -> "_Selection":
        if not record or record["lowest_terms"] is None:
            return cls()
        # A checkpoint written before the start was recorded: NaN compares false, the rule stays off.
        start, start_terms = record.get("start", math.nan), record.get("start_terms")
        start_terms = None if start_terms is None else np.asarray(start_terms)
        return cls(record["lowest"], record["lowest_step"], np.asarray(record["lowest_terms"]), start, start_terms)


@dataclasses.dataclass
class TrainState:
    """Everything a checkpoint must hold for a resumed run to repeat an uninterrupted one."""

    params: Any
    opt_state: Any
    best_params: Any
    rate: float
    history: TrainHistory = dataclasses.field(default_factory=TrainHistory)
    step: int = 0
    selection: _Selection = dataclasses.field(default_factory=_Selection)

    @classmethod
    def start(cls, params, optimizer, rate: float) -> "TrainState":
        """The state before the first step: ``params`` as given, the optimiser's initial state."""
        # Parameters built from Python numbers are weakly typed, and the optimiser's updates are
        # not: left weak, the training step would compile twice, once for the first step.
        params = jax.tree.map(lambda leaf: jax.lax.convert_element_type(leaf, leaf.dtype), params)
        return cls(params, optimizer.init(params), params, rate)

    def save(self, directory, steps: int) -> None:
        if jax.process_index() != 0:  # multi-process runs: one writer, the same state everywhere
            return
        record = {"kernel_rate": self.rate, "history": self.history.records, "validation": self.history.validation,
                  "best_step": self.history.best_step, "steps": steps,
                  "selection": self.selection.record()}  # fmt: skip
        save_checkpoint(directory, self.step, (self.params, self.opt_state, self.best_params), record)

    def restore(self, directory, control: AbstractRateControl, steps: int, schedule_spans_steps: bool) -> bool:
        loaded = load_checkpoint(directory, (self.params, self.opt_state, self.best_params))
        if loaded is None:
            return False
        (self.params, self.opt_state, self.best_params), record = loaded
        if schedule_spans_steps and record.get("steps", steps) != steps:
            raise ValueError(
                f"the checkpoint in {directory} belongs to a run of steps={record['steps']}, whose default "
                f"learning-rate schedule spans {record['steps']} steps; resume with steps={record['steps']}, "
                "or pass your own optimizer to train on with another schedule."
            )
        self.step = record["step"]
        self.rate = control.resume(record["kernel_rate"])
        self.history = TrainHistory(record["history"], None, record.get("validation", []), record.get("best_step"))
        self.selection = _Selection.from_record(record.get("selection"))
        return True

    def evaluate(self, validate, static, step: int, elapsed: float, patience: int | None) -> bool:
        """Records a held-out evaluation of the model after ``step`` steps; ``False`` once ``patience`` runs out."""
        history, selection = self.history, self.selection
        value, terms = validate(self.params, static)
        value, terms = float(value), np.asarray(terms, np.float64)
        history.validation.append({"step": step, "time": elapsed, "energy_distance": value})
        if selection.within_noise(value, terms):
            self.best_params, history.best_step = self.params, step
        selection.update(step, value, terms)
        # No finite score yet (a model that overflows from the start): every evaluation counts as one without a new lowest.
        lowest = selection.lowest_step
        since_lowest = sum(lowest is None or r["step"] > lowest for r in history.validation)
        return patience is None or since_lowest < patience

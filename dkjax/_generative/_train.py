"""DK-SDE training: fit an SDE's law at time T to data, forward only."""

import dataclasses
import json
import math
import time
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ._checkpoint import load_checkpoint, save_checkpoint
from .._custom_types import Array, Float, InitialSampler, Key, RealScalarLike, Scalar, States
from .._engine._kernel_rate import estimate_kernel_rate
from ._metrics import distance_column_sums, energy_distance
from ._objective import (
    GRADIENT_METHODS,
    OBJECTIVES,
    dk_gradient,
    energy_weights,
    ess_bandwidth,
    kl_weights,
    parameter_count,
)
from .._sde._abstract import AbstractSDE, noise_dimension
from .._engine._simulate import simulate
from ._snapshots import (
    Snapshots,
    as_snapshots,
    check_floating_finite,
    grid_steps,
    make_snapshot_validator,
    per_time_weights,
    snapshot_gradient,
    split_snapshots,
)
from ._settings import TRAIN_DEFAULTS
from .._validation import check_choice, check_key, check_positive, check_time_grid

_STIFFNESS_LIMIT = 1.0
_POWER_ITERATIONS = 20
_PILOT_PATHS = 256
# fold_in salts that keep the pilot runs and the validation split off the training steps' keys
# (those are fold_in(key, step) with step < 2**31).
_PILOT_SALT = 2**31 + 1
_VALIDATION_SALT = 2**31 + 2
_SELECTION_Z = 2.0


@dataclasses.dataclass
class TrainHistory:
    """Per-step training records and why training stopped early, if it did.

    Attributes:
        records: one dict per completed step with ``step``, ``loss``, ``grad_norm``,
            ``bandwidth``, ``ess`` (mean effective sample size of the weights),
            ``kernel_rate``, ``num_nonfinite`` (paths that went non-finite) and ``time``
            (seconds spent in training steps and pilot runs so far, evaluations excluded).
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


def _check_data(data, dim: int, name: str = "data") -> None:
    shape = np.shape(data)
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (num_points, d); got shape {shape}.")
    if shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 points; got {shape[0]}.")
    if shape[1] != dim:
        raise ValueError(f"{name} has dimension {shape[1]} but the model's initial states have dimension {dim}.")
    check_floating_finite(name, data)


def _check_initial(initial, key) -> tuple[int, object]:
    """Traces ``initial(key, 2)`` (no work) and returns the state dimension and dtype."""
    if not callable(initial):
        raise TypeError(f"initial must be a callable (key, n) -> (x0, score0); got {type(initial).__name__}.")
    out = jax.eval_shape(lambda k: initial(k, 2), key)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError("initial(key, n) must return a pair (x0, score0); score0 may be None.")
    x0, score0 = out
    if len(x0.shape) != 2 or x0.shape[0] != 2:
        raise ValueError(f"initial(key, n) must return x0 of shape (n, d); got {x0.shape} for n = 2.")
    if score0 is not None and score0.shape != x0.shape:
        raise ValueError(f"initial(key, n) must return score0 of the shape of x0 or None; got {score0.shape}.")
    return x0.shape[1], x0.dtype


@eqx.filter_jit
def drift_stiffness(sde: AbstractSDE, t: Scalar, xs: States, key: Key) -> Scalar:
    """Largest ``||grad_x F(t, x)||_2`` over the rows of ``xs``, by power iteration (matrix free).

    Euler-Maruyama amplifies modes with ``|1 + lambda dt| > 1``; ``||grad F|| dt <= 1``
    keeps every mode of a decaying flow resolved.
    """

    def norm_at(x, v):
        value_and_jvp = jax.linearize(lambda x_: sde.drift(t, x_), x)[1]
        transpose = jax.linear_transpose(value_and_jvp, x)

        def iterate(v, _):
            w = transpose(value_and_jvp(v))[0]
            return w / (jnp.linalg.norm(w) + jnp.finfo(w.dtype).tiny), None

        v, _ = jax.lax.scan(iterate, v, None, length=_POWER_ITERATIONS)
        return jnp.linalg.norm(value_and_jvp(v))

    probes = jr.normal(key, xs.shape, xs.dtype)
    return jnp.max(jax.vmap(norm_at)(xs, probes))


def _array_gradient(*, objective, method, t0, t1, num_steps, batch_size, ess_target, path_chunk=None):
    """The loss and DK gradient of one data array at ``t1``: ``(sde, x0, score0, data, keys, rate, h range)``."""

    def gradient(sde, x0, score0, data, keys, kernel_rate, h_min, h_max):
        path_key, batch_key, jitter_key = keys
        if batch_size < data.shape[0]:
            data = data[jr.choice(batch_key, data.shape[0], (batch_size,), replace=False)]

        def weights(x):
            if objective == "energy":
                loss, c, ess = energy_weights(x, data)
                return loss, c, (ess, jnp.zeros((), x.dtype))
            h = ess_bandwidth(data, x, ess_target, h_min, h_max)
            loss, c, ess = kl_weights(x, data, h, jitter_key)
            return loss, c, (ess, h)

        return dk_gradient(
            sde, x0, score0, weights, t1=t1, num_steps=num_steps, key=path_key, t0=t0,
            kernel_rate=kernel_rate, method=method, path_chunk=path_chunk,
        )  # fmt: skip

    return gradient


def _snapshot_gradient(
    snaps: Snapshots, steps, *, objective, method, t0, t1, num_steps, batch_size, ess_target, path_chunk=None
):
    """As ``_array_gradient`` for snapshots: a batch per time, the weighted sum of the per-time objectives."""

    def gradient(sde, x0, score0, data, keys, kernel_rate, h_min, h_max):
        path_key, batch_key, jitter_key = keys
        batches = tuple(
            points[jr.choice(jr.fold_in(batch_key, k), points.shape[0], (batch_size,), replace=False)]
            if batch_size < points.shape[0] else points
            for k, points in enumerate(data)
        )  # fmt: skip
        weights = per_time_weights(objective, batches, snaps.weights, ess_target, jitter_key, h_min, h_max)
        return snapshot_gradient(
            sde, x0, score0, weights, steps, t1=t1, num_steps=num_steps, key=path_key, t0=t0,
            kernel_rate=kernel_rate, method=method, path_chunk=path_chunk,
        )  # fmt: skip

    return gradient


def _make_train_step(initial, optimizer, *, num_paths, gradient=None, **array_options):
    """The jitted step of ``fit``: ``gradient`` (from ``_snapshot_gradient``) or ``_array_gradient(**array_options)``."""
    gradient = _array_gradient(**array_options) if gradient is None else gradient

    @eqx.filter_jit
    def train_step(params, static, opt_state, data, key, kernel_rate, h_min, h_max):
        sde = eqx.combine(params, static)
        init_key, path_key, batch_key, jitter_key = jr.split(key, 4)
        x0, score0 = initial(init_key, num_paths)
        loss, grad, (ess, h), x_final = gradient(
            sde, x0, score0, data, (path_key, batch_key, jitter_key), kernel_rate, h_min, h_max
        )
        updates, opt_state = optimizer.update(grad, opt_state, params)
        params = eqx.apply_updates(params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grad),
            "bandwidth": h,
            "ess": ess,
            "num_nonfinite": jnp.sum(~jnp.all(jnp.isfinite(x_final), axis=1)),
        }
        return params, opt_state, metrics, x_final[:_PILOT_PATHS]

    return train_step


def _nonfinite_message(step: int, metrics: dict, checkpoint: int | None) -> str:
    kept = f"; the last checkpoint is at step {checkpoint}" if checkpoint is not None else ""
    paths = (
        f"{metrics['num_nonfinite']} paths went non-finite"
        if metrics["num_nonfinite"]
        else "every path stayed finite, so the loss or its gradient overflowed"
    )
    return (
        f"training stopped at step {step}: loss {metrics['loss']:.4g}, gradient norm {metrics['grad_norm']:.4g}; "
        f"{paths}. The returned model is the best one before this step{kept}. "
        "Try a larger kernel_rate (or kernel_rate='auto'), more time steps (num_steps) or a lower learning rate."
    )


def _split_fraction(data, fraction: float, key: Key):
    """``(train, held_out)`` with a random ``fraction`` of the rows of ``data`` held out."""
    num_held = round(fraction * data.shape[0])
    if not 0 < fraction < 1 or num_held < 2 or data.shape[0] - num_held < 2:
        raise ValueError(
            f"validation as a fraction must be in (0, 1) and leave >= 2 points on each side of the split; "
            f"got {fraction} of {data.shape[0]} points."
        )
    order = jr.permutation(jr.fold_in(key, _VALIDATION_SALT), data.shape[0])
    return data[order[num_held:]], data[order[:num_held]]


def _split_validation(data, validation, dim: int, key: Key):
    """``(train, held_out)``: ``validation`` is held-out data, a fraction to split off, or ``None``."""
    if validation is None:
        return data, None
    if isinstance(validation, float):
        return _split_fraction(data, validation, key)
    _check_data(validation, dim, "validation")
    return data, jnp.asarray(validation, data.dtype)


def _make_validator(initial, held_out, *, t0, t1, num_steps, num_samples, key):
    """Held-out energy distance of the model's samples, on the same noise at every evaluation.

    Also returns each held-out point's mean distance to the samples: the part of the score
    that depends on the held-out set, from which ``_Selection`` gets the standard error of the
    difference between two evaluations.
    """
    init_key, path_key = jr.split(jr.fold_in(key, _VALIDATION_SALT))

    @eqx.filter_jit
    def validate(params, static):
        x0 = initial(init_key, num_samples)[0]
        xs = simulate(eqx.combine(params, static), x0, t1=t1, num_steps=num_steps, key=path_key, t0=t0)
        finite = jnp.all(jnp.isfinite(xs))
        xs = jnp.where(jnp.isfinite(xs), xs, 0.0)
        to_points = distance_column_sums(xs, held_out) / num_samples
        return jnp.where(finite, energy_distance(xs, held_out), jnp.inf), to_points

    return validate


@dataclasses.dataclass
class _Selection:
    """Keeps the latest model whose held-out score is within noise of the lowest one seen.

    With a few hundred held-out points the energy distance of two good models differs by
    less than its own noise, and the plain minimum picks an early, blurrier model by chance
    (seen on two moons with 410 held-out points). So a later model is kept unless it is
    worse than the lowest score by more than ``_SELECTION_Z`` standard errors of the
    difference, estimated from the per-point terms over the same held-out points.
    """

    lowest: float = math.inf
    lowest_step: int | None = None
    lowest_terms: Any = None

    def within_noise(self, value: float, terms: np.ndarray) -> bool:
        if not math.isfinite(value):
            return False
        if value <= self.lowest:
            return True
        stderr = 2 * np.std(terms - self.lowest_terms) / math.sqrt(terms.shape[0])
        return value - self.lowest <= _SELECTION_Z * stderr

    def update(self, step: int, value: float, terms: np.ndarray) -> None:
        if value < self.lowest:
            self.lowest, self.lowest_step, self.lowest_terms = value, step, terms

    def record(self) -> dict:
        terms = None if self.lowest_terms is None else self.lowest_terms.tolist()
        return {"lowest": self.lowest, "lowest_step": self.lowest_step, "lowest_terms": terms}

    @classmethod
    def from_record(cls, record: dict | None) -> "_Selection":
        if not record or record["lowest_terms"] is None:
            return cls()
        return cls(record["lowest"], record["lowest_step"], np.asarray(record["lowest_terms"]))


def _bandwidth_range(points, bandwidth: float | None, min_bandwidth: float | None) -> tuple[float, float]:
    """``(h_min, h_max)`` of the bandwidth rule for data ``points``, or the fixed ``bandwidth`` twice."""
    if bandwidth is not None:
        return bandwidth, bandwidth
    scale = float(jnp.mean(jnp.std(points, axis=0)))
    h_min = min_bandwidth if min_bandwidth is not None else 0.05 * scale
    return h_min, max(4.0 * scale, h_min)


def _default_optimizer(learning_rate: float, steps: int, final_lr_fraction: float) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(learning_rate, steps, final_lr_fraction))


@dataclasses.dataclass
class _State:
    """Everything a checkpoint must hold for a resumed run to repeat an uninterrupted one."""

    params: Any
    opt_state: Any
    best_params: Any
    rate: float
    history: TrainHistory = dataclasses.field(default_factory=TrainHistory)
    step: int = 0
    selection: _Selection = dataclasses.field(default_factory=_Selection)

    def save(self, directory, steps: int) -> None:
        if jax.process_index() != 0:  # multi-process runs: one writer, the same state everywhere
            return
        record = {"kernel_rate": self.rate, "history": self.history.records, "validation": self.history.validation,
                  "best_step": self.history.best_step, "steps": steps,
                  "selection": self.selection.record()}  # fmt: skip
        save_checkpoint(directory, self.step, (self.params, self.opt_state, self.best_params), record)

    def restore(self, directory, fixed_rate, steps: int, schedule_spans_steps: bool) -> bool:
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
        # A fixed rate given now wins over the checkpoint's; "auto" continues from the measured one.
        self.rate = record["kernel_rate"] if fixed_rate is None else fixed_rate
        self.history = TrainHistory(record["history"], None, record.get("validation", []), record.get("best_step"))
        self.selection = _Selection.from_record(record.get("selection"))
        return True


def fit(
    sde: AbstractSDE,
    data: Float[Array, "num_points d"] | Mapping[float, Float[Array, "n d"]] | Snapshots,
    initial: InitialSampler,
    *,
    t1: RealScalarLike | None = None,
    num_steps: int,
    key: Key,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = TRAIN_DEFAULTS.learning_rate,
    final_lr_fraction: float = TRAIN_DEFAULTS.final_lr_fraction,
    num_paths: int = TRAIN_DEFAULTS.num_paths,
    batch_size: int = TRAIN_DEFAULTS.batch_size,
    bandwidth: float | None = None,
    ess_target: float = TRAIN_DEFAULTS.ess_target,
    min_bandwidth: float | None = None,
    kernel_rate: float | str = TRAIN_DEFAULTS.kernel_rate,
    kernel_rate_every: int = TRAIN_DEFAULTS.kernel_rate_every,
    objective: str = TRAIN_DEFAULTS.objective,
    gradient: str = TRAIN_DEFAULTS.gradient,
    lean_threshold: int = TRAIN_DEFAULTS.lean_threshold,
    path_chunk: int | None = None,
    clip_norm: float | None = TRAIN_DEFAULTS.clip_norm,
    validation: Float[Array, "num_held_out d"] | float | None = TRAIN_DEFAULTS.validation_fraction,
    validate_every: int = TRAIN_DEFAULTS.validate_every,
    validation_samples: int = TRAIN_DEFAULTS.validation_samples,
    patience: int | None = None,
    t0: RealScalarLike = 0.0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    metrics_file: str | Path | None = None,
    progress: bool = True,
) -> tuple[AbstractSDE, TrainHistory]:
    """Trains ``sde`` so that its law at ``t1`` fits ``data``, with forward-only DK gradients.

    Each step draws ``num_paths`` initial states from ``initial``, simulates them to ``t1``
    while carrying their divergence-kernel parameter responses, and follows the gradient of
    the objective: ``"kl"``, the smoothed negative log-likelihood ``L_h`` (a Gaussian kernel
    of width ``h`` on model samples and on jittered data alike, so the data law minimises it
    for every ``h``), or ``"energy"``, the energy distance (no bandwidth, no ratio bias).
    Step ``s`` uses the key ``fold_in(key, s)``, so a resumed run repeats an uninterrupted
    one exactly.

    Snapshots: ``data`` may be a mapping ``{time: array (n_k, d)}`` or ``dkjax.Snapshots``
    (samples of the law at several times, sizes ``n_k`` free, a weight per time). The loss is
    then the weighted sum of the per-time objectives, and its gradient comes from each path's
    DK response at every observation time, read off one forward pass over the same paths
    (the two-pass route records only the ``K x num_paths`` states at those times). ``t1``
    defaults to the last time; every time must lie on the grid ``t0 + n (t1 - t0) / num_steps``
    inside ``(t0, t1]``. ``batch_size`` applies per time, and so does a ``validation`` fraction;
    the held-out score is the weighted sum of the per-time energy distances.

    Model selection: a share of the data (``validation``) is held out; every
    ``validate_every`` steps the energy distance between ``validation_samples`` model
    samples (the same noise each time, so evaluations compare) and the held-out points is
    recorded. The returned model is the latest one whose score is within two standard errors
    of the lowest seen (the standard error of the difference of two scores over the same
    held-out points): with a few hundred points the scores of good models differ by less
    than their noise, and the plain minimum would keep an early model by chance.
    ``patience`` stops training after that many evaluations without a new lowest score.

    Stability: the default optimiser is Adam with a cosine-decayed learning rate; gradients
    are clipped to global norm ``clip_norm``; with ``kernel_rate="auto"`` a pilot run
    (``dkjax.estimate_kernel_rate``) measures how fast the model's flow contracts every
    ``kernel_rate_every`` steps and the rate follows it upward, never down, so the weights
    stay bounded as the drift sharpens; the drift's stiffness ``||grad F|| dt`` is checked
    then too (a warning above 1); a non-finite loss or gradient stops training.

    Bandwidth rule (``bandwidth=None``): at every step, the smallest ``h`` on a log grid
    between ``min_bandwidth`` (default 0.05 times the data's mean per-coordinate standard
    deviation) and 4 times that deviation such that the kernel weights keep a mean
    effective sample size of at least ``ess_target``.

    Arguments:
        sde: the model; every floating-point array in it (drift and diffusion) is trained.
        data: samples of the target law at ``t1``, shape ``(num_points, d)``; or snapshots,
            ``{time: (n_k, d)}`` or ``dkjax.Snapshots`` (see above).
        initial: ``initial(key, n) -> (x0, score0)``: ``n`` samples of the known initial
            law and its score at them (``score0`` may be ``None``).
        t1, t0: final and initial time (``t1`` defaults to the last snapshot time; it must
            be given for a single array); ``num_steps``: Euler-Maruyama steps.
        key: PRNG key; ``steps``: number of optimisation steps.
        optimizer: an optax transformation; default Adam with ``learning_rate`` decayed
            along a cosine to ``final_lr_fraction`` of it over ``steps``. Clipping by
            ``clip_norm`` (``None``: no clipping) is chained in front of it.
        num_paths: model paths per step; ``batch_size``: data points per step.
        bandwidth: fixed kernel width ``h`` for ``"kl"``, or ``None`` for the rule above.
        ess_target, min_bandwidth: the bandwidth rule's parameters.
        kernel_rate, kernel_rate_every: a number, or ``"auto"``, re-measured every
            ``kernel_rate_every`` steps (see above).
        objective: ``"kl"`` or ``"energy"``.
        gradient: ``"per_path"``, ``"two_pass"`` (memory-lean) or ``"auto"``: two-pass when
            the model has more than ``lean_threshold`` parameters.
        path_chunk: replay the two-pass gradient's paths this many at a time, so that its
            working memory scales with ``path_chunk`` instead of ``num_paths``; implies
            ``gradient="two_pass"``. ``None``: all paths at once.
        validation: held-out points ``(n, d)`` (held-out ``Snapshots`` at the same times for
            snapshot data), a fraction of ``data`` to split off at random (of each time's
            points for snapshots), or ``None`` (no selection: the last model is returned).
        validate_every, validation_samples, patience: model selection, see above.
        checkpoint_dir, checkpoint_every: where and how often to checkpoint (also at the end).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` if there is one.
            With the default optimiser its learning-rate schedule spans ``steps``, so the
            checkpoint's run must have had the same ``steps``.
        metrics_file: a JSONL file receiving one record per step (rewritten on resume).
            Under ``jax.distributed`` every process trains the same model and only process 0
            writes checkpoints, metrics and the progress bar.
        progress: show a tqdm progress bar with the loss.

    Returns:
        ``(trained_sde, history)``: the selected model, of the type of ``sde``, and the
        ``TrainHistory`` (per-step records, held-out evaluations, the selected step).

    Raises:
        ValueError: bad data or validation data (wrong dimension, non-finite, fewer than 2
            points), a snapshot time off the grid or outside ``(t0, t1]`` (the time named), a
            non-positive ``bandwidth``, or any other impossible argument, named.
        TypeError: ``sde`` not an ``AbstractSDE``, ``initial`` not callable, bad ``key``.

    Example:
        >>> data = dkjax.toy_data("two_moons", jax.random.key(0), 256)
        >>> sde, history = dkjax.fit(dkjax.NeuralSDE(2, key=jax.random.key(1), width=8), data,
        ...                          dkjax.gaussian_initial(jnp.zeros(2), 1.0), t1=1.0, num_steps=10,
        ...                          key=jax.random.key(2), steps=5, num_paths=64, progress=False)
        >>> print(len(history.records), history.best_step is not None)
        5 True
    """
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be a dkjax.AbstractSDE; got {type(sde).__name__}.")
    check_key(key)
    snapshot_data = isinstance(data, (Mapping, Snapshots))
    if snapshot_data:
        data = as_snapshots(data)
        t1 = data.times[-1] if t1 is None else t1
    elif t1 is None:
        raise ValueError("t1 must be given when data is one array (it defaults to the last time only for snapshots).")
    check_time_grid(t0, t1, num_steps)
    dim, dtype = _check_initial(initial, key)
    if snapshot_data:
        record_steps = grid_steps(data.times, t0, t1, num_steps)
        if data.dim != dim:
            raise ValueError(f"data has dimension {data.dim} but the model's initial states have dimension {dim}.")
    else:
        _check_data(data, dim)
    noise_dimension(sde, jnp.asarray(t0, dtype), jax.ShapeDtypeStruct((dim,), dtype))
    for name, value in (("steps", steps), ("num_paths", num_paths), ("batch_size", batch_size),
                        ("kernel_rate_every", kernel_rate_every), ("validate_every", validate_every),
                        ("validation_samples", validation_samples)):  # fmt: skip
        check_positive(name, value, integer=True)
    for name, value in (("checkpoint_every", checkpoint_every), ("path_chunk", path_chunk), ("patience", patience)):
        check_positive(name, value, allow_none=True, integer=True)
    for name, value in (("bandwidth", bandwidth), ("min_bandwidth", min_bandwidth), ("clip_norm", clip_norm)):
        check_positive(name, value, allow_none=True)
    check_positive("ess_target", ess_target)
    check_positive("learning_rate", learning_rate)
    if isinstance(final_lr_fraction, bool) or not isinstance(final_lr_fraction, (int, float)) or not 0 <= final_lr_fraction <= 1:
        raise ValueError(f"final_lr_fraction must be a number in [0, 1]; got {final_lr_fraction!r}.")
    if num_paths < 2:
        raise ValueError(f"num_paths must be >= 2; got {num_paths}.")
    check_choice("objective", objective, OBJECTIVES)
    check_choice("gradient", gradient, ("auto",) + GRADIENT_METHODS)
    dt = (float(t1) - float(t0)) / num_steps
    if kernel_rate != "auto":
        if isinstance(kernel_rate, (bool, str)) or not isinstance(kernel_rate, (int, float)):
            raise ValueError(f"kernel_rate must be a number >= 0 or 'auto'; got {kernel_rate!r}.")
        if not 0 <= kernel_rate <= 1 / dt:
            raise ValueError(f"kernel_rate must be in [0, 1/dt = {1 / dt:.4g}]; got {kernel_rate}.")
    if (checkpoint_every is not None or resume) and checkpoint_dir is None:
        raise ValueError("checkpoint_every and resume need checkpoint_dir.")
    if path_chunk is not None and gradient == "per_path":
        raise ValueError("path_chunk applies to the two-pass gradient; use gradient='two_pass' or 'auto'.")
    if isinstance(validation, int) and not isinstance(validation, bool):
        validation = float(validation)
    method = gradient
    if gradient == "auto":
        lean = path_chunk is not None or parameter_count(sde) > lean_threshold
        method = "two_pass" if lean else "per_path"
    default_optimizer = optimizer is None
    optimizer = _default_optimizer(learning_rate, steps, final_lr_fraction) if default_optimizer else optimizer
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    options = dict(objective=objective, method=method, t0=t0, t1=t1, num_steps=num_steps, ess_target=ess_target,
                   path_chunk=path_chunk)  # fmt: skip
    grid = dict(t0=t0, t1=t1, num_steps=num_steps, num_samples=validation_samples, key=key)
    if snapshot_data:
        data, held_out = split_snapshots(data.replace_points([jnp.asarray(p, dtype) for p in data.points]),
                                         validation, key, _split_fraction)  # fmt: skip
        ranges = [_bandwidth_range(points, bandwidth, min_bandwidth) for points in data.points]
        h_range = tuple(tuple(r[i] for r in ranges) for i in (0, 1))
        gradient_fn = _snapshot_gradient(data, record_steps, batch_size=batch_size, **options)
        train_step = _make_train_step(initial, optimizer, num_paths=num_paths, gradient=gradient_fn)
        validate = None if held_out is None else make_snapshot_validator(
            initial, held_out, record_steps, salt=_VALIDATION_SALT, **grid)  # fmt: skip
        data = data.points
    else:
        data, held_out = _split_validation(jnp.asarray(data, dtype), validation, dim, key)
        h_range = _bandwidth_range(data, bandwidth, min_bandwidth)
        train_step = _make_train_step(initial, optimizer, num_paths=num_paths, batch_size=min(batch_size, data.shape[0]),
                                      **options)  # fmt: skip
        validate = None if held_out is None else _make_validator(initial, held_out, **grid)
    fixed_rate = None if kernel_rate == "auto" else float(kernel_rate)
    state = _State(params, optimizer.init(params), params, 0.0 if fixed_rate is None else fixed_rate)
    resumed = resume and state.restore(checkpoint_dir, fixed_rate, steps, schedule_spans_steps=default_optimizer)
    if resumed and progress and jax.process_index() == 0:
        print(f"dkjax fit: resuming from step {state.step} of {checkpoint_dir}", flush=True)

    loop = _Loop(state, static, train_step, validate, initial, data=data, dtype=dtype, h_range=h_range,
                 key=key, t0=t0, t1=t1, num_steps=num_steps, dt=dt, auto_rate=fixed_rate is None,
                 kernel_rate_every=kernel_rate_every, validate_every=validate_every, patience=patience,
                 checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)  # fmt: skip
    loop.run(steps, metrics_file, progress)
    chosen = state.best_params if validate is not None and state.history.best_step is not None else state.params
    return eqx.combine(chosen, static), state.history


class _Loop:
    """The optimisation loop of ``fit``: steps, kernel-rate pilots, validation, checkpoints, logs."""

    def __init__(self, state: _State, static, train_step, validate, initial, **options):
        self.state, self.static, self.train_step, self.validate, self.initial = state, static, train_step, validate, initial
        self.o = types.SimpleNamespace(**options)
        self.recent_states, self.stiffness_warned, self.checkpointed = None, False, None

    def _pilot(self, step: int) -> None:
        """Re-measures the automatic kernel rate (upward only) and checks the drift's stiffness."""
        o, state = self.o, self.state
        model = eqx.combine(state.params, self.static)
        pilot_key = jr.fold_in(jr.fold_in(o.key, _PILOT_SALT), step)
        x0 = self.initial(pilot_key, _PILOT_PATHS)[0]
        if o.auto_rate:
            measured = estimate_kernel_rate(model, x0, t1=o.t1, num_steps=o.num_steps, key=pilot_key, t0=o.t0)
            state.rate = max(state.rate, measured)
        if self.stiffness_warned:
            return
        states = x0 if self.recent_states is None else self.recent_states
        t_check = o.t0 if self.recent_states is None else o.t1
        stiffness = float(drift_stiffness(model, jnp.asarray(t_check, o.dtype), states, pilot_key)) * o.dt
        if stiffness > _STIFFNESS_LIMIT:
            warnings.warn(
                f"step {step}: the drift's stiffness ||grad F|| dt = {stiffness:.3g} exceeds "
                f"{_STIFFNESS_LIMIT}; Euler-Maruyama may turn unstable. Use more time steps.",
                RuntimeWarning,
                stacklevel=4,
            )
            self.stiffness_warned = True

    def _evaluate(self, step: int, elapsed: float) -> bool:
        """Records a held-out evaluation after ``step`` steps; ``False`` once patience runs out."""
        state, history, selection = self.state, self.state.history, self.state.selection
        value, terms = self.validate(state.params, self.static)
        value, terms = float(value), np.asarray(terms, np.float64)
        history.validation.append({"step": step, "time": elapsed, "energy_distance": value})
        if selection.within_noise(value, terms):
            state.best_params, history.best_step = state.params, step
        selection.update(step, value, terms)
        since_lowest = sum(r["step"] > selection.lowest_step for r in history.validation)
        return self.o.patience is None or since_lowest < self.o.patience

    def run(self, steps: int, metrics_file, progress: bool) -> None:
        o, state = self.o, self.state
        history = state.history
        writer = jax.process_index() == 0
        metrics_out = open(metrics_file, "w") if metrics_file is not None and writer else None  # noqa: SIM115
        if metrics_out is not None:
            metrics_out.writelines(json.dumps(r) + "\n" for r in history.records)
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state.step, disable=not (progress and writer), desc="dkjax fit", dynamic_ncols=True)
        elapsed = history.records[-1].get("time", 0.0) if history.records else 0.0
        h_min, h_max = (jnp.asarray(h, o.dtype) for h in o.h_range)
        try:
            if self.validate is not None and not history.validation:
                self._evaluate(0, 0.0)
            while state.step < steps:
                step, started = state.step, time.perf_counter()
                if step % o.kernel_rate_every == 0:
                    self._pilot(step)
                new_params, new_opt_state, metrics, self.recent_states = self.train_step(
                    state.params, self.static, state.opt_state, o.data, jr.fold_in(o.key, step),
                    jnp.asarray(state.rate, o.dtype), h_min, h_max,
                )  # fmt: skip
                metrics = {name: value.item() for name, value in metrics.items()}
                elapsed += time.perf_counter() - started
                if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
                    history.stop_reason = _nonfinite_message(step, metrics, self.checkpointed)
                    warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=3)
                    return
                state.params, state.opt_state, state.step = new_params, new_opt_state, step + 1
                record = {"step": step, **metrics, "kernel_rate": float(state.rate), "time": elapsed}
                history.records.append(record)
                if metrics_out is not None:
                    metrics_out.write(json.dumps(record) + "\n")
                    metrics_out.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", h=f"{metrics['bandwidth']:.3g}", refresh=False)
                keep_going = True
                if self.validate is not None and (state.step % o.validate_every == 0 or state.step == steps):
                    keep_going = self._evaluate(state.step, elapsed)
                if o.checkpoint_every is not None and state.step % o.checkpoint_every == 0:
                    state.save(o.checkpoint_dir, steps)
                    self.checkpointed = state.step
                if not keep_going:
                    history.stopped_early = True
                    history.stop_reason = (
                        f"early stop after step {state.step}: no held-out improvement in {o.patience} evaluations "
                        f"(kept step {history.best_step})."
                    )
                    break
            if o.checkpoint_dir is not None and self.checkpointed != state.step:
                state.save(o.checkpoint_dir, steps)
        finally:
            bar.close()
            if metrics_out is not None:
                metrics_out.close()


def sample(
    sde: AbstractSDE, initial: InitialSampler, n: int, *, t1: RealScalarLike, num_steps: int, key: Key, t0: RealScalarLike = 0.0
) -> States:
    """``n`` samples of the model's law at ``t1``: initial states from ``initial``, then Euler-Maruyama.

    Arguments:
        sde: the (trained) model.
        initial: ``initial(key, n) -> (x0, score0)``, the law at ``t0`` (``score0`` unused).
        n: number of samples.
        t1, num_steps, t0: the time grid (use the one the model was trained on).
        key: PRNG key.

    Returns:
        Array of shape ``(n, d)``.

    Raises:
        ValueError: ``n`` not a positive int, or as ``dkjax.simulate``.
        TypeError: ``key`` not a PRNG key.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> xs = dkjax.sample(sde, dkjax.gaussian_initial(jnp.zeros(2), 1.0), 1000, t1=1.0,
        ...                   num_steps=50, key=jax.random.key(0))
        >>> print(xs.shape)
        (1000, 2)
    """
    check_positive("n", n, integer=True)
    check_key(key)
    init_key, path_key = jr.split(key)
    x0 = initial(init_key, n)[0]
    return simulate(sde, x0, t1=t1, num_steps=num_steps, key=path_key, t0=t0)

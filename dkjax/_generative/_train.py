"""DK-SDE training: fit an SDE's law at time T to data, forward only."""

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from .._custom_types import Array, Float, InitialSampler, Key, RealScalarLike
from .._engine._save_at import grid_steps
from .._engine._simulate import record_states
from .._sde._abstract import AbstractSDE
from ._arguments import Output, Problem, Schedule, Selection, StepSettings, check_data, check_problem
from ._callbacks import last_checkpoint, make_callbacks
from ._gradient import AbstractGradient, as_gradient, dk_gradient
from ._metrics import distance_column_sums, energy_distance
from ._objective import AbstractObjective, as_objective
from ._path_cost import AbstractPathCost, check_path_cost
from ._path_schedule import AbstractPathSchedule
from ._policies import PILOT_PATHS, Pilot
from ._settings import TRAIN_DEFAULTS
from ._snapshots import Snapshots, per_time_weights, split_snapshots
from ._state import TrainHistory, TrainState

# A fold_in salt that keeps the validation split off the training steps' keys (fold_in(key, step), step < 2**31).
_VALIDATION_SALT = 2**31 + 2


@dataclasses.dataclass(frozen=True)
class _StepPlan:
    """What shapes a training step's program: fixed per fit (per stage of a growing path schedule), hashed by value
    (equal plans share a compilation)."""

    num_paths: int
    batch_size: int
    num_steps: int
    gradient: AbstractGradient
    observed: tuple[int, ...] | None  # observation steps of snapshots; None: one array at t1
    time_weights: tuple[float, ...] | None
    path_cost: AbstractPathCost | None = None


def _batch(points, key, batch_size: int):
    """``batch_size`` rows of ``points`` drawn without replacement (all of them if there are fewer)."""
    if batch_size >= points.shape[0]:
        return points
    return points[jr.choice(key, points.shape[0], (batch_size,), replace=False)]


def _path_weights(objective: AbstractObjective, data, plan: _StepPlan, keys, h_min, h_max):
    """The objective's path weights on this step's data batch (one per time for snapshots)."""
    batch_key, jitter_key = keys
    if plan.observed is None:
        batch = _batch(data, batch_key, plan.batch_size)
        return lambda x: objective.weights(x, batch, jitter_key, h_min, h_max)
    batches = tuple(_batch(points, jr.fold_in(batch_key, k), plan.batch_size) for k, points in enumerate(data))
    return per_time_weights(objective, batches, plan.time_weights, None, jitter_key, h_min, h_max)


@eqx.filter_jit
def _train_step(params, static, opt_state, data, key, kernel_rate, h_min, h_max, times, *, initial, objective,
                optimizer, plan: _StepPlan):  # fmt: skip
    """One optimisation step of ``fit``, compiled once per plan, model structure and argument shapes.

    Everything that varies between fits with the same settings (parameters, data, keys, the
    kernel rate, the bandwidth range, the grid's ``(t0, t1)``) is an argument, not a constant.
    """
    init_key, path_key, batch_key, jitter_key = jr.split(key, 4)
    x0, score0 = initial(init_key, plan.num_paths)
    weights = _path_weights(objective, data, plan, (batch_key, jitter_key), h_min, h_max)
    loss, grad, (ess, h), x_final = dk_gradient(
        eqx.combine(params, static), x0, score0, weights, plan.observed, t0=times[0], t1=times[1],
        num_steps=plan.num_steps, key=path_key, kernel_rate=kernel_rate, gradient=plan.gradient,
        path_cost=plan.path_cost,
    )  # fmt: skip
    updates, opt_state = optimizer.update(grad, opt_state, params)
    params = eqx.apply_updates(params, updates)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grad),
        "bandwidth": h,
        "ess": ess,
        "num_nonfinite": jnp.sum(~jnp.all(jnp.isfinite(x_final), axis=1)),
        "num_paths": jnp.asarray(plan.num_paths),
    }
    return params, opt_state, metrics, x_final[:PILOT_PATHS]


def _make_train_step(initial, optimizer, *, num_paths, objective, gradient, t0, t1, num_steps, batch_size,
                     ess_target=TRAIN_DEFAULTS.ess_target, observed=None, time_weights=None, path_cost=None):  # fmt: skip
    """``(params, static, opt_state, data, key, kernel_rate, h_min, h_max) -> (params, opt_state, metrics, states)``.

    ``fit``'s step outside ``fit``, for the benchmarks: ``gradient`` a route or its shorthand.
    ``data`` is one array, or one array per time with ``observed`` (the observation steps)
    and ``time_weights``; ``h_min``, ``h_max`` are then one per time.
    """
    plan = _StepPlan(num_paths, batch_size, num_steps, as_gradient(gradient), observed, time_weights, path_cost)
    objective = as_objective(objective, ess_target)

    def train_step(params, static, opt_state, data, key, kernel_rate, h_min, h_max):
        dtype = jnp.asarray(kernel_rate).dtype
        times = (jnp.asarray(t0, dtype), jnp.asarray(t1, dtype))
        return _train_step(params, static, opt_state, data, key, kernel_rate, h_min, h_max, times, initial=initial,
                           objective=objective, optimizer=optimizer, plan=plan)  # fmt: skip

    return eqx.filter_jit(train_step)  # lowerable, for the benchmarks' memory analysis


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
    check_data(validation, dim, "validation")
    return data, jnp.asarray(validation, data.dtype)


@eqx.filter_jit
def _held_out_score(params, static, initial, held_out, keys, times, *, num_samples, num_steps, observed, time_weights):
    """``sum_k w_k ED_k`` between model samples and the held-out points at each observation time.

    Also returns per-point terms whose mean is the held-out-dependent part of the score (each
    time's terms scaled by ``w_k N / n_k``, ``N`` the total count), from which the model
    selection takes the standard error of a difference of scores; pooling the times this way
    also counts the spread between times, a conservative error.
    """
    init_key, path_key = keys
    x0 = initial(init_key, num_samples)[0]
    states = record_states(eqx.combine(params, static), x0, times[0], times[1], path_key, num_steps, observed)[0]
    finite = jnp.all(jnp.isfinite(states))
    states = jnp.where(jnp.isfinite(states), states, 0.0)
    total = sum(points.shape[0] for points in held_out)
    score, terms = 0.0, []
    for k, (points, w) in enumerate(zip(held_out, time_weights)):
        score = score + w * energy_distance(states[k], points)
        terms.append(w * total / points.shape[0] * distance_column_sums(states[k], points) / num_samples)
    return jnp.where(finite, score, jnp.inf), jnp.concatenate(terms)


def _make_validator(problem: Problem, held_out: tuple | None, observed, num_samples: int, key: Key):
    """``(params, static) -> (score, terms)`` on the same noise at every evaluation (see ``_held_out_score``).

    ``held_out`` is ``(points, weights)``, one array and weight per observation time; ``None``
    (no model selection) gives ``None``.
    """
    if held_out is None:
        return None
    points, time_weights = held_out
    keys = tuple(jr.split(jr.fold_in(key, _VALIDATION_SALT)))
    times = problem.times(points[0].dtype)
    return lambda params, static: _held_out_score(
        params, static, problem.initial, points, keys, times, num_samples=num_samples,
        num_steps=problem.num_steps, observed=observed or (problem.num_steps,), time_weights=time_weights,
    )  # fmt: skip


def _as_fraction(validation):
    return float(validation) if isinstance(validation, int) and not isinstance(validation, bool) else validation


def _split_data(problem: Problem, validation, key: Key):
    """``(train, held_out, observed, time_weights)``: one array, or one array per snapshot time.

    ``held_out`` is ``(points, weights)``, one array and weight per time (a held-out fraction
    keeps the data's weights, held-out snapshots their own), or ``None``; ``observed`` the
    snapshot times' grid steps and ``time_weights`` their loss weights (both ``None`` for
    one array, observed at ``t1``).
    """
    validation, data, dtype = _as_fraction(validation), problem.data, problem.dtype
    if not isinstance(data, Snapshots):
        train, held = _split_validation(jnp.asarray(data, dtype), validation, problem.dim, key)
        return train, None if held is None else ((held,), (1.0,)), None, None
    observed = grid_steps(data.times, **problem.grid)
    snaps = data.replace_points([jnp.asarray(p, dtype) for p in data.points])
    snaps, held = split_snapshots(snaps, validation, key, _split_fraction)
    return snaps.points, None if held is None else (held.points, held.weights), observed, snaps.weights


def _step_functions(problem, sampling, route, observed, time_weights, path_cost, objective, optimizer, steps):
    """``step -> _train_step`` with this fit's fixed settings bound: the plan of that step's path count
    (``sampling.path_schedule``), the initial law, objective and optimiser."""

    def step_function(step: int):
        num_paths = sampling.path_schedule.num_paths(step, steps, sampling.num_paths)
        plan = _StepPlan(num_paths, sampling.batch_size, problem.num_steps, route, observed, time_weights, path_cost)
        return functools.partial(_train_step, initial=problem.initial, objective=objective, optimizer=optimizer,
                                 plan=plan)  # fmt: skip

    return step_function


def _bandwidth_range(objective: AbstractObjective, train, observed, dtype):
    """``(h_min, h_max)`` as arrays: of the one data array, or one pair per snapshot time."""
    if observed is None:
        return tuple(jnp.asarray(h, dtype) for h in objective.bandwidth_range(train))
    ranges = [objective.bandwidth_range(points) for points in train]
    return tuple(tuple(jnp.asarray(r[i], dtype) for r in ranges) for i in (0, 1))


def _start(sde, optimizer, control, output: Output, steps: int, spans_steps: bool) -> tuple[TrainState, object]:
    """``(state, static)``: the state before the first step (or the latest checkpoint's when ``output``
    asks to resume) and the model's non-trained part."""
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    state = TrainState.start(params, optimizer, control.start())
    if output.resume and state.restore(output.checkpoint_dir, control, steps, schedule_spans_steps=spans_steps):
        if output.progress and jax.process_index() == 0:
            print(f"dkjax fit: resuming from step {state.step} of {output.checkpoint_dir}", flush=True)
    return state, static


def _finish(state: TrainState, callbacks, keep_going: bool, patience) -> None:
    """Ends a run that did not fail: the early-stop note, then the callbacks' last word (the final checkpoint)."""
    history = state.history
    if not keep_going:
        history.stopped_early = True
        history.stop_reason = (
            f"early stop after step {state.step}: no held-out improvement in {patience} evaluations "
            f"(kept step {history.best_step})."
        )
    for callback in callbacks:
        callback.on_end(state)


def _train_loop(state: TrainState, static, step_functions, inputs: tuple, pilot: Pilot, validate, callbacks, *,
                steps: int, selection: Selection) -> None:  # fmt: skip
    """Takes ``state`` to ``steps`` optimisation steps (or an early stop, or a failure), in place.

    ``step_functions(n)`` is step ``n``'s compiled step. ``inputs`` are ``(train, key, h_min, h_max,
    times)``: the step's data, the run's key (step ``n`` draws from ``fold_in(key, n)``), the
    bandwidth range and the grid's times.
    """
    train, key, h_min, h_max, times = inputs
    history, recent_states, keep_going = state.history, None, True
    elapsed = history.records[-1].get("time", 0.0) if history.records else 0.0
    try:
        if validate is not None and not history.validation:
            state.evaluate(validate, static, 0, 0.0, selection.patience)
        while state.step < steps and keep_going:
            step, started = state.step, time.perf_counter()
            state.rate = pilot(step, state.rate, eqx.combine(state.params, static), recent_states)
            params, opt_state, metrics, recent_states = step_functions(step)(
                state.params, static, state.opt_state, train, jr.fold_in(key, step),
                jnp.asarray(state.rate, times[0].dtype), h_min, h_max, times,
            )  # fmt: skip
            metrics = {name: value.item() for name, value in metrics.items()}
            elapsed += time.perf_counter() - started
            if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
                history.stop_reason = _nonfinite_message(step, metrics, last_checkpoint(callbacks))
                warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=3)
                break
            state.params, state.opt_state, state.step = params, opt_state, step + 1
            record = {"step": step, **metrics, "kernel_rate": float(state.rate), "time": elapsed}
            history.records.append(record)
            if validate is not None and (state.step % selection.validate_every == 0 or state.step == steps):
                keep_going = state.evaluate(validate, static, state.step, elapsed, selection.patience)
            for callback in callbacks:
                callback.on_step(state, record)
        if history.stop_reason is None:
            _finish(state, callbacks, keep_going, selection.patience)
    finally:
        for callback in callbacks:
            callback.close()


def fit(
    sde: AbstractSDE,
    data: Float[Array, "num_points d"] | Mapping[float, Float[Array, "n d"]] | Snapshots,
    initial: InitialSampler | None = None,
    *,
    t1: RealScalarLike | None = None,
    num_steps: int,
    key: Key,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = TRAIN_DEFAULTS.learning_rate,
    final_lr_fraction: float = TRAIN_DEFAULTS.final_lr_fraction,
    num_paths: int = TRAIN_DEFAULTS.num_paths,
    path_schedule: AbstractPathSchedule = TRAIN_DEFAULTS.path_schedule,
    batch_size: int = TRAIN_DEFAULTS.batch_size,
    bandwidth: float | None = None,
    ess_target: float = TRAIN_DEFAULTS.ess_target,
    min_bandwidth: float | None = None,
    kernel_rate: float | str = TRAIN_DEFAULTS.kernel_rate,
    kernel_rate_every: int = TRAIN_DEFAULTS.kernel_rate_every,
    objective: "str | AbstractObjective" = TRAIN_DEFAULTS.objective,
    path_cost: AbstractPathCost | None = None,
    gradient: "str | AbstractGradient" = TRAIN_DEFAULTS.gradient,
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
    held-out points) and lower than the untrained model's by more than two such errors: with
    a few hundred points the scores of good models differ by less than their noise, and the
    plain minimum would keep an early model by chance; with a few dozen, a trained model must
    still show that it beats the start.
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
            law and its score at them (``score0`` may be ``None``). ``None`` for snapshots
            with one at ``t0``: that snapshot becomes the initial law (``dkjax.EmpiricalInitial``
            of its points). A snapshot at ``t0`` is never a loss term: the model cannot change
            the law there, so with ``initial`` given it is dropped.
        t1, t0: final and initial time (``t1`` defaults to the last snapshot time; it must
            be given for a single array); ``num_steps``: Euler-Maruyama steps.
        key: PRNG key; ``steps``: number of optimisation steps.
        optimizer: an optax transformation; default Adam with ``learning_rate`` decayed
            along a cosine to ``final_lr_fraction`` of it over ``steps``. Clipping by
            ``clip_norm`` (``None``: no clipping) is chained in front of it.
        num_paths: model paths per step (of the last steps, with a growing ``path_schedule``);
            ``batch_size``: data points per step.
        path_schedule: how the path count grows over the run, ``dkjax.GrowingPaths(start)``
            (few paths early, ``num_paths`` late) or ``dkjax.ConstantPaths()`` (the default).
        bandwidth: fixed kernel width ``h`` for ``"kl"``, or ``None`` for the rule above.
        ess_target, min_bandwidth: the bandwidth rule's parameters.
        kernel_rate, kernel_rate_every: a number, or ``"auto"``, re-measured every
            ``kernel_rate_every`` steps (see above).
        objective: an objective module (``dkjax.KL(...)``, ``dkjax.Energy()``, or your own
            ``dkjax.AbstractObjective``), or its shorthand ``"kl"`` (with ``ess_target``,
            ``bandwidth`` and ``min_bandwidth``) or ``"energy"``.
        path_cost: a running cost on the model's paths added to the loss, such as
            ``dkjax.Kinetic(weight)`` (a least-action prior: it decides how the law moves
            between snapshot times, which the data cannot); ``None``: none. It needs the
            two-pass route, which ``"auto"`` then takes.
        gradient: the gradient route, a module (``dkjax.PerPathGradient()``,
            ``dkjax.TwoPassGradient(path_chunk=...)``, the memory-lean one, or
            ``dkjax.AutoGradient(lean_threshold=...)``) or its shorthand ``"per_path"``,
            ``"two_pass"`` or ``"auto"``: two-pass when the model has more than
            ``lean_threshold`` parameters.
        path_chunk: with a shorthand, replay the two-pass gradient's paths this many at a
            time, so that its working memory scales with ``path_chunk`` instead of
            ``num_paths``; implies the two-pass route. ``None``: all paths at once.
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
            non-positive ``bandwidth``, ``initial=None`` without a snapshot at ``t0``, a
            ``path_cost`` with the per-path gradient route, or any other impossible argument, named.
        TypeError: ``sde`` not an ``AbstractSDE``, ``initial`` not callable, bad ``key``, a
            ``path_cost`` that is not a ``dkjax.AbstractPathCost``.

    Example:
        >>> data = dkjax.toy_data("two_moons", jax.random.key(0), 256)
        >>> sde, history = dkjax.fit(dkjax.NeuralSDE(2, key=jax.random.key(1), width=8), data,
        ...                          dkjax.GaussianInitial(jnp.zeros(2), 1.0), t1=1.0, num_steps=10,
        ...                          key=jax.random.key(2), steps=5, num_paths=64, progress=False)
        >>> print(len(history.records), history.best_step is not None)
        5 True
    """
    problem = check_problem(sde, data, initial, key, t0=t0, t1=t1, num_steps=num_steps)
    sampling = StepSettings(num_paths, batch_size, kernel_rate, kernel_rate_every, problem.dt, path_schedule)
    schedule = Schedule(steps, optimizer, learning_rate, final_lr_fraction, clip_norm)
    selection = Selection(validation, validate_every, validation_samples, patience)
    output = Output(checkpoint_dir, checkpoint_every, resume, metrics_file, progress)
    objective = as_objective(objective, ess_target, bandwidth, min_bandwidth)
    route = as_gradient(gradient, lean_threshold, path_chunk).resolve(sde, check_path_cost(path_cost))

    # data and key -> training and held-out points -> the compiled step (fixed by its plan) and the validator.
    train, held_out, observed, time_weights = _split_data(problem, selection.validation, key)
    h_min, h_max = _bandwidth_range(objective, train, observed, problem.dtype)
    optimizer, spans_steps = schedule.build()
    step_functions = _step_functions(problem, sampling, route, observed, time_weights, path_cost, objective, optimizer,
                                     steps)  # fmt: skip
    validate = _make_validator(problem, held_out, observed, selection.validation_samples, key)

    control = sampling.rate_control()
    state, static = _start(sde, optimizer, control, output, steps, spans_steps)
    _train_loop(state, static, step_functions, (train, key, h_min, h_max, problem.times(problem.dtype)),
                sampling.pilot(problem, key, control), validate, make_callbacks(state, steps, output), steps=steps,
                selection=selection)  # fmt: skip
    chosen = state.best_params if validate is not None and state.history.best_step is not None else state.params
    return eqx.combine(chosen, static), state.history


"""DK-SDE training: fit an SDE's law at time T to data, forward only (MATH.md sections 6 and 8)."""

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ._checkpoint import load_checkpoint, save_checkpoint
from ._custom_types import Array, Float, Key, RealScalarLike, Scalar, States
from ._kernel_rate import estimate_kernel_rate
from ._objective import (
    GRADIENT_METHODS,
    OBJECTIVES,
    dk_gradient,
    energy_weights,
    ess_bandwidth,
    kl_weights,
    parameter_count,
)
from ._sde import AbstractSDE, noise_dimension
from ._simulate import simulate
from ._validation import check_choice, check_key, check_time_grid

Initial = Callable[[Key, int], tuple[States, States | None]]

_STIFFNESS_LIMIT = 1.0
_POWER_ITERATIONS = 20
_PILOT_PATHS = 256


@dataclasses.dataclass
class TrainHistory:
    """Per-step training records and why training stopped early, if it did.

    Attributes:
        records: one dict per completed step with ``step``, ``loss``, ``grad_norm``,
            ``bandwidth``, ``ess`` (mean effective sample size of the weights),
            ``kernel_rate`` and ``num_nonfinite`` (paths that went non-finite).
        stop_reason: ``None`` if all steps ran, else a message with the step, the loss and
            a suggested fix.

    Example:
        >>> sde, history = dkjax.fit(...)
        >>> history.loss[-1], history["bandwidth"][-1]
    """

    records: list[dict] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        return np.array([record[name] for record in self.records])

    @property
    def loss(self) -> np.ndarray:
        """The loss of every completed step."""
        return self["loss"]


def _check_data(data, dim: int) -> None:
    shape = np.shape(data)
    if len(shape) != 2:
        raise ValueError(f"data must have shape (num_points, d); got shape {shape}.")
    if shape[0] < 2:
        raise ValueError(f"data must hold at least 2 points; got {shape[0]}.")
    if shape[1] != dim:
        raise ValueError(f"data has dimension {shape[1]} but the model's initial states have dimension {dim}.")
    array = np.asarray(data)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"data must be a floating-point array; got dtype {array.dtype}.")
    bad = array.size - np.count_nonzero(np.isfinite(array))
    if bad:
        raise ValueError(f"data holds {bad} non-finite value(s) (NaN or inf).")


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


def _positive(name: str, value, *, allow_none: bool = False, integer: bool = False) -> None:
    if value is None and allow_none:
        return
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (value > 0 and math.isfinite(value)):
        what = "a positive int" if integer else "a positive finite number"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}; got {value!r}.")


@eqx.filter_jit
def drift_stiffness(sde: AbstractSDE, t: Scalar, xs: States, key: Key) -> Scalar:
    """Largest ``||grad_x F(t, x)||_2`` over the rows of ``xs``, by power iteration (matrix free).

    Euler-Maruyama amplifies modes with ``|1 + lambda dt| > 1``; ``||grad F|| dt <= 1``
    keeps every mode of a decaying flow resolved (MATH.md section 8, point ii).
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


def _make_train_step(
    initial, optimizer, *, objective, method, t0, t1, num_steps, num_paths, batch_size, ess_target, path_chunk=None
):
    @eqx.filter_jit
    def train_step(params, static, opt_state, data, key, kernel_rate, h_min, h_max):
        sde = eqx.combine(params, static)
        init_key, path_key, batch_key, jitter_key = jr.split(key, 4)
        x0, score0 = initial(init_key, num_paths)
        if batch_size < data.shape[0]:
            data = data[jr.choice(batch_key, data.shape[0], (batch_size,), replace=False)]

        def weights(x):
            if objective == "energy":
                loss, c, ess = energy_weights(x, data)
                return loss, c, (ess, jnp.zeros((), x.dtype))
            h = ess_bandwidth(data, x, ess_target, h_min, h_max)
            loss, c, ess = kl_weights(x, data, h, jitter_key)
            return loss, c, (ess, h)

        loss, grad, (ess, h), x_final = dk_gradient(
            sde, x0, score0, weights, t1=t1, num_steps=num_steps, key=path_key, t0=t0,
            kernel_rate=kernel_rate, method=method, path_chunk=path_chunk,
        )  # fmt: skip
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
        f"{paths}. The returned model is the one before this step{kept}. "
        "Try a larger kernel_rate (or kernel_rate='auto'), more time steps (num_steps) or a lower learning rate."
    )


def fit(
    sde: AbstractSDE,
    data: Float[Array, "num_points d"],
    initial: Initial,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    num_paths: int = 1024,
    batch_size: int = 1024,
    bandwidth: float | None = None,
    ess_target: float = 32.0,
    min_bandwidth: float | None = None,
    kernel_rate: float | str = 1.0,
    kernel_rate_every: int = 100,
    objective: str = "kl",
    gradient: str = "auto",
    lean_threshold: int = 20_000,
    path_chunk: int | None = None,
    clip_norm: float | None = 1.0,
    t0: RealScalarLike = 0.0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    metrics_file: str | Path | None = None,
    progress: bool = True,
) -> tuple[AbstractSDE, TrainHistory]:
    """Trains ``sde`` so that its law at ``t1`` fits ``data``, with forward-only DK gradients.

    Each step draws ``num_paths`` initial states from ``initial``, simulates them to ``t1``
    with the divergence-kernel responses, and follows the gradient of the objective
    (MATH.md section 6): ``"kl"``, the smoothed negative log-likelihood ``L_h`` (kernel of
    width ``h`` on data and model alike, so the minimiser is the data law for every ``h``),
    or ``"energy"``, the energy distance (no bandwidth, no ratio bias). Step ``s`` uses the
    key ``fold_in(key, s)``, so a resumed run repeats an uninterrupted one exactly.

    Stability (MATH.md section 8): gradients are clipped to global norm ``clip_norm``; with
    ``kernel_rate="auto"`` the kernel rate is re-measured by ``dkjax.estimate_kernel_rate``
    every ``kernel_rate_every`` steps as the drift changes; at those times the drift's
    stiffness ``||grad F|| dt`` is checked and a warning is raised above 1; a non-finite loss
    or gradient stops training with the model of the step before.

    Bandwidth rule (``bandwidth=None``): at every step, the smallest ``h`` on a log grid
    between ``min_bandwidth`` (default 0.05 times the data's mean per-coordinate standard
    deviation) and 4 times that deviation such that the Nadaraya-Watson weights keep a mean
    effective sample size of at least ``ess_target``. ``h`` thus shrinks as the model's
    samples approach the data, instead of on a blind schedule.

    Arguments:
        sde: the model; every floating-point array in it (drift and diffusion) is trained.
        data: samples of the target law at ``t1``, shape ``(num_points, d)``.
        initial: ``initial(key, n) -> (x0, score0)``: ``n`` samples of the known initial
            law and its score at them (``score0`` may be ``None``).
        t1, t0: final and initial time; ``num_steps``: Euler-Maruyama steps.
        key: PRNG key; ``steps``: number of optimisation steps.
        optimizer: an optax transformation (default ``optax.adam(3e-3)``); clipping by
            ``clip_norm`` (``None``: no clipping) is chained in front of it.
        num_paths: model paths per step; ``batch_size``: data points per step.
        bandwidth: fixed kernel width ``h`` for ``"kl"``, or ``None`` for the rule above.
        ess_target, min_bandwidth: the bandwidth rule's parameters.
        kernel_rate: a number, or ``"auto"`` (see above).
        objective: ``"kl"`` or ``"energy"``.
        gradient: ``"per_path"``, ``"two_pass"`` (memory-lean) or ``"auto"``: two-pass when
            the model has more than ``lean_threshold`` parameters.
        path_chunk: replay the two-pass gradient's paths this many at a time, so that its
            working memory (the drift's activations) scales with ``path_chunk`` instead of
            ``num_paths``; implies ``gradient="two_pass"``. ``None``: all paths at once.
        checkpoint_dir, checkpoint_every: where and how often to checkpoint (also at the end).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` if there is one.
        metrics_file: a JSONL file receiving one record per step (rewritten on resume).
        progress: show a tqdm progress bar with the loss.

    Returns:
        ``(trained_sde, history)``.

    Raises:
        ValueError: bad data (wrong dimension, non-finite, fewer than 2 points), a
            non-positive ``bandwidth``, or any other impossible argument, named in the message.
        TypeError: ``sde`` not an ``AbstractSDE``, ``initial`` not callable, bad ``key``.

    Example:
        >>> data = dkjax.toy_data("two_moons", jax.random.key(0), 4096)
        >>> sde = dkjax.NeuralSDE(2, key=jax.random.key(1))
        >>> initial = dkjax.gaussian_initial(jnp.zeros(2), 1.0)
        >>> sde, history = dkjax.fit(sde, data, initial, t1=1.0, num_steps=50,
        ...                          key=jax.random.key(2), steps=500, kernel_rate=10.0)
    """
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be a dkjax.AbstractSDE; got {type(sde).__name__}.")
    check_key(key)
    check_time_grid(t0, t1, num_steps)
    dim, dtype = _check_initial(initial, key)
    _check_data(data, dim)
    noise_dimension(sde, jnp.asarray(t0, dtype), jax.ShapeDtypeStruct((dim,), dtype))
    _positive("steps", steps, integer=True)
    _positive("num_paths", num_paths, integer=True)
    _positive("batch_size", batch_size, integer=True)
    _positive("kernel_rate_every", kernel_rate_every, integer=True)
    _positive("bandwidth", bandwidth, allow_none=True)
    _positive("min_bandwidth", min_bandwidth, allow_none=True)
    _positive("ess_target", ess_target)
    _positive("clip_norm", clip_norm, allow_none=True)
    _positive("checkpoint_every", checkpoint_every, allow_none=True, integer=True)
    _positive("path_chunk", path_chunk, allow_none=True, integer=True)
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

    data = jnp.asarray(data, dtype)
    scale = float(jnp.mean(jnp.std(data, axis=0)))
    if bandwidth is None:
        h_min = min_bandwidth if min_bandwidth is not None else 0.05 * scale
        h_max = max(4.0 * scale, h_min)
    else:
        h_min = h_max = bandwidth
    if path_chunk is not None and gradient == "per_path":
        raise ValueError("path_chunk applies to the two-pass gradient; use gradient='two_pass' or 'auto'.")
    method = gradient
    if gradient == "auto":
        lean = path_chunk is not None or parameter_count(sde) > lean_threshold
        method = "two_pass" if lean else "per_path"
    optimizer = optax.adam(3e-3) if optimizer is None else optimizer
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    params, static = eqx.partition(sde, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    train_step = _make_train_step(
        initial, optimizer, objective=objective, method=method, t0=t0, t1=t1, num_steps=num_steps,
        num_paths=num_paths, batch_size=min(batch_size, data.shape[0]), ess_target=ess_target, path_chunk=path_chunk,
    )  # fmt: skip

    start, history, rate, checkpointed = 0, TrainHistory(), kernel_rate, None
    if resume:
        loaded = load_checkpoint(checkpoint_dir, (params, opt_state))
        if loaded is not None:
            (params, opt_state), record = loaded
            start, rate, checkpointed = record["step"], record["kernel_rate"], record["step"]
            history.records = record["history"]
    metrics_out = None
    if metrics_file is not None:
        metrics_out = open(metrics_file, "w")  # noqa: SIM115 (closed in the finally below)
        metrics_out.writelines(json.dumps(r) + "\n" for r in history.records)

    def checkpoint(step):
        record = {"kernel_rate": rate, "history": history.records}
        save_checkpoint(checkpoint_dir, step, (params, opt_state), record)
        return step

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, disable=not progress, desc="dkjax fit", dynamic_ncols=True)
    stiffness_warned, recent_states, started = False, None, time.perf_counter()
    try:
        for step in range(start, steps):
            step_key = jr.fold_in(key, step)
            if step % kernel_rate_every == 0 and (kernel_rate == "auto" or not stiffness_warned):
                model = eqx.combine(params, static)
                pilot_key = jr.fold_in(step_key, 1)
                x0 = initial(pilot_key, _PILOT_PATHS)[0]
                if kernel_rate == "auto":
                    rate = estimate_kernel_rate(model, x0, t1=t1, num_steps=num_steps, key=pilot_key, t0=t0)
                states = x0 if recent_states is None else recent_states
                t_check = t0 if recent_states is None else t1
                stiffness = float(drift_stiffness(model, jnp.asarray(t_check, dtype), states, pilot_key)) * dt
                if stiffness > _STIFFNESS_LIMIT and not stiffness_warned:
                    warnings.warn(
                        f"step {step}: the drift's stiffness ||grad F|| dt = {stiffness:.3g} exceeds "
                        f"{_STIFFNESS_LIMIT}; Euler-Maruyama may turn unstable. Use more time steps.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    stiffness_warned = True
            new_params, new_opt_state, metrics, recent_states = train_step(
                params, static, opt_state, data, step_key, jnp.asarray(rate, dtype),
                jnp.asarray(h_min, dtype), jnp.asarray(h_max, dtype),
            )  # fmt: skip
            metrics = {name: value.item() for name, value in metrics.items()}
            if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
                history.stop_reason = _nonfinite_message(step, metrics, checkpointed)
                warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=2)
                break
            params, opt_state = new_params, new_opt_state
            record = {"step": step, **metrics, "kernel_rate": float(rate)}
            history.records.append(record)
            if metrics_out is not None:
                metrics_out.write(json.dumps({**record, "time": time.perf_counter() - started}) + "\n")
                metrics_out.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", h=f"{metrics['bandwidth']:.3g}", refresh=False)
            if checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
                checkpointed = checkpoint(step + 1)
        else:
            if checkpoint_dir is not None and checkpointed != steps:
                checkpoint(steps)
    finally:
        bar.close()
        if metrics_out is not None:
            metrics_out.close()
    return eqx.combine(params, static), history


def sample(
    sde: AbstractSDE, initial: Initial, n: int, *, t1: RealScalarLike, num_steps: int, key: Key, t0: RealScalarLike = 0.0
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
        >>> xs = dkjax.sample(sde, dkjax.gaussian_initial(jnp.zeros(2), 1.0), 1000, t1=1.0,
        ...                   num_steps=50, key=jax.random.key(0))
    """
    _positive("n", n, integer=True)
    check_key(key)
    init_key, path_key = jr.split(key)
    x0 = initial(init_key, n)[0]
    return simulate(sde, x0, t1=t1, num_steps=num_steps, key=path_key, t0=t0)

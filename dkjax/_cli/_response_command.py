"""``dkjax response``: observable responses of a built-in or user SDE described by a TOML config.

The config names a system (a built-in class or ``module:Class`` with its parameters), an
initial law (Gaussian, optionally spun up by plain simulation) and observables (built-in
names or ``module:function``). ``prepare`` validates everything and builds the SDE without
simulating; ``run`` estimates ``d/dparam E[phi(X_T)]`` with ``dkjax.observable_response``.
"""

import dataclasses
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ._config import (
    SCHEMA,
    ConfigError,
    _choice,
    _Key,
    _positive_float,
    _positive_int,
    is_number,
    is_reference,
    numeric_table,
    resolve_reference,
)
from ._systems import SYSTEMS, build_system, check_dimension, parameter_labels

OBSERVABLES = {
    "mean": "mean of the coordinates",
    "mean_square": "mean of the squared coordinates",
    "first": "the first coordinate",
    "first_square": "the square of the first coordinate",
}


RESPONSE_SCHEMA = {
    "run": {
        "name": dataclasses.replace(SCHEMA["run"]["name"], default="response"),
    },
    "system": {
        "name": _Key(
            "OrnsteinUhlenbeck", (str,), lambda v: v in SYSTEMS or is_reference(v),
            f"one of {list(SYSTEMS)} or module:Class (a dkjax.AbstractSDE subclass)",
        ),  # fmt: skip
        "parameters": numeric_table({"theta": 1.0, "sigma": 0.5}),
    },
    "initial": {
        "dim": _positive_int(1),
        "mean": _Key(
            0.0, (int, float, list), lambda v: is_number(v) or (isinstance(v, list) and all(map(is_number, v))),
            "a finite number or a list of dim finite numbers",
        ),  # fmt: skip
        "std": _positive_float(1.0),
        "spinup_time": _Key(0.0, (int, float), lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0"),
    },
    "response": {
        "observables": _Key(
            ["mean", "mean_square"], (list,),
            lambda v: len(v) > 0 and all(isinstance(o, str) and (o in OBSERVABLES or is_reference(o)) for o in v),
            f"a non-empty list of names from {list(OBSERVABLES)} or module:function",
        ),  # fmt: skip
        "t1": _positive_float(1.0),
        "num_steps": _positive_int(100),
        "num_paths": _Key(10_000, (int,), lambda v: v >= 2, "an integer >= 2"),
        "chunk_size": _positive_int(4096),
        "kernel_rate": SCHEMA["train"]["kernel_rate"],
        "mode": _choice("matrix_free", ("matrix_free", "exact")),
        "seed": _Key(0, (int,), lambda v: v >= 0, "an integer >= 0"),
        "dtype": dataclasses.replace(SCHEMA["train"]["dtype"], default="float64"),
    },
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated response run: the SDE, the initial law and the observables, nothing simulated."""

    sde: object
    mean: object
    std: float
    observables: dict[str, Callable]
    labels: list[str]


def _builtin_observable(name: str) -> Callable:
    import jax.numpy as jnp

    return {
        "mean": jnp.mean,
        "mean_square": lambda x: jnp.mean(x**2),
        "first": lambda x: x[0],
        "first_square": lambda x: x[0] ** 2,
    }[name]


def prepare(config: dict) -> Plan:
    """Validates the cross-key constraints of a response config and builds the SDE (no simulation).

    Raises:
        ConfigError: an unknown system or observable, parameters the system does not take,
            a dimension the SDE or an observable rejects, or a kernel rate above ``1 / dt``;
            the message names the key.
    """
    import jax
    import jax.numpy as jnp

    if config["response"]["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(config["response"]["dtype"])
    cfg, init = config["response"], config["initial"]
    dim = init["dim"]
    if isinstance(init["mean"], list) and len(init["mean"]) != dim:
        raise ConfigError(f"initial.mean must be a number or a list of initial.dim = {dim} numbers; got {init['mean']}.")
    rate, dt = cfg["kernel_rate"], cfg["t1"] / cfg["num_steps"]
    if rate != "auto" and rate * dt > 1:
        raise ConfigError(
            f"response.kernel_rate must be <= 1 / dt = {1 / dt:.4g} (dt = t1 / num_steps); got {rate}. "
            "Raise response.num_steps or lower the rate."
        )
    sde = build_system(
        config["system"]["name"], config["system"]["parameters"], dtype,
        name_key="system.name", parameters_key="system.parameters",
    )  # fmt: skip
    check_dimension(sde, dim, dtype, "initial.dim", config["system"]["name"])
    state = jax.ShapeDtypeStruct((dim,), dtype)
    observables = {}
    for name in cfg["observables"]:
        phi = _builtin_observable(name) if name in OBSERVABLES else resolve_reference(name, "response.observables")
        if not callable(phi):
            raise ConfigError(f"response.observables: {name} is not callable.")
        try:
            shape = jax.eval_shape(phi, state).shape
        except Exception as error:
            raise ConfigError(f"response.observables: {name} fails on a state of shape ({dim},): {error}") from error
        if shape != ():
            raise ConfigError(f"response.observables: {name} must return a scalar; it returns shape {shape}.")
        observables[name] = phi
    mean = jnp.broadcast_to(jnp.asarray(init["mean"], dtype), (dim,))
    return Plan(sde=sde, mean=mean, std=init["std"], observables=observables, labels=parameter_labels(sde))


def _initial_states(plan: Plan, config: dict, key):
    """Initial states and scores; a spin-up simulates first (unknown law, so no score)."""
    import jax.numpy as jnp
    import jax.random as jr

    from .._generative._data import GaussianInitial
    from .._engine._simulate import simulate

    cfg, spinup = config["response"], config["initial"]["spinup_time"]
    init_key, spin_key = jr.split(key)
    x0, score0 = GaussianInitial(plan.mean, plan.std)(init_key, cfg["num_paths"])
    if spinup == 0:
        return x0, score0, 0
    steps = max(1, round(spinup * cfg["num_steps"] / cfg["t1"]))
    x0 = simulate(plan.sde, x0, t1=spinup, num_steps=steps, key=spin_key)
    finite = jnp.all(jnp.isfinite(x0), axis=1)
    return x0[finite], None, int(x0.shape[0] - jnp.sum(finite))


def _pool(batches):
    """Pools independent batch estimates: path-weighted means, standard errors in quadrature."""
    import numpy as np

    counts = np.array([n for n, _, _ in batches], float)
    total = counts.sum()
    estimate = sum(n * np.asarray(m) for n, m, _ in batches) / total
    stderr = np.sqrt(sum((n * np.asarray(s)) ** 2 for n, _, s in batches)) / total
    return estimate, stderr


def _run_batches(plan: Plan, cfg: dict, x0, score0, dk_key, phi, quiet: bool):
    """``(estimates, values, num_nonfinite, kernel_rate)`` of ``observable_response`` over batches of paths."""
    import jax
    import jax.random as jr
    import numpy as np
    from .._generative._callbacks import progress_bar
    from .._response._observable import observable_response

    chunk, rate = cfg["chunk_size"], cfg["kernel_rate"]
    estimates, values, num_nonfinite = [], [], 0
    batches = progress_bar(range(math.ceil(x0.shape[0] / chunk)), desc="dkjax response", disable=quiet)
    for b in batches:
        rows = slice(b * chunk, (b + 1) * chunk)
        result = observable_response(
            plan.sde, phi, x0[rows], score0=None if score0 is None else score0[rows], t1=cfg["t1"],
            num_steps=cfg["num_steps"], key=jr.fold_in(dk_key, b), kernel_rate=rate, mode=cfg["mode"],
            chunk_size=chunk,
        )  # fmt: skip
        rate = result.kernel_rate
        flat = [np.asarray(leaf).reshape(-1, len(plan.observables)) for leaf in jax.tree.leaves(result.estimate)]
        flat_se = [np.asarray(leaf).reshape(-1, len(plan.observables)) for leaf in jax.tree.leaves(result.stderr)]
        estimates.append((result.num_paths, np.concatenate(flat), np.concatenate(flat_se)))
        values.append((result.num_paths, np.asarray(result.value), np.asarray(result.value_stderr)))
        num_nonfinite += result.num_nonfinite
    batches.close()
    return estimates, values, num_nonfinite, rate


_EXPANSION = re.compile(
    r"the matrix-free expansion of J\^-T is biased here: \|A\^T w\| / \|w\| reached ([0-9.eE+-]+) "
    r"\(above ([0-9.eE+-]+) on (\d+) paths"
)


def summarize_warnings(caught, num_paths: int) -> list[str]:
    """One line per distinct warning ``caught`` during the batches, saying what it means for the result.

    The matrix-free expansion warning (one per batch) is pooled: the largest ratio, the paths
    it concerns out of ``num_paths``, and how to check the estimates. Other warnings are kept
    once each, with the number of batches that raised them.
    """
    expansion = [m.groups() for w in caught if (m := _EXPANSION.search(str(w.message)))]
    notes = []
    if expansion:
        ratio, bound = max(float(r) for r, _, _ in expansion), expansion[0][1]
        paths = sum(int(n) for _, _, n in expansion)
        share = paths / max(num_paths, 1)
        notes.append(
            f"the matrix-free expansion of J^-T was biased on {paths} of {num_paths} paths ({share:.2%}): there "
            f"|A^T w| / |w| (A = J - I, one Euler step's Jacobian less the identity) reached up to {ratio:.3g}, above "
            f"{bound}, and each step's truncation error is about that ratio to the power order + 1. "
            + (
                "The other paths are unaffected, so unless these few carry extreme weights the bias is far below "
                "the standard errors. To check, rerun"
                if share < 0.01
                else "That is a sizeable share of the paths: the estimates may be biased. Rerun"
            )
            + " with --set response.mode=exact (d x d Jacobians) or a larger response.num_steps and compare "
            "within the standard errors."
        )
    others = {}
    for w in caught:
        if not _EXPANSION.search(str(w.message)):
            key = f"{w.category.__name__}: {w.message}"
            others[key] = others.get(key, 0) + 1
    notes += [f"{text} (raised {count} time(s))" if count > 1 else text for text, count in others.items()]
    return notes


def run(config: dict, plan: Plan, run_dir: Path, quiet: bool) -> dict:
    """Estimates every observable's response to every parameter; writes results.json and response.png.

    Paths run in batches of ``response.chunk_size`` (batch ``b`` uses ``fold_in(key, b)``), so a
    progress bar can follow long runs; batch estimates are pooled by path count.
    """
    import jax.numpy as jnp
    import jax.random as jr

    cfg = config["response"]
    started = time.perf_counter()
    init_key, dk_key = jr.split(jr.key(cfg["seed"]))
    x0, score0, spinup_lost = _initial_states(plan, config, init_key)
    if x0.shape[0] < 2:
        raise FloatingPointError(
            f"the spin-up left {x0.shape[0]} finite paths of {cfg['num_paths']}; lower initial.spinup_time or "
            "raise response.num_steps."
        )
    names = list(plan.observables)
    phis = list(plan.observables.values())

    def phi(x):
        return jnp.stack([f(x) for f in phis])

    with warnings.catch_warnings(record=True) as caught:  # reported once each after the progress bar
        warnings.simplefilter("always")
        estimates, values, num_nonfinite, rate = _run_batches(plan, cfg, x0, score0, dk_key, phi, quiet)
    notes = summarize_warnings(caught, sum(n for n, _, _ in estimates))
    for note in notes:
        print(f"dkjax response: warning: {note}", file=sys.stderr)
    estimate, stderr = _pool(estimates)
    value, value_stderr = _pool(values)
    num_paths = sum(n for n, _, _ in estimates)
    results = {
        "system": config["system"]["name"],
        "t1": cfg["t1"],
        "kernel_rate": float(rate),
        "num_paths": int(num_paths),
        "num_nonfinite": int(num_nonfinite),
        "num_nonfinite_spinup": spinup_lost,
        "seconds": time.perf_counter() - started,
        "warnings": notes,
        "observables": {
            name: {
                "value": float(value[j]),
                "value_stderr": float(value_stderr[j]),
                "response": {
                    label: {"estimate": float(estimate[i, j]), "stderr": float(stderr[i, j])}
                    for i, label in enumerate(plan.labels)
                },
            }
            for j, name in enumerate(names)
        },
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, run_dir / "response.png")
    if not quiet:
        print(format_table(results))
    return results


def format_table(results: dict) -> str:
    """The results as a text table: one row per observable and parameter, estimate +- standard error."""
    rows = [f"{'observable':16s} {'E[phi]':>22s}   {'parameter':14s} {'d/dparam E[phi]':>24s}"]
    for name, entry in results["observables"].items():
        value = f"{entry['value']:.5g} +- {entry['value_stderr']:.2g}"
        for i, (label, r) in enumerate(entry["response"].items()):
            rows.append(
                f"{name if i == 0 else '':16s} {value if i == 0 else '':>22s}   {label:14s} "
                f"{r['estimate']:>12.5g} +- {r['stderr']:<9.2g}"
            )
    return "\n".join(rows)


def _plot(results: dict, path: Path) -> None:
    from .._plotting import can_plot, pyplot

    if not can_plot(f"the figure {path.name}"):
        return
    plt = pyplot()
    entries = results["observables"]
    fig, axes = plt.subplots(1, len(entries), figsize=(4 * len(entries), 3.2), squeeze=False)
    for ax, (name, entry) in zip(axes[0], entries.items()):
        labels = list(entry["response"])
        ax.errorbar(
            [entry["response"][k]["estimate"] for k in labels], range(len(labels)),
            xerr=[2 * entry["response"][k]["stderr"] for k in labels], fmt="o", capsize=3,
        )  # fmt: skip
        ax.axvline(0.0, color="0.7", lw=0.8)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_title(f"d/dparam E[{name}]")
    fig.suptitle(f"{results['system']}, T = {results['t1']}, {results['num_paths']} paths (bars: 2 s.e.)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

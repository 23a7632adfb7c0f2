"""Writes docs/bad_input.md: for each bad input, the error a user actually sees.

    python docs/gen_bad_input.py

Every row is produced by calling the public function (or the command line) with that input
and recording the exception's type and message, so the table cannot drift from the code.
A row whose call does not raise fails the script.
"""

import contextlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import dkjax  # noqa: E402
from dkjax._cli._main import main as cli  # noqa: E402

OUT = Path(__file__).resolve().parent / "bad_input.md"
OU = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
GOOD = dict(t1=1.0, num_steps=10, key=jr.key(0))
X0 = jnp.zeros((8, 1))


class NarrowNoise(dkjax.AbstractSDE):
    """Two states driven by one Brownian motion: Sigma = sigma sigma^T is singular."""

    s: jax.Array

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return self.s * jnp.ones((2, 1))


class Exploding(dkjax.AbstractSDE):
    """dx = x^3 dt: paths from x0 = 3 reach infinity before t = 1."""

    rate: jax.Array

    def drift(self, t, x):
        return self.rate * x**3

    def diffusion(self, t, x):
        return 0.1 * jnp.ones_like(x)


def dk(**changes):
    args = dict(sde=OU, x0=X0, **GOOD)
    args.update(changes)
    return lambda: dkjax.divergence_kernel(args.pop("sde"), args.pop("x0"), **args)


def warned(call):
    """Records the first warning ``call`` emits as if it were raised."""

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            call()

    return run


def cli_call(*argv):
    def run():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli(list(argv))
            except SystemExit as exit_:
                status = exit_.code
        message = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
        raise SystemExit(f"exit status {status}: {message}")

    return run


def data_file(tmp: Path, name: str, contents) -> str:
    """A data file for ``dkjax train --set data.path=...``."""
    path = tmp / name
    if isinstance(contents, str):
        path.write_text(contents)
    else:
        np.save(path, contents)
    return str(path)


def train_run(tmp: Path) -> Path:
    """A finished-looking ``dkjax train`` run folder: its config and an (untrained) model.eqx."""
    from dkjax._cli._config import applicable, dump_config, train_config

    run = tmp / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_config(applicable(train_config(None, ["train.steps=300"]))))
    sde = dkjax.NeuralSDE(2, key=jr.key(0), width=8, depth=1)
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    model = dkjax.GenerativeModel(sde, initial, dkjax.DataScaling.identity(2), 0.0, 1.0, 50)
    dkjax.save_model(run / "model.eqx", model)
    return run


def response_run(tmp: Path) -> Path:
    run = tmp / "response_run"
    run.mkdir()
    (run / "config.toml").write_text('[system]\nname = "OrnsteinUhlenbeck"\n[response]\nt1 = 1.0\n')
    return run


def train_with_file(tmp: Path, path: str, *more):
    return cli_call("train", "--set", f"data.path={json.dumps(path)}", *more, "--out", str(tmp / "r"))


def snapshot_file(tmp: Path, name: str, contents) -> str:
    """A snapshot file: CSV text, or ``{array name: rows}`` for an ``.npz``."""
    path = tmp / name
    if isinstance(contents, str):
        path.write_text(contents)
    else:
        np.savez(path, **contents)
    return str(path)


def timed_csv(times) -> str:
    """A CSV with a ``day`` column holding ``times`` (one row each) and two state columns."""
    return "day,x,y\n" + "".join(f"{time},{i},{i % 3}\n" for i, time in enumerate(times))


def snapshot_cases(tmp: Path):
    rows = np.random.default_rng(0).normal(size=(40, 2))
    day = ("--set", "data.time_column=day")
    return [
        ("dkjax train", "snapshots: data.time_column not in the CSV's header",
         train_with_file(tmp, snapshot_file(tmp, "no_day.csv", timed_csv([0, 1] * 20).replace("day", "date")), *day)),
        ("dkjax train", "snapshots: a time that is not a number",
         train_with_file(tmp, snapshot_file(tmp, "text_day.csv", timed_csv(["d1", "d2"] * 20)), *day)),
        ("dkjax train", "snapshots: a time with a single row",
         train_with_file(tmp, snapshot_file(tmp, "single.csv", timed_csv([0, 1] * 20 + [2])), *day)),
        ("dkjax train", "snapshots: a time off the step grid",
         train_with_file(tmp, snapshot_file(tmp, "off_grid.npz", {"t0": rows, "t0.33": rows, "t1": rows}))),
        ("dkjax train", "snapshots: a time before 0",
         train_with_file(tmp, snapshot_file(tmp, "negative.npz", {"t-0.5": rows, "t1": rows}))),
        ("dkjax train", "snapshots: an .npz array whose name holds no time",
         train_with_file(tmp, snapshot_file(tmp, "unnamed.npz", {"cells": rows}))),
        ("dkjax train", "snapshots: .npz arrays of different widths",
         train_with_file(tmp, snapshot_file(tmp, "widths.npz", {"t0.5": rows, "t1": np.ones((40, 3))}))),
        ("dkjax train", "snapshots: a time column in a .npy file",
         train_with_file(tmp, data_file(tmp, "rows.npy", rows), *day)),
    ]


def cases(tmp: Path):
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("[train]\nstep = 10\n")
    run, response = train_run(tmp), response_run(tmp)
    good_csv = data_file(tmp, "good.csv", "x,y\n" + "".join(f"{i},{i % 7}\n" for i in range(40)))
    data = dkjax.toy_data("two_moons", jr.key(0), 64)
    model = dkjax.NeuralSDE(2, key=jr.key(1), width=8, depth=1)
    initial = dkjax.GaussianInitial(jnp.zeros(2), 1.0)
    fit_args = dict(t1=1.0, num_steps=10, key=jr.key(2), steps=2, progress=False)
    return [
        ("divergence_kernel", "x0 of shape (d,) instead of (num_paths, d)", dk(x0=jnp.zeros(3))),
        ("divergence_kernel", "integer x0", dk(x0=jnp.zeros((4, 1), int))),
        ("divergence_kernel", "x0 with a NaN", dk(x0=X0.at[0, 0].set(jnp.nan))),
        ("divergence_kernel", "x0 whose dimension the SDE does not accept",
         dk(sde=dkjax.LinearSDE(-jnp.eye(3), jnp.eye(3)), x0=jnp.zeros((4, 2)))),
        ("divergence_kernel", "num_steps=0", dk(num_steps=0)),
        ("divergence_kernel", "num_steps=2.5", dk(num_steps=2.5)),
        ("divergence_kernel", "t1 <= t0", dk(t1=0.0)),
        ("divergence_kernel", "key=0 (an int, not a PRNG key)", dk(key=0)),
        ("divergence_kernel", "kernel_rate=-1", dk(kernel_rate=-1.0)),
        ("divergence_kernel", "kernel_rate * dt > 1", dk(kernel_rate=100.0)),
        ("divergence_kernel", "kernel_rate='fast'", dk(kernel_rate="fast")),
        ("divergence_kernel", "mode='dense'", dk(mode="dense")),
        ("divergence_kernel", "score0 of the wrong shape", dk(score0=jnp.zeros((3, 1)))),
        ("divergence_kernel", "sde not an AbstractSDE", dk(sde=lambda t, x: -x)),
        ("divergence_kernel", "fewer noise than state dimensions (singular Sigma)",
         dk(sde=NarrowNoise(jnp.asarray(0.5)), x0=jnp.zeros((4, 2)))),
        ("divergence_kernel", "on_nonfinite='raise' and paths blow up",
         dk(sde=Exploding(jnp.asarray(1.0)), x0=jnp.full((4, 1), 3.0), num_steps=50, on_nonfinite="raise")),
        ("divergence_kernel", "paths blow up (default on_nonfinite='warn'; a RuntimeWarning)",
         warned(dk(sde=Exploding(jnp.asarray(1.0)), x0=jnp.full((4, 1), 3.0), num_steps=50))),
        ("simulate", "a save time off the step grid",
         lambda: dkjax.simulate(OU, X0, t1=1.0, num_steps=10, key=jr.key(0), save_at=dkjax.SaveAt(ts=[0.33]))),
        ("SaveAt", "save times not increasing", lambda: dkjax.SaveAt(ts=[1.0, 0.5])),
        ("observable_response", "phi not callable",
         lambda: dkjax.observable_response(OU, 3.0, X0, **GOOD)),
        ("observable_response", "a sampler x0 without num_paths",
         lambda: dkjax.observable_response(OU, jnp.sum, initial, **GOOD)),
        ("observable_response", "phi non-finite on reached states",
         lambda: dkjax.observable_response(OU, lambda x: jnp.log(x[0] - 10.0), X0, **GOOD)),
        ("observable_response", "chunk_size=0", lambda: dkjax.observable_response(OU, jnp.sum, X0, chunk_size=0, **GOOD)),
        ("fit", "data of another dimension than the model",
         lambda: dkjax.fit(model, jnp.zeros((16, 3)), initial, **fit_args)),
        ("fit", "data with a NaN", lambda: dkjax.fit(model, data.at[0, 0].set(jnp.nan), initial, **fit_args)),
        ("fit", "objective='mmd'", lambda: dkjax.fit(model, data, initial, objective="mmd", **fit_args)),
        ("fit", "bandwidth=0", lambda: dkjax.fit(model, data, initial, bandwidth=0.0, **fit_args)),
        ("fit", "resume without checkpoint_dir", lambda: dkjax.fit(model, data, initial, resume=True, **fit_args)),
        ("fit", "path_chunk with gradient='per_path'",
         lambda: dkjax.fit(model, data, initial, path_chunk=64, gradient="per_path", **fit_args)),
        ("toy_data", "an unknown data set", lambda: dkjax.toy_data("mnist", jr.key(0), 10)),
        ("GaussianInitial", "std <= 0", lambda: dkjax.GaussianInitial(jnp.zeros(2), -1.0)),
        ("GaussianInitial", "mean with a NaN", lambda: dkjax.GaussianInitial(jnp.array([0.0, jnp.nan]), 1.0)),
        ("LinearSDE", "A not square", lambda: dkjax.LinearSDE(A=jnp.zeros((2, 3)), S=jnp.eye(2))),
        ("dkjax train", "unknown config key", cli_call("train", "--config", str(bad_toml), "--out", str(tmp / "r"))),
        ("dkjax train", "--set with a bad value", cli_call("train", "--set", "train.steps=0", "--out", str(tmp / "r"))),
        ("dkjax train", "missing config file", cli_call("train", "--config", str(tmp / "absent.toml"))),
        ("dkjax response", "unknown system", cli_call("response", "--set", "system.name=Duffing")),
        ("dkjax response", "user class that cannot be imported",
         cli_call("response", "--set", "system.name=my_sdes:Duffing")),
        ("dkjax response", "a parameter the system does not take",
         cli_call("response", "--set", "system.parameters={ speed = 1.0 }")),
        ("dkjax response", "kernel rate above 1 / dt", cli_call("response", "--set", "response.kernel_rate=1000.0")),
        ("dkjax train", "data file that does not exist", train_with_file(tmp, str(tmp / "absent.csv"))),
        ("dkjax train", "empty data file", train_with_file(tmp, data_file(tmp, "empty.csv", ""))),
        ("dkjax train", "data file of one row", train_with_file(tmp, data_file(tmp, "one.csv", "x,y\n1,2\n"))),
        ("dkjax train", "a field that is not a number",
         train_with_file(tmp, data_file(tmp, "text.csv", "x,y\n1,2\n3,n/a\n"))),
        ("dkjax train", "NaN in a CSV", train_with_file(tmp, data_file(tmp, "nan.csv", "x,y\n1,2\n3,4\nnan,5\n"))),
        ("dkjax train", "inf in a .npy array",
         train_with_file(tmp, data_file(tmp, "inf.npy", np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 4.0]])))),
        ("dkjax train", "rows of different lengths",
         train_with_file(tmp, data_file(tmp, "ragged.csv", "1,2\n3,4,5\n"))),
        ("dkjax train", "a .npy array of one dimension",
         train_with_file(tmp, data_file(tmp, "vector.npy", np.ones(10)))),
        ("dkjax train", "a column count the SDE class does not accept",
         train_with_file(tmp, good_csv, "--set", "model.name=LinearSDE",
                         "--set", "model.parameters={ A = [[-1.0]], S = [[1.0]] }")),
        ("dkjax train", "a constant column (cannot be standardised)",
         train_with_file(tmp, data_file(tmp, "constant.csv", "".join(f"{i},1\n" for i in range(40))))),
        ("dkjax train", "too few rows for the held-out split",
         train_with_file(tmp, data_file(tmp, "five.csv", "".join(f"{i},{-i}\n" for i in range(5))))),
        ("dkjax train", "--resume with settings that contradict the checkpoints",
         cli_call("train", "--resume", str(run), "--set", "train.steps=10", "--set", "model.width=16")),
        ("dkjax train", "--resume on a dkjax response run", cli_call("train", "--resume", str(response))),
        ("dkjax sample", "a folder that is not a run",
         cli_call("sample", "--run", str(tmp), "--num", "5", "--out", "x.npy")),
        ("dkjax sample", "a dkjax response run",
         cli_call("sample", "--run", str(response), "--num", "5", "--out", "x.npy")),
        ("dkjax sample", "--time off the model's time grid",
         cli_call("sample", "--run", str(run), "--num", "5", "--out", str(tmp / "x.npy"), "--time", "0.33")),
        *snapshot_cases(tmp),
    ]


def outcome(call) -> str:
    try:
        call()
    except SystemExit as exit_:
        return str(exit_)
    except Exception as error:  # every documented error type is recorded as it is
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


def main() -> int:
    rows, wrote = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for where, case, call in cases(Path(tmp)):
            rows.append((where, case, outcome(call)))
            if (Path(tmp) / "r").exists():  # the run folder of the train cases: an error must come first
                wrote.append(f"{where}: {case}")
        rows = [(where, case, error and error.replace(tmp, "/tmp/example")) for where, case, error in rows]
    silent = [f"{where}: {case}" for where, case, error in rows if error is None]
    if silent or wrote:
        print("these calls did not raise:\n  " + "\n  ".join(silent), file=sys.stderr)
        print("these calls wrote a run folder:\n  " + "\n  ".join(wrote), file=sys.stderr)
        return 1
    lines = [
        "# Bad input and the errors it gives",
        "",
        "Generated by `python docs/gen_bad_input.py`, which makes each call and records what it raises;",
        "do not edit by hand. Argument and configuration checks run before any simulation or training;",
        "paths that blow up are reported after the run (a warning, or an error on request). Command-line",
        "errors exit with status 2 (usage) or 1 (a run that stopped), with the message on stderr.",
        "",
        "| where | input | error |",
        "|---|---|---|",
    ]
    for where, case, error in rows:
        error = error.replace("|", "\\|")
        lines.append(f"| `{where}` | {case} | `{error}` |")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

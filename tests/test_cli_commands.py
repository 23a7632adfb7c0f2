"""``dkjax response``, ``--version`` and the benchmark suite's entry point: results against an exact
reference, user systems, help, and configuration errors raised before any work."""

import json
import re
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkjax
from dkjax._cli._main import main
from dkjax._cli._config import resolve_reference

ROOT = Path(__file__).resolve().parent.parent

OU = """
[run]
name = "ou"
[system]
name = "OrnsteinUhlenbeck"
parameters = {{ theta = {theta}, sigma = 0.5, mean = [0.0, 0.0] }}
[initial]
dim = 2
mean = [1.0, -1.0]
std = 0.3
[response]
observables = ["first", "mean_square"]
t1 = 0.5
num_steps = 10
num_paths = 3000
chunk_size = 1000
kernel_rate = 1.0
"""

USER_MODULE = '''
import jax.numpy as jnp
import dkjax


class Damped(dkjax.AbstractSDE):
    rate: object
    noise: object

    def __init__(self, rate, noise):
        self.rate, self.noise = rate, noise

    def drift(self, t, x):
        return -self.rate * x

    def diffusion(self, t, x):
        n = x.shape[0]
        return self.noise * jnp.concatenate([jnp.eye(n), jnp.ones((n, 1))], axis=1)


def last(x):
    return x[-1]


not_a_class = 3
'''


def _run(args, tmp_path):
    run = tmp_path / "run"
    return main(["response", *args, "--out", str(run)]), run


def test_response_matches_exact_ou_derivative(tmp_path, capsys):
    theta = 1.5
    config = tmp_path / "ou.toml"
    config.write_text(OU.format(theta=theta))
    status, run = _run(["--config", str(config)], tmp_path)
    assert status == 0
    out = capsys.readouterr().out
    assert "d/dparam E[phi]" in out and f"run folder {run}" in out.splitlines()[-1]
    for name in ("config.toml", "results.json", "response.png"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["num_paths"] == 3000 and results["num_nonfinite"] == 0
    first = results["observables"]["first"]
    # Euler-Maruyama chain: E[X_T,0] = mu_0 + (m_0 - mu_0) (1 - theta dt)^n, so d/dmu_0 = 1 - (1 - theta dt)^n.
    decay = (1 - theta * 0.05) ** 10
    exact = {"mean[0]": 1 - decay, "mean[1]": 0.0, "theta": -0.05 * 10 * (1 - theta * 0.05) ** 9 * 1.0}
    for label, value in exact.items():
        r = first["response"][label]
        assert 0 < r["stderr"] < 0.1 and abs(r["estimate"] - value) < 5 * r["stderr"], (label, r, value)
    assert abs(first["value"] - decay) < 5 * first["value_stderr"]
    assert set(results["observables"]["mean_square"]["response"]) == {"theta", "sigma", "mean[0]", "mean[1]"}


def test_response_reruns_are_bit_identical(tmp_path):
    config = tmp_path / "ou.toml"
    config.write_text(OU.format(theta=1.0))
    runs = []
    for name in ("a", "b"):
        assert main(["response", "--config", str(config), "--set", "response.num_paths=400", "--set",
                     "response.chunk_size=200", "--out", str(tmp_path / name), "--quiet"]) == 0  # fmt: skip
        results = json.loads((tmp_path / name / "results.json").read_text())
        results.pop("seconds")
        runs.append(results)
    assert runs[0] == runs[1]


def test_response_user_system_and_observable_from_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "user_sdes.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    args = ["--set", "system.name=user_sdes.py:Damped", "--set", "system.parameters={ rate = 1.0, noise = 0.3 }",
            "--set", "initial.dim=3", "--set", 'response.observables=["user_sdes.py:last", "mean"]',
            "--set", "response.num_paths=200", "--set", "response.num_steps=5", "--quiet"]  # fmt: skip
    status, run = _run(args, tmp_path)
    assert status == 0
    out = capsys.readouterr().out
    assert "d/dparam" not in out and len(out.strip().splitlines()) == 1 and "run folder" in out
    results = json.loads((run / "results.json").read_text())
    assert list(results["observables"]) == ["user_sdes.py:last", "mean"]
    for entry in results["observables"].values():
        assert set(entry["response"]) == {"rate", "noise"}
        assert all(np.isfinite(r["estimate"]) and np.isfinite(r["stderr"]) for r in entry["response"].values())


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["system.name=Duffing"], "system.name must be one of ['OrnsteinUhlenbeck'"),
        (["system.name=no_such_module_xyz:Thing"], "system.name: cannot import 'no_such_module_xyz'"),
        (["system.name=missing_file.py:Thing"], "system.name: the file missing_file.py does not exist"),
        (["system.name=user_sdes.py:Nothing"], "system.name: 'user_sdes.py' has no attribute 'Nothing'"),
        (["system.name=user_sdes.py:not_a_class"], "is not a dkjax.AbstractSDE subclass"),
        (["system.parameters={ theta = 1.0, speed = 2.0 }"], "system.parameters: OrnsteinUhlenbeck has no parameter ['speed']"),
        (['system.parameters={ theta = "fast" }'], "system.parameters must be a table of finite numbers"),
        (["system.name=LinearSDE", "system.parameters={ A = [[-1.0, 0.0], [0.0, -1.0]], S = [[1.0, 0.0], [0.0, 1.0]] }",
          "initial.dim=3"], "initial.dim = 3 does not fit LinearSDE"),
        (["initial.dim=2", "initial.mean=[0.0, 1.0, 2.0]"], "initial.mean must be a number or a list of initial.dim = 2"),
        (['response.observables=["median"]'], "response.observables must be a non-empty list of names from"),
        (['response.observables=["user_sdes.py:Damped"]'], "response.observables: user_sdes.py:Damped fails"),
        (["response.kernel_rate=500.0"], "response.kernel_rate must be <= 1 / dt = 100"),
        (["response.mode=dense"], "response.mode must be one of ['matrix_free', 'exact']"),
        (["response.num_paths=1"], "response.num_paths must be an integer >= 2"),
        (["train.steps=3"], "unknown section [train]"),
        (["response.paths=3"], "unknown key response.paths"),
    ],
)
def test_response_config_errors_before_any_work(tmp_path, capsys, monkeypatch, overrides, match):
    (tmp_path / "user_sdes.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    args = [arg for override in overrides for arg in ("--set", override)]
    with pytest.raises(SystemExit) as exit_info:
        _run(args + ["--quiet"], tmp_path)
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_shipped_configs_are_valid(monkeypatch):
    from dkjax._cli import _response_command as command
    from dkjax._cli._run_setup import _plan
    from dkjax._cli._config import load_config, train_config

    monkeypatch.chdir(ROOT)  # the training configs name example classes by path
    config = load_config("configs/lorenz96_response.toml", schema=command.RESPONSE_SCHEMA)
    plan = command.prepare(config)
    assert plan.labels == ["forcing", "noise"] and list(plan.observables) == ["mean", "mean_square"]
    for name, dim in (("two_moons", 2), ("ou_recovery", 1), ("lorenz96_dksde", 20), ("snapshots_double_well", 2)):
        assert _plan(train_config(f"configs/{name}.toml")).dim == dim


def test_shipped_snapshot_config_runs_as_written(tmp_path, monkeypatch, capsys):
    """configs/snapshots_double_well.toml, run from the repository root at tiny size: every shipped
    time is fitted, eval.json and snapshots.png are written, and sample --time reads the run."""
    monkeypatch.chdir(ROOT)
    tiny = ["train.steps=2", "train.num_paths=16", "train.batch_size=16", "train.num_steps=12", "eval.num_samples=16",
            "train.validation_fraction=0", "model.width=8", "model.depth=1"]  # fmt: skip
    run = tmp_path / "run"
    args = ["train", "--config", "configs/snapshots_double_well.toml", "--out", str(run), "--quiet"]
    assert main(args + [arg for override in tiny for arg in ("--set", override)]) == 0
    metrics = json.loads((run / "eval.json").read_text())
    assert set(metrics["times"]) == {"0.25", "0.5", "1.0", "1.5"}  # t = 0 is the initial law, not a target
    assert np.isfinite(metrics["energy_distance"]) and (run / "snapshots.png").stat().st_size > 0
    # sample --time draws the law at a grid time, and names the flag for one off the grid.
    samples = tmp_path / "s.npy"
    assert main(["sample", "--run", str(run), "--num", "5", "--out", str(samples), "--time", "0.5"]) == 0
    assert np.load(samples).shape == (5, 2)
    with pytest.raises(SystemExit):
        main(["sample", "--run", str(run), "--num", "5", "--out", str(samples), "--time", "0.55"])
    assert "--time" in capsys.readouterr().err


SIMULATED = """
[data]
name = "simulated"
system = "OrnsteinUhlenbeck"
parameters = { theta = 1.5, sigma = 0.8 }
dim = 1
num_steps = 10
num_points = 64
heldout_points = 64
[model]
name = "user_sdes.py:Damped"
parameters = { rate = 0.5, noise = 0.3 }
initial_mean = 1.0
initial_std = 0.2
[train]
steps = 3
num_steps = 10
num_paths = 32
batch_size = 32
kernel_rate = 2.0
objective = "energy"
dtype = "float64"
# No model selection: three steps cannot beat the start beyond the held-out noise, and the test reads
# the trained parameters back.
validation_fraction = 0
[eval]
num_samples = 64
"""


def test_train_a_user_sde_on_simulated_data(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_sdes.py").write_text(USER_MODULE)
    (tmp_path / "sim.toml").write_text(SIMULATED)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "sim.toml", "--out", "run", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(metrics["parameters"]) == {"rate", "noise"}
    assert metrics["parameters"]["rate"] != 0.5 and np.isfinite(metrics["energy_distance"])
    assert not (tmp_path / "run" / "samples.png").exists()  # no scatter for 1-D data
    # An SDE class is rebuilt from the run's config to load model.eqx; its data are not standardised.
    assert main(["sample", "--run", "run", "--num", "7", "--out", "s.npy"]) == 0
    damped = resolve_reference("user_sdes.py:Damped", "model.name")
    model = dkjax.load_model("run/model.eqx", like=damped(jnp.asarray(0.0), jnp.asarray(0.0)))
    np.testing.assert_array_equal(np.load("s.npy"), model.sample(7, key=jax.random.key(0)))
    assert float(model.sde.rate) == metrics["parameters"]["rate"] and float(model.scaling.scale[0]) == 1.0


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.name=Nope"], "model.name must be \"neural\""),
        (["model.name=user_sdes.py:Missing"], "model.name: 'user_sdes.py' has no attribute 'Missing'"),
        (["model.parameters={ speed = 1.0 }"], "model.parameters: Damped has no parameter ['speed']"),
        (["data.parameters={ theta = [1.0, 2.0] }", "data.dim=3"], "data.parameters: OrnsteinUhlenbeck"),
        (["data.system=LinearSDE", "data.parameters={ A = [[-1.0]], S = [[1.0]] }", "data.dim=2"],
         "data.dim = 2 does not fit LinearSDE"),
        (["data.name=mnist"], "data.name must be one of"),
    ],
)
def test_train_model_and_data_errors_before_any_work(tmp_path, monkeypatch, capsys, overrides, match):
    (tmp_path / "user_sdes.py").write_text(USER_MODULE)
    (tmp_path / "sim.toml").write_text(SIMULATED)
    monkeypatch.chdir(tmp_path)
    args = ["train", "--config", "sim.toml", "--out", "run", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + [arg for override in overrides for arg in ("--set", override)])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


DUFFING = """
import jax, jax.numpy as jnp, dkjax

class Duffing(dkjax.AbstractSDE):
    a: jax.Array
    s: jax.Array
    def __init__(self, a, s):
        self.a, self.s = a, s
    def drift(self, t, x):
        return self.a * x - x**3
    def diffusion(self, t, x):
        return self.s * jnp.ones_like(x)
"""


def test_response_reports_the_matrix_free_warning_once_after_the_batches(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_sdes.py").write_text(DUFFING)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [
        "system.name=my_sdes:Duffing", "system.parameters={ a = 1.0, s = 0.5 }", "initial.dim=1",
        "initial.std=1.5", "response.num_steps=10", "response.num_paths=200", "response.chunk_size=100",
        "response.kernel_rate=2.0", 'response.observables=["mean_square"]',
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # none escapes into the progress bar
        status, run = _run([arg for o in overrides for arg in ("--set", o)], tmp_path)
    assert status == 0
    err = capsys.readouterr().err
    assert err.count("matrix-free expansion of J^-T was biased on") == 1 and "response.mode=exact" in err
    notes = json.loads((run / "results.json").read_text())["warnings"]
    assert len(notes) == 1 and " of 200 paths" in notes[0]


def test_response_warning_summary_pools_batches_and_judges_the_share_of_paths():
    from dkjax._cli._response_command import summarize_warnings

    text = "the matrix-free expansion of J^-T is biased here: |A^T w| / |w| reached {} (above 0.3 on {} paths"
    caught = [
        warnings.WarningMessage(text.format(0.48, 7), RuntimeWarning, "f.py", 1),
        warnings.WarningMessage(text.format(0.65, 5), RuntimeWarning, "f.py", 1),
        warnings.WarningMessage("other", UserWarning, "f.py", 1),
        warnings.WarningMessage("other", UserWarning, "f.py", 1),
    ]  # fmt: skip
    few, other = summarize_warnings(caught, 10000)
    assert "biased on 12 of 10000 paths (0.12%)" in few and "up to 0.65" in few and "far below" in few
    assert other == "UserWarning: other (raised 2 time(s))"
    many = summarize_warnings(caught[:2], 100)[0]
    assert "12 of 100 paths" in many and "may be biased" in many and "far below" not in many


@pytest.mark.parametrize("command", ["train", "sample", "response"])
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"dkjax {command}" in out.split("examples:")[1]


def test_the_package_has_no_bench_subcommand_and_the_readme_suite_command_runs(capsys):
    import subprocess

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--suite", "quick"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
    docs = "".join(path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    assert "dkjax bench" not in docs and "python -m benchmarks.run --suite quick" in docs
    assert not re.search(r"`bench` (sub)?command|bench subcommand", docs)  # the `bench` extra is another thing
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--suite" in done.stdout and "issue" not in done.stdout


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dkjax {dkjax.__version__}"


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"t0": 0, "t0.33": 0, "t1": 0}, "time 0.33 is not on the step grid"),
        ({"t-0.5": 0, "t1": 0}, "time -0.5 lies outside"),
    ],
)
def test_snapshot_times_off_the_grid_are_refused_before_any_work(tmp_path, capsys, arrays, match):
    rows = np.random.default_rng(0).normal(size=(40, 2))
    np.savez(tmp_path / "snapshots.npz", **{name: rows for name in arrays})
    args = ["train", "--set", f"data.path={json.dumps(str(tmp_path / 'snapshots.npz'))}", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "train.num_steps = 50" in err and not (tmp_path / "r").exists()

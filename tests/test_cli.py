"""The dkjax command line: train, resume, sample, a user's data file, and errors before any work."""

import dataclasses
import json
import re
import shutil
import tomllib
from pathlib import Path

import jax.random as jr
import numpy as np
import pytest

import dkjax
import dkjax._generative._state
import dkjax._generative._train
from dkjax._cli._main import main
from dkjax._cli._config import applicable, defaults, dump_config, train_config
from dkjax._cli._train_command import path_schedule_setting
from dkjax._generative._plots import loss_figure, samples_figure
from helpers import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent
# Two moons in odd units: millimetres around a metre, and a small charge around -3.
LOC, SCALE = np.array([1000.0, -3.0]), np.array([50.0, 0.02])
FAST = "validate_every = 2\nvalidation_samples = 64\nkernel_rate = 2.0"


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_train_config(extra_train=FAST))
    return path


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    """A finished 4-step run on a CSV file (header row) in odd units; returns (run folder, the file's rows)."""
    folder = tmp_path_factory.mktemp("odd")
    rows = np.asarray(dkjax.toy_data("two_moons", jr.key(0), 400), np.float64) * SCALE + LOC
    csv = folder / "odd.csv"
    csv.write_text("length_mm,charge\n" + "".join(f"{a!r},{b!r}\n" for a, b in rows.tolist()))
    (folder / "tiny.toml").write_text(tiny_train_config(extra_train=FAST))
    run = folder / "run"
    args = ["train", "--config", str(folder / "tiny.toml"), "--set", f"data.path={json.dumps(str(csv))}",
            "--out", str(run), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return run, rows


def test_train_writes_run_folder_and_sample_reads_it(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--out", str(run), "--quiet"]) == 0
    assert str(run) in capsys.readouterr().out
    for name in ("config.toml", "model.eqx", "metrics.jsonl", "eval.json", "samples.png", "loss.png",
                 "checkpoints/latest.json"):  # fmt: skip
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3] and all(np.isfinite(r["loss"]) for r in records)
    metrics = json.loads((run / "eval.json").read_text())
    assert {"energy_distance", "sliced_wasserstein", "heldout_nll", "selected_step"} <= set(metrics)
    # A toy-data run's config holds no keys of simulated or file data.
    data = tomllib.loads((run / "config.toml").read_text())["data"]
    assert data["name"] == "two_moons" and not {"path", "system", "dim", "num_steps", "heldout_fraction"} & set(data)
    out = tmp_path / "samples.npy"
    assert main(["sample", "--run", str(run), "--num", "10", "--out", str(out)]) == 0
    xs = np.load(out)
    assert xs.shape == (10, 2) and np.all(np.isfinite(xs))
    # The command line and Python load the same model and draw the same samples.
    np.testing.assert_array_equal(xs, dkjax.load_model(run / "model.eqx").sample(10, key=jr.key(0)))


@pytest.mark.slow  # fit's own resume is bit-identical in the quick suite (test_train.py)
def test_resume_continues_exactly(tiny_config, tmp_path, monkeypatch, capsys):
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", "--config", str(tiny_config), "--out", str(full), "--quiet"]) == 0

    save = dkjax._generative._state.save_checkpoint

    def save_then_crash(directory, step, *args, **kwargs):
        save(directory, step, *args, **kwargs)
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(dkjax._generative._state, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--config", str(tiny_config), "--out", str(split), "--quiet"])
    monkeypatch.setattr(dkjax._generative._state, "save_checkpoint", save)
    assert json.loads((split / "checkpoints/latest.json").read_text())["step"] == 2
    assert "has no model.eqx, so its training has not finished" in _error(
        capsys, ["sample", "--run", str(split), "--num", "5", "--out", str(tmp_path / "x.npy")]
    )
    capsys.readouterr()
    assert main(["train", "--resume", str(split), "--quiet"]) == 0
    assert "finished 4 steps (resumed from step 2)" in capsys.readouterr().out
    for name in ("checkpoints/step_00000004.eqx", "model.eqx"):
        assert (full / name).read_bytes() == (split / name).read_bytes(), name
    assert (full / "metrics.jsonl").read_text().count("\n") == (split / "metrics.jsonl").read_text().count("\n") == 4


def test_a_binary_column_comes_out_binary_through_the_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = np.c_[rng.normal(size=300) * 5 + 20, np.where(rng.uniform(size=300) < 0.3, 7.0, 3.0)]
    csv = tmp_path / "table.csv"
    csv.write_text("weight,group\n" + "".join(f"{a!r},{b!r}\n" for a, b in rows.tolist()))
    (tmp_path / "tiny.toml").write_text(tiny_train_config(extra_train=FAST))
    args = ["train", "--config", str(tmp_path / "tiny.toml"), "--set", f"data.path={json.dumps(str(csv))}", "--quiet"]
    assert "data.discrete_columns: 5 is not a column index" in _error(
        capsys, [*args, "--set", "data.discrete_columns=[5]", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert main(["sample", "--run", str(tmp_path / "run"), "--num", "400", "--out", str(tmp_path / "x.npy")]) == 0
    samples = np.load(tmp_path / "x.npy")
    assert set(np.unique(samples[:, 1])) == {3.0, 7.0} and len(np.unique(samples[:, 0])) == 400
    # [] trains on the table as it is (the same function builds the run's training rows)
    from dkjax._cli._config import train_config
    from dkjax._cli._train_command import _dequantized

    config = train_config(tmp_path / "tiny.toml", [f"data.path={json.dumps(str(csv))}", "data.discrete_columns=[]"])
    train, discrete = _dequantized(config, rows)
    assert discrete is None and train is rows


def test_standardisation_round_trip_through_the_cli(odd_run, tmp_path, capsys):
    run, rows = odd_run
    config = tomllib.loads((run / "config.toml").read_text())
    assert set(config["data"]) == {"path", "heldout_fraction", "discrete_columns", "standardize", "seed"}
    model = dkjax.load_model(run / "model.eqx")
    # The scaling is the training rows' (80% of the file): near the whole file's mean and spread.
    assert np.all(np.abs(np.asarray(model.scaling.loc) - rows.mean(0)) < 0.2 * rows.std(0))
    assert np.all(np.abs(np.asarray(model.scaling.scale) / rows.std(0) - 1) < 0.1)
    out = tmp_path / "new" / "folder" / "samples.npy"  # a folder that does not exist yet
    assert main(["sample", "--run", str(run), "--num", "4000", "--out", str(out), "--seed", "7"]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    xs = np.load(out)
    np.testing.assert_array_equal(xs, model.sample(4000, key=jr.key(7)))
    # In the data's units: after 4 steps the model is near N(0, I) in standardised units, so its
    # samples sit at the data's mean with about its spread (unstandardised they would sit at 0 +- 1).
    assert np.all(np.abs(xs.mean(0) - rows.mean(0)) < 0.5 * rows.std(0))
    assert np.all((0.5 < xs.std(0) / rows.std(0)) & (xs.std(0) / rows.std(0) < 2.0))


def test_sample_at_an_earlier_time(odd_run, tmp_path, capsys):
    run, _ = odd_run
    model = dkjax.load_model(run / "model.eqx")
    half = tmp_path / "half.npy"
    assert main(["sample", "--run", str(run), "--num", "50", "--out", str(half), "--time", "0.5"]) == 0
    assert "50 samples at t = 0.5" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(half), model.sample(50, key=jr.key(0), t=0.5))
    assert not np.array_equal(np.load(half), model.sample(50, key=jr.key(0)))
    for time in ("0.35", "0", "2.0"):  # off the grid of step 0.1, and outside (0, t1]
        out = tmp_path / "gone" / f"{time}.npy"
        err = _error(capsys, ["sample", "--run", str(run), "--num", "5", "--out", str(out), "--time", time])
        assert err.startswith("usage: dkjax sample") and "--time: t must lie in (0.0, 1.0]" in err
        assert not (tmp_path / "gone").exists()


def test_resume_refuses_settings_that_contradict_the_checkpoint(odd_run, tmp_path, capsys):
    run, _ = odd_run
    before = _files(run)
    err = _error(capsys, ["train", "--resume", str(run), "--set", "train.steps=10", "--set", "model.width=16"])
    assert err.startswith("usage: dkjax train")
    assert "model.width = 16 (the run has 8); train.steps = 10 (the run has 4)" in err
    assert "only eval.* and train.checkpoint_every may change" in err
    err = _error(capsys, ["train", "--resume", str(run), "--out", str(tmp_path / "elsewhere")])
    assert "do not also give --config or --out" in err
    assert _files(run) == before and not (tmp_path / "elsewhere").exists()

    # A config edited by hand to another step count than its checkpoints'.
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    config = edited / "config.toml"
    config.write_text(re.sub(r"(?m)^steps = 4$", "steps = 6", config.read_text()))
    err = _error(capsys, ["train", "--resume", str(edited)])
    assert "the checkpoint at step 4 belongs to a run of train.steps = 4, but" in err


def test_resume_a_finished_run_with_new_eval_settings(odd_run, tmp_path, capsys):
    again = tmp_path / "again"
    shutil.copytree(odd_run[0], again)
    before = _files(again)
    assert main(["train", "--resume", str(again), "--set", "eval.seed=9", "--quiet"]) == 0
    assert "finished 4 steps (resumed from step 4)" in capsys.readouterr().out
    assert tomllib.loads((again / "config.toml").read_text())["eval"]["seed"] == 9
    after = _files(again)
    for name in ("model.eqx", "metrics.jsonl", "checkpoints/latest.json", "checkpoints/step_00000004.eqx"):
        assert after[name] == before[name], name
    assert after["eval.json"] != before["eval.json"]  # evaluated again, on other samples


def test_a_response_run_is_named_as_one(tmp_path, capsys):
    run = tmp_path / "response_run"
    run.mkdir()
    (run / "config.toml").write_text('[system]\nname = "OrnsteinUhlenbeck"\n[response]\nt1 = 1.0\n')
    err = _error(capsys, ["sample", "--run", str(run), "--num", "5", "--out", str(tmp_path / "x.npy")])
    assert err.startswith("usage: dkjax sample") and "is a run folder of dkjax response" in err
    assert "unknown section" not in err
    err = _error(capsys, ["train", "--resume", str(run)])
    assert err.startswith("usage: dkjax train") and "is a run folder of dkjax response" in err


@pytest.mark.parametrize(
    "args, usage",
    [
        (["sample", "--run", "nowhere", "--num", "5", "--out", "x.npy"], "usage: dkjax sample"),
        (["response", "--set", "response.num_paths=1"], "usage: dkjax response"),
        (["train", "--set", "train.steps=0"], "usage: dkjax train"),
    ],
)
def test_usage_errors_show_the_subcommand_usage(tmp_path, monkeypatch, capsys, args, usage):
    monkeypatch.chdir(tmp_path)
    assert _error(capsys, args).startswith(usage)
    assert list(tmp_path.iterdir()) == []


def test_eval_json_explains_every_number(odd_run):
    metrics = json.loads((odd_run[0] / "eval.json").read_text())
    notes = metrics.pop("notes")
    for key in metrics:
        assert key in notes or (key.endswith("_gaussian") and "*_gaussian" in notes), key
    assert "best-fit Gaussian" in notes["*_gaussian"] and "perfect model" in notes["energy_distance_data"]


def test_train_defaults_come_from_train_settings():
    train = defaults()["train"]
    train["path_schedule"] = path_schedule_setting(train["path_schedule"])  # the config names the module's count
    for field in dataclasses.fields(dkjax.TrainSettings):
        assert train[field.name] == getattr(dkjax.TRAIN_DEFAULTS, field.name), field.name
    # The README's main job trains with the library's defaults.
    shipped = tomllib.loads((ROOT / "configs/two_moons.toml").read_text())["train"]
    assert set(shipped) <= {"steps", "t1", "num_steps"}


def test_a_run_config_holds_only_the_keys_that_apply(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nname = "simulated"\n[model]\nname = "OrnsteinUhlenbeck"\n[train]\nobjective = "energy"\n'
                    "kernel_rate = 2.0\nvalidation_fraction = 0\n")  # fmt: skip
    kept = applicable(train_config(path))
    assert {"system", "dim", "num_steps", "num_points"} <= set(kept["data"]) and "path" not in kept["data"]
    assert "parameters" in kept["model"] and not {"width", "depth", "seed"} & set(kept["model"])
    assert not {"bandwidth", "ess_target", "kernel_rate_every", "validate_every", "patience"} & set(kept["train"])
    # A data file takes the place of a config's data set.
    mine = applicable(train_config(ROOT / "configs/two_moons.toml", ["data.path=mine.csv"]))["data"]
    assert mine["path"] == "mine.csv" and not {"name", "num_points", "heldout_points"} & set(mine)
    # Written and read back (as --resume does), the kept keys give the same run.
    (tmp_path / "run.toml").write_text(dump_config(kept))
    assert applicable(train_config(tmp_path / "run.toml")) == kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_samples_plot_shows_every_point(dtype):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 2)).astype(dtype)
    samples = np.concatenate([rng.normal(size=(500, 2)), [[9.0, -7.0], [np.nan, 0.0]]]).astype(dtype)
    fig = samples_figure(samples, data, "title")
    finite = np.concatenate([data, samples[:-1]])
    for ax in fig.axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x0 < finite[:, 0].min() and finite[:, 0].max() < x1
        assert y0 < finite[:, 1].min() and finite[:, 1].max() < y1
    assert "1 non-finite not shown" in fig.axes[1].get_title()
    # Comparable ranges: true aspect ratio, with the panel shaped like the points' extent (no blank bands).
    fig.canvas.draw()
    box = fig.axes[0].get_window_extent()
    assert abs(box.width / box.height - (x1 - x0) / (y1 - y0)) < 0.05 * (x1 - x0) / (y1 - y0)


def test_loss_plot_legends_cover_no_tick_labels_and_mark_the_kept_step():
    records = [{"step": s, "loss": 3.0 - s / 100, "bandwidth": 1.0 / (1 + s)} for s in range(200)]
    validation = [{"step": s, "energy_distance": 0.1 / (1 + s)} for s in range(0, 201, 50)]
    fig = loss_figure(records, validation, best_step=150)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [
        label for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) if axis.get_visible()
        for label in axis.get_ticklabels() if label.get_visible() and label.get_text()
    ]  # fmt: skip
    assert len(labels) > 10
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(label.get_window_extent(renderer)) for label in labels)
    assert [t.get_text() for t in legend.get_texts()] == ["training loss", "kernel bandwidth h (right)",
                                                          "model kept (step 150)"]  # fmt: skip
    assert "validation" in fig.axes[1].get_title() and fig.axes[1].get_yscale() == "log"
    assert all(any(line.get_xdata()[0] == 150 for line in ax.get_lines()) for ax in fig.axes[:2])


@pytest.mark.parametrize(
    "contents, overrides, match",
    [
        ("[train]\nsteps = 0\n", [], "train.steps must be an integer >= 1"),
        ("[train]\nstep = 10\n", [], "unknown key train.step"),
        ("[training]\nsteps = 10\n", [], "unknown section"),
        ("[train]\nsteps = \"ten\"\n", [], "train.steps must be an integer"),
        ("[train]\nobjective = \"mmd\"\n", [], "train.objective must be one of"),
        ("[train]\nkernel_rate = \"fast\"\n", [], "train.kernel_rate must be \"auto\" or"),
        ("[train]\nvalidation_fraction = 1.0\n", [], "train.validation_fraction must be a number in [0, 1)"),
        ("[train]\npatience = -1\n", [], "train.patience must be an integer >= 0"),
        ("[train]\nkinetic = -0.5\n", [], "train.kinetic must be a number >= 0 (0: no path prior)"),
        ("[train]\npath_schedule = 1\n", [], "train.path_schedule must be \"constant\" or"),
        ("[train]\npath_schedule = \"growing\"\n", [], "train.path_schedule must be \"constant\" or"),
        ("[model]\nstate_dependent = 1\n", [], "model.state_dependent must be true or false"),
        ("[data]\nname = \"mnist\"\n", [], "data.name must be one of"),
        ("[data]\nstandardize = \"yes\"\n", [], "data.standardize must be \"auto\""),
        ("[data]\nheldout_fraction = 0\n", [], "data.heldout_fraction must be a number in (0, 1)"),
        ("[data]\ndiscrete_columns = \"all\"\n", [], "data.discrete_columns must be \"auto\""),
        ("[data]\ndiscrete_columns = [-1]\n", [], "data.discrete_columns must be \"auto\""),
        ("[data]\npath = \"absent.csv\"\n", [], "data.path: absent.csv does not exist"),
        ("", ["train.bandwidth=-0.1"], "train.bandwidth must be"),
        ("", ["train.kernel_rate=60.0"], "train.kernel_rate must be <= 1 / dt = 50 (dt = t1 / num_steps); got 60.0"),
        ("", ["train.nope=1"], "unknown key train.nope"),
        ("", ["steps=1"], "section.key=value"),
        ("[train\n", [], "not valid TOML"),
    ],
)
def test_config_errors_fail_before_training(tmp_path, capsys, contents, overrides, match):
    path = tmp_path / "bad.toml"
    path.write_text(contents)
    args = ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]
    for override in overrides:
        args += ["--set", override]
    assert match in _error(capsys, args)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name, cases",
    [
        ("kinetic", (("0", None), ("0.25", dkjax.Kinetic(0.25)))),
        ("path_schedule", (("constant", dkjax.ConstantPaths()), ("64", dkjax.GrowingPaths(64)))),
    ],
)
def test_train_path_settings_reach_fit_as_modules(tiny_config, tmp_path, monkeypatch, name, cases):
    given = []
    argument = {"kinetic": "path_cost"}.get(name, name)

    def fit(*args, **kwargs):
        given.append(kwargs[argument])
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(dkjax._generative._train, "fit", fit)
    for value, expected in cases:
        with pytest.raises(KeyboardInterrupt):
            main(["train", "--config", str(tiny_config), "--set", f"train.{name}={value}", "--out",
                  str(tmp_path / f"run{value}"), "--quiet"])  # fmt: skip
        assert given[-1] == expected


def test_missing_config_file(tmp_path, capsys):
    assert "does not exist" in _error(capsys, ["train", "--config", str(tmp_path / "absent.toml"), "--quiet"])


def test_a_data_file_names_the_run_and_model_sigma_min_reaches_the_model(tmp_path):
    from dkjax._cli._config import ConfigError
    from dkjax._cli._run_dir import _new_run_dir
    from dkjax._cli._run_setup import _plan

    data = tmp_path / "measurements.csv"
    data.write_text("a,b\n" + "\n".join(f"{i},{i * i % 7}" for i in range(20)) + "\n")
    overrides = [f"data.path={json.dumps(str(data))}", "model.sigma_min=0.05", "model.width=4"]
    config = train_config(ROOT / "configs" / "two_moons.toml", overrides)
    assert config["run"]["name"] == "measurements" and _new_run_dir(config, None).name.startswith("measurements-")
    assert _plan(config).model.sigma_min == 0.05
    assert "sigma_min = 0.05" in dump_config(applicable(config))
    named = train_config(ROOT / "configs" / "two_moons.toml", overrides + ["run.name=mine"])
    assert named["run"]["name"] == "mine"  # a name of the user's own is kept
    with pytest.raises(ConfigError, match="model.sigma_min must be below model.sigma_init = 0.5; got 0.5"):
        train_config(None, ["model.sigma_min=0.5"])
    with pytest.raises(ConfigError, match="model.sigma_min must be a number >= 0"):
        train_config(None, ["model.sigma_min=-1.0"])


def test_sample_writes_csv_with_the_data_header_and_refuses_other_suffixes(odd_run, tmp_path, capsys):
    run, _ = odd_run
    metrics = json.loads((run / "eval.json").read_text())
    assert metrics["columns"] == ["length_mm", "charge"]
    out = tmp_path / "s.csv"
    assert main(["sample", "--run", str(run), "--num", "20", "--out", str(out), "--seed", "7"]) == 0
    assert out.read_text().splitlines()[0] == "length_mm,charge" and not (tmp_path / "s.csv.npy").exists()
    model = dkjax.load_model(run / "model.eqx")
    np.testing.assert_allclose(np.loadtxt(out, delimiter=",", skiprows=1), model.sample(20, key=jr.key(7)), rtol=1e-6)
    err = _error(capsys, ["sample", "--run", str(run), "--num", "5", "--out", str(tmp_path / "s.txt")])
    assert "--out: " in err and "must end in .npy (a NumPy array) or .csv" in err and not (tmp_path / "s.txt").exists()


def test_metrics_jsonl_holds_the_held_out_scores_of_loss_png(odd_run):
    run, _ = odd_run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"] + 1: r["validation_energy_distance"] for r in records if "validation_energy_distance" in r}
    assert sorted(scored) == [2, 4] and "initial_validation_energy_distance" in records[0]  # every 2 of 4 steps


def test_loss_and_samples_figures_explain_their_curves_and_name_the_columns():
    records = [{"step": s, "loss": 3.0, "bandwidth": 0.5} for s in range(4)]
    fig = loss_figure(records, [{"step": 2, "energy_distance": 0.1}])
    assert "h adapts every step, so losses at different h" in fig.get_suptitle()
    assert "fixed noise" in fig.axes[-1].get_title() or "fixed noise" in fig.axes[1].get_title()
    energy = loss_figure([{"step": s, "loss": 0.1, "bandwidth": 0.0} for s in range(4)])
    assert energy.get_suptitle().startswith("Training loss: energy distance")
    fig = samples_figure(np.zeros((5, 2)), np.ones((5, 2)), columns=["length_mm", "charge"])
    assert fig.axes[0].get_xlabel() == "length_mm" and fig.axes[0].get_ylabel() == "charge"


def test_column_names_read_the_header_without_the_time_column_and_snapshot_plots_use_them(tmp_path):
    import jax.numpy as jnp

    from dkjax._cli._datafile import column_names
    from dkjax._generative._plots import snapshots_figure

    table = tmp_path / "cells.csv"
    table.write_text("gene_a,day,gene_b\n1.0,0,2.0\n1.5,1,2.5\n")
    assert column_names(table, 2, "day") == ["gene_a", "gene_b"]
    assert column_names(table, 3) == ["gene_a", "day", "gene_b"]
    assert column_names(table, 2) == ["x1", "x2"]  # a header of another width is not taken for names
    assert column_names(None, 2) == ["x1", "x2"]
    sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5, mean=jnp.zeros(2))
    model = dkjax.GenerativeModel(sde=sde, initial=dkjax.GaussianInitial(jnp.zeros(2), jnp.ones(2)),
                                  scaling=dkjax.DataScaling.identity(2), t0=0.0, t1=1.0, num_steps=4)  # fmt: skip
    fig = snapshots_figure(model, {1.0: np.zeros((20, 2))}, key=jr.key(0), num_paths=2, columns=["gene_a", "gene_b"])
    assert fig.axes[0].get_xlabel() == "gene_a" and fig.axes[0].get_ylabel() == "gene_b"
    assert fig.axes[-1].get_title() == "2 model paths (gene_a)"

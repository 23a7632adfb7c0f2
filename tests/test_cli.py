"""The dkjax command line: train, resume, sample, and configuration errors before any work."""

import json

import numpy as np
import pytest

import dkjax._train
from dkjax._cli import main
from helpers import tiny_train_config



@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_train_config())
    return path


def test_train_writes_run_folder_and_sample_reads_it(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--out", str(run), "--quiet"]) == 0
    assert str(run) in capsys.readouterr().out
    for name in ("config.toml", "metrics.jsonl", "eval.json", "samples.png", "loss.png", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3] and all(np.isfinite(r["loss"]) for r in records)
    metrics = json.loads((run / "eval.json").read_text())
    assert {"energy_distance", "sliced_wasserstein", "heldout_nll"} <= set(metrics)
    out = tmp_path / "samples.npy"
    assert main(["sample", "--run", str(run), "--num", "10", "--out", str(out)]) == 0
    xs = np.load(out)
    assert xs.shape == (10, 2) and np.all(np.isfinite(xs))


def test_resume_continues_exactly(tiny_config, tmp_path, monkeypatch):
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", "--config", str(tiny_config), "--out", str(full), "--quiet"]) == 0

    save = dkjax._train.save_checkpoint

    def save_then_crash(directory, step, *args, **kwargs):
        save(directory, step, *args, **kwargs)
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(dkjax._train, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--config", str(tiny_config), "--out", str(split), "--quiet"])
    monkeypatch.setattr(dkjax._train, "save_checkpoint", save)
    assert json.loads((split / "checkpoints/latest.json").read_text())["step"] == 2
    assert main(["train", "--resume", str(split), "--quiet"]) == 0
    final = "checkpoints/step_00000004.eqx"
    assert (full / final).read_bytes() == (split / final).read_bytes()
    assert (full / "metrics.jsonl").read_text().count("\n") == (split / "metrics.jsonl").read_text().count("\n") == 4


@pytest.mark.parametrize(
    "contents, overrides, match",
    [
        ("[train]\nsteps = 0\n", [], "train.steps must be an integer >= 1"),
        ("[train]\nstep = 10\n", [], "unknown key train.step"),
        ("[training]\nsteps = 10\n", [], "unknown section"),
        ("[train]\nsteps = \"ten\"\n", [], "train.steps must be an integer"),
        ("[train]\nobjective = \"mmd\"\n", [], "train.objective must be one of"),
        ("[train]\nkernel_rate = \"fast\"\n", [], "train.kernel_rate must be \"auto\" or"),
        ("[model]\nstate_dependent = 1\n", [], "model.state_dependent must be true or false"),
        ("[data]\nname = \"mnist\"\n", [], "data.name must be one of"),
        ("", ["train.bandwidth=-0.1"], "train.bandwidth must be"),
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
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "absent.toml"), "--quiet"])
    assert "does not exist" in capsys.readouterr().err

"""Reliability: bit-identical reruns, resume after SIGKILL, and the non-finite exit of training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dkjax._cli._main import main
from helpers import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent



# Each reproducible computation runs in two fresh Python processes (cold compilation caches,
# new allocations), which print a digest of every output array's dtype, shape and bytes; the
# digests must agree. A run with another key must differ, so equality is not vacuous.
_RERUN_SCRIPT = """
import hashlib, json, sys

import jax

jax.config.update("jax_enable_x64", True)
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import dkjax


def digest(tree):
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array)):
        array = np.asarray(leaf)
        sha.update(f"{array.dtype}{array.shape}".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def divergence_kernel(key):
    sde = dkjax.LinearSDE(A=jnp.array([[-1.0, 0.5], [0.0, -2.0]]), S=jnp.array([[0.5, 0.1, 0.0], [0.2, 0.4, 0.3]]))
    x0 = jr.normal(jr.key(0), (32, 2))
    return dkjax.divergence_kernel(sde, x0, t1=0.5, num_steps=20, key=key, kernel_rate=2.0)


def observable_response(key):
    sde = dkjax.GeometricBrownianMotion(mu=jnp.array([0.1, -0.2]), sigma=0.3)
    return dkjax.observable_response(
        sde, lambda x: jnp.stack([x[0], x @ x]), dkjax.GaussianInitial(jnp.ones(2), 0.1), num_paths=100,
        chunk_size=40, t1=0.5, num_steps=10, key=key, kernel_rate=1.0,
    )


def fit(key):
    model, history = dkjax.fit(
        dkjax.NeuralSDE(2, key=jr.key(1), width=8, depth=1), dkjax.toy_data("two_moons", jr.key(0), 64),
        dkjax.GaussianInitial(jnp.zeros(2), 1.0), t1=1.0, num_steps=8, key=key, steps=3,
        optimizer=optax.adam(1e-2), num_paths=32, batch_size=32, kernel_rate=5.0, progress=False,
    )
    # Wall-clock times differ between runs; every number that training computes must not.
    untimed = [{k: v for k, v in r.items() if k != "time"} for r in history.records + history.validation]
    return model, json.dumps(untimed, sort_keys=True)


out = {}
for name in sys.argv[1:]:
    runs = [globals()[name](jr.key(k)) for k in (2, 3)]
    if name == "fit":
        out[name] = [digest(model) + records for model, records in runs]
    else:
        out[name] = [digest(run) for run in runs]
print(json.dumps(out))
"""
_RERUN_NAMES = ("divergence_kernel", "observable_response", "fit")


@pytest.fixture(scope="module")
def fresh_process_digests():
    """Digests of each computation (with key 2 and key 3) from two fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", _RERUN_SCRIPT, *_RERUN_NAMES]
    # One after the other: the second process loads what the first compiled from the suite's
    # compilation cache, so this also checks that a cached program computes the same bits.
    outputs = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return outputs


@pytest.mark.parametrize("name", _RERUN_NAMES)
def test_reruns_in_fresh_processes_are_bit_identical(fresh_process_digests, name):
    first, second = (digests[name] for digests in fresh_process_digests)
    assert first[0] == second[0], f"{name}: two fresh processes gave different bits"
    assert first[1] == second[1]
    assert first[0] != first[1], f"{name}: another key gave the same result"


def _wait_for_checkpoint(process, latest: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not latest.exists():
        assert process.poll() is None, f"training exited early:\n{process.communicate()[1]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)


@pytest.mark.slow  # resume's bit identity stays in the quick suite (test_train.py::test_resume_is_bit_identical)
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    steps = 200
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_train_config(steps=steps, checkpoint_every=10, extra_train="kernel_rate = 5.0"))
    killed, full = tmp_path / "killed", tmp_path / "full"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "dkjax", "train", "--config", str(config), "--out", str(killed), "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for_checkpoint(process, killed / "checkpoints" / "latest.json", timeout=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    interrupted_at = json.loads((killed / "checkpoints" / "latest.json").read_text())["step"]
    assert 10 <= interrupted_at < steps, "the run finished before it could be killed; raise steps"

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert main(["train", "--config", str(config), "--out", str(full), "--quiet"]) == 0
    final = f"checkpoints/step_{steps:08d}.eqx"
    assert (killed / final).read_bytes() == (full / final).read_bytes()
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(steps))


@pytest.mark.filterwarnings("ignore:training stopped at step")
def test_nonfinite_training_exits_nonzero_and_keeps_last_checkpoint(tmp_path, capsys):
    # A learning rate of 100 without clipping throws the network far out in two steps.
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_train_config(steps=20, checkpoint_every=1, extra_train="kernel_rate = 5.0"))
    run = tmp_path / "run"
    overrides = ["train.learning_rate=100.0", "train.clip_norm=1e30", "train.final_lr_fraction=1.0"]
    args = ["train", "--config", str(config), "--out", str(run), "--quiet"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 1
    err = capsys.readouterr().err
    message = next(line for line in err.splitlines() if line.startswith("dkjax train: training stopped at step"))
    stopped_at = int(message.split("step ")[1].split(":")[0])
    assert "Try a larger kernel_rate" in message and "lower learning rate" in message
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert 1 <= latest["step"] <= stopped_at < 20
    assert f"the last checkpoint is at step {latest['step']}" in message
    assert not (run / "eval.json").exists()

    out = tmp_path / "samples.npy"
    assert main(["sample", "--run", str(run), "--num", "16", "--out", str(out)]) == 0
    samples = np.load(out)
    assert samples.shape == (16, 2) and np.all(np.isfinite(samples))

"""Reliability: bit-identical reruns, resume after SIGKILL, and the non-finite exit of training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import dkjax
from dkjax._cli import main
from helpers import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent



def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _assert_bit_identical(a, b) -> None:
    left, right = _leaves(a), _leaves(b)
    assert len(left) == len(right) > 0
    for x, y in zip(left, right):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def _twice(run, recompile: bool = False):
    """``run()`` twice; ``recompile`` clears the compilation caches in between, so a cached
    executable cannot hide a difference (the SIGKILL test compares across processes too)."""
    first = run()
    if recompile:
        jax.clear_caches()
        eqx.clear_caches()
    return first, run()


def test_divergence_kernel_is_bit_identical():
    sde = dkjax.LinearSDE(A=jnp.array([[-1.0, 0.5], [0.0, -2.0]]), S=jnp.array([[0.5, 0.1, 0.0], [0.2, 0.4, 0.3]]))
    x0 = jr.normal(jr.key(0), (32, 2))

    def run():
        return dkjax.divergence_kernel(sde, x0, t1=0.5, num_steps=20, key=jr.key(1), kernel_rate=2.0)

    first, second = _twice(run, recompile=True)
    _assert_bit_identical(first, second)
    other = dkjax.divergence_kernel(sde, x0, t1=0.5, num_steps=20, key=jr.key(2), kernel_rate=2.0)
    assert not np.array_equal(np.asarray(first.score), np.asarray(other.score))


def test_observable_response_is_bit_identical():
    sde = dkjax.GeometricBrownianMotion(mu=jnp.array([0.1, -0.2]), sigma=0.3)
    initial = dkjax.gaussian_initial(jnp.ones(2), 0.1)

    def run():
        return dkjax.observable_response(
            sde, lambda x: jnp.stack([x[0], x @ x]), initial, num_paths=100, chunk_size=40,
            t1=0.5, num_steps=10, key=jr.key(3), kernel_rate=1.0,
        )  # fmt: skip

    first, second = _twice(run)
    _assert_bit_identical(first, second)


def test_fit_is_bit_identical():
    data = dkjax.toy_data("two_moons", jr.key(0), 64)
    model = dkjax.NeuralSDE(2, key=jr.key(1), width=8, depth=1)
    initial = dkjax.gaussian_initial(jnp.zeros(2), 1.0)

    def run():
        return dkjax.fit(
            model, data, initial, t1=1.0, num_steps=8, key=jr.key(2), steps=3, optimizer=optax.adam(1e-2),
            num_paths=32, batch_size=32, kernel_rate=5.0, progress=False,
        )  # fmt: skip

    (first, history1), (second, history2) = _twice(run)
    _assert_bit_identical(first, second)
    assert history1.records == history2.records
    assert not np.array_equal(np.asarray(jax.tree.leaves(first)[0]), np.asarray(jax.tree.leaves(model)[0]))


def _wait_for_checkpoint(process, latest: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not latest.exists():
        assert process.poll() is None, f"training exited early:\n{process.communicate()[1]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)


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

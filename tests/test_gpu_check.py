"""The one-shot GPU check (``python -m benchmarks.gpu_check``) on a machine without a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path, *args, timeout):
    out, copies = tmp_path / "results", tmp_path / "device_out"
    copies.mkdir()
    env = dict(os.environ, OUT=str(copies), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--size", "tiny", "--out", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return proc, out, copies


def test_cpu_mode_runs_exact_references_and_says_gpu_parts_were_skipped(tmp_path):
    proc, out, copies = _run(tmp_path, "--sections", "exact", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (out / "results.md").read_text()
    assert "No GPU here" in report and "GPU parts were skipped" in report
    assert "| H100 | cpu |" in report  # the reference figures beside ours
    results = json.loads((out / "results.json").read_text())
    exact = results["sections"]["exact"]
    assert not exact["failed"] and not exact.get("error")
    judged = [row for row in exact["rows"] if "z" in row]
    assert len(judged) == 10  # 2 systems x 2 parameters x 2 dtypes + the score in 2 dtypes
    assert all(abs(z) < 5 for row in judged for z in (row["z"] if isinstance(row["z"], list) else [row["z"]]))
    assert {row["dtype"] for row in exact["rows"] if "dtype" in row} == {"float32", "float64"}
    assert sorted(p.name for p in copies.iterdir()) == ["log.txt", "results.json", "results.md"]


def test_a_failure_is_recorded_and_the_section_goes_on(capsys):
    section = gpu_check.Section(budget_s=10.0)

    def broken():
        raise AssertionError("DK states differ | by a lot")

    assert section.attempt("broken", broken) is None
    assert section.attempt("fine", lambda: {"value": 1.0}) == {"value": 1.0}
    assert [f["what"] for f in section.out["failed"]] == ["broken"]
    assert section.out["failed"][0]["error"] == "AssertionError: DK states differ / by a lot"
    assert [r["what"] for r in section.out["rows"]] == ["fine"]
    # Each step is printed as a RESULT line, so a section killed at its timeout keeps what it had.
    last = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("RESULT ")][-1]
    assert json.loads(last.removeprefix("RESULT ")) == json.loads(json.dumps(section.out))
    results = {
        "size": "tiny", "gpu": False, "budget_s": 10.0, "machine": {"platform": "cpu"},
        "sections": {"speed": {**section.out, "wall_s": 1.0}, "memory": {"rows": [], "error": "timed out after 9 s"}},
    }  # fmt: skip
    report = gpu_check.markdown(results)
    assert "| speed | failed |" in report and "FAILED broken: AssertionError: DK states differ / by a lot" in report
    assert "| memory | failed |" in report and "ERROR timed out after 9 s" in report


def test_card_names():
    assert gpu_check.card_name({"platform": "gpu", "device_kind": "NVIDIA H200"}) == "gpu_nvidia_h200"
    assert gpu_check.card_name({"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"}) == "gpu_nvidia_h100_80gb_hbm3"
    assert gpu_check.card_name({"platform": "cpu", "device_kind": "cpu"}) == "gpu_check_cpu"


@pytest.mark.slow
def test_cpu_mode_runs_every_section(tmp_path):
    proc, out, _ = _run(tmp_path, "--budget", "1500", timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["sections"]) == {"exact", "speed", "memory"}  # no paper reproductions without a GPU
    for name, section in results["sections"].items():
        assert not section["failed"] and not section["skipped"] and not section.get("error"), name
    speed = [r for r in results["sections"]["speed"]["rows"] if "paths" in r]
    assert [r["paths"] for r in speed] == gpu_check.SIZES["tiny"]["sim_paths"]
    memory = {(r["kind"], r["steps"]) for r in results["sections"]["memory"]["rows"] if "kind" in r}
    for kind in ("train:dk_two_pass", "train:backprop", "divergence_kernel", "backprop (diffrax)"):
        assert {(kind, s) for s in gpu_check.SIZES["tiny"]["memory_steps"]} <= memory
    report = (out / "results.md").read_text()
    assert "DK <= 3x simulate" in report and "peak memory 40 / 10 steps: divergence_kernel" in report

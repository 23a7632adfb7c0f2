"""The generative benchmark (benchmarks/generative.py) end to end at a tiny size, and its data splits."""

import json
import math

import jax.random as jr
import numpy as np
import pytest

from benchmarks import generative

TINY = {
    "dk_steps": 2, "eval_every": 1, "num_steps": 5,
    "toy_sizes": {"train": 512, "val": 512, "test": 512, "ref": 512},
    "num_samples": 512, "flow_max_epochs": 1, "seed": 0,
}  # fmt: skip


def test_paired_standard_error_is_below_a_clear_difference_and_zero_for_one_model():
    a, b, test = (np.asarray(jr.normal(jr.key(k), (400, 2))) + shift for k, shift in ((0, 0.3), (1, 0.0), (2, 0.0)))
    error = generative.paired_standard_error(a, b, test)
    difference = float(generative.dkjax.energy_distance(a, test) - generative.dkjax.energy_distance(b, test))
    assert 0 < error < abs(difference)
    assert generative.paired_standard_error(a, a, test) == 0.0


@pytest.mark.slow  # three models compile: about 55 s of CPU time
def test_tiny_run_writes_finite_results_and_the_data_beats_a_gaussian(tmp_path):
    pytest.importorskip("flowjax")
    results = generative.run(["two_moons"], TINY, tmp_path, log=lambda msg: None)

    for name in ("results.md", "results.json", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "results.json").read_text())["datasets"].keys() == {"two_moons"}
    table = (tmp_path / "results.md").read_text()
    assert all(f"| two_moons | 2 | 512 | {model} |" in table for model in generative.MODELS)

    result = results["datasets"]["two_moons"]
    models = result["models"]
    for model, row in models.items():
        for measure in ("energy_distance", "sliced_wasserstein", "kde_log_likelihood", "val_energy_distance"):
            assert math.isfinite(row[measure]), (model, measure)
        assert row["num_nonfinite"] == 0, model
    # DK-SDE's curve: the untrained model, then one held-out evaluation every eval_every steps.
    dk = models["DK-SDE"]
    assert [point["step"] for point in dk["curve"]] == [0, 1, 2]
    times = [point["time"] for point in dk["curve"]]
    assert 0 == times[0] < times[1] < times[2] < dk["seconds"]
    best = min(dk["curve"], key=lambda point: point["energy_distance"])
    assert dk["best_step"] == best["step"]
    # Two moons is far from Gaussian: a second draw of the data is much closer to the test set.
    data, gaussian = models["data itself"], models["Gaussian"]
    assert data["energy_distance"] < gaussian["energy_distance"] / 5
    assert data["sliced_wasserstein"] < gaussian["sliced_wasserstein"]
    assert data["kde_log_likelihood"] > gaussian["kde_log_likelihood"]
    assert models["flow"]["time_to_flow_ed"] == models["flow"]["seconds"]
    difference, error = models["DK-SDE"]["minus_gaussian"]
    assert difference == pytest.approx(dk["energy_distance"] - gaussian["energy_distance"], abs=1e-6) and error > 0
    assert "ED minus Gaussian's" in table

    # --merge: a second run's folder (here the same run under another set's name, drawing nothing) joins the table
    other = tmp_path / "other"
    other.mkdir()
    payload = json.loads((tmp_path / "results.json").read_text())
    payload["datasets"] = {"wine": dict(payload["datasets"]["two_moons"], d=13)}
    (other / "results.json").write_text(json.dumps(payload))
    merged = generative.main(["--merge", str(other), str(tmp_path), "--out", str(tmp_path / "merged")])
    assert list(merged["datasets"]) == ["two_moons", "wine"], "the benchmark's order, not the arguments'"
    assert (tmp_path / "merged" / "samples.png").read_bytes() == (tmp_path / "samples.png").read_bytes()
    assert "| wine | 13 |" in (tmp_path / "merged" / "results.md").read_text()


def test_real_set_parts_are_disjoint_standardised_splits():
    pytest.importorskip("sklearn")
    parts = generative.load_dataset("digits_pca8", TINY, jr.key(0))

    sizes = {part: len(x) for part, x in parts.items()}
    assert sum(sizes.values()) == 1797 and sizes["train"] == round(0.5 * 1797)
    assert all(x.shape[1] == 8 for x in parts.values())
    np.testing.assert_allclose(parts["train"].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(parts["train"].std(0), 1.0, rtol=1e-6)
    rows = np.concatenate(list(parts.values()))
    assert len(np.unique(rows.round(6), axis=0)) == len(rows), "parts overlap"


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown \\['moons'\\]"):
        generative.check_datasets(["two_moons", "moons"])

"""Every number README.md and docs/*.md quote from ``benchmarks/results/`` agrees with the file it quotes.

A quote is a template of the doc's text with ``#`` for each number, and the values the results file gives for them.
A number agrees when it is the file's value rounded to the decimals the doc writes (``30`` for 29.9, ``1.000`` for 1).
Rerunning a benchmark without updating its docs fails here, naming the doc and the text.
"""

import json
import re

import pytest
from helpers import ROOT

RESULTS = ROOT / "benchmarks" / "results"
NUMBER = r"(-?[0-9][0-9.]*)"
# In a template, ``#`` is a number rounded from the file's value and ``@`` a bound the file's value must not exceed.
MARKS = "#@"


def rows(name: str, file: str = "results.md") -> list[dict[str, str]]:
    """Every row of every markdown table in ``benchmarks/results/name/file``, as ``{header: cell}``."""
    found, header = [], None
    for line in (RESULTS / name / file).read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:  # a repeated column name gets its ordinal: "z", "z (2)"
            header = [name if name not in cells[:i] else f"{name} ({cells[:i].count(name) + 1})" for i, name in enumerate(cells)]
        elif not set(line) <= set("|-"):
            found.append(dict(zip(header, cells)))
    return found


def cell(name: str, column: str, where: dict[str, str], file: str = "results.md") -> str:
    """The one value of ``column`` in the rows matching ``where`` (tables repeating a row must agree)."""
    values = {row[column] for row in rows(name, file) if column in row and all(row.get(k) == v for k, v in where.items())}
    assert len(values) == 1, (name, column, where, values)
    return values.pop()


def num(name: str, column: str, **where) -> float:
    return float(cell(name, column, {key.replace("_", " "): value for key, value in where.items()}))


def with_error(text: str) -> tuple[float, float]:
    """``"2.9 +- 0.052"`` as ``(2.9, 0.052)``."""
    estimate, error = text.split("+-")
    return float(estimate), float(error)


def agrees(quoted: str, value: float) -> bool:
    """Whether ``quoted`` is ``value`` rounded to the decimals it is written with."""
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return abs(float(quoted) - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-12


def _flat(text: str) -> str:
    return " ".join(text.split())


def _gen(dataset: str, model: str, column: str = "energy distance") -> float:
    return float(cell("generative", column, {"dataset": dataset, "model": model}))


def _generative_row(label: str, dataset: str) -> tuple[str, list[float]]:
    """A row of README's DK-SDE-against-a-flow table: four energy distances, then the time to the flow's quality."""
    values = [_gen(dataset, model) for model in ("DK-SDE", "flow", "Gaussian", "data itself")]
    best = "DK-SDE" if values[0] < values[1] else "flow"
    cells = ["**#**" if model == best else "#" for model in ("DK-SDE", "flow")]
    reached = cell("generative", "time to flow's ED (s)", {"dataset": dataset, "model": "DK-SDE"}) != "-"
    if not reached:
        return f"| {label} | {cells[0]} | {cells[1]} | # | # | not reached", values
    dk, flow = _gen(dataset, "DK-SDE", "time to flow's ED (s)"), _gen(dataset, "flow", "time to flow's ED (s)")
    return f"| {label} | {cells[0]} | {cells[1]} | # | # | # s / # s = #x |", values + [dk, flow, dk / flow]


def _core_overhead() -> dict:
    return json.loads((RESULTS / "core_overhead" / "results.json").read_text())


def _core_timing(method: str, key: str = "median_s") -> float:
    (row,) = [row for row in _core_overhead()["timings"] if row["method"] == method]
    return row[key]


def _core_training(model: str, route: str) -> float:
    (row,) = [row for row in _core_overhead()["training"] if row["model"] == model and row["route"] == route]
    return row["ratio"]


def _readme_quotes() -> list[tuple[str, list[float]]]:
    gpu_col = "NVIDIA H200"
    measure = lambda what: num("gpu_nvidia_h200", gpu_col, **{"measure (Lorenz-96, d = 40, float32)": what})
    gpu_memory = lambda what, steps, column="peak MiB": num("gpu_nvidia_h200", column, what=what, steps=steps)
    user = _core_overhead()["user_lorenz96_cpu"]
    quick = lambda column, **where: num("suite_quick", column, **where)
    l96 = lambda noise: quick("matrix-free / simulate", noise=f"{noise} (L96)", d="40")
    return [
        _generative_row("two moons (2)", "two_moons"),
        _generative_row("eight Gaussians (2)", "eight_gaussians"),
        _generative_row("checkerboard (2)", "checkerboard"),
        _generative_row("swiss roll (2)", "swiss_roll"),
        _generative_row("pinwheel (2)", "pinwheel"),
        _generative_row("digits, 8 principal components (8)", "digits_pca8"),
        _generative_row("diabetes (10; a binary column)", "diabetes"),
        ("(energy distance +# +- # above it, paired over the test rows)",
         json.loads((RESULTS / "generative" / "results.json").read_text())["datasets"]["diabetes"]["models"]["DK-SDE"]
         ["minus_gaussian"]),
        ("(last-100-step mean loss within @ nats of its best window on the 2-D sets)",
         [max(*(num("generative", "DK-SDE late loss rise (nats)", dataset=d) for d in
                      ("two_moons", "eight_gaussians", "checkerboard", "swiss_roll", "pinwheel")))]),
        ("| hand-written `lax.scan` Euler-Maruyama / its memory-bandwidth floor | # / # ms per step |",
         [measure("hand-written scan EM, 2^20 paths"), measure("its bandwidth floor")]),
        ("| `simulate` / hand-written scan | #x |", [num("gpu_nvidia_h200", "value", target="simulate <= 1.1x the scan")]),
        ("| matrix-free DK / `simulate` | #x (#x at 2^16 paths) |",
         [num("gpu_nvidia_h200", "DK / sim", paths="1048576"), num("gpu_nvidia_h200", "DK / sim", paths="65536")]),
        ("| diffrax Euler with a VirtualBrownianTree / hand-written scan (2^16 paths) | #x |",
         [num("gpu_nvidia_h200", "VBT / scan", paths="65536")]),
        ("16384 paths, 1000 steps | #x the time (# s against # s) |",
         [num("gpu_nvidia_h200", "value", target="DK-SDE training step faster than backprop at 1000 steps (DK / backprop)"),
          gpu_memory("train:dk_two_pass", "1000", "s / training step"),
          gpu_memory("train:backprop", "1000", "s / training step")]),
        ("| peak memory at 4000 steps: DK training step / backprop | # MiB / # MiB; DK flat from 100 to 4000 steps |",
         [gpu_memory("train:dk_two_pass", "4000"), gpu_memory("train:backprop", "4000")]),
        ("| exact references in float32 (OU, GBM: responses and score) | within @ standard errors |",
         [max(*(abs(float(row["z"])) for row in rows("gpu_nvidia_h200") if row.get("check", "").endswith("E[X_T^2]")))]),
        ("| `simulate` / hand-written `lax.scan` (4096 paths, float32) | #x |", [_core_timing("dkjax.simulate", "ratio")]),
        ("| matrix-free DK / hand-written scan (4096 paths, float32) | #x |",
         [_core_timing("divergence_kernel matrix_free", "ratio")]),
        ("(`jnp.roll`, 4096 paths, float32) | #x (wall time; #x by CPU time) |",
         [_core_timing("divergence_kernel matrix_free (user jnp.roll L96)") / _core_timing("dkjax.simulate (user jnp.roll L96)"),
          user["dk"] / user["simulate"]]),
        ("KL with its bandwidth rule; CPU time) | #x (two-pass, the default route); #x per-path |",
         [_core_training("NeuralSDE(2)", "two_pass"), _core_training("NeuralSDE(2)", "per_path")]),
        ("| the same for a 5-D state-dependent `NeuralSDE` | #x (two-pass); #x per-path |",
         [_core_training("NeuralSDE(5, diagonal, state_dependent)", "two_pass"),
          _core_training("NeuralSDE(5, diagonal, state_dependent)", "per_path")]),
        ("(float64; additive, multiplicative, general 40 x 40 noise) | #x, #x, #x |",
         [l96("additive"), l96("multiplicative"), l96("general d x d")]),
        ("| matrix-free DK cost per path-step, d = 40 -> 640 | #x |", [quick("cost vs d=40", noise="additive (L96)", d="640")]),
        ("| DK peak memory, 100 -> 4000 steps (XLA compiled) | #x (# MiB) |",
         [quick("ratio", what="divergence_kernel", **{"from": "100"}), quick("peak MiB", what="divergence_kernel", steps="4000")]),
        ("| backprop through diffrax / DK peak memory at 4000 steps | #x |",
         [quick("baseline / DK", DK="divergence_kernel", baseline="backprop (diffrax)")]),
        ("1024 data), 100 -> 4000 steps | #x |", [quick("ratio", what="train:dk_two_pass", **{"from": "100"})]),
        ("(`path_chunk=512`) | #x (one batched solve), #x (vmapped solves) |",
         [quick("baseline / DK", DK="train:dk_chunked", baseline="train:backprop_batched"),
          quick("baseline / DK", DK="train:dk_chunked", baseline="train:backprop")]),
    ]  # fmt: skip


def _scaling_quotes() -> list[tuple[str, list[float]]]:
    quick = lambda column, **where: num("suite_quick", column, **where)
    over = lambda dk, baseline: quick("baseline / DK", DK=dk, baseline=baseline)
    peak = lambda what: quick("peak MiB", what=what, steps="4000")
    seconds = lambda what: quick("s / training step", what=what, steps="100")
    batched = seconds("train:backprop_batched")
    exact = {row["check"]: row for row in rows("gpu_nvidia_h200") if "check" in row}
    ou, gbm = exact["ou float32: d/dtheta E[X_T^2]"], exact["gbm float32: d/dsigma E[X_T^2]"]
    l96 = lambda noise, column="matrix-free / simulate", d="40": quick(column, noise=f"{noise} (L96)", d=d)
    return [
        ("At 4000 steps (Lorenz-96, d = 40, 256 paths) the DK estimator needs #x less than backprop",
         [over("divergence_kernel", "backprop (diffrax)")]),
        ("| DK two-pass (`gradient=\"two_pass\"`) | # | 1 | |", [peak("train:dk_two_pass")]),
        ("| DK two-pass, `path_chunk=512` | # | | 1 |", [peak("train:dk_chunked")]),
        ("| backprop, `jax.vmap` over per-path solves, default adjoint | # | #x | #x |",
         [peak("train:backprop"), over("train:dk_two_pass", "train:backprop"), over("train:dk_chunked", "train:backprop")]),
        ("| backprop, one solve of all paths, default adjoint | # | #x | #x |",
         [peak("train:backprop_batched"), over("train:dk_two_pass", "train:backprop_batched"),
          over("train:dk_chunked", "train:backprop_batched")]),
        ("| backprop storing every step | # | #x | #x |",
         [peak("train:backprop_full"), over("train:dk_two_pass", "train:backprop_full"),
          peak("train:backprop_full") / peak("train:dk_chunked")]),
        ("(#-#x from 100 to 4000 steps)",
         [quick("ratio", what="train:backprop", **{"from": "100"}), quick("ratio", what="train:backprop_batched", **{"from": "100"})]),
        ("DK two-pass # s, chunked # s, backprop # s (vmapped) and # s (one solve)",
         [seconds("train:dk_two_pass"), seconds("train:dk_chunked"), seconds("train:backprop"), batched]),
        ("forward-only gradients cost #x (two-pass) and #x (chunked) the time of the best backprop here",
         [seconds("train:dk_two_pass") / batched, seconds("train:dk_chunked") / batched]),
        ("OU d/dtheta E[X_T^2] # against the exact # (z = # in float32, # in float64), GBM d/dsigma E[X_T^2] # against # (z = #",
         [float(ou["estimate"]), float(ou["exact"]), float(ou["z"]), float(exact["ou float64: d/dtheta E[X_T^2]"]["z"]),
          float(gbm["estimate"]), float(gbm["exact"]), float(gbm["z"])]),
        ("| #x (float32, 4096 paths, lightly loaded machine;", [_core_timing("dkjax.simulate", "ratio")]),
        ("#x (float64, 2048 paths); L96, d = 40 | met |", [quick("ratio to scan", method="dkjax.simulate")]),
        ("| #x additive, #x multiplicative, #x general 40 x 40 noise (float64); #x additive in float32 (`core_overhead`: # s against # s,",
         [l96("additive"), l96("multiplicative"), l96("general d x d"),
          _core_timing("divergence_kernel matrix_free") / _core_timing("dkjax.simulate"),
          _core_timing("divergence_kernel matrix_free"), _core_timing("dkjax.simulate")]),
        ("| #x (additive), #x (multiplicative) per path-step |",
         [l96("additive", "cost vs d=40", "640"), l96("multiplicative", "cost vs d=40", "640")]),
        ("| DK #x; training: two-pass #x vs vmapped default adjoint, #x vs one batched solve; with `path_chunk` #x and #x |",
         [over("divergence_kernel", "backprop (diffrax)"), over("train:dk_two_pass", "train:backprop"),
          over("train:dk_two_pass", "train:backprop_batched"), over("train:dk_chunked", "train:backprop"),
          over("train:dk_chunked", "train:backprop_batched")]),
        ("the same estimates in both on one H200, \\|z\\| <= #", [max(abs(float(r["z"])) for r in exact.values() if r["z"] != "-"
                                                                       and not r["z"].startswith("["))]),
    ]  # fmt: skip


def _guide_quotes() -> list[tuple[str, list[float]]]:
    h200 = lambda column, F, s: with_error(cell("gpu_nvidia_h200", column, {"F": F, "s": s}, "paper_lorenz96_stationary_results.md"))
    cpu = lambda column, F, s: with_error(cell("paper_lorenz96_stationary", column, {"F": F, "s": s}))
    dk6 = [h200("DK d/dF", "6", s) for s in ("0.25", "0.5", "1")]
    fd6 = [h200("FD d/dF", "6", s) for s in ("0.25", "0.5", "1")]
    low = [(fd - dk) / dk_se for (dk, dk_se), (fd, _) in zip(dk6, fd6)]  # in the DK value's own standard errors
    small = [row for row in rows("paper_lorenz96_stationary") if "chosen W" in row]
    largest_z = max(abs(float(row[z])) for row in small for z in ("z", "z (2)"))  # d/dF and d/ds
    return [
        ("F = 6 as # +- #, # +- # and # +- # for s = 0.25, 0.5 and 1. Finite differences gave # +- #, # +- # and # +- #:"
         " the DK values were # to # of their standard errors low",
         [v for pair in dk6 for v in pair] + [v for pair in fd6 for v in pair] + [min(low), max(low)]),
        ("(# +- # against #)", [*h200("DK d/dF", "8", "0.5"), h200("FD d/dF", "8", "0.5")[0]]),
        ("shows the same bias at `W = 2`, # +- # against # +- # at F = 6, s = 0.5. There the chosen window, # time"
         " units, reads # +- #. At F = 8, s = 0.5 it reads # +- # against # +- #.",
         [*cpu("DK d/dF, W = 2", "6", "0.5"), *cpu("FD d/dF", "6", "0.5"), float(cell("paper_lorenz96_stationary", "chosen W", {"F": "6", "s": "0.5"})),
          *cpu("DK d/dF", "6", "0.5"), *cpu("DK d/dF", "8", "0.5"), *cpu("FD d/dF", "8", "0.5")]),
        ("All four cells agree with finite differences within @ combined standard errors", [largest_z]),
        ("pinwheel's held-out energy distance went from # to # and two moons' from # to #",
         [_growing("E", "pinwheel"), _growing("D", "pinwheel"), _growing("F", "two_moons"), _growing("C", "two_moons")]),
    ]  # fmt: skip


def _growing(run: str, dataset: str) -> float:
    """DK-SDE's held-out energy distance in a run of the path-schedule benchmark."""
    path = RESULTS / "generative" / "issue19" / "growing_paths" / run / "results.json"
    return json.loads(path.read_text())["datasets"][dataset]["models"]["DK-SDE"]["energy_distance"]


def _trajectory(folder: str = "") -> tuple[float, float, list[float], list[float]]:
    """An EB run: mean W1 over seeds, its std, the per-k means and the OT midpoints (k = 1, 2, 3)."""
    results = json.loads((RESULTS / "trajectory" / folder / "results.json").read_text())
    means = results["mean_w1_per_seed"]
    per_k = [[r["w1"] for r in results["records"] if r["left_out"] == k] for k in (1.0, 2.0, 3.0)]
    midpoints = [results["baselines"][k][1] for k in ("1.0", "2.0", "3.0")]
    mean = sum(means) / len(means)
    std = (sum((m - mean) ** 2 for m in means) / len(means)) ** 0.5
    return mean, std, [sum(v) / len(v) for v in per_k], midpoints


def _readme_trajectory_quotes() -> list[tuple[str, list[float]]]:
    mean, std, per_k, midpoint = _trajectory("jackknife")  # the current defaults
    plain, cpu = _trajectory("no_prior"), _fit_cpu_s()
    return [("scores mean W1 # +- # over the protocol's 5 seeds", [mean, std]),
            ("(# without it)", [plain[0]]),
            ("t = 1 / 2 / 3: # / # / # against the midpoint's # / # / #", [*per_k, *midpoint]),
            ("Each fit takes # to # minutes of CPU time", [min(cpu) / 60, max(cpu) / 60])]  # fmt: skip


def _fit_cpu_s(folder: str = "jackknife") -> list[float]:
    """Process CPU seconds of each fit of an EB run (default: the one with the current defaults)."""
    return [r["fit_cpu_s"] for r in json.loads((RESULTS / "trajectory" / folder / "results.json").read_text())["records"]]


def _snapshots_quotes() -> list[tuple[str, list[float]]]:
    mean, std, per_k, midpoint = _trajectory()
    plain_mean, plain_std, plain_k, _ = _trajectory("no_prior")
    jackknife, jackknife_std, jackknife_k, _ = _trajectory("jackknife")
    wide, _, wide_k, _ = _trajectory("capacity")
    seed0 = [r["w1"] for r in json.loads((RESULTS / "trajectory" / "jackknife" / "results.json").read_text())["records"]
             if r["seed"] == 0]  # fmt: skip
    cpu = _fit_cpu_s()
    return [("mean W1 # (t = 1 / 2 / 3: # / # / #) against that seed's # (# / # / #) at the preset's",
             [wide, *wide_k, sum(seed0) / 3, *seed0]),
            ("Each fit took twice the CPU time (# to # s)", [min(_fit_cpu_s("capacity")), max(_fit_cpu_s("capacity"))]),
            ("DK-SDE scores # +- # (# / # / # for t = 1 / 2 / 3), level with the runs before",
             [jackknife, jackknife_std, *jackknife_k]),
            ("Those fits took # to # s of process CPU each", [min(cpu), max(cpu)]),
            ("| DK-SDE `NeuralSDE.for_snapshots(5)` + `Kinetic(0.3)`, seeds 0 to 4 | # +- # | # | # | # |",
             [mean, std, *per_k]),
            ("| DK-SDE `NeuralSDE.for_snapshots(5)`, no path prior, seeds 0 to 4 | # +- # | # | # | # |",
             [plain_mean, plain_std, *plain_k])]  # fmt: skip


def _method_quotes() -> list[tuple[str, list[float]]]:
    dims = json.loads((RESULTS / "kl_ratio_bias" / "results.json").read_text())["dims"]
    zeros = lambda kind: [dims[d][f"zero_{kind}"] for d in ("2", "5", "10")]
    return [("at `s = #` in 2 dimensions, `#` in 5 and `#` in 10.", zeros("plain")),
            ("(the zeros move to `#`, `#` and `#`)", zeros("jackknife"))]  # fmt: skip


QUOTES = {
    "README.md": lambda: _readme_quotes() + _readme_trajectory_quotes(),
    "docs/method.md": _method_quotes,
    "docs/scaling.md": _scaling_quotes,
    "docs/guide.md": _guide_quotes,
    "docs/snapshots.md": _snapshots_quotes,
}


def _pattern(template: str) -> str:
    pattern = re.escape(_flat(template))
    for mark in MARKS:
        pattern = pattern.replace(re.escape(mark), NUMBER)
    return pattern


def _holds(mark: str, quoted: str, value: float) -> bool:
    return agrees(quoted, value) if mark == "#" else float(quoted) >= value


@pytest.mark.parametrize("doc", sorted(QUOTES))
def test_every_quoted_number_agrees_with_its_results_file(doc):
    text = _flat((ROOT / doc).read_text())
    wrong = []
    for template, values in QUOTES[doc]():
        found = re.search(_pattern(template), text)
        if found is None:
            wrong.append(f"not found: {template!r}")
            continue
        marks = [c for c in template if c in MARKS]
        assert len(found.groups()) == len(values) == len(marks), template
        wrong += [f"{template!r}: {q} against {v:.6g}" for m, q, v in zip(marks, found.groups(), values) if not _holds(m, q, v)]
    assert wrong == []


def test_snapshots_md_copies_its_benchmark_table_row_by_row():
    doc = (ROOT / "docs" / "snapshots.md").read_text()
    table = [line for line in (RESULTS / "snapshots" / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 8 and all(line in doc for line in table)
    memory = lambda prefix: [float(row["step peak MiB (XLA)"].split()[0]) for row in rows("snapshots")
                             if row["method"].startswith(prefix)]  # fmt: skip
    dk, backprop = memory("dk_"), memory("backprop")
    assert f"DK memory ({min(dk):.1f} to {max(dk):.1f} MiB)" in _flat(doc)
    assert round(min(backprop) / max(dk)) == round(max(backprop) / min(dk)) == 4 and "about 4 times as much" in doc


@pytest.mark.parametrize(
    "quoted, value, expected",
    [("30", 29.9, True), ("1.000", 1.0, True), ("0.0012", 0.001176, True), ("2.4", 2.36, True), ("2.0", 2.36, False),
     ("8", 10.9, False), ("-0.00005", -5.09e-05, True), ("1.9", 1.96, False)],
)  # fmt: skip
def test_agreement_is_rounding_to_the_quoted_decimals(quoted, value, expected):
    assert agrees(quoted, value) is expected

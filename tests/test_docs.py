"""The documentation: every export's docstring has substance, docs/api.md is current, examples run."""

import inspect
import subprocess
import sys

import pytest
from helpers import ROOT, gen_api



def test_every_export_documents_its_arguments_results_and_exceptions():
    """Sections with substance: every argument named, every Raises entry an exception class, an Example."""
    api = gen_api()
    gaps = {name: found for name, obj in api.exports() if (found := api.docstring_gaps(obj))}
    assert len(api.exports()) > 30
    assert gaps == {}


def test_the_docstring_check_catches_filler_and_gaps():
    api = gen_api()

    def filler(n):
        """Doubles ``n``.

        Arguments:
            n: a number.

        Returns:
            ``2 n``.

        Raises:
            Nothing of its own.

        Example:
            >>> print(filler(2))
            4
        """

    def undocumented(n, m):
        """Adds.

        Arguments:
            n: a number.

        Returns:
            ``n + m``.

        Raises:
            ValueError, TypeError: never, in fact.
        """

    assert api.docstring_gaps(filler) == ["Raises entry names no exception class: 'Nothing of its own.'"]
    assert api.docstring_gaps(undocumented) == ["Example section", "argument m undocumented"]


def test_no_doc_cites_a_file_users_do_not_have():
    texts = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
    texts.update({name: inspect.getdoc(obj) or "" for name, obj in gen_api().exports()})
    assert [where for where, text in texts.items() if "MATH.md" in text] == []


def test_api_reference_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == gen_api().render(), "run: python docs/gen_api.py"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args, expect",
    [
        ("lorenz96_response.py", ["--paths", "64", "--dim", "8", "--horizon", "0.2"], "d/dforcing"),
        ("learn_diffusion.py", ["--steps", "5", "--paths", "64"], "noise level sigma"),
        ("two_moons.py", ["--steps", "3", "--paths", "64"], "energy distance to held-out data"),
    ],
)
def test_examples_run(script, args, expect):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout


def test_examples_and_docs_use_only_the_public_api():
    """No example, doc, config script or README imports or names a private ``dkjax._...`` module (docs/api.md's
    generated signatures aside)."""
    import re

    files = [*(ROOT / "examples").glob("*.py"), *(ROOT / "docs" / "examples").glob("*.py"), ROOT / "README.md"]
    files += [*(ROOT / "configs").glob("*.py")]
    files += [path for path in (ROOT / "docs").rglob("*.md") if path.name != "api.md"]
    private = re.compile(r"\bdkjax\._[a-z]")
    found = {str(path.relative_to(ROOT)): private.findall(path.read_text()) for path in files}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_the_model_selection_rule_is_stated_one_way():
    """README, cli.md, guide.md, eval.json's note and fit's docstring state the rule ``_Selection`` applies."""
    import dkjax
    from dkjax._cli._evaluation import _NOTES

    rule = "the latest model whose held-out energy distance is within two standard errors of the lowest seen"
    flat = lambda text: " ".join(text.split())
    for name in ("README.md", "docs/cli.md", "docs/guide.md"):
        text = flat((ROOT / name).read_text())
        assert rule in text, name
        assert "model with the lowest" not in text and "returns the best" not in text, name
    for text in (_NOTES["selected_step"], dkjax.fit.__doc__):
        assert "latest one whose" in flat(text) and "within two standard errors of the lowest seen" in flat(text)


def _commands(prefix: str) -> list[list[str]]:
    """Every command line of README.md and docs/*.md that starts with ``prefix``, split as a shell would."""
    import shlex

    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fenced = False
        for line in path.read_text().replace("\\\n", " ").splitlines():  # continued lines joined
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not (fenced or line.startswith("    ")):  # code: fenced or indented blocks
                continue
            line = line.strip()
            start = line.find(prefix)
            if start < 0 or (start > 0 and not line[:start].rstrip().endswith("&&")):
                continue
            commands.append(shlex.split(line[start:].split(" #")[0]))
    return commands


def test_the_docs_dkjax_commands_parse():
    from dkjax._cli._main import build_parser

    commands = _commands("dkjax ")
    assert len(commands) > 10
    for words in commands:
        build_parser().parse_args(words[1:])  # SystemExit on an unknown subcommand or option


def test_the_docs_benchmark_commands_exist_with_their_options():
    import re
    import shlex

    spans = [span for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
             for span in re.findall(r"`(python -m benchmarks\.[^`<]*)`", path.read_text())]  # fmt: skip
    commands = _commands("python -m benchmarks.") + [shlex.split(span) for span in spans]
    assert {words[2] for words in commands} >= {"benchmarks.run", "benchmarks.generative"}
    helps = {}
    for words in commands:
        if words[2] not in helps:
            done = subprocess.run([sys.executable, "-m", words[2], "--help"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=300)  # fmt: skip
            assert done.returncode == 0, (words, done.stderr[-1000:])
            helps[words[2]] = done.stdout
        assert all(word in helps[words[2]] for word in words[3:] if word.startswith("--")), (words, helps[words[2]])


def test_scaling_md_quotes_its_results_files():
    """The figures docs/scaling.md quotes for training time, DK / simulate in float32 and the GPU precision check."""
    import re

    scaling = " ".join((ROOT / "docs" / "scaling.md").read_text().split())
    results = ROOT / "benchmarks" / "results"
    core = (results / "core_overhead" / "results.md").read_text()
    simulate = float(re.search(r"\| dkjax\.simulate \| 4096 \| ([0-9.]+) \|", core).group(1))
    dk = float(re.search(r"\| divergence_kernel matrix_free \| 4096 \| ([0-9.]+) \|", core).group(1))
    assert f"{dk / simulate:.2f}x additive in float32 (`core_overhead`: {dk} s against {simulate} s" in scaling
    quick = (results / "suite_quick" / "results.md").read_text()
    seconds = {name: float(re.search(rf"\| train:{name} \| 100 \|[^|]*\|[^|]*\| ([0-9.]+) \|", quick).group(1))
               for name in ("dk_two_pass", "dk_chunked", "backprop_batched")}  # fmt: skip
    best = seconds["backprop_batched"]
    assert f"{best} s (one solve)" in scaling
    assert (f"{seconds['dk_two_pass'] / best:.1f}x (two-pass) and {seconds['dk_chunked'] / best:.1f}x (chunked)"
            in scaling)  # fmt: skip
    gpu = (results / "gpu_nvidia_h200" / "results.md").read_text()
    for row in ("ou float32: d/dtheta E[X_T^2] | -0.213 | -0.212 | 0.000826 | -0.647",
                "ou float64: d/dtheta E[X_T^2] | -0.213 | -0.212 | 0.000826 | -0.648",
                "gbm float32: d/dsigma E[X_T^2] | 1.96 | 1.88 | 0.0191 | 3.83"):  # fmt: skip
        assert row in gpu
    assert "z = -0.647 in float32, -0.648 in float64" in scaling and "GPU open" not in scaling

"""The documentation: every export's docstring has substance, docs/api.md is current, examples run."""

import inspect
import json
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


def test_every_dkjax_name_the_docs_and_examples_use_exists():
    """Each ``dkjax.NAME`` in README, docs, examples, config scripts and benchmarks is a public name (a removed
    or renamed one would show here), and the changelog's removed names are gone from the package."""
    import re

    import dkjax

    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "docs" / "examples").glob("*.py")]
    files += [*(ROOT / "examples").glob("*.py"), *(ROOT / "configs").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    changelog = ROOT / "docs" / "changelog.md"
    used = {
        (str(path.relative_to(ROOT)), name)
        for path in files
        if path not in (changelog, ROOT / "docs" / "api.md")
        for name in re.findall(r"\bdkjax\.([A-Za-z]\w*)", path.read_text())
    }
    assert len(used) > 50
    assert sorted(where for where in used if not hasattr(dkjax, where[1])) == []
    removed = re.findall(r"^\| `dkjax\.(\w+)\(", changelog.read_text(), re.M)
    assert removed == ["simulate_snapshots", "gaussian_initial"]
    assert [name for name in removed if hasattr(dkjax, name)] == []


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
    # One process runs every module's ``--help`` as ``python -m`` would: one import of jax, not one per module.
    names = sorted({words[2] for words in commands})
    done = subprocess.run([sys.executable, "-c", _HELP_SCRIPT, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    helps = json.loads(done.stdout.splitlines()[-1])
    for words in commands:
        assert helps[words[2]]["code"] in (0, None), (words, helps[words[2]])
        assert all(word in helps[words[2]]["help"] for word in words[3:] if word.startswith("--")), (words, helps[words[2]])


_HELP_SCRIPT = """
import contextlib, io, json, runpy, sys
helps = {}
for name in sys.argv[1:]:
    sys.argv, out, code = [name, "--help"], io.StringIO(), "no exit"
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            code = exit_.code
    helps[name] = {"code": code, "help": out.getvalue()}
print(json.dumps(helps))
"""

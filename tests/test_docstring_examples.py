"""Every exported docstring's Example runs as written and prints what it shows.

The examples run as a user runs them: in one fresh interpreter with JAX's defaults (x64
off, so float32), each in its own namespace holding only ``dkjax``, ``jax`` and ``jnp``, in a
scratch folder. Lines after a ``>>>`` statement are the output it must print (doctest's
rules, whitespace normalised and ``...`` matching anything).
"""

import doctest
import inspect
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, gen_api

_OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


API = gen_api()


def example_section(obj) -> str:
    """The text of the ``Example:`` section of ``obj``'s docstring ("" if none)."""
    return API.section(inspect.getdoc(obj) or "", "Example") or ""


def run_examples(names=()) -> dict[str, str]:
    """Runs every export's example (or those in ``names``); returns ``{name: ""}`` for a pass, else the failures."""
    import jax
    import jax.numpy as jnp

    import dkjax

    parser, reports = doctest.DocTestParser(), {}
    for name, obj in API.exports():
        if names and name not in names:
            continue
        test = parser.get_doctest(example_section(obj), {"dkjax": dkjax, "jax": jax, "jnp": jnp}, name, None, 0)
        failures = []
        runner = doctest.DocTestRunner(optionflags=_OPTIONS)
        start = time.perf_counter()
        runner.run(test, out=failures.append)
        print(f"{time.perf_counter() - start:6.1f} s  {name}", file=sys.stderr)
        reports[name] = "".join(failures)
    return reports


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run(
        [sys.executable, __file__], cwd=tmp_path_factory.mktemp("examples"), env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", [name for name, _ in API.exports()])
def test_example_runs_and_prints_what_it_shows(name, reports):
    assert reports[name] == "", reports[name]


@pytest.mark.parametrize("name, obj", API.exports())
def test_example_exists_and_claims_an_output(name, obj):
    examples = doctest.DocTestParser().get_examples(example_section(obj))
    assert examples, f"{name}: no Example section with >>> lines"
    assert any(example.want for example in examples), f"{name}: the example shows no output to check"


if __name__ == "__main__":
    print(json.dumps(run_examples(sys.argv[1:])))  # names: run only those examples

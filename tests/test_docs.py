"""The documentation: every export has a full docstring, docs/api.md is current, examples run."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gen_api():
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_export_has_a_docstring_with_all_sections():
    gen_api = _gen_api()
    gaps = {name: missing for name, obj in gen_api.exports() if (missing := gen_api.missing_sections(obj))}
    assert len(gen_api.exports()) > 30
    assert gaps == {}


def test_api_reference_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == _gen_api().render(), "run: python docs/gen_api.py"


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

"""matplotlib is an optional extra: the core imports without it, and the commands say how to get figures."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_commands import OU

import dkjax
from dkjax._cli._main import main


def test_the_core_does_not_import_matplotlib():
    code = "import sys, dkjax; assert 'matplotlib' not in sys.modules, 'import dkjax loaded matplotlib'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_matplotlib_a_command_skips_its_figure_and_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails, as when not installed
    config = tmp_path / "ou.toml"
    config.write_text(OU.format(theta=1.5))
    run = tmp_path / "run"
    assert main(["response", "--config", str(config), "--set", "response.num_paths=200", "--out", str(run)]) == 0
    assert (run / "results.json").is_file() and not (run / "response.png").exists()
    err = capsys.readouterr().err
    assert "skipped the figure response.png: matplotlib is not installed" in err and "pip install 'dkjax[plot]'" in err


def test_without_matplotlib_a_plot_function_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'dkjax\[plot\]'"):
        dkjax.plot_response_vs_parameter([0.0, 1.0], {"DK": ([1.0, 2.0], None)}, tmp_path / "x.png", xlabel="T", ylabel="r")


def test_ci_runs_exactly_the_readme_test_command_with_the_extras_the_tests_need():
    root = Path(__file__).resolve().parent.parent
    readme_commands = re.findall(r"```bash\n(.*?)\n```", (root / "README.md").read_text(), re.S)
    test_command = next(c for c in readme_commands if "pytest" in c)
    assert test_command in (root / ".ci" / "run").read_text().splitlines()
    assert "plot" in test_command  # the figure tests need matplotlib
    train_command = next(c for c in readme_commands if "dkjax train" in c)
    assert "[plot]" in train_command  # the main command's figures

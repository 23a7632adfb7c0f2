"""Every Python block of the README runs as written, prints what its ``# -> `` comments claim and no warning."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _claims(block: str) -> list[str]:
    return [line.split("# -> ", 1)[1].strip() for line in block.splitlines() if "# -> " in line]


def test_the_readme_has_its_blocks_and_every_block_claims_something():
    assert len(BLOCKS) == 3
    assert all(_claims(block) for block in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_prints_what_it_claims(index, tmp_path):
    """Each block in a fresh interpreter (the README's examples start from nothing), in a scratch folder."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    assert printed == _claims(BLOCKS[index]), (printed, done.stderr[-2000:])
    assert "Warning" not in done.stderr, done.stderr[-2000:]  # e.g. a float64 truncation warning

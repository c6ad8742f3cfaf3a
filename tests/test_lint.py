"""ruff lints every .py file and every notebook (configuration in pyproject.toml)."""

import subprocess
import sys

from common.notebooks import REPOSITORY_ROOT


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                            cwd=REPOSITORY_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

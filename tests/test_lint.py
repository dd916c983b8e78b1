"""Style gates that `make test` (and so CI) enforces: ruff, snakefmt, snakemake --lint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT, run_snakemake

BIN = Path(sys.executable).parent


def run_tool(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("snakefmt", "--check", ".")],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_code_style(command):
    result = run_tool(str(BIN / command[0]), *command[1:])
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean(tmp_path, tiny_demo):
    result = run_snakemake(
        "--lint",
        "--configfile",
        str(REPO_ROOT / "config" / "debug.yaml"),
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={tmp_path}",
        workdir=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr

"""Style gates that `make test` (and so CI) enforces: ruff, snakefmt, snakemake --lint, and the
package's import contracts (import-linter, configured in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
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
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("snakefmt", "--check", "."),
        ("lint-imports", "--no-cache"),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt", "import-contracts"],
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


@pytest.mark.parametrize(
    ("module", "added_import", "broken"),
    [
        # training's input pipeline reaching the submission code: a layer importing a higher one
        ("learning/dataset.py", "from dawnchorus.inference import submission", "Layers"),
        # the resume bookkeeping importing the trainer that imports it: a cycle inside a layer
        ("learning/checkpoints.py", "from dawnchorus.learning import train", "No import cycles"),
        # the data stage needing TensorFlow
        ("data/shards.py", "import tensorflow", "without TensorFlow"),
    ],
    ids=["upward", "cycle", "tensorflow-in-data"],
)
def test_import_contracts_catch_a_violation(tmp_path, module, added_import, broken):
    """The contracts above are not vacuous: the same check on a copy of the package with one bad
    import added (deferred, inside a function, as the package's own deferred imports are) fails
    and names the contract."""
    package = tmp_path / "src" / "dawnchorus"
    shutil.copytree(
        REPO_ROOT / "src" / "dawnchorus", package, ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(package / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n\ndef _added():\n    {added_import}  # noqa\n")
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache", str(REPO_ROOT / "pyproject.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{broken}" in output.split("Broken contracts")[-1], output

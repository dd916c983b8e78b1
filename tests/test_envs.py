"""The conda environments (envs/*.yaml, for `--software-deployment-method conda`) agree with
pyproject.toml, and every rule that runs a script names one that can run it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import REPO_ROOT

ENVS = sorted((REPO_ROOT / "envs").glob("*.yaml"))
# the cluster's GPU nodes get the full TensorFlow wheel with its CUDA libraries; the venv takes
# tensorflow-cpu where it can (same version range)
SAME_PACKAGE = {"tensorflow-cpu": "tensorflow"}
# optional extras whose packages a rule's environment may hold
RULE_EXTRAS = ("birdnet",)
SRC = REPO_ROOT / "src"


def pyproject_specifiers() -> dict[str, set[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = [line for name in RULE_EXTRAS for line in project["optional-dependencies"][name]]
    specifiers: dict[str, set[str]] = {}
    for line in [*project["dependencies"], *extras]:
        requirement = Requirement(line)
        name = SAME_PACKAGE.get(requirement.name, requirement.name)
        specifiers.setdefault(name, set()).add(str(requirement.specifier))
    return specifiers


def pip_requirements(env_file) -> list[Requirement]:
    env = yaml.safe_load(env_file.read_text())
    pip = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict)]
    return [Requirement(line) for entries in pip for line in entries]


@pytest.mark.parametrize("env_file", ENVS, ids=[env.name for env in ENVS])
def test_env_versions_match_pyproject(env_file):
    expected = pyproject_specifiers()
    requirements = pip_requirements(env_file)
    assert requirements, f"{env_file.name} lists no pip packages"
    for requirement in requirements:
        assert requirement.name in expected, f"{requirement.name} is not in pyproject.toml"
        assert expected[requirement.name] == {str(requirement.specifier)}, (
            f"{env_file.name}: {requirement} but pyproject.toml has {expected[requirement.name]}"
        )
    python = [
        dep for dep in yaml.safe_load(env_file.read_text())["dependencies"] if dep == "python=3.11"
    ]
    assert python, f"{env_file.name} pins python=3.11 (librosa < 1.0, as pyproject)"


def rules_with_scripts() -> list[tuple[str, str, str | None]]:
    """(rule, script, conda env) for every rule with a `script:` in workflow/rules/*.smk."""
    found = []
    for smk in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):\s*$", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", body)
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body)
            if script:
                found.append((name, script.group(1), conda.group(1) if conda else None))
    return found


def _imported_at_load(path) -> set[str]:
    """Modules `path` imports when it is loaded: module level, outside functions and
    TYPE_CHECKING blocks (imports inside functions load only when called)."""
    found: set[str] = set()

    def visit(node) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            else:
                visit(child)

    visit(ast.parse(path.read_text()))
    return found


def third_party_imports(script) -> set[str]:
    """Top-level names of the non-dawnchorus modules a script loads, through every dawnchorus
    module it loads."""
    third_party: set[str] = set()
    seen, pending = set(), [script]
    while pending:
        for name in _imported_at_load(pending.pop()):
            parts = name.split(".")
            if parts[0] != "dawnchorus":
                if parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                    third_party.add(parts[0])
                continue
            for depth in range(1, len(parts) + 1):
                module = SRC.joinpath(*parts[:depth])
                module = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
                if module.is_file() and module not in seen:
                    seen.add(module)
                    pending.append(module)
    return third_party


def test_every_scripted_rule_has_an_env_that_can_run_it():
    rules = rules_with_scripts()
    assert {"manifest", "train_fold", "tune", "embeddings", "reference"} <= {
        name for name, _, _ in rules
    }
    distributions = packages_distributions()
    rules_dir = REPO_ROOT / "workflow" / "rules"
    for name, script, conda in rules:
        assert conda, f"rule {name} has no conda: directive"
        env_file = (rules_dir / conda).resolve()
        assert env_file.is_file(), f"rule {name}: {conda} does not exist"
        packages = {requirement.name for requirement in pip_requirements(env_file)}
        source = (rules_dir / script).resolve().read_text()
        if re.search(r"from dawnchorus\.learning\.(train|tune|baseline) import", source):
            assert {"tensorflow", "keras", "keras-tuner"} <= packages, (name, env_file.name)
        if "dawnchorus.reporting" in source:
            assert "matplotlib" in packages, (name, env_file.name)
        # the interpreter is imported where it runs
        if "dawnchorus.pretrained.embeddings" in source:
            assert "ai-edge-litert" in packages, (name, env_file.name)
        needed = {
            canonicalize_name(SAME_PACKAGE.get(dist, dist))
            for module in third_party_imports(rules_dir / script)
            for dist in distributions.get(module, [module])
        }
        missing = needed - {canonicalize_name(package) for package in packages}
        assert not missing, f"rule {name}: {env_file.name} lacks {sorted(missing)}"

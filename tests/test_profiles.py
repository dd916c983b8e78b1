"""profiles/slurm maps the rules onto the cluster without contradicting what they declare."""

from __future__ import annotations

import re

import yaml
from support import REPO_ROOT

PROFILE = yaml.safe_load((REPO_ROOT / "profiles" / "slurm" / "config.yaml").read_text())
TRAINING_RULES = ("tune", "tune_worker", "train_fold", "train_round_fold")
GPU_RULES = (*TRAINING_RULES, "pseudo_labels")


def declared_threads() -> dict[str, int]:
    threads = {}
    for smk in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule (\w+):\s*$", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            match = re.search(r"^\s*threads:\s*(\d+)", body, re.MULTILINE)
            threads[name] = int(match.group(1)) if match else 1
    return threads


def test_cpus_per_task_repeats_the_rules_threads():
    """Snakemake caps threads at the login node's cores: the profile restates them."""
    threads = declared_threads()
    for rule, resources in PROFILE["set-resources"].items():
        assert rule in threads, f"profile names rule {rule}, which does not exist"
        if "cpus_per_task" in resources:
            assert resources["cpus_per_task"] == max(1, threads[rule]), rule
    for rule in TRAINING_RULES:
        assert PROFILE["set-resources"][rule]["cpus_per_task"] == threads[rule] == 8


def test_gpu_rules_on_the_gpu_partition_everything_else_on_cpu():
    default = PROFILE["default-resources"]
    assert default["slurm_partition"] == "cpu" and "gres" not in default
    for rule in GPU_RULES:
        resources = PROFILE["set-resources"][rule]
        assert resources["slurm_partition"] == "free-gpu"
        assert resources["gres"] == "gpu:V100:1"
    assert PROFILE["set-resources"]["train_fold"]["runtime"] == 12 * 60
    assert PROFILE["set-resources"]["train_round_fold"] == PROFILE["set-resources"]["train_fold"]
    assert PROFILE["set-resources"]["tune"]["runtime"] == 24 * 60
    assert "gres" not in PROFILE["set-resources"]["tune_chief"]
    assert PROFILE["retries"] >= 1 and PROFILE["executor"] == "slurm"

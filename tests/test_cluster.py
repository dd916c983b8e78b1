"""The workflow on a real SLURM cluster: `--profile profiles/slurm` against slurmctld, slurmd and
slurmdbd started on this machine by tests/cluster/ (root and apt needed; skipped otherwise).

What only SLURM can prove: each job submitted to its partition with its resources, a cancelled
(preempted) job resubmitted by the profile's retries and resuming, one fold's target submitting
one job, a dry run submitting nothing, and the scheduler's failures (a missing partition, a job
over its memory, the controller down) reported clearly. The local debug run (`debug_run`, which
test_workflow checks end to end) already proves the jobs' work: the SLURM runs start from a copy
of it and submit single jobs by target (a fold, with the small backbone; the baseline, a CPU
job), judging what is out of date by modification times alone. Every job of the DAG is checked
in the cluster profile's plan, with the partition and resources it would get."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from support import REPO_ROOT

from dawnchorus.learning.checkpoints import epochs_backed_up

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

CLUSTER_SCRIPTS = REPO_ROOT / "tests" / "cluster"
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"
# the small backbone's epochs take a fraction of a second: twelve of them (early stopping off)
# leave a train_fold job running long enough after its first epoch to be cancelled mid-training
TRAINING_OVERRIDES = [
    "debug={enabled: true, epochs: 12}",
    "training={patience: 12}",
    "model={backbone: small_cnn}",
]
# the copy's other outputs stay as the debug run made them: a fold retrained with other settings
# does not make them out of date here (the plans of a changed config are test_workflow's)
MTIME_ONLY = ("--rerun-triggers", "mtime")
INSTALL_TIMEOUT = 600
# a guard against a hang, not a time limit: the run takes about a minute on two idle cores
RUN_TIMEOUT = 1200
FOLD_0 = ("models", "fold_0", "model.keras")
# the rules of the debug DAG (with the BirdNET extra, as `make venv` installs)
DEBUG_DAG_RULES = (
    "manifest",
    "folds",
    "spectrograms",
    "spectrogram_index",
    "baseline",
    "embeddings",
    "reference",
    "tune",
    "train_fold",
    "soundscape_spectrograms",
    "pseudo_labels",
    "train_round_fold",
    "aggregate",
    "ensemble",
    "tuning_report",
    "report",
    "export",
    "predict",
    "soundscape_score",
    "soundscape_ablation",
    "summary",
)
# where each rule runs (profiles/slurm/config.yaml): (partition, V100s, mem_mb, cpus)
TRAINING_RESOURCES = ("free-gpu", "1", "32000", "8")
RESOURCES = {
    "tune": TRAINING_RESOURCES,
    "train_fold": TRAINING_RESOURCES,
    "train_round_fold": TRAINING_RESOURCES,
    "pseudo_labels": ("free-gpu", "1", "16000", "4"),
    "manifest": ("cpu", None, None, "4"),
    "reference": ("cpu", None, None, "4"),
}


def _timed(command: list[str], seconds: float, **kwargs) -> subprocess.CompletedProcess:
    """Run under `timeout -s KILL`, so that nothing waiting on a scheduler can hang the tests."""
    return subprocess.run(
        ["timeout", "-s", "KILL", str(int(seconds)), *command],
        capture_output=True,
        text=True,
        **kwargs,
    )


def _why_no_cluster() -> str | None:
    if sys.platform != "linux":
        return "the SLURM tests need Linux"
    if os.geteuid() != 0:
        return "the SLURM tests install and start a cluster: run them as root"
    if shutil.which("timeout") is None:
        return "the SLURM tests need coreutils' timeout"
    installed = all(shutil.which(name) for name in ("sbatch", "sacct", "slurmctld", "munged"))
    if not installed and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


_START_FAILURE: list[str] = []  # a cluster that would not start is not tried again per test


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node cluster (partitions cpu and free-gpu, one fake V100) for the session."""
    if _START_FAILURE:
        pytest.fail(_START_FAILURE[0])
    reason = _why_no_cluster()
    if reason:
        print(f"\nskipping SLURM tests: {reason}")
        pytest.skip(reason)
    started = time.monotonic()
    install = _timed(["bash", str(CLUSTER_SCRIPTS / "install.sh")], INSTALL_TIMEOUT)
    if install.returncode != 0:
        reason = f"SLURM could not be installed (no network?): {install.stderr.strip()[-500:]}"
        print(f"\nskipping SLURM tests: {reason}")
        pytest.skip(reason)
    installed = time.monotonic()
    start = _timed(["bash", str(CLUSTER_SCRIPTS / "start.sh")], 300)
    if start.returncode == 3:  # a SLURM configured by someone else: not ours to touch
        pytest.skip(start.stderr.strip())
    try:
        if start.returncode != 0:
            _START_FAILURE.append(f"cluster did not start:\n{start.stdout}\n{start.stderr}")
            pytest.fail(_START_FAILURE[0])
        print(
            f"\nSLURM test cluster: install {installed - started:.0f} s, "
            f"start {time.monotonic() - installed:.0f} s"
        )
        yield
    finally:
        _timed(["bash", str(CLUSTER_SCRIPTS / "stop.sh")], 120)


@dataclass
class SlurmJob:
    job_id: str
    rule: str
    wildcards: str
    partition: str
    req_tres: str
    state: str


FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def sacct_jobs(run_id: str, wait_s: float = 60) -> list[SlurmJob]:
    """The jobs one Snakemake run submitted (the plugin names them by the run's id and writes
    `rule_<name>[_wildcards_<values>]` into the comment).

    Snakemake learns that a job ended from the controller (squeue); the accounting database,
    which sacct reads, is updated after it. Waits up to `wait_s` for every job to show a final
    state there, so the states asserted are never a race with slurmdbd."""
    since = f"{datetime.now() - timedelta(days=2):%Y-%m-%dT%H:%M}"
    deadline = time.monotonic() + wait_s
    while True:
        result = _timed(
            [
                "sacct",
                "--parsable2",
                "--noheader",
                "-X",
                "--starttime",
                since,
                "--name",
                run_id,
                "--format=JobID,Comment,Partition,ReqTRES,State",
            ],
            60,
        )
        assert result.returncode == 0, result.stderr
        jobs = []
        for line in result.stdout.splitlines():
            job_id, comment, partition, req_tres, state = line.split("|")
            rule, _, wildcards = comment.removeprefix("rule_").partition("_wildcards_")
            jobs.append(SlurmJob(job_id, rule, wildcards, partition, req_tres, state.split()[0]))
        if all(job.state in FINAL_STATES for job in jobs) or time.monotonic() > deadline:
            return sorted(jobs, key=lambda job: int(job.job_id))
        time.sleep(1)


def _wait_for(condition, seconds: float, interval: float = 1.0):
    """condition() until it returns something true or `seconds` pass; returns the last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def run_id_of(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, f"no SLURM run ID in Snakemake's output:\n{output[-3000:]}"
    return match.group(1)


def snakemake_command(*args: str, profile: Path = SLURM_PROFILE) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--profile",
        str(profile),
        # the plugin's first status check comes after 40 s by default: jobs here take seconds
        "--slurm-init-seconds-before-status-checks",
        "2",
        *args,
    ]


def run_on_cluster(*args: str, workdir: Path, timeout: float = 600, **kwargs):
    return _timed(snakemake_command(*args, **kwargs), timeout, cwd=workdir)


@dataclass
class ClusterRun:
    workdir: Path
    results: Path
    args: list[str]
    output: str
    returncode: int
    seconds: float
    run_id: str
    cancelled_after_epochs: int

    def target(self, path: Path) -> str:
        """`path` as a target of a run from `workdir` (the rules name their outputs relative)."""
        return str(path.relative_to(self.workdir))

    def snakemake(self, *args: str, timeout: float = 600, **kwargs):
        return run_on_cluster(*self.args, *args, workdir=self.workdir, timeout=timeout, **kwargs)


def _running_train_fold_job() -> str | None:
    result = _timed(["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k"], 30)
    for line in result.stdout.splitlines():
        job_id, _, comment = line.partition("|")
        if comment.startswith("rule_train_fold"):
            return job_id
    return None


@pytest.fixture(scope="module")
def cluster_run(slurm_cluster, tmp_path_factory, debug_run) -> ClusterRun:
    """Fold 0 trained again through SLURM, by its target, on a copy of the local debug run. Once
    its job has finished an epoch, the job is cancelled (as a preemption or a lost node would end
    it); the profile's retries resubmit it."""
    copy = debug_run.copy_to(tmp_path_factory.mktemp("slurm_run") / "workdir")
    workdir, results = copy.workdir, copy.results
    args = [*MTIME_ONLY, *copy.args, *TRAINING_OVERRIDES]
    log = workdir / "snakemake.out"
    backup = results / "models" / "fold_0" / "work" / "backup"
    started = time.monotonic()
    with open(log, "w") as out:
        run = subprocess.Popen(
            [
                "timeout",
                "-s",
                "KILL",
                str(RUN_TIMEOUT),
                *snakemake_command(*args, "--forcerun", "train_fold", "--", copy.target(*FOLD_0)),
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        cancelled_after = 0
        while run.poll() is None and not cancelled_after:
            epochs = epochs_backed_up(backup)
            job = _running_train_fold_job() if epochs >= 1 else None
            if job:
                _timed(["scancel", job], 30)
                cancelled_after = epochs
            time.sleep(0.05)
        run.wait()
    output = log.read_text()
    return ClusterRun(
        workdir=workdir,
        results=results,
        args=args,
        output=output,
        returncode=run.returncode,
        seconds=time.monotonic() - started,
        run_id=run_id_of(output),
        cancelled_after_epochs=cancelled_after,
    )


def planned_resources(plan: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of each job a dry run lists for the cluster, resources as Snakemake
    prints them. `all` is left out: it only collects the targets, nothing is submitted for it."""
    jobs = []
    for block in re.split(r"^(?:local)?rule ", plan, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0]
        if rule == "all":
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        assert resources, f"no resources planned for {rule}:\n{block}"
        jobs.append((rule, dict(item.split("=", 1) for item in resources.group(1).split(", "))))
    return jobs


def expected_resources(rule: str) -> tuple[str, str | None, str | None, str | None]:
    """(partition, V100s, mem_mb, cpus) for a rule; None where the profile leaves the default."""
    return RESOURCES.get(rule, ("cpu", None, None, None))


def test_each_job_runs_or_is_planned_on_its_partition(cluster_run):
    """tune and the training rules: their own jobs on free-gpu with a V100, 32 GB and 8 CPUs;
    pseudo_labels on a V100 with 16 GB and 4 CPUs; the rest on cpu. Accounting shows where the
    fold's jobs ran (the baseline's, a CPU job: the controller test); every job of the debug DAG
    is checked in the cluster profile's plan."""
    assert cluster_run.returncode == 0, cluster_run.output[-6000:]
    print(f"\nfold 0 through SLURM, cancelled once: {cluster_run.seconds:.0f} s")
    card = json.loads((cluster_run.results / "models" / "fold_0" / "metrics.json").read_text())
    assert card["image_size"] == [64, 64] and card["epochs_run"] == 12

    jobs = sacct_jobs(cluster_run.run_id)
    assert [job.rule for job in jobs] == ["train_fold", "train_fold"], jobs
    for job in jobs:
        tres = dict(item.split("=") for item in job.req_tres.split(","))
        assert job.partition == "free-gpu" and tres["gres/gpu:v100"] == "1", job
        assert tres["mem"] == "32000M" and tres["cpu"] == "8", job

    # every job of the debug DAG, as the profile would submit it
    plan = cluster_run.snakemake("-n", "--forceall", timeout=120)
    assert plan.returncode == 0, plan.stderr
    planned = planned_resources(plan.stdout)
    assert {rule for rule, _ in planned} == set(DEBUG_DAG_RULES)
    for rule, resources in planned:
        partition, gpus, mem_mb, cpus = expected_resources(rule)
        assert resources["slurm_partition"] == partition, (rule, resources)
        assert resources.get("gres") == (gpus and f"gpu:V100:{gpus}"), (rule, resources)
        if mem_mb:
            assert resources["mem_mb"] == mem_mb, (rule, resources)
        if cpus:
            assert resources["cpus_per_task"] == cpus, (rule, resources)


def test_cancelled_training_job_is_resubmitted_and_resumes(cluster_run):
    """Preemption: scancel of the running train_fold job, the retry resumes from the backup."""
    assert cluster_run.returncode == 0, cluster_run.output[-6000:]
    killed_after = cluster_run.cancelled_after_epochs
    assert 1 <= killed_after < 12, "the train_fold job was not cancelled mid-training"
    fold = cluster_run.results / "models" / "fold_0"
    log = (cluster_run.results / "logs" / "train" / "fold_0.log").read_text()
    assert f"resuming after epoch {killed_after}" in log
    history = pd.read_csv(fold / "history.csv")
    assert history["epoch"].tolist() == list(range(12)), "each epoch trained once"
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == killed_after
    # the cancelled job and its resubmission, from accounting (not from what the plugin printed)
    jobs = [job for job in sacct_jobs(cluster_run.run_id) if job.rule == "train_fold"]
    assert [job.state for job in jobs] == ["CANCELLED", "COMPLETED"], jobs


def test_dry_run_prints_the_plan_and_submits_nothing(cluster_run):
    before = _all_job_ids()
    plan = cluster_run.snakemake("-n", "--forcerun", "train_fold", timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"^train_fold\s+1$", plan.stdout, re.MULTILINE), plan.stdout
    assert _all_job_ids() == before


def _all_job_ids() -> set[str]:
    since = f"{datetime.now() - timedelta(days=2):%Y-%m-%dT%H:%M}"
    result = _timed(
        ["sacct", "--parsable2", "--noheader", "-X", "-a", "-S", since, "--format=JobID"], 60
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_a_fold_target_submits_that_folds_job_alone(cluster_run, debug_run):
    """Asking for fold 0's model submitted fold 0's job (and its retry) and nothing else: the
    later outputs are the debug run's, untouched."""
    jobs = sacct_jobs(cluster_run.run_id)
    assert [(job.rule, job.wildcards, job.partition) for job in jobs] == [
        ("train_fold", "0", "free-gpu")
    ] * 2
    for name in ("cv_results.json", "models/round_1/fold_0/model.keras", "baseline/metrics.json"):
        copied, original = cluster_run.results / name, debug_run.results / name
        assert copied.stat().st_mtime_ns == original.stat().st_mtime_ns, name
    assert (cluster_run.results / "models" / "fold_0" / "model.keras").stat().st_mtime_ns > (
        debug_run.results / "models" / "fold_0" / "model.keras"
    ).stat().st_mtime_ns


def test_partition_missing_from_the_cluster_fails_clearly(cluster_run, tmp_path):
    """A profile naming a partition this cluster lacks: sbatch's refusal is shown, no hang."""
    profile = tmp_path / "profile"
    shutil.copytree(SLURM_PROFILE, profile)
    config = profile / "config.yaml"
    config.write_text(config.read_text().replace('"free-gpu"', '"gpu-a100"'))
    target = cluster_run.results / "models" / "fold_3" / "model.keras"
    result = cluster_run.snakemake(
        "--forcerun",
        "train_fold",
        "--",
        cluster_run.target(target),
        profile=profile,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode not in (0, -9, 137), output[-4000:]
    assert "SLURM sbatch failed" in output and "Invalid partition name specified" in output
    assert not target.exists()


def _megabytes(size: str) -> float:
    """sacct's sizes ("438472K", "300M", "1.5G") in MB."""
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
    if size and size[-1] in units:
        return float(size[:-1]) * units[size[-1]]
    return float(size or 0) / 2**20


def killed_steps_over_memory(job_id: str, limit_mb: float) -> list[str]:
    """Steps of a job that accounting shows killed (signal 9) after using more than `limit_mb`."""
    result = _timed(
        ["sacct", "--parsable2", "--noheader", "-j", job_id, "--format=JobID,ExitCode,MaxRSS"],
        60,
    )
    assert result.returncode == 0, result.stderr
    steps = [line.split("|") for line in result.stdout.splitlines()]
    return [
        step
        for step, exit_code, max_rss in steps
        if exit_code.endswith(":9") and _megabytes(max_rss) > limit_mb
    ]


def test_job_over_its_memory_is_reported_with_the_slurm_reason(cluster_run):
    """SLURM kills a job above its --mem; the run fails, and the reason is where the README
    says to look: sacct and the job's SLURM log under .snakemake/slurm_logs/.

    Snakemake's own output may or may not quote SLURM's "Exceeded job memory limit": the plugin
    shows the log as it is when squeue reports the failure, and slurmstepd can write its line
    after that. So the test asserts what SLURM guarantees, not what the plugin happened to print.
    """
    target = cluster_run.results / "models" / "fold_4" / "model.keras"
    result = cluster_run.snakemake(
        "--forcerun",
        "train_fold",
        "--retries",
        "0",
        "--set-resources",
        "train_fold:mem_mb=300",
        "--",
        cluster_run.target(target),
    )
    output = result.stdout + result.stderr
    assert result.returncode not in (0, -9, 137), output[-4000:]
    jobs = sacct_jobs(run_id_of(output))
    assert [(job.rule, job.state) for job in jobs] == [("train_fold", "FAILED")], jobs
    job = jobs[0]
    assert "mem=300M" in job.req_tres
    assert f"SLURM-job '{job.job_id}' failed" in output
    # accounting: a step of the job was killed above the 300 MB it asked for
    killed = _wait_for(lambda: killed_steps_over_memory(job.job_id, 300), 60)
    assert killed, f"sacct -j {job.job_id} shows no step killed above its memory"
    # the job's own SLURM log, kept because the job failed, holds slurmstepd's reason
    slurm_log = cluster_run.workdir / ".snakemake" / "slurm_logs" / "rule_train_fold" / "4"
    slurm_log /= f"{job.job_id}.log"
    reason = "Exceeded job memory limit"
    assert _wait_for(lambda: slurm_log.is_file() and reason in slurm_log.read_text(), 60), (
        f"{slurm_log} lacks {reason!r}"
    )
    assert not target.exists()


def test_controller_down_fails_clearly_and_the_rerun_skips_finished_work(cluster_run):
    """slurmctld stopped: the run stops with sbatch's message; restarted, a rerun completes on
    the cpu partition without training the finished fold again."""
    model = cluster_run.results / "models" / "fold_0" / "model.keras"
    model_before = model.stat().st_mtime_ns
    stop = _timed(["bash", str(CLUSTER_SCRIPTS / "stop.sh"), "slurmctld"], 60)
    assert stop.returncode == 0, stop.stderr
    # the baseline alone: one CPU job, after the data stage it reads
    baseline = cluster_run.target(cluster_run.results / "baseline" / "metrics.json")
    target = ["--forcerun", "baseline", "--", baseline]
    try:
        # without the profile's retries: each resubmission would wait for the controller again
        down = cluster_run.snakemake("--retries", "0", *target, timeout=180)
    finally:
        start = _timed(["bash", str(CLUSTER_SCRIPTS / "start.sh")], 120)
        assert start.returncode == 0, start.stderr
    output = down.stdout + down.stderr
    assert down.returncode not in (0, -9, 137), output[-4000:]
    assert "Unable to contact slurm controller" in output, output[-4000:]

    rerun = cluster_run.snakemake(*target)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-6000:]
    jobs = sacct_jobs(run_id_of(output))
    assert [(job.rule, job.partition, job.state) for job in jobs] == [
        ("baseline", "cpu", "COMPLETED")
    ], jobs
    assert "gres/gpu" not in jobs[0].req_tres
    assert model.stat().st_mtime_ns == model_before

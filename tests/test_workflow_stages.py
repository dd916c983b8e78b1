"""The real Snakemake CLI on parts of the workflow: plans at BirdCLEF 2025's size, bad
configurations, the data stage killed and rerun, distributed tuning. (The whole debug DAG is
test_workflow.py's; these tests run beside it.)"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from support import (
    DEBUG_CONFIG,
    REPO_ROOT,
    DatasetBuilder,
    birdnet_installed,
    job_counts,
    run_snakemake,
    start_snakemake,
    tone,
    wait_for,
)

from dawnchorus.config import load_config
from dawnchorus.demo.layout import write_catalogue_only

pytestmark = pytest.mark.workflow
FULL_CONFIG = str(REPO_ROOT / "config" / "config.yaml")
# rule names as targets: the data stage alone ("--" ends the values of --config before them)
DATA_STAGE = ["--", "folds", "spectrogram_index"]
BIRDNET = birdnet_installed()


@pytest.fixture
def birdclef_csvs(tmp_path):
    """The CSVs of a BirdCLEF 2025-sized data set (28,564 rows, 206 classes), no audio."""
    return write_catalogue_only(tmp_path / "birdclef")


def _plan_full_config(tmp_path, data, *overrides):
    """`snakemake -n` with config/config.yaml on `data`, results under tmp_path/out."""
    return run_snakemake(
        "-n",
        "--configfile",
        FULL_CONFIG,
        "--config",
        f"data_dir={data}",
        f"results_dir={tmp_path / 'out'}",
        *overrides,
        workdir=tmp_path,
    )


def test_dry_run_plans_per_shard_not_per_file(tmp_path, birdclef_csvs):
    """28,564 rows (the BirdCLEF 2025 size): the plan has one job per shard, none per file."""
    result = _plan_full_config(tmp_path, birdclef_csvs)
    shards = load_config(FULL_CONFIG, {"data_dir": "x"})["shards"]["count"]
    reference = {"embeddings": shards, "reference": 1, "ensemble": 1} if BIRDNET else {}
    assert job_counts(result.stdout) == {
        **reference,
        "manifest": 1,
        "folds": 1,
        "spectrograms": shards,
        "spectrogram_index": 1,
        "tune": 1,
        "train_fold": 5,
        "baseline": 1,
        "aggregate": 1,
        "report": 1,
        "tuning_report": 1,
        "export": 1,
        "predict": 1,  # no ground truth for the test soundscapes: no soundscape_score
        "summary": 1,
        "all": 1,
        "total": shards + 17 + sum(reference.values()),
    }
    assert str(tmp_path / "out" / "spectrograms" / "shard_000.h5") in result.stdout


def _plan_rounds(tmp_path, data, rounds, warm_start=True):
    settings = f"rounds: {rounds}, shards: 4, warm_start: {str(warm_start).lower()}"
    return _plan_full_config(tmp_path, data, f"semi_supervised={{{settings}}}")


def test_dry_run_plans_every_self_training_round_at_once(tmp_path, birdclef_csvs):
    """Two rounds over 2,000 train soundscapes: per round one pseudo-label job per soundscape
    shard and one job per fold, round 0 where it always was, nothing per file."""
    soundscapes = birdclef_csvs / "train_soundscapes"
    soundscapes.mkdir()
    for index in range(2000):  # listed when the workflow is parsed, read only by the jobs
        (soundscapes / f"H{index:04d}_20230401_050000.ogg").touch()
    result = _plan_rounds(tmp_path, birdclef_csvs, rounds=2)
    counts = job_counts(result.stdout)
    assert {name: counts[name] for name in ("soundscape_spectrograms", "pseudo_labels")} == {
        "soundscape_spectrograms": 4,
        "pseudo_labels": 8,  # labels of round 0 and of round 1, 4 shards each
    }
    assert counts["train_fold"] == 5 and counts["train_round_fold"] == 10
    out = tmp_path / "out"
    for path in (
        out / "models" / "fold_4" / "model.keras",
        out / "models" / "round_2" / "fold_4" / "model.keras",
        out / "rounds" / "1" / "pseudo_labels" / "shard_003.h5",
    ):
        assert str(path) in result.stdout


def test_no_train_soundscapes_means_warm_restarts_without_mixing_and_says_so(
    tmp_path, birdclef_csvs
):
    result = _plan_rounds(tmp_path, birdclef_csvs, rounds=2)
    assert "holds no audio file to self-train on: rounds 1 to 2 train the folds again" in (
        result.stdout + result.stderr
    )
    counts = job_counts(result.stdout)
    assert counts["train_fold"] == 5 and counts["train_round_fold"] == 10
    assert "pseudo_labels" not in counts and "soundscape_spectrograms" not in counts
    assert str(tmp_path / "out" / "models" / "round_2" / "fold_4" / "model.keras") in result.stdout


def test_no_train_soundscapes_without_warm_start_means_round_0_only(tmp_path, birdclef_csvs):
    result = _plan_rounds(tmp_path, birdclef_csvs, rounds=2, warm_start=False)
    assert "only round 0 (the labelled recordings) is trained" in result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["train_fold"] == 5
    assert "train_round_fold" not in counts and "pseudo_labels" not in counts


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bogus=1", "unknown key 'bogus'"),
        ("seed=abc", "seed:"),
        ("audio={n_mels: many}", "audio.n_mels"),
        ("data_dir=/no/such/dir", "does not exist"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, tiny_demo, override, message):
    results = tmp_path / "results"
    result = run_snakemake(
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={results}",
        override,
        workdir=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not results.exists()


def test_distributed_tuning_a_chief_and_two_workers_share_the_trials(tmp_path, tiny_demo):
    """tuner.workers: 2 on loopback: a tune_chief job and two tune_worker jobs, two cores."""
    results = tmp_path / "results"
    tuning = results / "tuning"
    workers = [str(tuning / "workers" / f"worker_{k}.json") for k in range(2)]
    args = [
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={results}",
        "tuner={workers: 2}",
        "debug={enabled: true, trials: 4, epochs: 1}",
        "model={backbone: small_cnn}",  # the distribution is tested, not the model
        "--set-threads",
        "tune_worker=1",
    ]
    targets = ["--", str(tuning / "hyperparameter_tuning_results.json"), *workers]
    plan = job_counts(run_snakemake("-n", *args, *targets, workdir=tmp_path).stdout)
    assert plan["tune_chief"] == 1 and plan["tune_worker"] == 2 and "tune" not in plan
    run_snakemake(*args, *targets, workdir=tmp_path)

    ran = [json.loads(Path(path).read_text())["trials"] for path in workers]
    assert all(ran), f"both workers trained trials: {ran}"
    assert len(set(ran[0]) | set(ran[1])) == len(ran[0]) + len(ran[1]), "no trial ran twice"
    tuned = json.loads((tuning / "hyperparameter_tuning_results.json").read_text())
    assert sorted(t["trial_id"] for t in tuned["trials"]) == sorted(ran[0] + ran[1])
    assert tuned["num_completed"] == 4
    assert "chief listening on 127.0.0.1" in (results / "logs" / "tune_chief.log").read_text()

    # a worker started after the search finished finds nothing left to do, and says so
    run_snakemake(*args, "--forcerun", "tune_worker", "--", workers[1], workdir=tmp_path)
    assert json.loads(Path(workers[1]).read_text())["trials"] == []
    log = (results / "logs" / "tune_worker" / "worker_1.log").read_text()
    assert "the chief has already finished the search" in log


def test_nested_overrides_reach_the_rules(tmp_path, tiny_demo):
    result = run_snakemake(
        "-n",
        "-p",
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={tmp_path / 'r'}",
        "shards={count: 3}",
        workdir=tmp_path,
    )
    assert job_counts(result.stdout)["spectrograms"] == 3


@pytest.fixture
def slow_shard_data(tmp_path):
    """One shard that takes a few seconds to write (40 one-minute FLAC recordings)."""
    data = DatasetBuilder(tmp_path / "slow", classes=["zebfin1"])
    for i in range(40):
        data.add_recording(f"zebfin1/XC{i:02d}.flac", tone(60, 32000, 400 + 97 * i))
    return data.write()


def test_kill_9_mid_write_then_rerun_gives_a_byte_identical_shard(tmp_path, slow_shard_data):
    def args(results):
        return [
            "--configfile",
            DEBUG_CONFIG,
            "--config",
            f"data_dir={slow_shard_data}",
            f"results_dir={results}",
            "shards={count: 1}",
        ]

    reference = tmp_path / "reference"
    run_snakemake(*args(reference), *DATA_STAGE, workdir=tmp_path)

    results = tmp_path / "results"
    shard = results / "spectrograms" / "shard_000.h5"
    # 1) the job alone is killed (the OOM killer, say): Snakemake reports it and goes on
    run = start_snakemake([*args(results), *DATA_STAGE], tmp_path)
    assert wait_for(lambda: list(shard.parent.glob("shard_000.h5.tmp-*")))
    time.sleep(0.3)
    jobs = [
        p
        for p in psutil.Process(run.pid).children(recursive=True)
        if any("spectrograms.py" in part for part in p.cmdline())
    ]
    assert len(jobs) == 1
    jobs[0].send_signal(signal.SIGKILL)
    assert run.wait(timeout=120) != 0
    assert not shard.exists()

    # 2) the whole run dies (node failure): workflow and job killed together, once this job has
    # begun its own temporary file (the killed job's is still there)
    run_snakemake("--unlock", *args(results), workdir=tmp_path)
    left_over = set(shard.parent.glob("shard_000.h5.tmp-*"))
    run = start_snakemake([*args(results), *DATA_STAGE], tmp_path)
    assert wait_for(lambda: set(shard.parent.glob("shard_000.h5.tmp-*")) - left_over)
    time.sleep(0.3)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not shard.exists(), "a killed job must not leave a valid-looking shard"

    run_snakemake("--unlock", *args(results), workdir=tmp_path)
    run_snakemake(*args(results), *DATA_STAGE, workdir=tmp_path)
    assert shard.read_bytes() == (reference / "spectrograms" / "shard_000.h5").read_bytes()
    assert not list(shard.parent.glob("shard_000.h5.tmp-*"))


def test_rerunning_one_shard_touches_nothing_else(tmp_path, tiny_demo):
    results = tmp_path / "results"
    base = [
        "--configfile",
        DEBUG_CONFIG,
        "--config",
        f"data_dir={tiny_demo}",
        f"results_dir={results}",
    ]
    run_snakemake(*base, *DATA_STAGE, workdir=tmp_path)
    target = str(results / "spectrograms" / "shard_001.h5")
    plan = run_snakemake(*base, "-n", "--forcerun", "spectrograms", "--", target, workdir=tmp_path)
    assert job_counts(plan.stdout) == {"spectrograms": 1, "total": 1}
    assert Path(target).exists()

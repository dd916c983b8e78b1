"""Cross-validation folds by iterative multilabel stratification over primary + secondary labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import KFold

from dawnchorus.data.manifest import label_matrix, read_classes, read_manifest

log = logging.getLogger(__name__)


def assign_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. n_folds-1) for each row of a multi-hot label matrix.

    Deterministic for a given seed. Classes rarer than n_folds still get all their rows placed:
    they simply cannot appear in every fold.
    """
    n_rows = len(labels)
    if n_rows < n_folds:
        raise ValueError(
            f"{n_rows} usable recording(s) cannot be split into {n_folds} folds; "
            "lower folds.n_folds or add data"
        )
    present = labels[:, labels.sum(axis=0) > 0]
    if present.shape[1] < 2:
        # one class: nothing to stratify (and iterstrat refuses a single label column)
        log.warning("only one class has recordings: folds are a plain shuffled split")
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(n_rows, -1, dtype=np.int64)
    for fold, (_, validation) in enumerate(splitter.split(np.zeros((n_rows, 1)), present)):
        folds[validation] = fold
    if (folds < 0).any():
        raise AssertionError("a row was not assigned to any fold")
    return folds


def rare_classes(labels: np.ndarray, classes: Sequence[str], n_folds: int) -> dict[str, int]:
    """Classes with at least one but fewer than n_folds recordings, with their counts."""
    counts = labels.sum(axis=0)
    return {
        label: int(count)
        for label, count in zip(classes, counts, strict=True)
        if 0 < count < n_folds
    }


def log_fold_report(
    labels: np.ndarray, folds: np.ndarray, classes: Sequence[str], n_folds: int
) -> None:
    sizes = np.bincount(folds, minlength=n_folds)
    log.info("fold sizes: %s", dict(enumerate(sizes.tolist())))
    rare = rare_classes(labels, classes, n_folds)
    if rare:
        lines = []
        for label, count in sorted(rare.items(), key=lambda item: (item[1], item[0])):
            column = list(classes).index(label)
            in_folds = sorted(set(folds[labels[:, column] > 0].tolist()))
            lines.append(f"{label} ({count} recording(s), folds {in_folds})")
        log.warning(
            "%d class(es) have fewer recordings than folds and cannot be in every fold: %s",
            len(rare),
            "; ".join(lines),
        )
    absent = [label for label, count in zip(classes, labels.sum(axis=0), strict=True) if count == 0]
    if absent:
        log.warning(
            "%d class(es) have no training recording at all: %s",
            len(absent),
            ", ".join(absent[:50]),
        )


def write_folds(filenames: Sequence[str], folds: np.ndarray, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"filename": list(filenames), "fold": folds}).to_csv(
        path, index=False, lineterminator="\n"
    )


def read_folds(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"filename": str, "fold": np.int64}, keep_default_na=False)


def folds_stage(
    manifest_csv: str | Path,
    classes_txt: str | Path,
    folds_csv: str | Path,
    n_folds: int,
    seed: int,
) -> np.ndarray:
    """The `folds` rule: folds.csv (filename, fold) in manifest order."""
    manifest = read_manifest(manifest_csv)
    classes = read_classes(classes_txt)
    labels = label_matrix(manifest, classes)
    folds = assign_folds(labels, n_folds, seed)
    log_fold_report(labels, folds, classes, n_folds)
    write_folds(manifest["filename"], folds, folds_csv)
    return folds


@dataclass(frozen=True)
class LabelledClips:
    """The manifest's recordings with their multi-hot labels and folds, in manifest order."""

    filenames: list[str]
    labels: np.ndarray  # (n, classes) float32: primary and secondary labels
    folds: np.ndarray  # (n,) int64
    classes: list[str]
    primary: np.ndarray  # (n,) int64: column of each recording's primary label

    def targets(self, secondary_weight: float) -> np.ndarray:
        """Training targets: 1 for the primary label, `secondary_weight` for secondary ones."""
        targets = self.labels * np.float32(secondary_weight)
        targets[np.arange(len(self.primary)), self.primary] = 1.0
        return targets


def load_labelled_clips(manifest_csv, classes_txt, folds_csv) -> LabelledClips:
    manifest = read_manifest(manifest_csv)
    classes = read_classes(classes_txt)
    folds = read_folds(folds_csv)
    if folds["filename"].tolist() != manifest["filename"].tolist():
        raise ValueError(f"{folds_csv} does not match {manifest_csv}: rerun the folds rule")
    column = {label: position for position, label in enumerate(classes)}
    return LabelledClips(
        filenames=manifest["filename"].tolist(),
        labels=label_matrix(manifest, classes).astype(np.float32),
        folds=folds["fold"].to_numpy(),
        classes=classes,
        primary=np.array(
            [column[str(label)] for label in manifest["primary_label"]], dtype=np.int64
        ),
    )

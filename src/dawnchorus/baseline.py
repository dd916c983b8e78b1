"""A simple baseline the CNN has to beat: logistic regression on clip-level log-mel statistics.

Each recording becomes the mean and standard deviation over time of every mel band (2 x n_mels
numbers) of its stored spectrogram; one L2-regularised logistic regression per class, on the same
folds as the CNN, scored with the same metric.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dawnchorus.config import AudioParams
from dawnchorus.folds import load_labelled_clips
from dawnchorus.metrics import birdclef_auc
from dawnchorus.shards import ClipStore

log = logging.getLogger(__name__)
DESCRIPTION = "logistic regression on clip-level mean and std of each log-mel band"


def clip_statistics(store: ClipStore) -> np.ndarray:
    """(recordings, 2 * n_mels): per-band mean and standard deviation over time (NaN if absent)."""
    features = np.full((len(store.n_frames), 2 * store.params.n_mels), np.nan, dtype=np.float32)
    for row in np.flatnonzero(store.available):
        frames = store.frames(int(row)).astype(np.float32)
        features[row] = np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
    return features


def run_baseline(
    manifest_csv: str | Path,
    classes_txt: str | Path,
    folds_csv: str | Path,
    shard_paths: Sequence[str | Path],
    params: AudioParams,
    folds_to_run: Sequence[int],
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    """Per-fold and out-of-fold macro AUC of the baseline; returns (metrics, oof predictions)."""
    clips = load_labelled_clips(manifest_csv, classes_txt, folds_csv)
    store = ClipStore(shard_paths, params, clips.filenames, ram_budget_mb=0)
    try:
        features = clip_statistics(store)
    finally:
        store.close()
    usable = store.available
    oof_parts, per_fold = [], {}
    for fold in folds_to_run:
        train = np.flatnonzero((clips.folds != fold) & usable)
        val = np.flatnonzero((clips.folds == fold) & usable)
        classifier = make_pipeline(
            StandardScaler(),
            OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000, random_state=seed)),
        )
        with warnings.catch_warnings():
            # a class absent from a training fold is predicted as constant (sklearn warns)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(features[train], clips.labels[train])
        scores = classifier.predict_proba(features[val])
        auc = birdclef_auc(clips.labels[val], scores)
        per_fold[f"fold_{fold}"] = {
            "fold": fold,
            "val_auc": auc.macro,
            "n_train": len(train),
            "n_val": len(val),
        }
        log.info("baseline fold %d: val_auc %.4f", fold, auc.macro)
        part = pd.DataFrame(scores, columns=clips.classes)
        part.insert(0, "fold", fold)
        part.insert(0, "filename", [clips.filenames[row] for row in val])
        oof_parts.append(part)
    oof = pd.concat(oof_parts, ignore_index=True)
    position = {name: row for row, name in enumerate(clips.filenames)}
    labels = clips.labels[[position[name] for name in oof["filename"]]]
    oof_auc = birdclef_auc(labels, oof[clips.classes].to_numpy())
    aucs = [entry["val_auc"] for entry in per_fold.values()]
    metrics = {
        "model": DESCRIPTION,
        "cv_results": {
            "mean_val_auc": float(np.mean(aucs)),
            "std_val_auc": float(np.std(aucs)),
            "oof_val_auc": oof_auc.macro,
        },
        "individual_folds": per_fold,
        "per_class_oof_auc": dict(zip(clips.classes, map(float, oof_auc.per_class), strict=True)),
    }
    return metrics, oof

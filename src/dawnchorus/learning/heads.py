"""A small head on one feature vector per recording, cross-validated on the CNN's folds.

The log-mel-statistics baseline and the BirdNET reference differ only in their features; both
train a standardised one-vs-rest logistic regression per fold on the recordings outside the fold,
score the fold's recordings with the BirdCLEF metric, and report in one schema (metrics.json and
oof.csv, the shape `aggregate_folds` reads). `linear_weights` turns a fitted fold head into plain
arrays, so that predicting with it needs numpy only (no pickled scikit-learn objects).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dawnchorus.data.folds import LabelledClips
from dawnchorus.learning.linear import LinearWeights
from dawnchorus.learning.metrics import birdclef_auc

log = logging.getLogger(__name__)


def cross_validate_head(
    features: np.ndarray,
    available: np.ndarray,
    clips: LabelledClips,
    folds_to_run: Sequence[int],
    seed: int,
    name: str,
    description: str,
    C: float = 1.0,
    n_jobs: int = 1,
) -> tuple[dict, pd.DataFrame, dict[int, LinearWeights]]:
    """Per-fold and out-of-fold macro AUC of logistic regression on `features` (`name` in the
    log, `description` in the metrics).

    `features` has one row per recording of `clips` (manifest order); rows where `available` is
    False (quarantined, not stored) take part in no fold. `n_jobs` fits that many classes at once
    (each class's fit is independent: the numbers do not depend on it). Returns (metrics, oof
    predictions, each fold's fitted head as arrays).
    """
    oof_parts, per_fold, fitted = [], {}, {}
    for fold in folds_to_run:
        train = np.flatnonzero((clips.folds != fold) & available)
        val = np.flatnonzero((clips.folds == fold) & available)
        classifier = make_pipeline(
            StandardScaler(),
            OneVsRestClassifier(
                LogisticRegression(C=C, max_iter=2000, random_state=seed), n_jobs=n_jobs
            ),
        )
        with warnings.catch_warnings():
            # a class absent from a training fold is predicted as constant (sklearn warns)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(features[train], clips.labels[train])
        scores = classifier.predict_proba(features[val])
        fitted[fold] = linear_weights(classifier, len(clips.classes))
        auc = birdclef_auc(clips.labels[val], scores)
        per_fold[f"fold_{fold}"] = {
            "fold": fold,
            "val_auc": auc.macro,
            "n_train": len(train),
            "n_val": len(val),
        }
        log.info("%s fold %d: val_auc %.4f", name, fold, auc.macro)
        part = pd.DataFrame(scores, columns=clips.classes)
        part.insert(0, "fold", fold)
        part.insert(0, "filename", [clips.filenames[row] for row in val])
        oof_parts.append(part)
    oof = pd.concat(oof_parts, ignore_index=True)
    position = {filename: row for row, filename in enumerate(clips.filenames)}
    labels = clips.labels[[position[name] for name in oof["filename"]]]
    oof_auc = birdclef_auc(labels, oof[clips.classes].to_numpy())
    aucs = [entry["val_auc"] for entry in per_fold.values()]
    metrics = {
        "model": description,
        "cv_results": {
            "mean_val_auc": float(np.mean(aucs)),
            "std_val_auc": float(np.std(aucs)),
            "oof_val_auc": oof_auc.macro,
        },
        "individual_folds": per_fold,
        "per_class_oof_auc": dict(zip(clips.classes, map(float, oof_auc.per_class), strict=True)),
    }
    return metrics, oof, fitted


# a class without a positive training example is predicted as a constant: its logit, clipped
_CONSTANT_LOGIT_LIMIT = 20.0


def linear_weights(classifier, n_classes: int) -> LinearWeights:
    """The arrays of a fitted make_pipeline(StandardScaler, OneVsRestClassifier(LR))."""
    scaler, one_vs_rest = classifier[0], classifier[-1]
    n_features = len(scaler.mean_)
    coef = np.zeros((n_classes, n_features), dtype=np.float64)
    intercept = np.zeros(n_classes, dtype=np.float64)
    for index, estimator in enumerate(one_vs_rest.estimators_):
        if hasattr(estimator, "coef_"):
            coef[index] = estimator.coef_[0]
            intercept[index] = estimator.intercept_[0]
        else:  # scikit-learn's constant predictor for a class seen only as negative (or positive)
            constant = float(np.ravel(estimator.predict_proba(np.zeros((1, n_features))))[-1])
            constant = min(max(constant, 1e-9), 1 - 1e-9)
            logit = np.log(constant / (1 - constant))
            intercept[index] = np.clip(logit, -_CONSTANT_LOGIT_LIMIT, _CONSTANT_LOGIT_LIMIT)
    return LinearWeights(
        mean=np.asarray(scaler.mean_, dtype=np.float64),
        scale=np.asarray(scaler.scale_, dtype=np.float64),
        coef=coef,
        intercept=intercept,
    )

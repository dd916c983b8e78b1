"""The BirdCLEF metric: macro ROC-AUC over the classes that have a positive label.

It is what `val_auc` means everywhere: checkpointing, early stopping, the tuner objective and the
reports. (keras.metrics.AUC(multi_label=True) is approximate and scores classes without positives
as 0, which is why it is not used.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AucResult:
    macro: float
    per_class: np.ndarray  # NaN for classes that were not scored
    scored: np.ndarray  # bool per class

    def skipped(self, classes: Sequence[str]) -> list[str]:
        return [label for label, kept in zip(classes, self.scored, strict=True) if not kept]


def birdclef_auc(y_true: np.ndarray, y_score: np.ndarray) -> AucResult:
    """Kaggle's BirdCLEF metric, with per-class AUCs.

    Classes without a positive label in `y_true` are dropped, as Kaggle does; so are classes whose
    every row is positive (ROC-AUC is undefined there; Kaggle's solution files never have them).
    Non-finite scores (a diverged model) give NaN instead of an exception.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"shapes differ or are not 2-D: {y_true.shape} vs {y_score.shape}")
    positives = y_true.sum(axis=0)
    scored = (positives > 0) & (positives < len(y_true))
    per_class = np.full(y_true.shape[1], np.nan)
    if not scored.any() or not np.isfinite(y_score[:, scored]).all():
        return AucResult(float("nan"), per_class, scored)
    per_class[scored] = roc_auc_score(y_true[:, scored], y_score[:, scored], average=None)
    macro = roc_auc_score(y_true[:, scored], y_score[:, scored], average="macro")
    return AucResult(float(macro), per_class, scored)


def binary_cross_entropy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y_true, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

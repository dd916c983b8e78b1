"""A fitted linear head as plain arrays: what predicting with it needs (numpy, no scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearWeights:
    """A standardised one-vs-rest logistic regression as arrays: class c's probability of a
    feature vector x is sigmoid(((x - mean) / scale) @ coef[c] + intercept[c])."""

    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept

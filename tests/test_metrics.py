"""The BirdCLEF metric against scikit-learn, empty classes included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dawnchorus.learning.metrics import binary_cross_entropy, birdclef_auc


@pytest.mark.parametrize("seed", range(5))
def test_equals_sklearn_macro_auc_over_classes_with_positives(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((200, 30)) < 0.1).astype(int)
    empty = rng.choice(30, size=6, replace=False)
    y_true[:, empty] = 0
    y_score = rng.random((200, 30)) + 0.3 * y_true  # informative but imperfect

    result = birdclef_auc(y_true, y_score)

    keep = y_true.sum(axis=0) > 0
    expected = roc_auc_score(y_true[:, keep], y_score[:, keep], average="macro")
    assert result.macro == pytest.approx(expected, abs=1e-12)
    assert sorted(np.flatnonzero(~result.scored)) == sorted(empty)
    assert np.isnan(result.per_class[empty]).all()
    for column in np.flatnonzero(keep):
        assert result.per_class[column] == pytest.approx(
            roc_auc_score(y_true[:, column], y_score[:, column])
        )
    # an AUC that treats empty classes as 0 (keras' AUC) would be far lower
    assert result.macro > np.nanmean(np.where(keep, result.per_class, 0.0))


def test_skipped_names_the_classes_and_all_positive_classes_are_not_scored():
    y_true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    y_score = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.5], [0.8, 0.2, 0.5]])
    result = birdclef_auc(y_true, y_score)
    assert result.macro == 1.0
    assert result.skipped(["a", "b", "c"]) == ["b", "c"]


def test_no_scorable_class_or_non_finite_scores_give_nan_not_an_exception():
    assert np.isnan(birdclef_auc(np.zeros((4, 2)), np.ones((4, 2))).macro)
    y_true = np.array([[1, 0], [0, 1]])
    assert np.isnan(birdclef_auc(y_true, np.array([[np.nan, 0.1], [0.2, 0.3]])).macro)
    with pytest.raises(ValueError, match="shapes"):
        birdclef_auc(y_true, np.ones((2, 3)))


def test_binary_cross_entropy_matches_its_definition_and_survives_certain_mistakes():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.8, 0.3], [0.1, 0.6]])
    expected = -np.mean([np.log(0.8), np.log(0.7), np.log(0.9), np.log(0.6)])
    assert binary_cross_entropy(y, p) == pytest.approx(expected)
    assert np.isfinite(binary_cross_entropy(y, 1 - y))

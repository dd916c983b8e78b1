from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from dawnchorus.data.folds import assign_folds, folds_stage, rare_classes, read_folds
from dawnchorus.data.manifest import format_label_list


def random_labels(n_rows=600, n_classes=20, seed=0):
    """Imbalanced primaries plus ~30 % rows with a secondary label."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, n_classes + 1)
    primary = rng.choice(n_classes, size=n_rows, p=weights / weights.sum())
    labels = np.zeros((n_rows, n_classes), dtype=np.uint8)
    labels[np.arange(n_rows), primary] = 1
    with_secondary = rng.random(n_rows) < 0.3
    labels[with_secondary, rng.integers(0, n_classes, with_secondary.sum())] = 1
    return labels


def test_every_row_gets_one_fold_and_classes_are_spread():
    labels = random_labels()
    folds = assign_folds(labels, 5, seed=1)
    assert folds.shape == (len(labels),) and set(folds) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 0.1 * len(labels) / 5
    for column in range(labels.shape[1]):
        count = labels[:, column].sum()
        per_fold = np.bincount(folds[labels[:, column] > 0], minlength=5)
        # stratified: each fold holds its share of every class, within two recordings
        assert np.abs(per_fold - count / 5).max() <= 2, (column, per_fold)


def test_same_seed_same_folds_other_seed_other_folds():
    labels = random_labels()
    np.testing.assert_array_equal(assign_folds(labels, 5, 3), assign_folds(labels, 5, 3))
    assert not np.array_equal(assign_folds(labels, 5, 3), assign_folds(labels, 5, 4))


def test_rare_classes_are_placed_and_reported(tmp_path, caplog):
    labels = random_labels(n_rows=200, n_classes=6)
    labels[:, 5] = 0
    labels[[10, 20], 5] = 1  # a class with 2 recordings for 5 folds
    classes = [f"c{i}" for i in range(6)]
    assert rare_classes(labels, classes, 5) == {"c5": 2}
    manifest = pd.DataFrame(
        {
            "filename": [f"x/{i}.ogg" for i in range(len(labels))],
            "primary_label": [classes[int(np.argmax(row))] for row in labels],
            "secondary_labels": [
                format_label_list([classes[c] for c in np.flatnonzero(row)[1:]]) for row in labels
            ],
        }
    )
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    with caplog.at_level(logging.WARNING):
        folds = folds_stage(
            tmp_path / "manifest.csv",
            tmp_path / "classes.txt",
            tmp_path / "folds.csv",
            n_folds=5,
            seed=0,
        )
    assert "c5 (2 recording(s)" in caplog.text
    assert (folds >= 0).all()
    written = read_folds(tmp_path / "folds.csv")
    assert written["filename"].tolist() == manifest["filename"].tolist()
    first = (tmp_path / "folds.csv").read_bytes()
    folds_stage(
        tmp_path / "manifest.csv",
        tmp_path / "classes.txt",
        tmp_path / "again.csv",
        n_folds=5,
        seed=0,
    )
    assert (tmp_path / "again.csv").read_bytes() == first


def test_too_few_recordings_for_the_folds():
    with pytest.raises(ValueError, match="cannot be split into 5 folds"):
        assign_folds(np.eye(3, dtype=np.uint8), 5, 0)


def test_a_single_class_still_gets_folds():
    folds = assign_folds(np.ones((12, 1), dtype=np.uint8), 3, seed=0)
    assert np.bincount(folds).tolist() == [4, 4, 4]

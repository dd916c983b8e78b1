"""Soundscape post-processing against hand-computed cases, and where it is applied."""

from __future__ import annotations

import numpy as np
import pytest

from dawnchorus.config import ConfigError, load_config
from dawnchorus.inference.postprocess import (
    merge_overlapping_windows,
    postprocess,
    scale_by_top_windows,
    smooth_over_windows,
)


def test_smoothing_is_the_kernel_weighted_mean_renormalised_at_the_ends():
    rows = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    smoothed = smooth_over_windows(rows, [0.25, 0.5, 0.25])
    # first row: (0.5 * 0 + 0.25 * 1) / 0.75; last row: (0.25 * 0 + 0.5 * 0) / 0.75
    np.testing.assert_allclose(smoothed[:, 0], [1 / 3, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(smoothed[:, 1], 1.0)  # a constant stays constant, ends included
    np.testing.assert_array_equal(smooth_over_windows(rows, [1.0]), rows)
    # a kernel wider than the recording, and a recording of one window
    np.testing.assert_allclose(smooth_over_windows(rows[:2], [1, 1, 1, 1, 1]), [[0.5, 1]] * 2)
    np.testing.assert_array_equal(smooth_over_windows(rows[:1], [0.25, 0.5, 0.25]), rows[:1])
    assert smooth_over_windows(np.zeros((0, 2)), [0.25, 0.5, 0.25]).shape == (0, 2)


@pytest.mark.parametrize("kernel", [[0.5, 0.5], [0.25, -0.5, 0.25], [0.0]])
def test_a_kernel_that_cannot_smooth_is_refused(kernel):
    with pytest.raises(ValueError, match="smoothing kernel"):
        smooth_over_windows(np.ones((3, 2)), kernel)
    with pytest.raises(ConfigError, match=r"predict\.smoothing_kernel"):
        load_config(None, {"data_dir": "x", "predict": {"smoothing_kernel": kernel}})


def test_top_window_scaling_multiplies_by_the_mean_of_the_k_highest_rows():
    rows = np.array([[0.9, 0.1], [0.5, 0.1], [0.1, 0.2]])
    # class 0: (0.9 + 0.5) / 2 = 0.7; class 1: (0.2 + 0.1) / 2 = 0.15
    np.testing.assert_allclose(scale_by_top_windows(rows, 2), rows * [0.7, 0.15])
    np.testing.assert_allclose(scale_by_top_windows(rows, 10), rows * rows.mean(axis=0))
    np.testing.assert_array_equal(scale_by_top_windows(rows, 0), rows)
    np.testing.assert_allclose(
        postprocess(rows, [0.25, 0.5, 0.25], 1),
        scale_by_top_windows(smooth_over_windows(rows, [0.25, 0.5, 0.25]), 1),
    )


def test_windows_between_rows_are_merged_by_their_overlap():
    rows = np.array([[0.2], [0.4], [0.6], [0.8]])
    # two hops per window: one window halfway between each pair of whole rows; the last row is
    # a filled partial window, so only the first three rows make pairs
    halfway = np.array([[[0.5]], [[0.9]]])
    expected = [
        (0.2 + 0.5 * 0.5) / 1.5,
        (0.4 + 0.5 * 0.5 + 0.5 * 0.9) / 2.0,
        (0.6 + 0.5 * 0.9) / 1.5,
        0.8,
    ]
    merged = merge_overlapping_windows(rows, halfway, 2)
    np.testing.assert_allclose(merged[:, 0], expected, rtol=1e-6)
    # three hops: windows a third and two thirds in cover 2/3 and 1/3 of the first row
    thirds = np.array([[[0.3], [0.9]]])
    merged = merge_overlapping_windows(rows[:2], thirds, 3)
    first = (0.2 + 2 / 3 * 0.3 + 1 / 3 * 0.9) / 2.0
    second = (0.4 + 1 / 3 * 0.3 + 2 / 3 * 0.9) / 2.0
    np.testing.assert_allclose(merged[:, 0], [first, second], rtol=1e-6)
    # off, or nothing between (a one-window recording): the rows as they were
    np.testing.assert_allclose(merge_overlapping_windows(rows, halfway, 1), rows)
    np.testing.assert_allclose(
        merge_overlapping_windows(rows[:1], np.zeros((0, 1, 1)), 2), rows[:1]
    )
    sed_model = {"head": "sed", "input_s": 10, "image_size": [64, 128]}
    with pytest.raises(ConfigError, match=r"predict\.hops_per_window > 1 needs a model of one"):
        load_config(None, {"data_dir": "x", "model": sed_model, "predict": {"hops_per_window": 2}})

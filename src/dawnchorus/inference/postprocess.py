"""Soundscape post-processing: a recording's consecutive window rows revised with the help of
their neighbours and of the whole recording.

A bird in a passive recorder's soundscape seldom calls in one 5-s window alone: it sings on for
a while, and a distant, half-masked call in one window is more credible when the windows
around it hold the species too.

- `smooth_over_windows`: each row becomes the kernel-weighted mean of itself and its neighbours
  (the kernel is renormalised at the recording's ends, so the first and last rows are not
  dimmed).
- `scale_by_top_windows`: each row's probability of a class multiplied by the mean of that
  class's k highest rows in the recording: a species clearly present somewhere lifts its faint
  rows, one never clearly present is pushed down (BirdCLEF 2025's second place).

- `merge_overlapping_windows`: windows that start between two rows (every window_s /
  hops_per_window seconds), predicted besides the rows' own, are averaged into the rows they
  overlap, weighted by the overlap: a call cut in two by a row boundary is heard whole once.

All are pure numpy on the (windows, classes) probabilities, after the ensemble, so Keras,
TFLite and `dawnchorus predict` give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dawnchorus.config import kernel_problem

NO_SMOOTHING = (1.0,)


def smooth_over_windows(probabilities: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """(windows, classes) -> the same shape: each row the `kernel`-weighted mean of the rows
    around it (kernel centred on the row, renormalised where it reaches past the ends)."""
    problem = kernel_problem(kernel)
    if problem:
        raise ValueError(f"smoothing kernel {list(kernel)} {problem}")
    weights = np.asarray(kernel, dtype=np.float64)
    rows = np.asarray(probabilities, dtype=np.float64)
    n_rows, half = len(rows), len(weights) // 2
    total = np.zeros_like(rows)
    weight_sum = np.zeros((n_rows, 1))
    for offset, weight in zip(range(-half, half + 1), weights, strict=True):
        # row i takes row i + offset where that row exists
        target = slice(max(0, -offset), n_rows - max(0, offset))
        source = slice(max(0, offset), n_rows - max(0, -offset))
        total[target] += weight * rows[source]
        weight_sum[target] += weight
    smoothed = np.divide(total, weight_sum, out=rows.copy(), where=weight_sum > 0)
    return smoothed.astype(np.asarray(probabilities).dtype)


def scale_by_top_windows(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Each row's probability of a class times the mean of the class's `k` highest rows in the
    recording (all rows when it has fewer); k = 0 leaves the rows as they are."""
    rows = np.asarray(probabilities)
    if k <= 0 or len(rows) == 0:
        return rows
    top = -np.sort(-rows, axis=0)[: min(k, len(rows))]
    return rows * top.mean(axis=0, keepdims=True)


def merge_overlapping_windows(
    rows: np.ndarray, between: np.ndarray, hops_per_window: int
) -> np.ndarray:
    """(rows, classes) probabilities of consecutive windows, and (pairs, hops_per_window - 1,
    classes) of the windows starting j / hops_per_window of a window after row i starts (j = 1,
    2, …; pairs = row pairs both whole, from the first) -> each row the weighted mean of its own
    window (weight 1) and of every window overlapping it (weight: the share of the row it
    covers)."""
    rows = np.asarray(rows, dtype=np.float64)
    between = np.asarray(between, dtype=np.float64)
    if hops_per_window <= 1 or len(between) == 0:
        return rows.astype(np.float32)
    total, weight = rows.copy(), np.ones((len(rows), 1))
    n_pairs = len(between)
    for j in range(1, hops_per_window):
        into_next = j / hops_per_window  # the share of row i + 1 that window j covers
        total[:n_pairs] += (1 - into_next) * between[:, j - 1]
        weight[:n_pairs] += 1 - into_next
        total[1 : n_pairs + 1] += into_next * between[:, j - 1]
        weight[1 : n_pairs + 1] += into_next
    return (total / weight).astype(np.float32)


def postprocess(
    probabilities: np.ndarray, smoothing_kernel: Sequence[float], top_windows: int
) -> np.ndarray:
    """Smoothing, then the top-window scaling, of one recording's (windows, classes) rows."""
    return scale_by_top_windows(smooth_over_windows(probabilities, smoothing_kernel), top_windows)

"""A simple baseline the CNN has to beat: logistic regression on clip-level log-mel statistics.

Each recording becomes the mean and standard deviation over time of every mel band (2 x n_mels
numbers) of its stored spectrogram; one L2-regularised logistic regression per class, on the same
folds as the CNN, scored with the same metric (`heads.cross_validate_head`, which the BirdNET
reference shares).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.config import AudioParams
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.data.shards import ClipStore
from dawnchorus.learning.heads import cross_validate_head

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
    metrics, oof, _ = cross_validate_head(
        features,
        store.available,
        clips,
        folds_to_run,
        seed,
        name="baseline",
        description=DESCRIPTION,
    )
    return metrics, oof

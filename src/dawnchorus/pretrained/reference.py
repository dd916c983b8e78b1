"""The pretrained yardstick: BirdNET V2.4 embeddings + logistic regression, on the CNN's folds.

Each recording becomes the pooled embedding of its 3-s windows (`embeddings.pool_windows`); the
head, folds, labels and metric are the baseline's (`heads.cross_validate_head`), so the two
numbers and the CNN's are directly comparable in cv_results.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.learning.heads import cross_validate_head
from dawnchorus.pretrained.embeddings import EmbeddingShardError, read_pooled_embeddings
from dawnchorus.pretrained.head import Head, head_metadata

log = logging.getLogger(__name__)


def run_reference(
    manifest_csv: str | Path,
    classes_txt: str | Path,
    folds_csv: str | Path,
    shard_paths: Sequence[str | Path],
    folds_to_run: Sequence[int],
    seed: int,
    pooling: str,
    C: float,
    threads: int = 1,
    spectrogram_index: str | Path | None = None,
    *,
    row_window_offsets_s: Sequence[float],
    window_hop_s: float | None,
) -> tuple[dict, pd.DataFrame, dict[int, Head]]:
    """Per-fold and out-of-fold macro AUC of the reference; returns (metrics, oof predictions,
    each fold's head, to predict a row from the windows that overlap it: a grid every
    `window_hop_s`, or with None those at `row_window_offsets_s` into the row).

    With `spectrogram_index` (spectrograms/index.csv), only recordings the CNN and the baseline
    see (stored as spectrograms) are used, so all three are scored on the same recordings (the
    stored ones without an embedding are logged). `threads` classes are fitted at
    once: with 2 x 1024 features per recording a full BirdCLEF run fits 206 classes per fold on
    ~20,000 recordings.
    """
    clips = load_labelled_clips(manifest_csv, classes_txt, folds_csv)
    pooled = read_pooled_embeddings(shard_paths, clips.filenames, pooling)
    if not pooled.available.any():
        raise EmbeddingShardError(
            f"the embedding shards hold none of the {len(clips.filenames)} manifest recordings"
        )
    available = pooled.available
    if spectrogram_index is not None:
        index = pd.read_csv(spectrogram_index, keep_default_na=False)
        stored = np.isin(clips.filenames, index.loc[index["status"] == "stored", "filename"])
        available = available & stored
        if missing := int((stored & ~pooled.available).sum()):
            log.warning(
                "%d recordings stored as spectrograms have no embedding (quarantined by the "
                "embedding shards): the reference is scored without them",
                missing,
            )
    description = (
        f"logistic regression (C={C:g}) on BirdNET embeddings ({pooled.model_file}, "
        f"sha256 {pooled.model_sha256[:12]}), {pooling} over 3-s windows"
    )
    metrics, oof, fitted = cross_validate_head(
        pooled.features,
        available,
        clips,
        folds_to_run,
        seed,
        name="reference",
        description=description,
        C=C,
        n_jobs=threads,
    )
    heads = {
        fold: Head(
            weights,
            head_metadata(
                fold,
                clips.classes,
                pooling,
                row_window_offsets_s,
                window_hop_s,
                pooled.model_file,
                pooled.model_sha256,
            ),
        )
        for fold, weights in fitted.items()
    }
    return metrics, oof, heads

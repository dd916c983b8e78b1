"""Rule pseudo_labels: each fold model's probabilities for every 5-s window of one soundscape
shard (`data.pseudo_labels` holds the file format and how a round reads it).

Self-training on unlabelled soundscapes (the `semi_supervised` config section):
1. rule soundscape_spectrograms: their log-mel, in shards of the spectrogram contract;
2. rule pseudo_labels (per round and soundscape shard): this job, raw probabilities, one array
   per fold;
3. the next round's fold k trains on its labelled crops, a share of them mixed (as sounds add, in
   power) with a soundscape window whose targets are fold k's own pseudo-labels, trimmed and
   sharpened (`soft_labels`), the union of both as the mixture's targets (`dataset`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dawnchorus.data.pseudo_labels import (
    PseudoLabelError,
    soundscape_window_starts,
    write_pseudo_label_file,
)
from dawnchorus.data.shards import open_shard
from dawnchorus.inference.engines import join_windows, load_fold_ensembles
from dawnchorus.signal.features import cut_window

log = logging.getLogger(__name__)

# soundscapes whose windows go through a model in one call (96 windows: at 256x256 a GPU's
# memory holds them, and a CPU job stays within its mem_mb)
_CLIPS_PER_CALL = 8


def write_pseudo_labels(
    model_paths: Sequence[str | Path],
    folds: Sequence[int],
    soundscape_shard: str | Path,
    out_path: str | Path,
    threads: int = 1,
) -> int:
    """Every fold model's probabilities for every window of one soundscape shard (the windows
    of `soundscape_window_starts`), into a pseudo-label file at `out_path`. Returns the number
    of windows."""
    if len(folds) != len(model_paths):
        raise PseudoLabelError(f"{len(model_paths)} model(s) given for folds {list(folds)}")
    ensembles = load_fold_ensembles(model_paths, threads)
    params, classes = ensembles[0].params, ensembles[0].classes
    segments = ensembles[0].segments
    clips, starts = [], []
    rows_of_fold: list[list[np.ndarray]] = [[] for _ in ensembles]
    with open_shard(soundscape_shard, params) as shard:
        filenames = list(shard.filenames)
        for first in range(0, len(filenames), _CLIPS_PER_CALL):
            chunks, n_windows = [], []
            for clip in range(first, min(first + _CLIPS_PER_CALL, len(filenames))):
                frames = shard.clip(clip)
                clip_starts = soundscape_window_starts(len(frames), params)
                windows = [cut_window(frames, s, params.window_frames) for s in clip_starts]
                chunks.append(join_windows(np.stack(windows).astype(np.float32), segments))
                n_windows.append(len(clip_starts))
                clips += [clip] * len(clip_starts)
                starts += clip_starts.tolist()
            for fold_rows, ensemble in zip(rows_of_fold, ensembles, strict=True):
                rows = ensemble.run_batch(np.concatenate(chunks))  # (chunks, segments, classes)
                used = 0
                for own, n in zip(chunks, n_windows, strict=True):
                    # a soundscape's rows, without the windows repeated to fill its last chunk
                    fold_rows.append(rows[used : used + len(own)].reshape(-1, len(classes))[:n])
                    used += len(own)
    probabilities = np.zeros((len(ensembles), len(starts), len(classes)), dtype=np.float32)
    for index, fold_rows in enumerate(rows_of_fold):
        if fold_rows:
            probabilities[index] = np.concatenate(fold_rows)
    write_pseudo_label_file(
        out_path, filenames, clips, starts, probabilities, folds, classes, params.window_frames
    )
    log.info(
        "%d window(s) of %d soundscape(s) labelled by %d fold model(s)",
        len(starts),
        len(filenames),
        len(ensembles),
    )
    return len(starts)

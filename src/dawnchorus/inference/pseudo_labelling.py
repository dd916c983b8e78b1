"""Rule pseudo_labels: each fold model's probabilities for every 5-s window of one soundscape
shard (`data.pseudo_labels` holds the file format and how a round reads it).

Self-training on unlabelled soundscapes (the `semi_supervised` config section):
1. rule soundscape_spectrograms: their log-mel, in shards of the spectrogram contract;
2. rule pseudo_labels (per round and soundscape shard): this job, raw probabilities, one array
   per fold: fold k's CNN (`semi_supervised.teacher: cnn`) or its blend with fold k's BirdNET
   head (`ensemble`; the heads read rows of rule soundscape_embeddings);
3. the next round's fold k trains on its labelled crops, a share of them mixed (as sounds add, in
   power) with a soundscape window whose targets are fold k's own pseudo-labels, trimmed and
   sharpened (`soft_labels`), the union of both as the mixture's targets (`dataset`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawnchorus.artifacts import read_json
from dawnchorus.data.pseudo_labels import (
    PseudoLabelError,
    soundscape_window_starts,
    write_pseudo_label_file,
)
from dawnchorus.data.shards import open_shard
from dawnchorus.inference.engines import join_windows, load_fold_ensembles
from dawnchorus.learning.blend import blend_probabilities
from dawnchorus.pretrained.embeddings import RowWindows, read_row_embeddings
from dawnchorus.pretrained.head import HeadEnsemble
from dawnchorus.signal.features import cut_window

log = logging.getLogger(__name__)

# soundscapes whose windows go through a model in one call (96 windows: at 256x256 a GPU's
# memory holds them, and a CPU job stays within its mem_mb)
_CLIPS_PER_CALL = 8


@dataclass
class BlendedTeacher:
    """Fold k's teacher as a blend: fold k's CNN and fold k's head, with the weights fitted
    without fold k (the `fold_weights` of the round's blend), so that still nothing that saw
    fold k's validation recordings labels its training windows."""

    heads: dict[int, HeadEnsemble]  # by fold: that fold's head alone
    fold_weights: dict[int, dict[str, float]]
    space: str
    row_embeddings: dict[str, np.ndarray]  # soundscape -> (row windows, dim)
    row_windows: RowWindows  # how the heads hear a soundscape's rows

    @classmethod
    def load(
        cls,
        head_paths: Sequence[str | Path],
        folds: Sequence[int],
        weights_json: str | Path,
        soundscape_embeddings: str | Path,
        row_s: float,
    ) -> BlendedTeacher:
        heads = HeadEnsemble.load(head_paths)
        by_fold = {head.metadata["fold"]: HeadEnsemble([head]) for head in heads.heads}
        if missing := [fold for fold in folds if fold not in by_fold]:
            raise PseudoLabelError(f"no head of folds {missing} among {list(head_paths)}")
        weights = read_json(weights_json)
        missing = [fold for fold in folds if str(fold) not in weights["fold_weights"]]
        if missing or sorted(weights["members"]) != ["cnn", "head"]:
            raise PseudoLabelError(
                f"{weights_json}: blend of {weights['members']} without weights for folds "
                f"{missing}; a blended teacher needs the cnn and head weights of every fold"
            )
        row_windows = heads.row_windows(row_s)
        return cls(
            heads={fold: by_fold[fold] for fold in folds},
            fold_weights={fold: weights["fold_weights"][str(fold)] for fold in folds},
            space=weights["space"],
            row_embeddings=read_row_embeddings(soundscape_embeddings, row_windows),
            row_windows=row_windows,
        )

    def blend(
        self, fold: int, cnn_rows: np.ndarray, filenames: Sequence[str], clips, rows
    ) -> np.ndarray:
        """Fold `fold`'s blended probabilities of the windows (clip, row of the clip), the
        CNN's alone where BirdNET has no row (a soundscape it could not read)."""
        head = self.heads[fold]
        head_rows = np.full(cnn_rows.shape, np.nan, dtype=np.float32)
        for clip in np.unique(clips):
            embeddings = self.row_embeddings.get(filenames[clip])
            if embeddings is None:
                continue
            n_rows = self.row_windows.n_rows(len(embeddings))
            scores = head.row_probabilities(embeddings, self.row_windows.row_s, n_rows)
            for window in np.flatnonzero((clips == clip) & (rows < len(scores))):
                head_rows[window] = scores[rows[window]]
        members = {"cnn": cnn_rows, "head": head_rows}
        return blend_probabilities(members, self.fold_weights[fold], self.space)


def write_pseudo_labels(
    model_paths: Sequence[str | Path],
    folds: Sequence[int],
    soundscape_shard: str | Path,
    out_path: str | Path,
    threads: int = 1,
    teacher: BlendedTeacher | None = None,
) -> int:
    """Every fold model's probabilities for every window of one soundscape shard (the windows
    of `soundscape_window_starts`), into a pseudo-label file at `out_path`; with `teacher`,
    each fold's blend of its CNN and its head instead. Returns the number of windows."""
    if len(folds) != len(model_paths):
        raise PseudoLabelError(f"{len(model_paths)} model(s) given for folds {list(folds)}")
    ensembles = load_fold_ensembles(model_paths, threads)
    params, classes = ensembles[0].params, ensembles[0].classes
    segments = ensembles[0].segments
    clips, starts, rows_of_clip = [], [], []
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
                rows_of_clip += range(len(clip_starts))  # window i is the clip's row i
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
            if teacher is not None:
                probabilities[index] = teacher.blend(
                    folds[index],
                    probabilities[index],
                    filenames,
                    np.asarray(clips),
                    np.asarray(rows_of_clip),
                )
    write_pseudo_label_file(
        out_path, filenames, clips, starts, probabilities, folds, classes, params.window_frames
    )
    log.info(
        "%d window(s) of %d soundscape(s) labelled by %d fold %s",
        len(starts),
        len(filenames),
        len(ensembles),
        "model(s)" if teacher is None else "blend(s) of the CNN and the BirdNET head",
    )
    return len(starts)

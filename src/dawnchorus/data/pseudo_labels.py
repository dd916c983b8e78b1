"""The pseudo-label file: a teacher's probabilities for every 5-s window of a soundscape shard,
and what a self-training round trains with from it. Knows nothing of models: the job that fills
it is `inference.pseudo_labelling`.

One HDF5 file per round and soundscape shard, written atomically: `filename` (per soundscape),
`clip` and `start` (per window: the soundscape's position in `filename`, its first frame),
`probabilities` (folds x windows x classes, float32, raw); attrs `folds`, `classes`,
`window_frames`, `format_version`.

Fold k trains on the windows labelled by fold k's own model (`load_pseudo_windows`): the other
folds' models trained on fold k's validation recordings, and their labels would carry that
knowledge into fold k's training, so its cross-validated AUC would no longer be out of fold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dawnchorus.config import AudioParams
from dawnchorus.data.shards import ClipStore
from dawnchorus.signal.features import cut_window

PSEUDO_FORMAT = 1


class PseudoLabelError(ValueError):
    """Pseudo-labels that do not fit the training job that reads them."""


def soundscape_window_starts(n_frames: int, params: AudioParams) -> np.ndarray:
    """First frame of each whole `window_s` window of a stored recording, on the grid of the
    submission's rows (window i starts at i * window_s seconds); one window for a recording
    shorter than one (repeated end to end when cut)."""
    frames_per_window = params.window_samples / params.hop_length
    starts = []
    while True:
        start = round(len(starts) * frames_per_window)
        if start + params.window_frames > n_frames:
            break
        starts.append(start)
    return np.asarray(starts or [0], dtype=np.int64)


def write_pseudo_label_file(
    path: str | Path,
    filenames: Sequence[str],
    clip: np.ndarray,
    start: np.ndarray,
    probabilities: np.ndarray,
    folds: Sequence[int],
    classes: Sequence[str],
    window_frames: int,
) -> None:
    """One pseudo-label file (the format above), written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with h5py.File(temporary, "w") as handle:
        handle.create_dataset(
            "filename", data=np.asarray(filenames, dtype=object), dtype=h5py.string_dtype()
        )
        handle.create_dataset("clip", data=np.asarray(clip, dtype=np.int64))
        handle.create_dataset("start", data=np.asarray(start, dtype=np.int64))
        handle.create_dataset("probabilities", data=probabilities, compression="gzip")
        handle.attrs.update(
            {
                "folds": json.dumps([int(fold) for fold in folds]),
                "classes": json.dumps(list(classes)),
                "window_frames": window_frames,
                "format_version": PSEUDO_FORMAT,
            }
        )
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------
# what a round trains with


def soft_labels(probabilities: np.ndarray, power: float, min_probability: float) -> np.ndarray:
    """A teacher's probabilities as training targets: those below `min_probability` become 0,
    the rest are raised to `power`."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    return np.where(probabilities < min_probability, 0.0, probabilities**power).astype(np.float32)


@dataclass
class PseudoWindows:
    """Pseudo-labelled soundscape crops: where each starts, and its soft targets."""

    store: ClipStore
    rows: np.ndarray  # (n,) soundscape of each crop in `store`
    starts: np.ndarray  # (n,) its first frame
    targets: np.ndarray  # (n, classes) float32
    crop_frames: int

    def __len__(self) -> int:
        return len(self.rows)

    def crop(self, item: int) -> np.ndarray:
        row, start = int(self.rows[item]), int(self.starts[item])
        if start + self.crop_frames <= self.store.n_frames[row]:
            return self.store.frames(row, start, self.crop_frames)
        return cut_window(self.store.frames(row), start, self.crop_frames)

    def close(self) -> None:
        self.store.close()


def load_pseudo_windows(
    pseudo_label_paths: Sequence[str | Path],
    soundscape_shards: Sequence[str | Path],
    fold: int,
    classes: Sequence[str],
    params: AudioParams,
    crop_frames: int,
    settings: Mapping,
    ram_budget_mb: float,
) -> PseudoWindows:
    """Fold `fold`'s pseudo-labelled crops: consecutive windows of one soundscape that together
    span `crop_frames` (one window unless the model's input is longer), targets the maximum of
    their soft labels (`settings`: the semi_supervised section)."""
    segments = max(1, round(crop_frames / params.window_frames))
    names, rows, starts, targets = [], [], [], []
    for path in pseudo_label_paths:
        with h5py.File(path, "r") as handle:
            _check_pseudo_labels(path, handle, fold, classes)
            fold_index = json.loads(handle.attrs["folds"]).index(fold)
            clip = handle["clip"][:]
            start = handle["start"][:]
            labels = soft_labels(
                handle["probabilities"][fold_index],
                settings["sharpen_power"],
                settings["min_probability"],
            )
            offset = len(names)
            names += list(handle["filename"].asstr()[:])
        for first in range(len(clip) - segments + 1):
            if clip[first + segments - 1] != clip[first]:
                continue  # the windows would span two soundscapes
            rows.append(offset + clip[first])
            starts.append(start[first])
            targets.append(labels[first : first + segments].max(axis=0))
    store = ClipStore(soundscape_shards, params, names, ram_budget_mb)
    if store.missing:
        store.close()
        raise PseudoLabelError(
            f"{len(store.missing)} pseudo-labelled soundscape(s) are in no soundscape shard, e.g. "
            f"{store.missing[:3]}: rerun the soundscape_spectrograms and pseudo_labels rules"
        )
    return PseudoWindows(
        store=store,
        rows=np.asarray(rows, dtype=np.int64),
        starts=np.asarray(starts, dtype=np.int64),
        targets=np.asarray(targets, dtype=np.float32).reshape(-1, len(classes)),
        crop_frames=crop_frames,
    )


def _check_pseudo_labels(path, handle: h5py.File, fold: int, classes: Sequence[str]) -> None:
    if handle.attrs.get("format_version") != PSEUDO_FORMAT:
        raise PseudoLabelError(f"{path}: not a pseudo-label file of format {PSEUDO_FORMAT}")
    if json.loads(handle.attrs["classes"]) != list(classes):
        raise PseudoLabelError(
            f"{path}: its models were trained on other classes than this training job's"
        )
    folds = json.loads(handle.attrs["folds"])
    if fold not in folds:
        raise PseudoLabelError(
            f"{path} has no labels from a fold {fold} model (it has folds {folds}): a fold "
            "trains on its own model's pseudo-labels, so that fold must be trained in the "
            "round before"
        )

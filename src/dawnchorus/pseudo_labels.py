"""Self-training on unlabelled soundscapes (the `semi_supervised` config section).

Training recordings are focal (near, loud, one species); the soundscapes to predict come from
passive recorders (far, overlapping, noisy). The unlabelled `train_soundscapes/` close that gap:

1. rule soundscape_spectrograms: their log-mel, in shards of the spectrogram contract;
2. rule pseudo_labels (per round and soundscape shard): each fold model's probabilities for every
   5-s window of them, raw, one array per fold (`write_pseudo_labels`);
3. the next round's fold k trains on its labelled crops, a share of them mixed (as sounds add, in
   power) with a soundscape window whose targets are fold k's own pseudo-labels, trimmed and
   sharpened (`soft_labels`), the union of both as the mixture's targets (`dataset`).

Fold k's windows are labelled by fold k's own model: the other folds' models trained on fold k's
validation recordings, and their labels would carry that knowledge into fold k's training, so
its cross-validated AUC would no longer be out of fold.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

from dawnchorus.config import AudioParams
from dawnchorus.features import cut_window
from dawnchorus.manifest import shard_for
from dawnchorus.shards import ClipStore, ShardSummary, build_shard, open_shard

log = logging.getLogger(__name__)

SOUNDSCAPE_DIR = "train_soundscapes"
PSEUDO_FORMAT = 1
# soundscapes whose windows go through a model in one call (96 windows: at 256x256 a GPU's
# memory holds them, and a CPU job stays within its mem_mb)
_CLIPS_PER_CALL = 8


class PseudoLabelError(ValueError):
    """Pseudo-labels that do not fit the training job that reads them."""


def list_soundscapes(data_dir: str | Path) -> list[str]:
    """Audio files under data_dir/train_soundscapes (paths relative to it, sorted); [] when the
    folder does not exist."""
    from dawnchorus.predict import find_recordings

    root = Path(data_dir) / SOUNDSCAPE_DIR
    if not root.is_dir():
        return []
    return sorted(path.relative_to(root).as_posix() for path in find_recordings([root]))


def soundscapes_of_shard(filenames: Sequence[str], shard: int, n_shards: int) -> list[str]:
    """The soundscapes a shard holds (the manifest's stable hash, so adding one file moves no
    other)."""
    return [name for name in filenames if shard_for(name, n_shards) == shard]


def round_training_config(config: Mapping, round_index: int) -> dict:
    """The config a round's fold jobs train with: semi_supervised.epochs (when set) replaces
    training.epochs from round 1 on, and semi_supervised.rounds is left out (a round does not
    depend on how many follow it)."""
    settings = copy.deepcopy(dict(config))
    epochs = config["semi_supervised"]["epochs"]
    if round_index > 0 and epochs is not None:
        settings["training"]["epochs"] = epochs
    settings["semi_supervised"].pop("rounds", None)
    return settings


# --------------------------------------------------------------------------------------------
# rule soundscape_spectrograms


def soundscape_spectrogram_stage(
    data_dir: str | Path,
    filenames: Sequence[str],
    params: AudioParams,
    out_path: str | Path,
    threads: int = 1,
) -> ShardSummary:
    """One shard of train_soundscapes' log-mel; an unreadable soundscape is quarantined in it
    with its reason (and logged), the others are stored."""
    root = Path(data_dir) / SOUNDSCAPE_DIR
    log.info("%s: %d soundscape(s)", Path(out_path).name, len(filenames))
    with threadpool_limits(limits=threads):
        summary = build_shard(
            [(name, root / name) for name in filenames], out_path, params, progress=True
        )
    log.info(
        "stored %d soundscape(s) (%.0f s), quarantined %d",
        summary.stored,
        summary.stored_seconds,
        len(summary.quarantined),
    )
    return summary


# --------------------------------------------------------------------------------------------
# rule pseudo_labels


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


def write_pseudo_labels(
    model_paths: Sequence[str | Path],
    folds: Sequence[int],
    soundscape_shard: str | Path,
    out_path: str | Path,
    threads: int = 1,
) -> int:
    """Every fold model's probabilities for every window of one soundscape shard, into an HDF5
    file written atomically: `filename` (per soundscape), `clip` and `start` (per window: the
    soundscape's position in `filename`, its first frame), `probabilities` (folds x windows x
    classes, float32); attrs `folds`, `classes`, `window_frames`, `format_version`. Returns the
    number of windows."""
    from dawnchorus.predict import join_windows, load_fold_ensembles

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
    _write_h5(
        out_path,
        filenames=filenames,
        clip=np.asarray(clips, dtype=np.int64),
        start=np.asarray(starts, dtype=np.int64),
        probabilities=probabilities,
        attrs={
            "folds": json.dumps([int(fold) for fold in folds]),
            "classes": json.dumps(list(classes)),
            "window_frames": params.window_frames,
            "format_version": PSEUDO_FORMAT,
        },
    )
    log.info(
        "%d window(s) of %d soundscape(s) labelled by %d fold model(s)",
        len(starts),
        len(filenames),
        len(ensembles),
    )
    return len(starts)


def _write_h5(path: str | Path, filenames, clip, start, probabilities, attrs: Mapping) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with h5py.File(temporary, "w") as handle:
        handle.create_dataset(
            "filename", data=np.asarray(filenames, dtype=object), dtype=h5py.string_dtype()
        )
        handle.create_dataset("clip", data=clip)
        handle.create_dataset("start", data=start)
        handle.create_dataset("probabilities", data=probabilities, compression="gzip")
        handle.attrs.update(attrs)
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

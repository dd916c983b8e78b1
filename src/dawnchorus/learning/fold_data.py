"""One cross-validation fold of the data stage's outputs, shared by training and tuning: the
training rows and how an epoch draws crops of them, the validation crops scored each epoch, and
a self-training round's pseudo-labelled soundscape windows."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dawnchorus.config import AudioParams, segments_per_crop
from dawnchorus.data.pseudo_labels import PseudoWindows, load_pseudo_windows
from dawnchorus.data.shards import ClipStore
from dawnchorus.learning.optimization import Hyperparameters
from dawnchorus.learning.sampling import CropSampler, class_balanced_weights

# Snakemake imports this module to plan the DAG: TensorFlow (dataset) and scikit-learn (folds,
# metrics) are imported only where a job needs them
if TYPE_CHECKING:
    from dawnchorus.data.folds import LabelledClips
    from dawnchorus.learning.dataset import EvaluationWindows

log = logging.getLogger(__name__)
EVALUATION_BATCH_SIZE = 64  # inference only: any size gives the same scores


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


@dataclass(frozen=True)
class DataPaths:
    """The data stage's outputs a training or tuning job reads."""

    manifest: Path
    classes: Path
    folds: Path
    shards: tuple[Path, ...]


@dataclass(frozen=True)
class FoldPaths(DataPaths):
    out_dir: Path
    tensorboard_dir: Path
    # a self-training round (semi_supervised): the round before's pseudo-labels, the soundscape
    # shards they label, and with warm_start the same fold's model of the round before
    pseudo_labels: tuple[Path, ...] = ()
    soundscape_shards: tuple[Path, ...] = ()
    initial_model: Path | None = None

    @property
    def work(self) -> Path:
        return self.out_dir / "work"

    @property
    def model(self) -> Path:
        return self.out_dir / "model.keras"


@dataclass
class FoldData:
    """One fold's recordings: the training rows, how an epoch draws them, and the validation
    crops scored each epoch."""

    clips: LabelledClips
    store: ClipStore
    train_rows: np.ndarray
    val_rows: np.ndarray
    validation: EvaluationWindows
    normalization: str
    val_pooling: str
    val_pooling_power: float
    sampler: CropSampler
    targets: np.ndarray  # training targets of every recording (secondary labels weighted)
    row_weights: np.ndarray | None  # class-balanced draw of train_rows, or None
    pseudo: PseudoWindows | None = None  # a self-training round's soundscape windows
    mixing: Mapping | None = None  # the semi_supervised section, with `pseudo`

    @property
    def val_labels(self) -> np.ndarray:
        return self.clips.labels[self.val_rows]

    @property
    def crop_frames(self) -> int:
        return self.sampler.crop_frames

    def training_dataset(self, training: Mapping, hp: Hyperparameters, seed: int):
        from dawnchorus.learning.dataset import training_dataset

        return training_dataset(
            self.sampler,
            self.train_rows,
            self.targets,
            training,
            hp.batch_size,
            hp.mixup_alpha,
            hp.aug_prob,
            seed,
            self.row_weights,
            training["sampling"]["crops_per_recording"],
            self.pseudo,
            self.mixing,
        )

    def predict(self, model) -> np.ndarray:
        """Probabilities per validation recording (its crops' pooled by val_pooling)."""
        data = self.validation.dataset(self.normalization, EVALUATION_BATCH_SIZE)
        crops = _sigmoid(model.predict(data, verbose=0))
        return self.validation.per_clip(crops, self.val_pooling, self.val_pooling_power)

    def evaluate(self, model):
        """(val_auc, val_loss, AUC result) of `model`; NaNs and no result if it diverged."""
        from dawnchorus.learning.metrics import binary_cross_entropy, birdclef_auc

        scores = self.predict(model)
        if not np.isfinite(scores).all():
            return math.nan, math.nan, None
        result = birdclef_auc(self.val_labels, scores)
        return result.macro, binary_cross_entropy(self.val_labels, scores), result


@contextmanager
def open_fold(config: Mapping, fold: int, paths: DataPaths) -> Iterator[FoldData]:
    """Fold `fold` of the data stage's outputs: training rows and validation windows."""
    from dawnchorus.data.folds import load_labelled_clips
    from dawnchorus.learning.dataset import evaluation_windows

    training, sampling = config["training"], config["training"]["sampling"]
    params = AudioParams.from_config(config)
    crop_frames = params.crop_frames(segments_per_crop(config))
    clips = load_labelled_clips(paths.manifest, paths.classes, paths.folds)
    store = ClipStore(paths.shards, params, clips.filenames, training["cache_ram_mb"])
    pseudo = None
    try:
        if isinstance(paths, FoldPaths) and paths.pseudo_labels:
            pseudo = _pseudo_windows(config, fold, paths, clips.classes, crop_frames)
        train_rows, val_rows = _select_rows(clips, store, fold)
        log.info(
            "fold %d: %d training and %d validation recordings, %d classes; crops of %d frames",
            fold,
            len(train_rows),
            len(val_rows),
            len(clips.classes),
            crop_frames,
        )
        row_weights = None
        if sampling["class_power"] > 0:
            row_weights = class_balanced_weights(clips.primary[train_rows], sampling["class_power"])
        yield FoldData(
            clips=clips,
            store=store,
            train_rows=train_rows,
            val_rows=val_rows,
            validation=evaluation_windows(
                store, val_rows, training["val_windows"], crop_frames, training["val_hops"]
            ),
            normalization=training["normalization"],
            val_pooling=training["val_pooling"],
            val_pooling_power=training["val_pooling_power"],
            sampler=CropSampler(store, crop_frames, sampling["activity_power"]),
            targets=clips.targets(training["secondary_label_weight"]),
            row_weights=row_weights,
            pseudo=pseudo,
            mixing=config["semi_supervised"] if pseudo is not None else None,
        )
    finally:
        store.close()
        if pseudo is not None:
            pseudo.close()


def _pseudo_windows(config: Mapping, fold: int, paths: FoldPaths, classes, crop_frames: int):
    pseudo = load_pseudo_windows(
        paths.pseudo_labels,
        paths.soundscape_shards,
        fold,
        classes,
        AudioParams.from_config(config),
        crop_frames,
        config["semi_supervised"],
        config["training"]["cache_ram_mb"],
    )
    if len(pseudo) == 0:
        log.warning(
            "fold %d: no pseudo-labelled soundscape window (train_soundscapes/ had none that "
            "could be decoded): this round trains on the labelled recordings alone",
            fold,
        )
    else:
        labelled = np.count_nonzero(pseudo.targets.max(axis=1) > 0)
        log.info(
            "fold %d: %d pseudo-labelled soundscape window(s), %d with a class above "
            "semi_supervised.min_probability; %.0f%% of crops mixed with one",
            fold,
            len(pseudo),
            labelled,
            100 * config["semi_supervised"]["mix_prob"],
        )
    return pseudo


def _select_rows(clips, store, fold: int) -> tuple[np.ndarray, np.ndarray]:
    present = sorted(int(f) for f in np.unique(clips.folds))
    if fold not in present:
        raise TrainingError(f"fold {fold} does not exist: folds.csv has folds {present}")
    usable = store.available
    if store.missing:
        log.warning(
            "%d recording(s) of the manifest are not in the shards (quarantined), left out: %s",
            len(store.missing),
            ", ".join(store.missing[:10]),
        )
    train_rows = np.flatnonzero((clips.folds != fold) & usable)
    val_rows = np.flatnonzero((clips.folds == fold) & usable)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise TrainingError(
            f"fold {fold} has {len(train_rows)} training and {len(val_rows)} "
            "validation recordings: nothing to train or validate on"
        )
    return train_rows, val_rows


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp overflows to inf for logits below about -709: the result, 0, is still right
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

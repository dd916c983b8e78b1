"""tf.data input pipelines reading log-mel windows straight from the HDF5 shards.

Training: every epoch, one random window per recording, shuffled; a recording shorter than a
window is repeated end to end (a random phase of the repetition), so a window never contains
artificial silence. Then normalisation, SpecAugment and gain/bias per window, batching and mixup
per batch, all as graph ops in parallel map calls.

Validation and out-of-fold prediction: up to `val_windows` consecutive windows from the start of
each recording, no augmentation; a recording's prediction is the mean over its windows.

The shards a job needs are held in memory when they fit `training.cache_ram_mb`; otherwise each
window is read from disk (h5py), so a data set larger than RAM still trains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dawnchorus import augment
from dawnchorus.features import cut_window, window_starts
from dawnchorus.shards import ClipStore

log = logging.getLogger(__name__)


def window_to_image(window: tf.Tensor, normalization: str) -> tf.Tensor:
    """(…, frames, n_mels) dB -> normalised (…, n_mels, frames, 1) float32, frequency upwards.

    One window or a batch: inference and the exported model run it on batches.
    """
    image = tf.linalg.matrix_transpose(tf.cast(window, tf.float32))[..., ::-1, :, tf.newaxis]
    return augment.normalize_window(image, normalization)


def training_dataset(
    store: ClipStore,
    rows: np.ndarray,
    labels: np.ndarray,
    training: Mapping,
    batch_size: int,
    mixup_alpha: float,
    aug_prob: float,
    seed: int,
) -> tf.data.Dataset:
    """One epoch of (images, labels) batches: a random window per recording, augmented.

    Every random choice (order, window position, augmentations, mixup) follows from `seed` and
    the epoch: the same seed gives the same epochs, whatever the parallelism.
    """
    params = store.params
    shape = (params.window_frames, params.n_mels)
    rows = np.asarray(rows, dtype=np.int64)
    label_table = tf.constant(labels[rows], dtype=tf.float32)
    settings = training["augment"]

    def read(row: np.int64, position: np.float32) -> np.ndarray:
        return store.random_window(int(row), float(position))

    def example(index, example_seed):
        position_seed, mask_seed, jitter_seed, mixup_seed = tf.unstack(
            tf.random.experimental.stateless_split(example_seed, 4)
        )
        position = tf.random.stateless_uniform([], position_seed)
        window = tf.numpy_function(
            read, [tf.gather(rows, index), position], tf.float16, stateful=False
        )
        window.set_shape(shape)
        image = window_to_image(window, training["normalization"])
        image = augment.spec_augment(image, settings, aug_prob, mask_seed)
        image = augment.gain_bias(image, settings, aug_prob, jitter_seed)
        return image, tf.gather(label_table, index), mixup_seed

    def mix(images, batch_labels, mixup_seeds):
        return augment.mixup(images, batch_labels, mixup_alpha, aug_prob, mixup_seeds[0])

    order = tf.data.Dataset.range(len(rows)).shuffle(
        len(rows), seed=seed, reshuffle_each_iteration=True
    )
    # a new pair of seeds per example and epoch, reproducible from `seed`
    example_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (
        tf.data.Dataset.zip(order, example_seeds)
        .map(example, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .map(mix, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


@dataclass(frozen=True)
class EvaluationWindows:
    """Deterministic windows of some recordings, and which recording each belongs to."""

    windows: np.ndarray  # (n_windows, frames, n_mels) float16 dB
    clip_of_window: np.ndarray  # (n_windows,) position in `rows`
    rows: np.ndarray

    def dataset(self, normalization: str, batch_size: int) -> tf.data.Dataset:
        return (
            tf.data.Dataset.from_tensor_slices(self.windows)
            .map(lambda w: window_to_image(w, normalization), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )

    def per_clip(self, window_scores: np.ndarray) -> np.ndarray:
        """Mean of the window scores of each recording, in `rows` order."""
        totals = np.zeros((len(self.rows), window_scores.shape[1]))
        np.add.at(totals, self.clip_of_window, window_scores)
        counts = np.bincount(self.clip_of_window, minlength=len(self.rows))
        return totals / counts[:, None]


def evaluation_windows(store: ClipStore, rows: np.ndarray, max_windows: int) -> EvaluationWindows:
    window = store.params.window_frames
    windows, owners = [], []
    for position, row in enumerate(rows):
        frames = store.frames(int(row))
        for start in window_starts(len(frames), window, max_windows):
            windows.append(cut_window(frames, start, window))
            owners.append(position)
    empty = np.zeros((0, window, store.params.n_mels), dtype=np.float16)
    return EvaluationWindows(
        windows=np.stack(windows) if windows else empty,
        clip_of_window=np.asarray(owners, dtype=np.int64),
        rows=np.asarray(rows, dtype=np.int64),
    )

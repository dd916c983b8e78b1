"""tf.data input pipelines reading log-mel crops straight from the HDF5 shards.

Training: every epoch, one crop (model.input_s seconds) per drawn recording: which recordings
and which crops follow `sampling` (class-balanced draws, activity-aware crops); a recording
shorter than a crop is repeated end to end (a random phase of the repetition), so a crop never
contains artificial silence. Then per crop distance (on dB), normalisation, pitch shift,
SpecAugment and gain/bias; then batching, and per batch overlays of two crops and mixup, all as
graph ops in parallel map calls. In a self-training round, a share of the crops is first mixed
with a pseudo-labelled soundscape window (after distance, before normalisation; `pseudo_labels`).

Validation and out-of-fold prediction: crops covering each recording from its start over up to
`val_windows` crop lengths (`val_hops` per crop length, the last one ending at the recording's
end), no augmentation; a recording's score is the power mean (or max, or mean) over its crops.

The shards a job needs are held in memory when they fit `training.cache_ram_mb`; otherwise each
crop is read from disk (h5py), so a data set larger than RAM still trains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from dawnchorus.data.shards import ClipStore
from dawnchorus.learning import augment
from dawnchorus.learning.sampling import CropSampler
from dawnchorus.signal.features import band_centres_hz, covering_starts, cut_window

if TYPE_CHECKING:
    from dawnchorus.data.pseudo_labels import PseudoWindows

log = logging.getLogger(__name__)


def window_to_db_image(window: tf.Tensor) -> tf.Tensor:
    """(…, frames, n_mels) dB -> (…, n_mels, frames, 1) float32 dB, frequency upwards."""
    return tf.linalg.matrix_transpose(tf.cast(window, tf.float32))[..., ::-1, :, tf.newaxis]


def window_to_image(window: tf.Tensor, normalization: str) -> tf.Tensor:
    """(…, frames, n_mels) dB -> normalised (…, n_mels, frames, 1) float32, frequency upwards.

    One window or a batch: inference and the exported model run it on batches.
    """
    return augment.normalize_window(window_to_db_image(window), normalization)


def training_dataset(
    sampler: CropSampler,
    rows: np.ndarray,
    targets: np.ndarray,
    training: Mapping,
    batch_size: int,
    mixup_alpha: float,
    aug_prob: float,
    seed: int,
    row_weights: np.ndarray | None = None,
    crops_per_recording: int = 1,
    pseudo: PseudoWindows | None = None,
    mixing: Mapping | None = None,
) -> tf.data.Dataset:
    """One epoch of (images, targets) batches: crops_per_recording * len(rows) crops, augmented.

    `row_weights` (one per row, summing to 1) draws the recordings with replacement; None takes
    every row crops_per_recording times, shuffled. Every random choice (recordings, crop
    positions, augmentations, mixup) follows from `seed` and the epoch: the same seed gives the
    same epochs, whatever the parallelism.

    With `pseudo` (and `mixing`, the semi_supervised section), each crop is mixed with probability
    mixing["mix_prob"] with a soundscape window drawn uniformly from `pseudo`, in power
    (mixing["mix_weight"] of it the crop's); the targets are the union of both.
    """
    store = sampler.store
    params = store.params
    shape = (sampler.crop_frames, params.n_mels)
    # centre frequency of each image row (highest band first, as the image has it)
    band_khz = band_centres_hz(params)[::-1] / 1000.0
    frames_per_s = params.sample_rate / params.hop_length
    rows = np.asarray(rows, dtype=np.int64)
    target_table = tf.constant(targets[rows], dtype=tf.float32)
    settings = training["augment"]
    log_weights = None
    if row_weights is not None:
        with np.errstate(divide="ignore"):  # a weight of 0: never drawn
            log_weights = tf.constant(np.log(np.asarray(row_weights, dtype=np.float64))[None, :])

    def read(row: np.int64, position: np.float32) -> np.ndarray:
        return sampler.crop(int(row), float(position))

    mix_with_soundscape = _soundscape_mixer(pseudo, mixing, shape)

    def example(index, example_seed):
        pick_seed, position_seed, mask_seed, jitter_seed, mixup_seed, shift_seed, far_seed = (
            tf.unstack(tf.random.experimental.stateless_split(example_seed, 7))
        )
        if log_weights is not None:
            index = tf.random.stateless_categorical(log_weights, 1, pick_seed)[0, 0]
        position = tf.random.stateless_uniform([], position_seed)
        crop = tf.numpy_function(
            read, [tf.gather(rows, index), position], tf.float16, stateful=False
        )
        crop.set_shape(shape)
        image = augment.distance(
            window_to_db_image(crop), band_khz, frames_per_s, training["distance_prob"], far_seed
        )
        target = tf.gather(target_table, index)
        if mix_with_soundscape is not None:
            # its own stream: the crops and augmentations of the other seeds stay as they are
            image, target = mix_with_soundscape(
                image, target, tf.random.experimental.stateless_fold_in(example_seed, 1)
            )
        image = augment.normalize_window(image, training["normalization"])
        image = augment.pitch_shift(image, settings["pitch_shift_bands"], aug_prob, shift_seed)
        image = augment.spec_augment(image, settings, aug_prob, mask_seed)
        image = augment.gain_bias(image, settings, aug_prob, jitter_seed)
        return image, target, mixup_seed

    def mix(images, batch_targets, mixup_seeds):
        mixup_seed, overlay_seed = tf.unstack(
            tf.random.experimental.stateless_split(mixup_seeds[0], 2)
        )
        images, batch_targets = augment.overlay(
            images, batch_targets, training["overlay_prob"], overlay_seed
        )
        return augment.mixup(images, batch_targets, mixup_alpha, aug_prob, mixup_seed)

    n_examples = len(rows) * crops_per_recording
    order = (
        tf.data.Dataset.range(n_examples)
        .map(lambda i: i % len(rows))
        .shuffle(n_examples, seed=seed, reshuffle_each_iteration=True)
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


def _soundscape_mixer(pseudo: PseudoWindows | None, mixing: Mapping | None, shape):
    """(db image, target, seed) -> the same, mixed with a pseudo-labelled soundscape window with
    probability mixing["mix_prob"]; None when there is nothing to mix."""
    if pseudo is None or len(pseudo) == 0 or mixing is None or mixing["mix_prob"] <= 0:
        return None
    targets = tf.constant(pseudo.targets, dtype=tf.float32)
    n_windows = len(pseudo)

    def read(item: np.int64) -> np.ndarray:
        return pseudo.crop(int(item))

    def mix(image, target, seed):
        when_seed, item_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

        def mixed():
            item = tf.random.stateless_uniform([], item_seed, 0, n_windows, dtype=tf.int64)
            window = tf.numpy_function(read, [item], tf.float16, stateful=False)
            window.set_shape(shape)
            return (
                augment.mix_power(image, window_to_db_image(window), mixing["mix_weight"]),
                tf.maximum(target, tf.gather(targets, item)),
            )

        chosen = tf.random.stateless_uniform([], when_seed) < mixing["mix_prob"]
        return tf.cond(chosen, mixed, lambda: (image, target))

    return mix


@dataclass(frozen=True)
class EvaluationWindows:
    """Deterministic crops of some recordings, and which recording each belongs to."""

    windows: np.ndarray  # (n_crops, crop frames, n_mels) float16 dB
    clip_of_window: np.ndarray  # (n_crops,) position in `rows`
    rows: np.ndarray

    def dataset(self, normalization: str, batch_size: int) -> tf.data.Dataset:
        return (
            tf.data.Dataset.from_tensor_slices(self.windows)
            .map(lambda w: window_to_image(w, normalization), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )

    def per_clip(
        self, window_scores: np.ndarray, pooling: str = "mean", power: float | None = None
    ) -> np.ndarray:
        """Each recording's crop scores pooled, in `rows` order: mean, max, or power (the
        power mean (mean of score**power)**(1/power): between the two, a call in one crop
        counts without one noisy crop deciding; `power` comes from training.val_pooling_power)."""
        n_classes = window_scores.shape[1]
        if pooling == "max":
            pooled = np.full((len(self.rows), n_classes), -np.inf)
            np.maximum.at(pooled, self.clip_of_window, window_scores)
            return pooled
        if pooling not in ("mean", "power"):
            raise ValueError(f"unknown pooling {pooling!r}")
        exponent = 1.0 if pooling == "mean" else power
        if exponent is None:
            raise ValueError("power pooling needs its exponent (training.val_pooling_power)")
        totals = np.zeros((len(self.rows), n_classes))
        np.add.at(totals, self.clip_of_window, np.asarray(window_scores, np.float64) ** exponent)
        counts = np.bincount(self.clip_of_window, minlength=len(self.rows))
        return (totals / counts[:, None]) ** (1.0 / exponent)


def evaluation_windows(
    store: ClipStore,
    rows: np.ndarray,
    max_windows: int,
    crop_frames: int | None = None,
    hops: int = 1,
) -> EvaluationWindows:
    """Crops of `crop_frames` (default one window) covering each recording from its start over
    at most `max_windows` crop lengths, `hops` per crop length (`features.covering_starts`)."""
    crop = crop_frames or store.params.window_frames
    windows, owners = [], []
    for position, row in enumerate(rows):
        frames = store.frames(int(row))
        for start in covering_starts(len(frames), crop, max_windows, hops):
            windows.append(cut_window(frames, start, crop))
            owners.append(position)
    empty = np.zeros((0, crop, store.params.n_mels), dtype=np.float16)
    return EvaluationWindows(
        windows=np.stack(windows) if windows else empty,
        clip_of_window=np.asarray(owners, dtype=np.int64),
        rows=np.asarray(rows, dtype=np.int64),
    )

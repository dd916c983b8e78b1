"""Window normalisation and augmentations as TensorFlow graph ops (they run inside tf.data).

A window is a float32 tensor (n_mels, frames, 1) of log-mel dB. `normalize_window` maps it to
[0, 1]; it is the one normalisation used for training, validation and prediction. Augmentations
act on normalised windows, each applied with probability `aug_prob`:
  SpecAugment   time and frequency masks set to 0 (the window's minimum after min-max)
  gain/bias     the seed's contrast (multiplicative) and brightness (additive) jitter
  mixup         on whole batches, lambda ~ Beta(alpha, alpha) per sample, labels mixed alike
Randomness is stateless: every function takes a `seed` (a shape-[2] int tensor) and gives the same
result for the same seed, so an epoch is reproducible however many threads tf.data uses.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

_EPSILON = 1e-6
# "fixed" normalisation maps this dB range to [0, 1]: the -100 dB floor of features.log_mel up to
# a little above what a full-scale tone reaches with the default filterbank (about +35 dB)
FIXED_DB_RANGE = (-100.0, 40.0)


def normalize_window(window: tf.Tensor, method: str) -> tf.Tensor:
    """Map a (…, n_mels, frames, channels) dB window to [0, 1].

    minmax: per window, its own minimum to 0 and maximum to 1 (the seed's normalisation).
    fixed:  FIXED_DB_RANGE to [0, 1] for every window, so absolute level is kept.
    """
    window = tf.cast(window, tf.float32)
    if method == "minmax":
        low = tf.reduce_min(window, axis=[-3, -2, -1], keepdims=True)
        high = tf.reduce_max(window, axis=[-3, -2, -1], keepdims=True)
        return (window - low) / tf.maximum(high - low, _EPSILON)
    if method == "fixed":
        low, high = FIXED_DB_RANGE
        return tf.clip_by_value((window - low) / (high - low), 0.0, 1.0)
    raise ValueError(f"unknown normalisation {method!r}")


def _happens(probability: float, seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed) < probability


def _split(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _mask_along(
    window: tf.Tensor, axis: int, count: int, max_fraction: float, seed: tf.Tensor
) -> tf.Tensor:
    size = tf.shape(window)[axis]
    max_width = tf.maximum(1, tf.cast(tf.cast(size, tf.float32) * max_fraction, tf.int32))
    positions = tf.range(size)
    keep = tf.ones([size], dtype=tf.bool)
    for mask_seed in _split(seed, count):
        width_seed, start_seed = _split(mask_seed, 2)
        width = tf.random.stateless_uniform([], width_seed, 0, max_width + 1, dtype=tf.int32)
        start = tf.random.stateless_uniform(
            [], start_seed, 0, tf.maximum(size - width, 0) + 1, dtype=tf.int32
        )
        keep &= (positions < start) | (positions >= start + width)
    shape = [1, 1, 1]
    shape[axis] = -1
    return window * tf.reshape(tf.cast(keep, window.dtype), shape)


def spec_augment(
    window: tf.Tensor, settings: Mapping, probability: float, seed: tf.Tensor
) -> tf.Tensor:
    """Time and frequency masks on one (n_mels, frames, 1) window."""
    time_when, time_where, freq_when, freq_where = _split(seed, 4)
    if settings["time_masks"]:
        window = tf.cond(
            _happens(probability, time_when),
            lambda: _mask_along(
                window, 1, settings["time_masks"], settings["time_mask_fraction"], time_where
            ),
            lambda: window,
        )
    if settings["freq_masks"]:
        window = tf.cond(
            _happens(probability, freq_when),
            lambda: _mask_along(
                window, 0, settings["freq_masks"], settings["freq_mask_fraction"], freq_where
            ),
            lambda: window,
        )
    return window


def gain_bias(
    window: tf.Tensor, settings: Mapping, probability: float, seed: tf.Tensor
) -> tf.Tensor:
    """Contrast and brightness jitter on a normalised window, clipped back to [0, 1]."""
    when, contrast_seed, brightness_seed = _split(seed, 3)

    def jitter():
        spread, shift = settings["contrast"], settings["brightness"]
        contrast = tf.random.stateless_uniform([], contrast_seed, 1 - spread, 1 + spread)
        brightness = tf.random.stateless_uniform([], brightness_seed, -shift, shift)
        return tf.clip_by_value(window * contrast + brightness, 0.0, 1.0)

    return tf.cond(_happens(probability, when), jitter, lambda: window)


def sample_beta(shape, alpha: float, seed: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """Beta(alpha, alpha) samples as G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha, 1)."""
    first_seed, second_seed = _split(seed, 2)
    first = tf.random.stateless_gamma(shape, first_seed, alpha, dtype=dtype)
    second = tf.random.stateless_gamma(shape, second_seed, alpha, dtype=dtype)
    return first / tf.maximum(first + second, 1e-12)


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, probability: float, seed: tf.Tensor):
    """Mix each sample of a batch with another one of the same batch.

    Each sample is mixed with probability `probability`, with its own lambda ~ Beta(alpha, alpha);
    images and (multi-hot) labels are combined with the same lambda.
    """
    if alpha <= 0 or probability <= 0:
        return images, labels
    lam_seed, when_seed, partner_seed = _split(seed, 3)
    batch = tf.shape(images)[0]
    lam = sample_beta([batch], alpha, lam_seed)
    mixed = tf.random.stateless_uniform([batch], when_seed) < probability
    lam = tf.where(mixed, lam, tf.ones_like(lam))
    partner = tf.argsort(tf.random.stateless_uniform([batch], partner_seed))
    lam_images = tf.reshape(lam, [-1, 1, 1, 1])
    lam_labels = tf.reshape(lam, [-1, 1])
    mixed_images = lam_images * images + (1 - lam_images) * tf.gather(images, partner)
    mixed_labels = lam_labels * labels + (1 - lam_labels) * tf.gather(labels, partner)
    return mixed_images, mixed_labels

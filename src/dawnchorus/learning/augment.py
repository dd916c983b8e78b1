"""Window normalisation and augmentations as TensorFlow graph ops (they run inside tf.data).

A window is a float32 tensor (n_mels, frames, 1) of log-mel dB. `normalize_window` maps it to
[0, 1]; it is the one normalisation used for training, validation and prediction. Augmentations
act on normalised windows, each with its own probability (`aug_prob` for SpecAugment, pitch shift
and gain/bias, `distance_prob`, `overlay_prob`; mixup by `mixup_alpha`):
  SpecAugment   time and frequency masks set to 0 (the window's minimum after min-max)
  distance      on the dB window, before normalisation: the caller moved away from the
                microphone, as in a passive recorder's soundscape: high bands absorbed more, and
                reverberation smearing each band's energy in time
  pitch shift   the window moved up or down by a few mel bands (individuals sing higher or lower)
  gain/bias     the seed's contrast (multiplicative) and brightness (additive) jitter
  mixup         on whole batches, lambda ~ Beta(alpha, alpha) per sample, labels mixed alike
  overlay       on whole batches: another crop of the batch heard at the same time (the louder
                of the two wins, as when two sounds add), labels the union of both: a recording
                with two species, made from two
  mix_power     on dB windows, before normalisation: two sounds added in power (self-training
                mixes a labelled crop with a pseudo-labelled soundscape window)
Randomness is stateless: every function takes a `seed` (a shape-[2] int tensor) and gives the same
result for the same seed, so an epoch is reproducible however many threads tf.data uses.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

_EPSILON = 1e-6
# "fixed" normalisation maps this dB range to [0, 1]: the -100 dB floor of features.log_mel up to
# a little above what a full-scale tone reaches with the default filterbank (about +35 dB)
FIXED_DB_RANGE = (-100.0, 40.0)


# the quietest fifth of a band's frames is its background: a call that sounds in up to 80 % of a
# window (a frog chorus, an insect's chirps) is not taken for background, as a mean would take it
BACKGROUND_QUANTILE = 0.2


def band_background(window: tf.Tensor) -> tf.Tensor:
    """(…, n_mels, frames, 1) dB -> (…, n_mels, 1, 1): each band's BACKGROUND_QUANTILE level over
    the window's frames (top_k: TFLite runs it)."""
    frames = window.shape[-2]
    k = max(1, round(BACKGROUND_QUANTILE * frames))
    quietest = tf.math.top_k(-window[..., 0], k=k, sorted=True).values
    return -quietest[..., -1:, tf.newaxis]


def normalize_window(window: tf.Tensor, method: str) -> tf.Tensor:
    """Map a (…, n_mels, frames, channels) dB window to [0, 1].

    minmax:   per window, its own minimum to 0 and maximum to 1 (the seed's normalisation).
    fixed:    FIXED_DB_RANGE to [0, 1] for every window, so absolute level is kept.
    denoised: each band's background level over the window (`band_background`) is
              subtracted (a stationary background: wind, an insect chorus, hum, the hiss of a
              recorder), what is below it set to 0, then the window's maximum scaled to 1.
              Calls stand out the same way over a quiet focal background and over a noisy
              passive-recorder one.
    """
    window = tf.cast(window, tf.float32)
    if method == "denoised":
        above = tf.nn.relu(window - band_background(window))
        return above / tf.maximum(tf.reduce_max(above, axis=[-3, -2, -1], keepdims=True), _EPSILON)
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


# what distance does to a call (demo.propagate models the same): excess attenuation in dB of
# ABSORPTION_DB * metres * kHz^1.4, and reverberation that decays by 60 dB in 0.3 to 1.2 s
ABSORPTION_DB = 0.012
DISTANCE_M = (5.0, 50.0)
REVERB_S = (0.3, 1.2)


def distance(
    window_db: tf.Tensor,
    band_khz: np.ndarray,
    frames_per_s: float,
    probability: float,
    seed: tf.Tensor,
) -> tf.Tensor:
    """A (n_mels, frames, 1) dB window as if heard from a random distance (DISTANCE_M): each
    band loses ABSORPTION_DB * d * f^1.4 dB, and a reverberant tail (REVERB_S, its share growing
    with distance) is added to each band's power. `band_khz`: each row's centre frequency."""
    if probability <= 0:
        return window_db
    when, how_far, how_long = _split(seed, 3)
    band_khz = tf.constant(np.asarray(band_khz, dtype=np.float32))
    n_taps = int(max(REVERB_S) * frames_per_s)

    def heard_from_afar():
        metres = tf.random.stateless_uniform([], how_far, *DISTANCE_M)
        reverb_s = tf.random.stateless_uniform([], how_long, *REVERB_S)
        loss = ABSORPTION_DB * metres * tf.pow(band_khz, 1.4)
        power = tf.pow(10.0, (window_db - loss[:, None, None]) / 10.0)
        # a causal exponential tail along time, per band: conv1d with the bands as the batch
        tail = tf.exp(-6.9 * tf.range(n_taps, dtype=tf.float32) / (reverb_s * frames_per_s))
        kernel = tf.reverse(tail / tf.reduce_sum(tail), [0])[:, None, None]
        padded = tf.pad(power, [[0, 0], [n_taps - 1, 0], [0, 0]])
        reverberant = tf.nn.conv1d(padded, kernel, stride=1, padding="VALID")
        wet = tf.minimum(0.85, 0.15 + metres / 80.0)
        mixed = (1 - wet) * power + wet * reverberant
        return 10.0 * tf.math.log(tf.maximum(mixed, 1e-10)) / np.log(10.0)

    return tf.cond(_happens(probability, when), heard_from_afar, lambda: window_db)


def pitch_shift(
    window: tf.Tensor, max_bands: int, probability: float, seed: tf.Tensor
) -> tf.Tensor:
    """Move a (n_mels, frames, 1) window by up to `max_bands` mel bands, up or down; the bands
    moved in from outside are 0."""
    if max_bands <= 0:
        return window
    when, how_far = _split(seed, 2)

    def shift():
        bands = tf.random.stateless_uniform([], how_far, -max_bands, max_bands + 1, dtype=tf.int32)
        rows = tf.range(tf.shape(window)[0])
        source = rows - bands
        inside = (source >= 0) & (source < tf.shape(window)[0])
        moved = tf.gather(window, tf.clip_by_value(source, 0, tf.shape(window)[0] - 1))
        return moved * tf.reshape(tf.cast(inside, window.dtype), [-1, 1, 1])

    return tf.cond(_happens(probability, when), shift, lambda: window)


def overlay(images: tf.Tensor, labels: tf.Tensor, probability: float, seed: tf.Tensor):
    """Each sample, with `probability`, heard together with another sample of the batch.

    Images are normalised log-mel windows: where two sounds overlap the louder dominates, so the
    mixture is the elementwise maximum of the window and the partner at a random level (0.4 to
    1); the labels are the union of both. Unlike mixup's weighted labels, this says what a
    recording of two species says: both are there.
    """
    if probability <= 0:
        return images, labels
    when_seed, partner_seed, level_seed = _split(seed, 3)
    batch = tf.shape(images)[0]
    chosen = tf.random.stateless_uniform([batch], when_seed) < probability
    partner = tf.argsort(tf.random.stateless_uniform([batch], partner_seed))
    level = tf.random.stateless_uniform([batch, 1, 1, 1], level_seed, 0.4, 1.0)
    mixed = tf.maximum(images, level * tf.gather(images, partner))
    union = tf.maximum(labels, tf.gather(labels, partner))
    pick = tf.reshape(chosen, [-1, 1, 1, 1])
    return tf.where(pick, mixed, images), tf.where(chosen[:, None], union, labels)


def mix_power(first_db: tf.Tensor, second_db: tf.Tensor, first_weight: float) -> tf.Tensor:
    """Two dB windows heard at once: `first_weight` of the first's power plus the rest of the
    second's, in dB (log-sum-exp, so no power over- or underflows)."""
    to_nats = np.log(10.0) / 10.0
    weighted = tf.stack(
        [
            first_db * to_nats + np.log(first_weight),
            second_db * to_nats + np.log(1.0 - first_weight),
        ]
    )
    return tf.reduce_logsumexp(weighted, axis=0) / to_nats


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

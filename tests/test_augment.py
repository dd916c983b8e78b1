"""Augmentations and normalisation as graph ops: shapes, ranges, probabilities, distributions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from dawnchorus.learning import augment

SETTINGS = {
    "time_masks": 2,
    "time_mask_fraction": 0.1,
    "freq_masks": 2,
    "freq_mask_fraction": 0.1,
    "contrast": 0.2,
    "brightness": 0.1,
}


def seed(value: int) -> tf.Tensor:
    return tf.constant([value, 1234], dtype=tf.int64)


def window(seed=0, shape=(32, 40, 1)):
    return tf.constant(np.random.default_rng(seed).uniform(-90, 20, shape), dtype=tf.float32)


def test_minmax_maps_each_window_to_exactly_0_1_and_fixed_keeps_absolute_level():
    quiet, loud = window(1) - 30, window(1) + 10
    for image in (quiet, loud):
        normalised = augment.normalize_window(image, "minmax").numpy()
        assert normalised.min() == pytest.approx(0) and normalised.max() == pytest.approx(1)
    # min-max forgets the level; fixed keeps it
    np.testing.assert_allclose(
        augment.normalize_window(quiet, "minmax"),
        augment.normalize_window(loud, "minmax"),
        atol=1e-5,
    )
    fixed_quiet = augment.normalize_window(quiet, "fixed").numpy()
    fixed_loud = augment.normalize_window(loud, "fixed").numpy()
    assert fixed_quiet.min() >= 0 and fixed_loud.max() <= 1
    assert fixed_loud.mean() > fixed_quiet.mean()
    # a constant window (digital silence) does not divide by zero
    assert np.isfinite(augment.normalize_window(tf.zeros((4, 5, 1)), "minmax")).all()
    with pytest.raises(ValueError, match="normalisation"):
        augment.normalize_window(quiet, "zscore")


def test_spec_augment_masks_whole_rows_and_columns_and_probability_zero_is_identity():
    image = augment.normalize_window(window(2), "minmax") + 0.01  # no zero before masking
    masked_any = False
    for k in range(20):
        out = augment.spec_augment(image, SETTINGS, 1.0, seed(k)).numpy()[..., 0]
        assert out.shape == (32, 40)
        zero = out == 0
        # every zero lies in a fully masked frequency row or time column
        full_rows, full_cols = zero.all(axis=1), zero.all(axis=0)
        assert (zero <= (full_rows[:, None] | full_cols[None, :])).all()
        assert full_cols.sum() <= 2 * int(40 * 0.1) and full_rows.sum() <= 2 * int(32 * 0.1)
        masked_any |= zero.any()
    assert masked_any
    np.testing.assert_array_equal(augment.spec_augment(image, SETTINGS, 0.0, seed(0)), image)
    np.testing.assert_array_equal(augment.gain_bias(image, SETTINGS, 0.0, seed(0)), image)


def test_gain_bias_stays_in_0_1_and_changes_the_window():
    image = augment.normalize_window(window(3), "minmax")
    outs = [augment.gain_bias(image, SETTINGS, 1.0, seed(k)).numpy() for k in range(10)]
    assert all(out.min() >= 0 and out.max() <= 1 for out in outs)
    assert any(not np.allclose(out, image) for out in outs)


def test_augmentations_are_a_function_of_their_seed():
    image = augment.normalize_window(window(4), "minmax")
    for transform in (augment.spec_augment, augment.gain_bias):
        first = transform(image, SETTINGS, 1.0, seed(5)).numpy()
        np.testing.assert_array_equal(first, transform(image, SETTINGS, 1.0, seed(5)))
        others = [transform(image, SETTINGS, 1.0, seed(k)).numpy() for k in range(6, 12)]
        assert any(not np.array_equal(first, other) for other in others)


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0, 2.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha):
    # float64: in float32 about 2% of Beta(0.2, 0.2) draws round to exactly 0 or 1, which is
    # harmless for mixup but shows up as a step in the KS statistic
    samples = augment.sample_beta([20000], alpha, seed(1), dtype=tf.float64).numpy()
    assert ((samples >= 0) & (samples <= 1)).all()
    # Kolmogorov-Smirnov against Beta(alpha, alpha); a skewed Beta(alpha, alpha + 1) fails it
    assert stats.kstest(samples, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert stats.kstest(samples, stats.beta(alpha, alpha + 1).cdf).pvalue < 1e-6


def test_mixup_mixes_images_and_labels_with_the_same_lambda():
    batch = 64
    # image k is the constant k, label k is one-hot k: the mix recovers lambda and the partner
    images = tf.reshape(tf.range(batch, dtype=tf.float32), [-1, 1, 1, 1]) * tf.ones([1, 2, 3, 1])
    labels = tf.one_hot(tf.range(batch), batch)
    mixed_images, mixed_labels = augment.mixup(images, labels, 0.4, 1.0, seed(2))
    mixed_images, mixed_labels = mixed_images.numpy(), mixed_labels.numpy()
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    expected_pixel = mixed_labels @ np.arange(batch, dtype=np.float32)
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], expected_pixel, rtol=1e-4, atol=1e-3)
    assert (mixed_labels.max(axis=1) < 0.999).mean() > 0.5  # most samples really were mixed

    unmixed_images, unmixed_labels = augment.mixup(images, labels, 0.4, 0.0, seed(2))
    np.testing.assert_array_equal(unmixed_images, images)
    np.testing.assert_array_equal(unmixed_labels, labels)


def test_denoised_removes_a_steady_band_and_keeps_a_call():
    base = np.full((32, 40, 1), -80.0, dtype=np.float32)
    base[5:8] = -20.0  # a steady band (an insect chorus) at every frame
    base[20:23, 10:14] = -10.0  # a short call
    image = augment.normalize_window(tf.constant(base), "denoised").numpy()
    assert image.min() == 0 and image.max() == pytest.approx(1)
    assert image[5:8].max() == 0, "a band as loud at every frame is background"
    assert image[20:23, 10:14].min() > 0.9 and image[20:23, :10].max() == 0
    # the same call over another background gives the same image
    other = base.copy()
    other[5:8] = -60.0
    other[:, :, 0] += 15.0  # and louder overall
    np.testing.assert_allclose(
        augment.normalize_window(tf.constant(other), "denoised").numpy()[20:23], image[20:23]
    )


def test_pitch_shift_moves_whole_rows_and_fills_with_zeros():
    image = augment.normalize_window(window(3), "minmax")
    shifted = [augment.pitch_shift(image, 3, 1.0, seed(s)).numpy() for s in range(30)]
    offsets = set()
    for moved in shifted:
        for offset in range(-3, 4):
            source = image.numpy()
            expected = np.zeros_like(source)
            if offset >= 0:
                expected[offset:] = source[: len(source) - offset]
            else:
                expected[:offset] = source[-offset:]
            if np.array_equal(moved, expected):
                offsets.add(offset)
                break
        else:
            raise AssertionError("not a shift of whole rows")
    assert len(offsets) >= 4 and offsets <= set(range(-3, 4))
    assert np.array_equal(augment.pitch_shift(image, 3, 0.0, seed(1)).numpy(), image.numpy())
    assert augment.pitch_shift(image, 0, 1.0, seed(1)) is image


def test_overlay_takes_the_louder_of_two_crops_and_the_union_of_their_labels():
    images = tf.stack([augment.normalize_window(window(s), "minmax") for s in range(8)])
    labels = tf.one_hot(tf.range(8) % 4, 4)
    mixed, union = augment.overlay(images, labels, 1.0, seed(5))
    mixed, union = mixed.numpy(), union.numpy()
    assert (mixed >= images.numpy() - 1e-7).all(), "the louder wins: nothing gets quieter"
    changed = [i for i in range(8) if not np.array_equal(mixed[i], images[i].numpy())]
    assert len(changed) >= 6
    for i in changed:
        assert union[i].sum() >= 1 and union[i, i % 4] == 1  # its own label stays
    assert set(np.unique(union)) <= {0.0, 1.0}
    untouched, same = augment.overlay(images, labels, 0.0, seed(5))
    assert untouched is images and same is labels


def test_distance_absorbs_high_bands_more_and_adds_a_reverberant_tail():
    band_khz = np.linspace(10.0, 0.1, 32)  # image rows: highest band first
    call = np.full((32, 200, 1), -90.0, dtype=np.float32)
    call[2:4, 50:60] = -10.0  # a high call (about 9.5 kHz)
    call[28:30, 50:60] = -10.0  # a low one (about 1 kHz)
    far = augment.distance(tf.constant(call), band_khz, 62.5, 1.0, seed(3)).numpy()
    high_loss = call[3, 55, 0] - far[3, 55, 0]
    low_loss = call[29, 55, 0] - far[29, 55, 0]
    assert high_loss > 2 * low_loss > 0
    assert far[3, 75, 0] > call[3, 75, 0] + 20, "the call rings on after it ends"
    assert (far[3, :45, 0] <= call[3, :45, 0] + 1e-3).all(), "nothing before it starts"
    near = augment.distance(tf.constant(call), band_khz, 62.5, 0.0, seed(3))
    assert near.numpy() is not None and np.array_equal(near.numpy(), call)

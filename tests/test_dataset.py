"""tf.data pipelines from real shards: crops, padding, sampling, labels, evaluation tiling."""

from __future__ import annotations

import numpy as np
import pytest

from dawnchorus.config import load_config
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.data.shards import ClipStore, ShardError
from dawnchorus.learning.dataset import evaluation_windows, training_dataset, window_to_image
from dawnchorus.learning.sampling import CropSampler, class_balanced_weights, frame_activity
from dawnchorus.signal.features import covering_starts, cut_window


@pytest.fixture(scope="module")
def clips(tiny_prepared):
    return load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)


@pytest.fixture(params=[8192, 0], ids=["in_memory", "streamed"])
def store(request, tiny_prepared, clips):
    opened = ClipStore(tiny_prepared.shards, tiny_prepared.params, clips.filenames, request.param)
    assert opened.in_memory == (request.param > 0)
    yield opened
    opened.close()


def test_uniform_crop_is_a_slice_of_the_stored_clip(store):
    window = store.params.window_frames
    sampler = CropSampler(store, window, activity_power=0)
    long_rows = np.flatnonzero(store.n_frames >= window)
    row = int(long_rows[0])
    whole = store.frames(row)
    for position in (0.0, 0.37, 0.999999):
        cut = sampler.crop(row, position)
        assert cut.shape == (window, store.params.n_mels) and cut.dtype == np.float16
        start = min(int(position * (len(whole) - window + 1)), len(whole) - window)
        np.testing.assert_array_equal(cut, whole[start : start + window])
    np.testing.assert_array_equal(sampler.crop(row, 0.999999), whole[-window:])


def test_short_clip_is_repeated_cyclically_never_padded_with_silence(store):
    window = store.params.window_frames
    sampler = CropSampler(store, window, activity_power=1.0)
    short_rows = np.flatnonzero((store.n_frames > 0) & (store.n_frames < window))
    assert len(short_rows), "the demo set has recordings under 5 s"
    row = int(short_rows[0])
    whole = store.frames(row)
    cut = sampler.crop(row, 0.5)
    assert cut.shape[0] == window
    phase = int(0.5 * len(whole))
    expected = np.concatenate([whole[phase:], *[whole] * (window // len(whole) + 1)])[:window]
    np.testing.assert_array_equal(cut, expected)
    np.testing.assert_array_equal(cut, cut_window(whole, phase, window))


def _targets(clips):
    return clips.targets(1.0)


def test_training_batches_have_the_right_shapes_ranges_and_labels(store, clips):
    training = load_config(None, {"data_dir": "unused"})["training"]
    rows = np.arange(len(clips.filenames))
    sampler = CropSampler(store, 2 * store.params.window_frames, activity_power=1.0)
    data = training_dataset(
        sampler, rows, _targets(clips), training, 8, mixup_alpha=0.0, aug_prob=0.0, seed=1
    )
    seen = []
    for images, labels in data:
        assert images.shape[1:] == (store.params.n_mels, 2 * store.params.window_frames, 1)
        assert images.dtype.name == "float32"
        assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 1.0
        seen.append(labels.numpy())
    seen = np.concatenate(seen)
    # one crop per recording per epoch, in a shuffled order, labels multi-hot
    assert len(seen) == len(rows)
    np.testing.assert_array_equal(np.sort(seen, axis=0), np.sort(clips.labels, axis=0))
    assert (clips.labels.sum(axis=1) > 1).any(), "secondary labels are in the multi-hot labels"


def test_secondary_labels_get_their_own_target_weight(clips):
    targets = clips.targets(0.5)
    rows = np.arange(len(clips.filenames))
    assert (targets[rows, clips.primary] == 1).all()
    secondary = (clips.labels == 1) & (targets != 1)
    assert secondary.any() and (targets[secondary] == 0.5).all()
    assert ((targets > 0) == (clips.labels > 0)).all()


def test_several_crops_per_recording_and_class_balanced_draws(store, clips):
    training = load_config(None, {"data_dir": "unused"})["training"]
    rows = np.arange(len(clips.filenames))
    sampler = CropSampler(store, store.params.window_frames, activity_power=0)
    tripled = training_dataset(
        sampler, rows, _targets(clips), training, 8, 0.0, 0.0, seed=1, crops_per_recording=3
    )
    labels = np.concatenate([batch.numpy() for _, batch in tripled])
    assert len(labels) == 3 * len(rows)
    np.testing.assert_array_equal(
        np.sort(labels, axis=0), np.sort(np.repeat(clips.labels, 3, axis=0), axis=0)
    )

    # all the weight on the recordings of the rarest primary class: only they are drawn
    counts = np.bincount(clips.primary)
    rare = np.flatnonzero(clips.primary == np.argmin(np.where(counts > 0, counts, 99)))
    weights = np.zeros(len(rows))
    weights[rare] = 1 / len(rare)
    drawn = training_dataset(
        sampler, rows, _targets(clips), training, 8, 0.0, 0.0, seed=2, row_weights=weights
    )
    labels = np.concatenate([batch.numpy() for _, batch in drawn])
    assert len(labels) == len(rows)
    assert set(map(tuple, labels)) <= set(map(tuple, clips.labels[rare]))


def test_class_balanced_weights_follow_the_power_of_the_class_counts():
    primary = np.array([0, 0, 0, 0, 1])  # class 0: 4 recordings, class 1: one
    square_root = class_balanced_weights(primary, 0.5)
    assert square_root.sum() == pytest.approx(1)
    # each recording of class 0 weighs 4^-0.5 = 1/2 of the lone class-1 recording
    assert square_root[0] == pytest.approx(square_root[4] / 2)
    assert np.allclose(class_balanced_weights(primary, 0), 0.2)
    balanced = class_balanced_weights(primary, 1)
    assert balanced[:4].sum() == pytest.approx(balanced[4])


def test_activity_sampling_draws_the_crops_where_something_sounds():
    rng = np.random.default_rng(0)
    frames = rng.normal(-70, 2, size=(1000, 16)).astype(np.float16)  # steady background
    frames[600:650, 4:8] += 40  # one call, 50 frames, in 4 bands

    recording = frames

    class OneRecording:
        n_frames = np.array([len(recording)])

        def frames(self, row, start=0, length=None):
            return recording[start : None if length is None else start + length]

    activity = frame_activity(frames)
    assert activity[600:650].min() > 5 * activity[:500].max()
    crop = 100
    uniform = CropSampler(OneRecording(), crop, activity_power=0)
    aware = CropSampler(OneRecording(), crop, activity_power=1.0)
    positions = (np.arange(400) + 0.5) / 400

    def share_with_call(sampler):
        crops = [sampler.crop(0, position) for position in positions]
        return np.mean([crop_frames.astype(np.float32).max() > -40 for crop_frames in crops])

    # 149 of 901 starts overlap the call: about 1/6 uniformly, most of the draws when aware
    assert share_with_call(uniform) == pytest.approx(149 / 901, abs=0.02)
    assert share_with_call(aware) > 0.7


def test_training_epochs_follow_the_seed_whatever_the_parallelism(store, clips):
    training = load_config(None, {"data_dir": "unused"})["training"]
    rows = np.arange(len(clips.filenames))
    sampler = CropSampler(store, store.params.window_frames, activity_power=1.0)
    weights = class_balanced_weights(clips.primary, 0.5)

    def epochs(seed, count=2):
        data = training_dataset(
            sampler,
            rows,
            _targets(clips),
            training,
            batch_size=8,
            mixup_alpha=0.4,
            aug_prob=1.0,
            seed=seed,
            row_weights=weights,
        )
        return [np.concatenate([images.numpy() for images, _ in data]) for _ in range(count)]

    first, second = epochs(3), epochs(3)
    for mine, again in zip(first, second, strict=True):
        np.testing.assert_array_equal(mine, again)
    assert not np.array_equal(first[0], first[1]), "each epoch draws new crops and augmentations"
    assert not np.array_equal(first[0], epochs(4, count=1)[0]), "another seed, other epochs"


def test_covering_starts_reach_the_end_of_a_recording():
    assert covering_starts(100, 313, 5) == [0]  # shorter than a crop: one repeated crop
    assert covering_starts(313, 313, 5) == [0]
    assert covering_starts(700, 313, 5) == [0, 313, 387]  # the last one ends at the end
    assert covering_starts(939, 313, 5) == [0, 313, 626]
    assert covering_starts(5000, 313, 3) == [0, 313, 626]  # at most max_crops


def test_overlapping_covering_starts_halve_the_step_over_the_same_span():
    assert covering_starts(100, 313, 5, hops=2) == [0]
    assert covering_starts(700, 313, 5, hops=2) == [0, 156, 312, 387]  # the last at the end
    assert covering_starts(939, 313, 5, hops=2) == [0, 156, 312, 468, 624, 626]
    # a long recording: the first 3 crop lengths (939 frames), never a crop beyond them
    starts = covering_starts(5000, 313, 3, hops=2)
    assert starts == [0, 156, 312, 468, 624]
    assert starts[-1] + 313 <= 3 * 313
    assert covering_starts(5000, 313, 3, hops=1) == covering_starts(5000, 313, 3)


def test_evaluation_windows_are_deterministic_and_pooled_per_clip(store, clips):
    rows = np.arange(len(clips.filenames))
    first = evaluation_windows(store, rows, max_windows=3)
    second = evaluation_windows(store, rows, max_windows=3)
    np.testing.assert_array_equal(first.windows, second.windows)
    counts = np.bincount(first.clip_of_window, minlength=len(rows))
    assert counts.min() >= 1 and counts.max() <= 3
    assert (counts[store.n_frames >= 3 * store.params.window_frames] == 3).all()
    scores = np.arange(len(first.windows), dtype=float)[:, None] * np.ones((1, 2))
    mean, peak = first.per_clip(scores), first.per_clip(scores, "max")
    power = first.per_clip(scores, "power", power=3.0)
    for position in range(len(rows)):
        mine = np.flatnonzero(first.clip_of_window == position)
        assert mean[position, 0] == pytest.approx(mine.mean())
        assert peak[position, 0] == mine.max()
        assert power[position, 0] == pytest.approx(np.mean(mine.astype(float) ** 3) ** (1 / 3))
        assert mean[position, 0] - 1e-9 <= power[position, 0] <= peak[position, 0] + 1e-9
    overlapping = evaluation_windows(store, rows, max_windows=3, hops=2)
    assert len(overlapping.windows) > len(first.windows)
    crop = store.params.window_frames
    for position, row in enumerate(rows):
        frames = store.frames(int(row))
        starts = covering_starts(len(frames), crop, 3, hops=2)
        expected = np.stack([cut_window(frames, start, crop) for start in starts])
        np.testing.assert_array_equal(
            overlapping.windows[overlapping.clip_of_window == position], expected
        )
    longer = evaluation_windows(store, rows, max_windows=3, crop_frames=626)
    assert longer.windows.shape[1:] == (626, store.params.n_mels)
    batch = next(iter(first.dataset("minmax", batch_size=4)))
    expected = window_to_image(first.windows[0], "minmax").numpy()
    np.testing.assert_allclose(batch[0].numpy(), expected)
    # (frames, mels) -> (mels, frames) with frequency upwards: the top row is the highest band
    raw = first.windows[0].astype(np.float32)
    normalised = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(expected[0, :, 0], normalised[:, -1], atol=1e-6)
    np.testing.assert_allclose(expected[-1, :, 0], normalised[:, 0], atol=1e-6)


def test_a_missing_or_mismatched_shard_is_a_clear_error_naming_it(tiny_prepared, clips, tmp_path):
    missing = tmp_path / "shard_009.h5"
    with pytest.raises(ShardError, match=r"shard_009.h5.*missing"):
        ClipStore((*tiny_prepared.shards, missing), tiny_prepared.params, clips.filenames, 0)
    other = load_config(None, {"data_dir": "unused", "audio": {"n_mels": 64}})
    from dawnchorus.config import AudioParams

    with pytest.raises(ShardError, match=r"shard_000.h5.*n_mels"):
        ClipStore(tiny_prepared.shards, AudioParams.from_config(other), clips.filenames, 0)

"""tf.data pipelines from real shards: windows, padding, labels, evaluation tiling."""

from __future__ import annotations

import numpy as np
import pytest

from dawnchorus.config import load_config
from dawnchorus.dataset import evaluation_windows, training_dataset, window_to_image
from dawnchorus.features import cut_window
from dawnchorus.folds import load_labelled_clips
from dawnchorus.shards import ClipStore, ShardError


@pytest.fixture(scope="module")
def clips(tiny_prepared):
    return load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)


@pytest.fixture(params=[8192, 0], ids=["in_memory", "streamed"])
def store(request, tiny_prepared, clips):
    opened = ClipStore(tiny_prepared.shards, tiny_prepared.params, clips.filenames, request.param)
    assert opened.in_memory == (request.param > 0)
    yield opened
    opened.close()


def test_random_window_is_a_slice_of_the_stored_clip(store):
    window = store.params.window_frames
    long_rows = np.flatnonzero(store.n_frames >= window)
    row = int(long_rows[0])
    whole = store.frames(row)
    for position in (0.0, 0.37, 0.999999):
        cut = store.random_window(row, position)
        assert cut.shape == (window, store.params.n_mels) and cut.dtype == np.float16
        start = min(int(position * (len(whole) - window + 1)), len(whole) - window)
        np.testing.assert_array_equal(cut, whole[start : start + window])
    np.testing.assert_array_equal(store.random_window(row, 0.999999), whole[-window:])


def test_short_clip_is_repeated_cyclically_never_padded_with_silence(store):
    window = store.params.window_frames
    short_rows = np.flatnonzero((store.n_frames > 0) & (store.n_frames < window))
    assert len(short_rows), "the demo set has recordings under 5 s"
    row = int(short_rows[0])
    whole = store.frames(row)
    cut = store.random_window(row, 0.5)
    assert cut.shape[0] == window
    phase = int(0.5 * len(whole))
    expected = np.concatenate([whole[phase:], *[whole] * (window // len(whole) + 1)])[:window]
    np.testing.assert_array_equal(cut, expected)
    np.testing.assert_array_equal(cut, cut_window(whole, phase, window))


def test_training_batches_have_the_right_shapes_ranges_and_labels(store, clips):
    training = load_config(None, {"data_dir": "unused"})["training"]
    rows = np.arange(len(clips.filenames))
    data = training_dataset(
        store, rows, clips.labels, training, batch_size=8, mixup_alpha=0.0, aug_prob=0.0, seed=1
    )
    seen = []
    for images, labels in data:
        assert images.shape[1:] == (store.params.n_mels, store.params.window_frames, 1)
        assert images.dtype.name == "float32"
        assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 1.0
        seen.append(labels.numpy())
    seen = np.concatenate(seen)
    # one window per recording per epoch, in a shuffled order, labels multi-hot
    assert len(seen) == len(rows)
    np.testing.assert_array_equal(np.sort(seen, axis=0), np.sort(clips.labels, axis=0))
    assert (clips.labels.sum(axis=1) > 1).any(), "secondary labels are in the multi-hot labels"


def test_training_epochs_follow_the_seed_whatever_the_parallelism(store, clips):
    training = load_config(None, {"data_dir": "unused"})["training"]
    rows = np.arange(len(clips.filenames))

    def epochs(seed, count=2):
        data = training_dataset(
            store,
            rows,
            clips.labels,
            training,
            batch_size=8,
            mixup_alpha=0.4,
            aug_prob=1.0,
            seed=seed,
        )
        return [np.concatenate([images.numpy() for images, _ in data]) for _ in range(count)]

    first, second = epochs(3), epochs(3)
    for mine, again in zip(first, second, strict=True):
        np.testing.assert_array_equal(mine, again)
    assert not np.array_equal(first[0], first[1]), "each epoch draws new windows and augmentations"
    assert not np.array_equal(first[0], epochs(4, count=1)[0]), "another seed, other epochs"


def test_evaluation_windows_are_deterministic_and_averaged_per_clip(store, clips):
    rows = np.arange(len(clips.filenames))
    first = evaluation_windows(store, rows, max_windows=3)
    second = evaluation_windows(store, rows, max_windows=3)
    np.testing.assert_array_equal(first.windows, second.windows)
    counts = np.bincount(first.clip_of_window, minlength=len(rows))
    assert counts.min() >= 1 and counts.max() <= 3
    assert (counts[store.n_frames >= 3 * store.params.window_frames] == 3).all()
    scores = np.arange(len(first.windows), dtype=float)[:, None] * np.ones((1, 2))
    per_clip = first.per_clip(scores)
    for position in range(len(rows)):
        mine = np.flatnonzero(first.clip_of_window == position)
        assert per_clip[position, 0] == pytest.approx(mine.mean())
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

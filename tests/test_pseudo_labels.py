"""Self-training: soundscape shards, pseudo-labels from real fold models, the mixed crops."""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
from support import save_fold_model, taxonomy_classes

from dawnchorus.config import AudioParams, load_config, section_defaults
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.data.pseudo_labels import (
    PseudoLabelError,
    load_pseudo_windows,
    soft_labels,
    soundscape_window_starts,
)
from dawnchorus.data.shards import ClipStore, open_shard
from dawnchorus.data.soundscapes import (
    list_soundscapes,
    soundscape_spectrogram_stage,
    soundscapes_of_shard,
)
from dawnchorus.inference.engines import load_ensemble
from dawnchorus.inference.pseudo_labelling import write_pseudo_labels
from dawnchorus.learning.dataset import training_dataset
from dawnchorus.learning.sampling import CropSampler
from dawnchorus.learning.train import round_training_config
from dawnchorus.signal.features import cut_window

pytestmark = pytest.mark.training
PARAMS = AudioParams.from_config(section_defaults("audio"))
SETTINGS = section_defaults("semi_supervised")


@pytest.fixture(scope="module")
def soundscape_data(tmp_path_factory, tiny_demo):
    """A data folder whose train_soundscapes/ holds two good soundscapes and an empty file."""
    data = tmp_path_factory.mktemp("soundscape_data")
    shutil.copy(tiny_demo / "taxonomy.csv", data / "taxonomy.csv")
    folder = data / "train_soundscapes"
    folder.mkdir()
    tests = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    trains = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    for index, source in enumerate([*trains, *tests][:2]):
        shutil.copy(source, folder / f"site_{index}.ogg")
    (folder / "broken.ogg").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio")
    return data


@pytest.fixture(scope="module")
def soundscape_shard(tmp_path_factory, soundscape_data):
    out = tmp_path_factory.mktemp("soundscapes") / "shard_000.h5"
    names = list_soundscapes(soundscape_data)
    summary = soundscape_spectrogram_stage(soundscape_data, names, PARAMS, out)
    assert summary.stored == 2
    assert [name for name, _ in summary.quarantined] == ["broken.ogg"]
    return out


@pytest.fixture(scope="module")
def fold_models(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("round_0")
    classes = taxonomy_classes(tiny_demo)
    return [save_fold_model(root / f"fold_{k}.keras", classes, seed=10 + k) for k in (0, 2)]


@pytest.fixture(scope="module")
def pseudo_file(tmp_path_factory, fold_models, soundscape_shard):
    out = tmp_path_factory.mktemp("pseudo") / "shard_000.h5"
    write_pseudo_labels(fold_models, [0, 2], soundscape_shard, out)
    return out


# --------------------------------------------------------------------------------------------
# pure functions


def test_soft_labels_trim_then_sharpen():
    probabilities = np.array([[0.05, 0.1, 0.5, 0.9], [0.099, 1.0, 0.0, 0.2]])
    expected = np.array([[0.0, 0.01, 0.25, 0.81], [0.0, 1.0, 0.0, 0.04]])
    np.testing.assert_allclose(soft_labels(probabilities, 2.0, 0.1), expected, rtol=1e-6)
    np.testing.assert_allclose(soft_labels(probabilities, 1.0, 0.0), probabilities, rtol=1e-6)


def test_window_starts_follow_the_submission_grid():
    one_minute = 1 + 60 * PARAMS.sample_rate // PARAMS.hop_length
    starts = soundscape_window_starts(one_minute, PARAMS)
    assert len(starts) == 12  # the twelve 5-s rows of a one-minute soundscape
    seconds = starts * PARAMS.hop_length / PARAMS.sample_rate
    np.testing.assert_allclose(seconds, np.arange(12) * 5.0, atol=PARAMS.hop_length / 32000)
    assert starts[-1] + PARAMS.window_frames <= one_minute
    assert soundscape_window_starts(100, PARAMS).tolist() == [0]  # shorter than one window


def test_soundscape_shards_split_the_files_and_adding_one_moves_no_other():
    names = [f"site_{i:03d}.ogg" for i in range(40)]
    shards = [soundscapes_of_shard(names, shard, 4) for shard in range(4)]
    assert sorted(name for shard in shards for name in shard) == names
    assert all(shards), "40 files over 4 shards: none empty"
    grown = [soundscapes_of_shard([*names, "new.ogg"], shard, 4) for shard in range(4)]
    for before, after in zip(shards, grown, strict=True):
        assert [name for name in after if name != "new.ogg"] == before


def test_listing_ignores_what_is_not_audio_and_a_missing_folder(tmp_path, soundscape_data):
    assert list_soundscapes(soundscape_data) == [
        "broken.ogg",
        "site_0.ogg",
        "site_1.ogg",
    ]
    assert list_soundscapes(tmp_path) == []


def test_a_round_trains_for_semi_supervised_epochs_when_set():
    config = load_config(None, {"data_dir": "x", "semi_supervised": {"epochs": 3}})
    assert round_training_config(config, 0)["training"]["epochs"] == config["training"]["epochs"]
    assert round_training_config(config, 1)["training"]["epochs"] == 3
    assert config["training"]["epochs"] != 3, "the config itself is left alone"
    more_rounds = load_config(
        None, {"data_dir": "x", "semi_supervised": {"epochs": 3, "rounds": 4}}
    )
    assert round_training_config(more_rounds, 1) == round_training_config(config, 1), (
        "asking for more rounds does not retrain the earlier ones"
    )
    unset = load_config(None, {"data_dir": "x"})
    assert round_training_config(unset, 2)["training"]["epochs"] == unset["training"]["epochs"]


def test_mix_power_adds_sounds_in_power():
    import tensorflow as tf

    from dawnchorus.learning.augment import mix_power

    loud, silent = tf.fill([2, 3, 1], 10.0), tf.fill([2, 3, 1], -100.0)
    np.testing.assert_allclose(mix_power(loud, loud, 0.5).numpy(), 10.0, atol=1e-4)
    # half of a 10 dB sound's power over near silence: 10 + 10 log10(0.5)
    expected = 10.0 + 10 * math.log10(0.5)
    np.testing.assert_allclose(mix_power(loud, silent, 0.5).numpy(), expected, atol=1e-3)
    quarter = 10 * math.log10(0.25 * 10 + 0.75 * 1)  # 10 dB at weight 0.25 with 0 dB
    np.testing.assert_allclose(
        mix_power(loud, tf.zeros([2, 3, 1]), 0.25).numpy(), quarter, atol=1e-4
    )


# --------------------------------------------------------------------------------------------
# pseudo-labels from real models


def test_pseudo_labels_are_each_fold_models_own_probabilities(
    pseudo_file, fold_models, soundscape_shard, tiny_demo
):
    with h5py.File(pseudo_file, "r") as handle:
        assert json.loads(handle.attrs["folds"]) == [0, 2]
        assert json.loads(handle.attrs["classes"]) == taxonomy_classes(tiny_demo)
        names = list(handle["filename"].asstr()[:])
        clip, start = handle["clip"][:], handle["start"][:]
        probabilities = handle["probabilities"][:]
    assert names == ["site_0.ogg", "site_1.ogg"]  # the broken one was quarantined
    assert probabilities.shape == (2, len(clip), len(taxonomy_classes(tiny_demo)))
    assert not np.allclose(probabilities[0], probabilities[1]), "two models, two opinions"
    with open_shard(soundscape_shard, PARAMS) as shard:
        for index, model in enumerate(fold_models):
            alone = load_ensemble([model])
            for position in range(len(names)):
                frames = shard.clip(position)
                mine = clip == position
                expected_starts = soundscape_window_starts(len(frames), PARAMS)
                assert start[mine].tolist() == expected_starts.tolist()
                windows = np.stack(
                    [cut_window(frames, s, PARAMS.window_frames) for s in start[mine]]
                )
                np.testing.assert_allclose(
                    probabilities[index][mine], alone.predict(windows), atol=1e-5
                )


def test_pseudo_labels_are_a_pure_function_of_models_and_soundscapes(
    tmp_path, pseudo_file, fold_models, soundscape_shard
):
    again = tmp_path / "again.h5"
    write_pseudo_labels(fold_models, [0, 2], soundscape_shard, again)
    with h5py.File(pseudo_file, "r") as first, h5py.File(again, "r") as second:
        for name in ("filename", "clip", "start", "probabilities"):
            np.testing.assert_array_equal(first[name][:], second[name][:])
    assert not list(tmp_path.glob(".*.tmp")), "written under a temporary name, then renamed"


def test_a_fold_reads_its_own_models_labels_trimmed_and_sharpened(
    pseudo_file, soundscape_shard, tiny_demo
):
    classes = taxonomy_classes(tiny_demo)
    settings = {**SETTINGS, "sharpen_power": 2.0, "min_probability": 0.3}
    pseudo = load_pseudo_windows(
        [pseudo_file], [soundscape_shard], 2, classes, PARAMS, PARAMS.window_frames, settings, 64
    )
    with h5py.File(pseudo_file, "r") as handle:
        expected = soft_labels(handle["probabilities"][1], 2.0, 0.3)
        start = handle["start"][:]
    try:
        np.testing.assert_allclose(pseudo.targets, expected)
        assert len(pseudo) == len(start)
        with open_shard(soundscape_shard, PARAMS) as shard:
            frames = shard.clip(int(pseudo.rows[3]))
        np.testing.assert_array_equal(
            pseudo.crop(3), frames[start[3] : start[3] + PARAMS.window_frames]
        )
    finally:
        pseudo.close()
    # an input of two windows: pairs within one soundscape, the maximum of their labels
    pairs = load_pseudo_windows(
        [pseudo_file],
        [soundscape_shard],
        2,
        classes,
        PARAMS,
        2 * PARAMS.window_frames,
        settings,
        64,
    )
    try:
        assert len(pairs) == len(start) - 2  # one pair fewer per soundscape
        np.testing.assert_allclose(pairs.targets[0], expected[:2].max(axis=0))
        assert pairs.crop(0).shape == (2 * PARAMS.window_frames, PARAMS.n_mels)
    finally:
        pairs.close()


def test_pseudo_labels_that_do_not_fit_the_fold_are_refused(
    pseudo_file, soundscape_shard, tiny_demo, tmp_path, fold_models
):
    classes = taxonomy_classes(tiny_demo)
    with pytest.raises(PseudoLabelError, match=r"2 model\(s\) given for folds \[0\]"):
        write_pseudo_labels(fold_models, [0], soundscape_shard, tmp_path / "labels.h5")

    def load(fold, labels, shards):
        return load_pseudo_windows(
            [pseudo_file], shards, fold, labels, PARAMS, PARAMS.window_frames, SETTINGS, 64
        )

    with pytest.raises(PseudoLabelError, match="no labels from a fold 1 model"):
        load(1, classes, [soundscape_shard])
    with pytest.raises(PseudoLabelError, match="other classes"):
        load(0, classes[::-1], [soundscape_shard])
    empty_shard = tmp_path / "empty.h5"
    soundscape_spectrogram_stage(tmp_path, [], PARAMS, empty_shard)
    with pytest.raises(PseudoLabelError, match="in no soundscape shard"):
        load(0, classes, [empty_shard])


# --------------------------------------------------------------------------------------------
# the mixed training crops


def test_mixed_crops_carry_the_union_of_both_labels(
    tiny_prepared, pseudo_file, soundscape_shard, tiny_demo
):
    clips = load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    training = load_config(None, {"data_dir": "unused"})["training"]
    training = {**training, "aug_prob": 0.0, "distance_prob": 0.0}
    store = ClipStore(tiny_prepared.shards, tiny_prepared.params, clips.filenames, 64)
    sampler = CropSampler(store, PARAMS.window_frames, activity_power=0)
    rows = np.arange(len(clips.filenames))
    targets = clips.targets(1.0)
    # labels of fold 0's model with no trimming: every window carries some of every class
    settings = {**SETTINGS, "min_probability": 0.0, "sharpen_power": 1.0}
    pseudo = load_pseudo_windows(
        [pseudo_file],
        [soundscape_shard],
        0,
        clips.classes,
        PARAMS,
        PARAMS.window_frames,
        settings,
        64,
    )

    def epoch(mix_prob, with_pseudo=True):
        data = training_dataset(
            sampler,
            rows,
            targets,
            training,
            8,
            0.0,
            0.0,
            seed=5,
            pseudo=pseudo if with_pseudo else None,
            mixing={**settings, "mix_prob": mix_prob},
        )
        batches = [(images.numpy(), labels.numpy()) for images, labels in data]
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    try:
        plain_images, plain_labels = epoch(0.0, with_pseudo=False)
        unmixed_images, unmixed_labels = epoch(0.0)
        np.testing.assert_array_equal(unmixed_images, plain_images)  # mix_prob 0: as without
        np.testing.assert_array_equal(unmixed_labels, plain_labels)
        mixed_images, mixed_labels = epoch(1.0)
        again_images, _ = epoch(1.0)
    finally:
        pseudo.close()
        store.close()
    np.testing.assert_array_equal(mixed_images, again_images)  # reproducible from the seed
    assert not np.allclose(mixed_images, plain_images)
    # the same crops in the same order (the mixing has its own random stream), each now with
    # a soundscape window's soft labels added to its own: the union, never less
    assert (mixed_labels >= plain_labels).all()
    np.testing.assert_array_equal(np.maximum(mixed_labels, plain_labels), mixed_labels)
    window_labels = pseudo.targets
    soft_parts = np.where(mixed_labels > plain_labels, mixed_labels, 0)
    assert (soft_parts.max(axis=1) > 0).all()
    for row in soft_parts:  # each added label is one window's label of that class
        added = np.flatnonzero(row)
        assert any(np.allclose(window[added], row[added]) for window in window_labels)


# --------------------------------------------------------------------------------------------
# the blended teacher


@pytest.fixture(scope="module")
def teacher_parts(tmp_path_factory, tiny_demo, soundscape_data):
    """Fold heads on a tiny BirdNET-shaped model, the rows of the train soundscapes, and blend
    weights per fold: fold 0 listens to its head alone, fold 2 to its CNN alone."""
    from support import build_tflite, make_head

    from dawnchorus.learning.blend import blend_weights_file
    from dawnchorus.pretrained.embeddings import (
        EmbeddingSettings,
        RowWindows,
        soundscape_embedding_stage,
    )

    root = tmp_path_factory.mktemp("teacher")
    model = root / "tiny_birdnet.tflite"
    build_tflite(model)
    classes = taxonomy_classes(tiny_demo)
    heads = [make_head(root / f"head_{k}.npz", classes, model, k, seed=k) for k in (0, 2)]
    rows = root / "rows.h5"
    settings = EmbeddingSettings.from_config(load_config(overrides={"data_dir": "x"}))
    summary = soundscape_embedding_stage(
        soundscape_data,
        list_soundscapes(soundscape_data),
        model,
        settings,
        RowWindows(5.0, (0.0, 1.0, 2.0)),
        rows,
    )
    assert summary.stored == 2 and [name for name, _ in summary.quarantined] == ["broken.ogg"]
    weights = root / "weights.json"
    # fold 0 listens to its head alone, fold 2 to its CNN alone
    fold_weights = {0: {"cnn": 0.0, "head": 1.0}, 2: {"cnn": 1.0, "head": 0.0}}
    blend = blend_weights_file({"cnn": 0.5, "head": 0.5}, "logit", classes, fold_weights)
    weights.write_text(json.dumps(blend))
    return {"heads": heads, "rows": rows, "weights": weights}


def test_a_blended_teacher_labels_each_fold_with_its_own_blend(
    tmp_path, fold_models, soundscape_shard, pseudo_file, teacher_parts
):
    from dawnchorus.inference.pseudo_labelling import BlendedTeacher
    from dawnchorus.pretrained.embeddings import RowWindows, read_row_embeddings
    from dawnchorus.pretrained.head import HeadEnsemble

    parts = teacher_parts
    teacher = BlendedTeacher.load(parts["heads"], [0, 2], parts["weights"], parts["rows"], 5.0)
    out = tmp_path / "blended.h5"
    write_pseudo_labels(fold_models, [0, 2], soundscape_shard, out, teacher=teacher)
    with h5py.File(out, "r") as blended, h5py.File(pseudo_file, "r") as alone:
        names = list(blended["filename"].asstr()[:])
        clip = blended["clip"][:]
        probabilities, cnn = blended["probabilities"][:], alone["probabilities"][:]
    # fold 2 weighs its CNN alone: its labels are the CNN's
    np.testing.assert_allclose(probabilities[1], cnn[1], atol=1e-5)
    # fold 0 weighs its head alone: each window is its head's row, from BirdNET's windows
    rows = read_row_embeddings(parts["rows"], RowWindows(5.0, (0.0, 1.0, 2.0)))
    head = HeadEnsemble.load(parts["heads"][:1])
    for position, name in enumerate(names):
        mine = clip == position
        expected = head.row_probabilities(rows[name], 5.0, mine.sum())
        assert len(rows[name]) == 3 * mine.sum() == 3 * 12
        np.testing.assert_allclose(probabilities[0][mine], expected, atol=1e-5)
    # a row layout other than the heads' is refused by name
    from dawnchorus.pretrained.embeddings import EmbeddingShardError

    with pytest.raises(EmbeddingShardError, match=r"rerun the soundscape_embeddings rule"):
        BlendedTeacher.load(parts["heads"], [0, 2], parts["weights"], parts["rows"], 10.0)
    with pytest.raises(PseudoLabelError, match=r"no head of folds \[1\]"):
        BlendedTeacher.load(parts["heads"], [0, 1], parts["weights"], parts["rows"], 5.0)
    partial = json.loads(parts["weights"].read_text())
    del partial["fold_weights"]["2"]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    with pytest.raises(PseudoLabelError, match=r"without weights for folds \[2\]"):
        BlendedTeacher.load(parts["heads"], [0, 2], tmp_path / "partial.json", parts["rows"], 5.0)

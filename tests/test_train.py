"""Real (small) Keras training of one fold from real shards: outputs, metric, faults."""

from __future__ import annotations

import dataclasses
import json
import logging

import keras
import numpy as np
import pandas as pd
import pytest

from dawnchorus.config import load_config
from dawnchorus.data.folds import load_labelled_clips
from dawnchorus.learning.fold_data import EVALUATION_BATCH_SIZE, FoldPaths, TrainingError
from dawnchorus.learning.metrics import birdclef_auc
from dawnchorus.learning.modelcard import read_metadata
from dawnchorus.learning.optimization import Hyperparameters
from dawnchorus.learning.train import train_fold

pytestmark = pytest.mark.training


def fold_paths(prepared, out_dir):
    return FoldPaths(
        prepared.manifest,
        prepared.classes,
        prepared.folds,
        prepared.shards,
        out_dir,
        out_dir / "tensorboard",
    )


def small_config(model=None, **training):
    return load_config(
        None,
        {
            "data_dir": "unused",
            # the training loop's plumbing: a backbone that traces in seconds (EfficientNet-B0
            # trains in the debug DAG of test_workflow.py)
            "model": {
                "image_size": [32, 64],
                "bn_momentum": 0.9,
                "backbone": "small_cnn",
                **(model or {}),
            },
            "training": {"epochs": 2, "batch_size": 8, "val_windows": 1, **training},
        },
    )


def test_one_fold_writes_model_history_metrics_and_oof(tiny_prepared, tmp_path, caplog):
    # the SED head on 10-s crops: the longest path from shards to oof.csv
    config = small_config({"head": "sed", "input_s": 10}, epochs=3)
    paths = fold_paths(tiny_prepared, tmp_path / "fold_0")
    with caplog.at_level(logging.INFO):
        metrics = train_fold(config, 0, paths, Hyperparameters.from_config(config))

    clips = load_labelled_clips(tiny_prepared.manifest, tiny_prepared.classes, tiny_prepared.folds)
    val_rows = np.flatnonzero(clips.folds == 0)
    oof = pd.read_csv(paths.out_dir / "oof.csv", keep_default_na=False)
    assert oof["filename"].tolist() == [clips.filenames[row] for row in val_rows]
    assert list(oof.columns) == ["filename", "fold", *clips.classes]
    assert ((oof[clips.classes] >= 0) & (oof[clips.classes] <= 1)).all().all()
    # the recorded val_auc is the exact metric on the written out-of-fold predictions
    expected = birdclef_auc(clips.labels[val_rows], oof[clips.classes].to_numpy())
    assert metrics["val_auc"] == pytest.approx(expected.macro)
    assert metrics["skipped_classes"] == expected.skipped(clips.classes)
    if metrics["skipped_classes"]:
        assert "val_auc skips" in caplog.text

    history = pd.read_csv(paths.out_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert {"loss", "val_auc", "val_loss"} <= set(history.columns)
    assert metrics["best_val_auc"] == pytest.approx(history["val_auc"].max())
    assert metrics["best_epoch"] == int(history["val_auc"].idxmax()) + 1
    saved = json.loads((paths.out_dir / "metrics.json").read_text())
    assert saved["fold"] == 0 and saved["mixed_precision"] is False and saved["device"] == "CPU"
    assert not paths.work.exists(), "the work folder is removed once the fold is done"
    assert list(paths.tensorboard_dir.rglob("events.out.tfevents*"))

    # model.keras is the best checkpoint (its custom layers registered by importing
    # dawnchorus.learning.model), and reproduces oof from the same crops
    import dawnchorus.learning.model  # noqa: F401
    from dawnchorus.data.shards import ClipStore
    from dawnchorus.learning.dataset import evaluation_windows

    model = keras.models.load_model(paths.model)
    assert not model.compiled, "model.keras holds no optimizer state"
    store = ClipStore(tiny_prepared.shards, tiny_prepared.params, clips.filenames, 1000)
    crop = tiny_prepared.params.crop_frames(2)  # model.input_s 10 s: two windows
    assert model.input_shape[2] == crop
    training = config["training"]
    windows = evaluation_windows(store, val_rows, 1, crop, training["val_hops"])
    store.close()
    normalization = read_metadata(paths.model)["normalization"]
    logits = model.predict(windows.dataset(normalization, EVALUATION_BATCH_SIZE), verbose=0)
    scores = windows.per_clip(
        1 / (1 + np.exp(-logits)), training["val_pooling"], training["val_pooling_power"]
    )
    # (the training-time evaluation and a fresh predict run different float32 kernels: the SED
    # head's attention pooling leaves up to ~3e-5 between them)
    np.testing.assert_allclose(scores, oof[clips.classes].to_numpy(), atol=1e-4)


def test_a_fold_that_does_not_exist_fails_before_training(tiny_prepared, tmp_path):
    config = small_config()
    with pytest.raises(TrainingError, match=r"fold 9 does not exist.*\[0, 1, 2, 3, 4\]"):
        train_fold(
            config,
            9,
            fold_paths(tiny_prepared, tmp_path / "f"),
            Hyperparameters.from_config(config),
        )
    assert not (tmp_path / "f" / "model.keras").exists()


def test_nan_loss_stops_training_with_a_clear_message_and_no_checkpoint(tiny_prepared, tmp_path):
    # a learning rate this large overflows the weights within a few steps
    config = small_config(learning_rate=1e30, scheduler="exponential", mixup_alpha=0.0)
    paths = fold_paths(tiny_prepared, tmp_path / "fold_0")
    with pytest.raises(TrainingError, match=r"training diverged.*learning rate"):
        train_fold(config, 0, paths, Hyperparameters.from_config(config))
    assert not list(paths.work.glob("best-*"))
    assert not paths.model.exists()


def _fit_recording_weights(ema_momentum: float, swap: bool):
    """A tiny regression fitted 3 epochs; the weights a callback sees between the averaged-weights
    swap and its undoing (`judged`), the optimizer's averages then, and the weights after."""
    from dawnchorus.learning import callbacks
    from dawnchorus.learning.optimization import make_optimizer

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    hp = dataclasses.replace(Hyperparameters.from_config(small_config()), optimizer="adam")
    model.compile(optimizer=make_optimizer(hp, 0.05, ema_momentum), loss="mse")
    record = {"judged": [], "averages": [], "after": []}

    def probe(key, read_averages=False):
        def on_epoch_end(epoch, logs=None):
            record[key].append([v.numpy().copy() for v in model.trainable_variables])
            if read_averages and ema_momentum:
                averages = model.optimizer._model_variables_moving_average
                record["averages"].append([v.numpy().copy() for v in averages])

        return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)

    use_averaged = callbacks.UseAveragedWeights()
    middle = [probe("judged", read_averages=True)]
    chain = [use_averaged, *middle, callbacks.RestoreTrainingWeights(use_averaged)]
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[*(chain if swap else middle), probe("after")],
    )
    return record


def test_validation_and_checkpoints_see_the_averaged_weights_training_goes_on_from_its_own():
    swapped = _fit_recording_weights(ema_momentum=0.8, swap=True)
    plain = _fit_recording_weights(ema_momentum=0.8, swap=False)
    for judged, averages, after, unswapped in zip(
        swapped["judged"], swapped["averages"], swapped["after"], plain["after"], strict=True
    ):
        # between the swap and its undoing: the optimizer's moving average ...
        for value, average in zip(judged, averages, strict=True):
            np.testing.assert_array_equal(value, average)
        # ... which is not what training holds ...
        assert not all(np.array_equal(a, b) for a, b in zip(judged, after, strict=True))
        # ... and training goes on exactly as without the swap
        for value, expected in zip(after, unswapped, strict=True):
            np.testing.assert_array_equal(value, expected)
    # without the average (ema_momentum 0) the swap changes nothing
    off = _fit_recording_weights(ema_momentum=0.0, swap=True)
    for judged, after in zip(off["judged"], off["after"], strict=True):
        for a, b in zip(judged, after, strict=True):
            np.testing.assert_array_equal(a, b)


def test_an_epoch_logged_but_not_backed_up_is_forgotten_before_resuming(tmp_path):
    """Killed between CSVLogger/ModelCheckpoint and BackupAndRestore: the backup decides."""
    from dawnchorus.learning.checkpoints import drop_unfinished_epochs, epochs_backed_up

    work = tmp_path / "work"
    (work / "backup").mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.5, 0.4, 0.3], "val_auc": [0.6, 0.7, 0.8]}).to_csv(
        work / "history.csv", index=False
    )
    for epoch in (1, 2, 3):
        (work / f"best-epoch-{epoch:03d}.weights.h5").write_bytes(b"x")
    assert epochs_backed_up(work / "backup") == 0
    (work / "backup" / "training_metadata.json.bkp").write_text('{"epoch": 1, "batch": 0}')
    (work / "backup" / "training_metadata.json").write_text('{"epo')  # killed mid-write
    assert epochs_backed_up(work / "backup") == 1
    (work / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    assert epochs_backed_up(work / "backup") == 2

    history = drop_unfinished_epochs(work, 2)
    assert history["epoch"].tolist() == [0, 1]
    assert pd.read_csv(work / "history.csv")["epoch"].tolist() == [0, 1]
    assert sorted(p.name for p in work.glob("best-*")) == [
        "best-epoch-001.weights.h5",
        "best-epoch-002.weights.h5",
    ]


def test_a_self_training_round_is_reproducible_from_the_round_before(
    tiny_prepared, tiny_demo, tmp_path
):
    """Round 0 trained twice gives the same model, hence the same pseudo-labels; round 1 from
    either gives the same outputs: rerunning an earlier round changes nothing downstream."""
    from dawnchorus.data.soundscapes import list_soundscapes, soundscape_spectrogram_stage
    from dawnchorus.inference.pseudo_labelling import write_pseudo_labels

    config = small_config(epochs=1)
    config["semi_supervised"].update(mix_prob=1.0, min_probability=0.0)
    hyperparameters = Hyperparameters.from_config(config)
    soundscapes = tmp_path / "soundscapes.h5"
    names = list_soundscapes(tiny_demo)
    soundscape_spectrogram_stage(tiny_demo, names, tiny_prepared.params, soundscapes)

    outputs = []
    for attempt in ("first", "again"):
        round_0 = fold_paths(tiny_prepared, tmp_path / attempt / "fold_0")
        train_fold(config, 0, round_0, hyperparameters)
        labels = tmp_path / attempt / "pseudo_labels.h5"
        write_pseudo_labels([round_0.model], [0], soundscapes, labels)
        round_1 = dataclasses.replace(
            fold_paths(tiny_prepared, tmp_path / attempt / "round_1" / "fold_0"),
            pseudo_labels=(labels,),
            soundscape_shards=(soundscapes,),
            initial_model=round_0.model,
        )
        metrics = train_fold(config, 0, round_1, hyperparameters, round_index=1)
        assert metrics["round"] == 1 and metrics["n_pseudo_windows"] == 12 * len(names)
        outputs.append(
            (
                keras.models.load_model(round_0.model).get_weights(),
                pd.read_csv(round_1.out_dir / "oof.csv"),
                pd.read_csv(round_1.out_dir / "history.csv"),
            )
        )
    (weights, oof, history), (weights_again, oof_again, history_again) = outputs
    for mine, again in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(mine, again)
    pd.testing.assert_frame_equal(oof, oof_again)
    pd.testing.assert_frame_equal(history, history_again)


def test_a_round_without_train_soundscapes_restarts_from_the_round_before(tiny_prepared, tmp_path):
    """No pseudo-labels (a data set without train_soundscapes/): the round is a warm restart of
    the round before's model on the labelled recordings alone."""
    config = small_config(epochs=1)
    round_0 = fold_paths(tiny_prepared, tmp_path / "fold_0")
    train_fold(config, 0, round_0, Hyperparameters.from_config(config))
    # a learning rate too small to move the weights: what round 1 ends with is where it started
    still = small_config(epochs=1, learning_rate=1e-12)
    round_1 = dataclasses.replace(
        fold_paths(tiny_prepared, tmp_path / "round_1" / "fold_0"), initial_model=round_0.model
    )
    metrics = train_fold(still, 0, round_1, Hyperparameters.from_config(still), round_index=1)
    assert metrics["round"] == 1 and metrics["n_pseudo_windows"] == 0
    before = keras.models.load_model(round_0.model, compile=False)
    after = keras.models.load_model(round_1.model, compile=False)
    for mine, started in zip(after.trainable_weights, before.trainable_weights, strict=True):
        np.testing.assert_allclose(mine.numpy(), started.numpy(), atol=1e-6)

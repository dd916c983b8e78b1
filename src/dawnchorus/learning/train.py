"""Training one cross-validation fold: resumable, checkpointed on the exact BirdCLEF metric.

The fold's work folder and how a killed job resumes: `checkpoints`. When the fold is done the
outputs (model.keras, history.csv, metrics.json, oof.csv) are written and the work folder removed.

Snakemake imports this module to plan the DAG (`round_training_config`): Keras and scikit-learn
are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from dawnchorus.artifacts import read_json_or_empty, write_json, write_table
from dawnchorus.config import AudioParams
from dawnchorus.learning.checkpoints import (
    best_checkpoints,
    drop_unfinished_epochs,
    epochs_backed_up,
    fingerprint,
    prepare_work_dir,
    read_history,
)
from dawnchorus.learning.fold_data import FoldData, FoldPaths, TrainingError, open_fold
from dawnchorus.learning.modelcard import attach_metadata, model_metadata
from dawnchorus.learning.optimization import (
    Hyperparameters,
    make_learning_rate,
    make_loss,
    make_optimizer,
)
from dawnchorus.runtime import configure_tensorflow

log = logging.getLogger(__name__)


def build_and_compile(
    config: Mapping, data: FoldData, hp: Hyperparameters, epochs: int, compiled: bool = True
):
    """The fold's model for these hyperparameters, compiled to train for `epochs` epochs."""
    from dawnchorus.learning.model import build_model  # imports Keras

    params, model_config = data.store.params, config["model"]
    model = build_model(
        num_classes=len(data.clips.classes),
        input_shape=(params.n_mels, data.crop_frames, 1),
        image_size=model_config["image_size"],
        backbone=model_config["backbone"],
        weights=model_config["weights"],
        dropout=hp.dropout_rate,
        bn_momentum=model_config["bn_momentum"],
        head=model_config["head"],
        frequency_channel=model_config["frequency_channel"],
        drop_connect=model_config["drop_connect"],
    )
    if compiled:
        training = config["training"]
        crops = len(data.train_rows) * training["sampling"]["crops_per_recording"]
        steps = math.ceil(crops / hp.batch_size)
        schedule = make_learning_rate(hp, steps, epochs, training["warmup_epochs"])
        optimizer = make_optimizer(hp, schedule, training["ema_momentum"])
        model.compile(optimizer=optimizer, loss=make_loss(training))
        # Keras creates the optimizer's variables inside the first trace of the train step
        # otherwise, and TensorFlow then traces the whole step a second time (~20 s of an
        # EfficientNet-B0's start on a CPU, every fold and every tuning trial)
        model.optimizer.build(model.trainable_variables)
    return model


# --------------------------------------------------------------------------------------------
# the fold


def train_fold(
    config: Mapping,
    fold: int,
    paths: FoldPaths,
    hyperparameters: Hyperparameters,
    threads: int = 1,
    hyperparameter_source: str = "config",
    round_index: int = 0,
) -> dict:
    """Train (or resume) one fold and write model.keras, history.csv, metrics.json, oof.csv.

    `round_index` > 0: a round after round 0 (paths.initial_model, and paths.pseudo_labels when
    there are train soundscapes to mix in)."""
    from dawnchorus.learning.metrics import binary_cross_entropy, birdclef_auc  # scikit-learn

    training, model_config = config["training"], config["model"]
    params = AudioParams.from_config(config)
    self_training = (
        [round_index, config["semi_supervised"], list(map(str, paths.pseudo_labels))]
        if round_index
        else []
    )
    run_fingerprint = fingerprint(
        asdict(hyperparameters),
        training,
        model_config,
        asdict(params),
        config["seed"],
        fold,
        *self_training,
    )
    state = prepare_work_dir(paths.work, run_fingerprint)
    runtime = configure_tensorflow(threads, training["mixed_precision"], config["seed"] + fold)

    with open_fold(config, fold, paths) as data:
        model, resumed_from = _fit(config, fold, hyperparameters, paths, state, data)
        val_scores = data.predict(model)
    clips, val_rows, val_labels = data.clips, data.val_rows, data.val_labels

    auc = birdclef_auc(val_labels, val_scores)
    history = read_history(paths.work / "history.csv")
    best = history.loc[history["val_auc"].idxmax()]
    state = read_json_or_empty(paths.work / "state.json")
    metrics = {
        "fold": fold,
        "round": round_index,
        "best_epoch": int(best["epoch"]) + 1,
        "best_val_auc": float(best["val_auc"]),
        "best_val_loss": float(best["val_loss"]),
        "train_loss_at_best": float(best["loss"]),
        "val_auc": auc.macro,
        "val_loss": binary_cross_entropy(val_labels, val_scores),
        "epochs_run": len(history),
        "stopped_early": len(history) < training["epochs"],
        "resumed_from_epoch": resumed_from,
        "training_time": round(float(state.get("elapsed_s", 0.0)), 1),
        "n_train": len(data.train_rows),
        "n_val": len(val_rows),
        "n_val_crops": len(data.validation.windows),
        "n_pseudo_windows": 0 if data.pseudo is None else len(data.pseudo),
        "scored_classes": int(auc.scored.sum()),
        "skipped_classes": auc.skipped(clips.classes),
        "hyperparameters": asdict(hyperparameters),
        "hyperparameter_source": hyperparameter_source,
        "image_size": list(model_config["image_size"]),
        **runtime,
    }
    metadata = model_metadata(
        clips.classes, params, data.normalization, model_config["input_s"], model_config["head"]
    )
    save_for_inference(model, paths.model, metadata)
    _write_outputs(paths, metrics, history, clips, val_rows, val_scores, fold)
    log.info(
        "fold %d done: val_auc %.4f (best epoch %d of %d), %.0f s",
        fold,
        auc.macro,
        metrics["best_epoch"],
        metrics["epochs_run"],
        metrics["training_time"],
    )
    return metrics


def _fit(config, fold: int, hp: Hyperparameters, paths: FoldPaths, state: dict, data: FoldData):
    """Build the model, train it unless a previous attempt finished, return it with the best
    weights loaded (and the epoch training resumed from)."""
    import keras

    from dawnchorus.learning import callbacks  # imports Keras

    training = config["training"]
    work = paths.work
    if state.get("fit_done"):  # the backup is gone by then; history and checkpoint are final
        log.info("training of this fold already finished; evaluating the best checkpoint")
        model = build_and_compile(config, data, hp, training["epochs"], compiled=False)
        model.load_weights(best_checkpoints(work)[-1])
        return model, len(read_history(work / "history.csv"))

    resumed_from = epochs_backed_up(work / "backup")
    history = drop_unfinished_epochs(work, resumed_from)
    model = build_and_compile(config, data, hp, training["epochs"])
    if not resumed_from and paths.initial_model is not None:
        _start_from(model, paths.initial_model)
    best_so_far = history["val_auc"].max() if "val_auc" in history and len(history) else None
    inner = [
        keras.callbacks.ModelCheckpoint(
            str(work / "best-epoch-{epoch:03d}.weights.h5"),
            monitor="val_auc",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=None if best_so_far is None else float(best_so_far),
        ),
        callbacks.ResumableEarlyStopping(
            history, monitor="val_auc", mode="max", patience=training["patience"]
        ),
        callbacks.ElapsedTime(work / "state.json"),
        callbacks.KeepNewestBest(work),
        keras.callbacks.CSVLogger(str(work / "history.csv"), append=True),
        keras.callbacks.TensorBoard(
            log_dir=str(paths.tensorboard_dir), write_graph=False, profile_batch=0
        ),
    ]
    fit_callbacks = [
        *callbacks.epoch_callbacks(data, hp, training["patience"], inner),
        # last, so an epoch counts as done only after everything above has seen it
        keras.callbacks.BackupAndRestore(str(work / "backup"), double_checkpoint=True),
    ]
    if resumed_from:
        log.info("resuming after epoch %d (found %s)", resumed_from, work / "backup")
    # shuffle=False: the dataset reshuffles itself each epoch (Keras would only warn)
    model.fit(
        data.training_dataset(training, hp, seed=config["seed"] + fold),
        epochs=training["epochs"],
        callbacks=fit_callbacks,
        verbose=2,
        shuffle=False,
    )

    if not best_checkpoints(work):
        raise TrainingError(
            "no checkpoint was written: val_auc was never a number (every "
            "validation class lacked positives, or the model diverged)"
        )
    state = read_json_or_empty(work / "state.json")
    state["fit_done"] = True
    write_json(work / "state.json", state)
    model.load_weights(best_checkpoints(work)[-1])
    return model, resumed_from


def _start_from(model, model_path: Path) -> None:
    """Warm start from the weights of a trained model of the same architecture."""
    import keras

    previous = keras.models.load_model(model_path, compile=False)
    try:
        model.set_weights(previous.get_weights())
    except ValueError as error:
        raise TrainingError(
            f"cannot start from {model_path}: its architecture differs from this fold's "
            f"({error}); retrain the round before, or set semi_supervised.warm_start false"
        ) from None
    log.info("starting from the weights of %s", model_path)


def save_for_inference(model, path: Path, metadata: Mapping) -> None:
    """Architecture, weights and `metadata` (modelcard.attach_metadata), without optimizer or
    compile state, atomically."""
    import keras

    # from_config, not clone_model: Keras 3.1x compiles a clone of a compiled model
    plain = keras.Model.from_config(model.get_config())
    plain.set_weights(model.get_weights())
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    plain.save(temporary)
    attach_metadata(temporary, metadata)
    os.replace(temporary, path)


def _write_outputs(paths: FoldPaths, metrics, history, clips, val_rows, val_scores, fold) -> None:
    out = paths.out_dir
    oof = pd.DataFrame(val_scores, columns=clips.classes)
    oof.insert(0, "fold", fold)
    oof.insert(0, "filename", [clips.filenames[row] for row in val_rows])
    write_table(oof, out / "oof.csv")
    write_table(history, out / "history.csv")
    write_json(out / "metrics.json", metrics)
    shutil.rmtree(paths.work)


def round_training_config(config: Mapping, round_index: int) -> dict:
    """The config a round's fold jobs train with: semi_supervised.epochs (when set) replaces
    training.epochs from round 1 on, and semi_supervised.rounds is left out (a round does not
    depend on how many follow it)."""
    settings = copy.deepcopy(dict(config))
    epochs = config["semi_supervised"]["epochs"]
    if round_index > 0 and epochs is not None:
        settings["training"]["epochs"] = epochs
    settings["semi_supervised"].pop("rounds", None)
    return settings

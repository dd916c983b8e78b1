"""Training one cross-validation fold: resumable, checkpointed on the exact BirdCLEF metric.

Work in progress lives in `<fold dir>/work/` (Snakemake deletes a job's declared outputs before
rerunning it, so resumable state must not be one of them):
  backup/         Keras BackupAndRestore: weights, optimizer state and epoch, saved every epoch
  best-epoch-NNN.weights.h5  the best weights so far by val_auc (NNN: its epoch, from 1)
  history.csv     one row per finished epoch (appended across restarts)
  state.json      fingerprint of the run's settings, elapsed seconds, whether fit finished
A job killed at any point and rerun continues from the last epoch the backup holds; an epoch
killed after it was logged or checkpointed but before it was backed up is trained again, and its
history row and checkpoint are dropped first. A rerun with other settings (a different
fingerprint) starts afresh. When the fold is done the outputs are written and
the work folder removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dawnchorus.artifacts import read_json_or_empty, write_json, write_table
from dawnchorus.config import AudioParams, segments_per_crop
from dawnchorus.modelcard import attach_metadata, model_metadata

if TYPE_CHECKING:  # TensorFlow is imported only where a job needs it
    from dawnchorus.dataset import EvaluationWindows
    from dawnchorus.folds import LabelledClips
    from dawnchorus.pseudo_labels import PseudoWindows
    from dawnchorus.sampling import CropSampler
    from dawnchorus.shards import ClipStore

log = logging.getLogger(__name__)
EVALUATION_BATCH_SIZE = 64  # inference only: any size gives the same scores


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


@dataclass(frozen=True)
class Hyperparameters:
    """What the tuner searches (the seed's `best_overall_hyperparameters`), plus weight decay."""

    learning_rate: float
    batch_size: int
    optimizer: str
    scheduler: str
    dropout_rate: float
    mixup_alpha: float
    aug_prob: float
    weight_decay: float

    @classmethod
    def from_config(cls, config: Mapping) -> Hyperparameters:
        training = config["training"]
        return cls(
            learning_rate=float(training["learning_rate"]),
            batch_size=int(training["batch_size"]),
            optimizer=training["optimizer"],
            scheduler=training["scheduler"],
            dropout_rate=float(config["model"]["dropout"]),
            mixup_alpha=float(training["mixup_alpha"]),
            aug_prob=float(training["aug_prob"]),
            weight_decay=float(training["weight_decay"]),
        )


@dataclass(frozen=True)
class DataPaths:
    """The data stage's outputs a training or tuning job reads."""

    manifest: Path
    classes: Path
    folds: Path
    shards: tuple[Path, ...]


@dataclass(frozen=True)
class FoldPaths(DataPaths):
    out_dir: Path
    tensorboard_dir: Path
    # a self-training round (semi_supervised): the round before's pseudo-labels, the soundscape
    # shards they label, and with warm_start the same fold's model of the round before
    pseudo_labels: tuple[Path, ...] = ()
    soundscape_shards: tuple[Path, ...] = ()
    initial_model: Path | None = None

    @property
    def work(self) -> Path:
        return self.out_dir / "work"

    @property
    def model(self) -> Path:
        return self.out_dir / "model.keras"


# --------------------------------------------------------------------------------------------
# TensorFlow setup, optimizers, schedules


def configure_tensorflow(threads: int, mixed_precision: str | bool, seed: int) -> dict:
    """Threads, precision and seeds; returns what was chosen (recorded in metrics.json)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already ran in this process (a notebook, the tests)
        threads = tf.config.threading.get_intra_op_parallelism_threads() or threads
        log.info("TensorFlow is already initialised: keeping its thread settings")
    gpus = tf.config.list_physical_devices("GPU")
    use_mixed = bool(gpus) if mixed_precision == "auto" else bool(mixed_precision)
    if use_mixed and not gpus:
        log.warning("training.mixed_precision is on but there is no GPU: float16 on a CPU is slow")
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    keras.utils.set_random_seed(seed)
    device = f"{len(gpus)} GPU(s): {[gpu.name for gpu in gpus]}" if gpus else "CPU"
    log.info(
        "TensorFlow %s on %s, %d thread(s), mixed precision %s",
        tf.__version__,
        device,
        threads,
        "on" if use_mixed else "off",
    )
    return {"device": device, "mixed_precision": use_mixed, "threads": threads}


def make_learning_rate(
    hp: Hyperparameters, steps_per_epoch: int, epochs: int, warmup_epochs: int = 1
):
    """A Keras schedule, or a plain rate for reduce_on_plateau (driven by its callback)."""
    import keras

    total = max(1, steps_per_epoch * epochs)
    schedules = keras.optimizers.schedules
    if hp.scheduler == "cosine":
        warmup = steps_per_epoch * min(warmup_epochs, epochs - 1) if epochs > 2 else 0
        return schedules.CosineDecay(
            initial_learning_rate=hp.learning_rate * (0.1 if warmup else 1.0),
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=hp.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if hp.scheduler == "exponential":
        return schedules.ExponentialDecay(
            hp.learning_rate, decay_steps=steps_per_epoch, decay_rate=0.9
        )
    if hp.scheduler == "polynomial":
        return schedules.PolynomialDecay(
            hp.learning_rate, decay_steps=total, end_learning_rate=hp.learning_rate * 0.01
        )
    if hp.scheduler == "reduce_on_plateau":
        return hp.learning_rate
    raise ValueError(f"unknown scheduler {hp.scheduler!r}")


def make_loss(training: Mapping):
    """Binary cross-entropy on logits: one independent yes/no per class."""
    import keras

    return keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=training["label_smoothing"]
    )


def make_optimizer(hp: Hyperparameters, learning_rate, ema_momentum: float = 0.0):
    """`ema_momentum` > 0: the optimizer also keeps an exponential moving average of the
    weights, which `UseAveragedWeights` puts in place for validation and checkpoints."""
    import keras

    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    if hp.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, **ema)
    if hp.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=hp.weight_decay, **ema)
    if hp.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, weight_decay=hp.weight_decay or None, **ema)
    raise ValueError(f"unknown optimizer {hp.optimizer!r}")


# --------------------------------------------------------------------------------------------
# callbacks


def _callbacks_module():
    import keras

    class ValidationAUC(keras.callbacks.Callback):
        """Writes the exact BirdCLEF `val_auc` (and `val_loss`) into each epoch's logs.

        Listed first among the callbacks, so checkpointing, early stopping, learning-rate
        reduction, the CSV history and the tuner all see it.
        """

        def __init__(self, evaluate, classes: Sequence[str]):
            super().__init__()
            self._evaluate = evaluate
            self._classes = classes
            self._reported_skips = False

        def on_epoch_end(self, epoch, logs=None):
            auc, loss, result = self._evaluate(self.model)
            logs = logs if logs is not None else {}
            logs["val_auc"] = auc
            logs["val_loss"] = loss
            if not self._reported_skips and result is not None:
                skipped = result.skipped(self._classes)
                if skipped:
                    log.info(
                        "val_auc skips %d class(es) without positives in this fold's "
                        "validation set: %s",
                        len(skipped),
                        ", ".join(skipped),
                    )
                self._reported_skips = True
            log.info(
                "epoch %d: loss %.4f val_loss %.4f val_auc %.4f",
                epoch + 1,
                logs.get("loss", math.nan),
                loss,
                auc,
            )

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        """Aborts on a NaN/inf loss before any epoch-end save can store the broken weights."""

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise TrainingError(
                    f"training diverged: the loss became {loss} at batch {batch + 1} of epoch "
                    f"{self._epoch + 1}. Nothing was saved from these weights. Lower the "
                    "learning rate (training.learning_rate) or check the input spectrograms."
                )

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    class UseAveragedWeights(keras.callbacks.Callback):
        """At each epoch's end, puts the optimizer's moving average of the weights
        (training.ema_momentum) in place of the training weights, until `RestoreTrainingWeights`
        puts them back; a no-op for an optimizer without the average."""

        def __init__(self):
            super().__init__()
            self.training_weights = None

        def on_epoch_end(self, epoch, logs=None):
            if getattr(self.model.optimizer, "use_ema", False):
                variables = self.model.trainable_variables
                self.training_weights = [variable.numpy() for variable in variables]
                self.model.optimizer.finalize_variable_values(variables)

    class RestoreTrainingWeights(keras.callbacks.Callback):
        """Puts back the training weights its `UseAveragedWeights` swapped out."""

        def __init__(self, swap: UseAveragedWeights):
            super().__init__()
            self._swap = swap

        def on_epoch_end(self, epoch, logs=None):
            if self._swap.training_weights is not None:
                for variable, value in zip(
                    self.model.trainable_variables, self._swap.training_weights, strict=True
                ):
                    variable.assign(value)
                self._swap.training_weights = None

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping that remembers the epochs finished before a restart."""

        def __init__(self, history: pd.DataFrame, **kwargs):
            super().__init__(**kwargs)
            self._history = history

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            scores = self._history.get("val_auc", pd.Series(dtype=float)).dropna()
            if len(scores):
                self.best = float(scores.max())
                self.best_epoch = int(self._history.loc[scores.idxmax(), "epoch"])
                self.wait = int(self._history["epoch"].iloc[-1]) - self.best_epoch

    class ElapsedTime(keras.callbacks.Callback):
        """Adds this epoch's wall time to the run's total in state.json."""

        def __init__(self, state_path: Path):
            super().__init__()
            self._state_path = state_path

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            state = read_json_or_empty(self._state_path)
            state["elapsed_s"] = state.get("elapsed_s", 0.0) + time.monotonic() - self._start
            write_json(self._state_path, state)

    class KeepNewestBest(keras.callbacks.Callback):
        """Deletes superseded best checkpoints once the epoch that superseded them is backed up
        (at the next epoch's start), so a kill at any moment leaves a usable one."""

        def __init__(self, work: Path):
            super().__init__()
            self._work = work

        def on_epoch_begin(self, epoch, logs=None):
            for checkpoint in _best_checkpoints(self._work)[:-1]:
                checkpoint.unlink()

        on_train_end = on_epoch_begin

    return SimpleNamespace(
        ValidationAUC=ValidationAUC,
        StopOnNonFiniteLoss=StopOnNonFiniteLoss,
        UseAveragedWeights=UseAveragedWeights,
        RestoreTrainingWeights=RestoreTrainingWeights,
        ResumableEarlyStopping=ResumableEarlyStopping,
        ElapsedTime=ElapsedTime,
        KeepNewestBest=KeepNewestBest,
    )


# --------------------------------------------------------------------------------------------
# work folder state


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_work_dir(work: Path, run_fingerprint: str) -> dict:
    """Keep a previous attempt's state only if it was made with the same settings."""
    state = read_json_or_empty(work / "state.json")
    finished_but_lost = state.get("fit_done") and not _best_checkpoints(work)
    if work.exists() and (state.get("fingerprint") != run_fingerprint or finished_but_lost):
        log.warning("discarding %s: it was made with other settings or is incomplete", work)
        shutil.rmtree(work)
        state = {}
    work.mkdir(parents=True, exist_ok=True)
    if not state:
        state = {"fingerprint": run_fingerprint, "elapsed_s": 0.0, "fit_done": False}
        write_json(work / "state.json", state)
    return state


def _best_checkpoints(work: Path) -> list[Path]:
    """The best-so-far checkpoints, oldest first (each one better than the one before)."""
    return sorted(work.glob("best-epoch-*.weights.h5"))


def _checkpoint_epoch(path: Path) -> int:
    return int(path.name.split(".")[0].removeprefix("best-epoch-"))


def epochs_backed_up(backup_dir: Path) -> int:
    """Epochs BackupAndRestore holds (0 if none): where a resumed fit starts."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            return int(json.loads((backup_dir / name).read_text())["epoch"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue
    return 0


def drop_unfinished_epochs(work: Path, epochs_done: int) -> pd.DataFrame:
    """Forget what an epoch the backup does not hold left behind; return the history kept."""
    history = _read_history(work / "history.csv")
    if len(history) and (history["epoch"] >= epochs_done).any():
        log.warning(
            "epoch(s) %s were logged but not backed up before the job died: training them again",
            ", ".join(str(int(e) + 1) for e in history["epoch"][history["epoch"] >= epochs_done]),
        )
        history = history[history["epoch"] < epochs_done]
        history.to_csv(work / "history.csv", index=False, lineterminator="\n")
    for checkpoint in _best_checkpoints(work):
        if _checkpoint_epoch(checkpoint) > epochs_done:
            checkpoint.unlink()
    return history


def _read_history(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["epoch"])
    return pd.read_csv(path)


# --------------------------------------------------------------------------------------------
# the fold's data, shared by training and tuning


@dataclass
class FoldData:
    """One fold's recordings: the training rows, how an epoch draws them, and the validation
    crops scored each epoch."""

    clips: LabelledClips
    store: ClipStore
    train_rows: np.ndarray
    val_rows: np.ndarray
    validation: EvaluationWindows
    normalization: str
    val_pooling: str
    val_pooling_power: float
    sampler: CropSampler
    targets: np.ndarray  # training targets of every recording (secondary labels weighted)
    row_weights: np.ndarray | None  # class-balanced draw of train_rows, or None
    pseudo: PseudoWindows | None = None  # a self-training round's soundscape windows
    mixing: Mapping | None = None  # the semi_supervised section, with `pseudo`

    @property
    def val_labels(self) -> np.ndarray:
        return self.clips.labels[self.val_rows]

    @property
    def crop_frames(self) -> int:
        return self.sampler.crop_frames

    def training_dataset(self, training: Mapping, hp: Hyperparameters, seed: int):
        from dawnchorus.dataset import training_dataset

        return training_dataset(
            self.sampler,
            self.train_rows,
            self.targets,
            training,
            hp.batch_size,
            hp.mixup_alpha,
            hp.aug_prob,
            seed,
            self.row_weights,
            training["sampling"]["crops_per_recording"],
            self.pseudo,
            self.mixing,
        )

    def predict(self, model) -> np.ndarray:
        """Probabilities per validation recording (its crops' pooled by val_pooling)."""
        data = self.validation.dataset(self.normalization, EVALUATION_BATCH_SIZE)
        crops = _sigmoid(model.predict(data, verbose=0))
        return self.validation.per_clip(crops, self.val_pooling, self.val_pooling_power)

    def evaluate(self, model):
        """(val_auc, val_loss, AUC result) of `model`; NaNs and no result if it diverged."""
        from dawnchorus.metrics import binary_cross_entropy, birdclef_auc

        scores = self.predict(model)
        if not np.isfinite(scores).all():
            return math.nan, math.nan, None
        result = birdclef_auc(self.val_labels, scores)
        return result.macro, binary_cross_entropy(self.val_labels, scores), result


@contextmanager
def open_fold(config: Mapping, fold: int, paths: DataPaths) -> Iterator[FoldData]:
    """Fold `fold` of the data stage's outputs: training rows and validation windows."""
    from dawnchorus.dataset import evaluation_windows
    from dawnchorus.folds import load_labelled_clips
    from dawnchorus.sampling import CropSampler, class_balanced_weights
    from dawnchorus.shards import ClipStore

    training, sampling = config["training"], config["training"]["sampling"]
    params = AudioParams.from_config(config)
    crop_frames = params.crop_frames(segments_per_crop(config))
    clips = load_labelled_clips(paths.manifest, paths.classes, paths.folds)
    store = ClipStore(paths.shards, params, clips.filenames, training["cache_ram_mb"])
    pseudo = None
    try:
        if isinstance(paths, FoldPaths) and paths.pseudo_labels:
            pseudo = _pseudo_windows(config, fold, paths, clips.classes, crop_frames)
        train_rows, val_rows = _select_rows(clips, store, fold)
        log.info(
            "fold %d: %d training and %d validation recordings, %d classes; crops of %d frames",
            fold,
            len(train_rows),
            len(val_rows),
            len(clips.classes),
            crop_frames,
        )
        row_weights = None
        if sampling["class_power"] > 0:
            row_weights = class_balanced_weights(clips.primary[train_rows], sampling["class_power"])
        yield FoldData(
            clips=clips,
            store=store,
            train_rows=train_rows,
            val_rows=val_rows,
            validation=evaluation_windows(
                store, val_rows, training["val_windows"], crop_frames, training["val_hops"]
            ),
            normalization=training["normalization"],
            val_pooling=training["val_pooling"],
            val_pooling_power=training["val_pooling_power"],
            sampler=CropSampler(store, crop_frames, sampling["activity_power"]),
            targets=clips.targets(training["secondary_label_weight"]),
            row_weights=row_weights,
            pseudo=pseudo,
            mixing=config["semi_supervised"] if pseudo is not None else None,
        )
    finally:
        store.close()
        if pseudo is not None:
            pseudo.close()


def _pseudo_windows(config: Mapping, fold: int, paths: FoldPaths, classes, crop_frames: int):
    from dawnchorus.pseudo_labels import load_pseudo_windows

    pseudo = load_pseudo_windows(
        paths.pseudo_labels,
        paths.soundscape_shards,
        fold,
        classes,
        AudioParams.from_config(config),
        crop_frames,
        config["semi_supervised"],
        config["training"]["cache_ram_mb"],
    )
    if len(pseudo) == 0:
        log.warning(
            "fold %d: no pseudo-labelled soundscape window (train_soundscapes/ had none that "
            "could be decoded): this round trains on the labelled recordings alone",
            fold,
        )
    else:
        labelled = np.count_nonzero(pseudo.targets.max(axis=1) > 0)
        log.info(
            "fold %d: %d pseudo-labelled soundscape window(s), %d with a class above "
            "semi_supervised.min_probability; %.0f%% of crops mixed with one",
            fold,
            len(pseudo),
            labelled,
            100 * config["semi_supervised"]["mix_prob"],
        )
    return pseudo


def _select_rows(clips, store, fold: int) -> tuple[np.ndarray, np.ndarray]:
    present = sorted(int(f) for f in np.unique(clips.folds))
    if fold not in present:
        raise TrainingError(f"fold {fold} does not exist: folds.csv has folds {present}")
    usable = store.available
    if store.missing:
        log.warning(
            "%d recording(s) of the manifest are not in the shards (quarantined), left out: %s",
            len(store.missing),
            ", ".join(store.missing[:10]),
        )
    train_rows = np.flatnonzero((clips.folds != fold) & usable)
    val_rows = np.flatnonzero((clips.folds == fold) & usable)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise TrainingError(
            f"fold {fold} has {len(train_rows)} training and {len(val_rows)} "
            "validation recordings: nothing to train or validate on"
        )
    return train_rows, val_rows


def build_and_compile(
    config: Mapping, data: FoldData, hp: Hyperparameters, epochs: int, compiled: bool = True
):
    """The fold's model for these hyperparameters, compiled to train for `epochs` epochs."""

    from dawnchorus.model import build_model

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


def epoch_callbacks(data: FoldData, hp: Hyperparameters, patience: int, inner: list) -> list:
    """Every fit's callbacks around `inner` (checkpoints, early stopping, logs): first the
    averaged weights in place (with training.ema_momentum), the exact val_auc in the epoch
    logs, a stop on a NaN loss and for reduce_on_plateau the callback that drives the learning
    rate; last the training weights back, so what comes after (the backup, the next epoch)
    has them."""
    import keras

    callbacks = _callbacks_module()
    use_averaged = callbacks.UseAveragedWeights()
    first = [
        use_averaged,
        callbacks.ValidationAUC(data.evaluate, data.clips.classes),
        callbacks.StopOnNonFiniteLoss(),
    ]
    if hp.scheduler == "reduce_on_plateau":
        first.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_auc", mode="max", factor=0.5, patience=max(1, patience // 2)
            )
        )
    return [*first, *inner, callbacks.RestoreTrainingWeights(use_averaged)]


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
    from dawnchorus.metrics import binary_cross_entropy, birdclef_auc

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
    history = _read_history(paths.work / "history.csv")
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

    training = config["training"]
    work = paths.work
    callbacks = _callbacks_module()
    if state.get("fit_done"):  # the backup is gone by then; history and checkpoint are final
        log.info("training of this fold already finished; evaluating the best checkpoint")
        model = build_and_compile(config, data, hp, training["epochs"], compiled=False)
        model.load_weights(_best_checkpoints(work)[-1])
        return model, len(_read_history(work / "history.csv"))

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
        *epoch_callbacks(data, hp, training["patience"], inner),
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

    if not _best_checkpoints(work):
        raise TrainingError(
            "no checkpoint was written: val_auc was never a number (every "
            "validation class lacked positives, or the model diverged)"
        )
    state = read_json_or_empty(work / "state.json")
    state["fit_done"] = True
    write_json(work / "state.json", state)
    model.load_weights(_best_checkpoints(work)[-1])
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


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp overflows to inf for logits below about -709: the result, 0, is still right
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def _write_outputs(paths: FoldPaths, metrics, history, clips, val_rows, val_scores, fold) -> None:
    out = paths.out_dir
    oof = pd.DataFrame(val_scores, columns=clips.classes)
    oof.insert(0, "fold", fold)
    oof.insert(0, "filename", [clips.filenames[row] for row in val_rows])
    write_table(oof, out / "oof.csv")
    write_table(history, out / "history.csv")
    write_json(out / "metrics.json", metrics)
    shutil.rmtree(paths.work)

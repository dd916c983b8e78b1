"""The Keras callbacks of every fit (training and tuning): the exact val_auc in each epoch's
logs, a stop on a diverged loss, averaged weights for validation, resumable early stopping and
the work folder's bookkeeping. Imports Keras: import this module where a job trains."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import pandas as pd

from dawnchorus.artifacts import read_json_or_empty, write_json
from dawnchorus.learning.checkpoints import best_checkpoints
from dawnchorus.learning.fold_data import FoldData, TrainingError
from dawnchorus.learning.optimization import Hyperparameters

log = logging.getLogger(__name__)


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
        for checkpoint in best_checkpoints(self._work)[:-1]:
            checkpoint.unlink()

    on_train_end = on_epoch_begin


def epoch_callbacks(data: FoldData, hp: Hyperparameters, patience: int, inner: list) -> list:
    """Every fit's callbacks around `inner` (checkpoints, early stopping, logs): first the
    averaged weights in place (with training.ema_momentum), the exact val_auc in the epoch
    logs, a stop on a NaN loss and for reduce_on_plateau the callback that drives the learning
    rate; last the training weights back, so what comes after (the backup, the next epoch)
    has them."""
    use_averaged = UseAveragedWeights()
    first = [
        use_averaged,
        ValidationAUC(data.evaluate, data.clips.classes),
        StopOnNonFiniteLoss(),
    ]
    if hp.scheduler == "reduce_on_plateau":
        first.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_auc", mode="max", factor=0.5, patience=max(1, patience // 2)
            )
        )
    return [*first, *inner, RestoreTrainingWeights(use_averaged)]

"""What gradient descent runs with: the tuned hyperparameters, learning-rate schedules, the loss
and the optimizers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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

"""The classifier: a normalised log-mel crop in, one logit per class out.

Resizing to `model.image_size` and the grey-to-RGB adapter live inside the model, so training,
prediction and the exported model all see the same input: the (n_mels, frames, 1) crop from
`dataset.window_to_image`, in [0, 1].

Two heads (`model.head`):
  pool  the backbone's global average, dropout, one dense logit per class (the seed's model);
  sed   sound event detection: the backbone's feature map averaged over frequency gives a
        sequence of time frames; per frame, a class probability and an attention weight; the
        crop's probability is the attention-weighted mean of the frame probabilities. Trained on
        whole crops (weak labels), it says *when* in the crop a class calls: prediction pools the
        frames of each 5-s segment of a longer crop into that segment's row
        (`segment_probabilities`), the way BirdCLEF 2025's winners predicted.
Both end in logits, so losses, metrics and sigmoid-based code do not care which head is used.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

log = logging.getLogger(__name__)


def small_cnn(include_top=False, weights=None, input_shape=None, pooling="avg") -> keras.Model:
    """Five strided convolution blocks (about 60k weights), with EfficientNet-B0's stride (32),
    input range (0..255) and last layer names (`top_conv`, `top_bn`), so that every head and
    export path runs on it. Its training graph traces in seconds where EfficientNet-B0's takes
    half a minute on a CPU: for smoke runs of a new setup and the tests of plumbing; it learns
    far less. Keras Applications' signature; it has no pretrained weights."""
    if include_top or weights is not None:
        raise WeightsError("model.weights: small_cnn has no pretrained weights (use 'none')")
    images = keras.Input(shape=tuple(input_shape))
    x = layers.Rescaling(1 / 255.0, name="rescaling")(images)
    for block, filters in enumerate((16, 24, 32, 48, 64), start=1):
        x = layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"block{block}_conv"
        )(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.Activation("swish", name=f"block{block}_activation")(x)
    x = layers.Conv2D(128, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.Activation("swish", name="top_activation")(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(images, x, name="small_cnn")


BACKBONES = {"efficientnet_b0": keras.applications.EfficientNetB0, "small_cnn": small_cnn}
HEADS = ("pool", "sed")
KERAS_DROP_CONNECT = 0.2  # EfficientNet's stochastic depth rate in Keras Applications
SED_HIDDEN_UNITS = 256  # the per-frame layer before the two frame outputs
_PROBABILITY_FLOOR = 1e-6  # keeps a crop's logit finite where its probability reaches 0 or 1


class WeightsError(ValueError):
    """Pretrained weights cannot be loaded; the message says what to do."""


@contextlib.contextmanager
def _imagenet_weights_from(path: Path) -> Iterator[None]:
    """Make Keras take its "imagenet" weights from a local file instead of downloading them.

    Building with weights="imagenet" (rather than loading a file into a randomly initialised model)
    matters: only then does Keras add the input rescaling the ImageNet weights were trained with.
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file
    file_utils.get_file = lambda *args, **kwargs: str(path)
    try:
        yield
    finally:
        file_utils.get_file = original


def build_backbone(
    name: str, weights: str, input_shape: Sequence[int], pooling: str | None = "avg"
) -> keras.Model:
    """A headless backbone (global average pooling, or the feature map with pooling=None); it
    expects RGB in 0..255."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    constructor = BACKBONES[name]
    shape = tuple(input_shape)
    if name == "small_cnn" and weights != "none":
        raise WeightsError("model.weights: small_cnn has no pretrained weights (use 'none')")
    if weights == "none":
        return constructor(include_top=False, weights=None, input_shape=shape, pooling=pooling)
    if weights == "imagenet":
        try:
            return constructor(
                include_top=False, weights="imagenet", input_shape=shape, pooling=pooling
            )
        except Exception as error:  # urllib/HTTP/OS errors differ by platform; all mean "offline"
            raise WeightsError(
                f"could not download the ImageNet weights for {name} ({error}). On a machine "
                "with internet, download the Keras weights file (efficientnetb0_notop.h5) and "
                "set model.weights to its local path."
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"model.weights: file '{weights}' does not exist (use 'none', 'imagenet' or the "
            "path of a local weights file)"
        )
    try:
        with _imagenet_weights_from(path):
            return constructor(
                include_top=False, weights="imagenet", input_shape=shape, pooling=pooling
            )
    except Exception as error:
        raise WeightsError(f"model.weights: cannot load '{path}' into {name}: {error}") from None


@keras.saving.register_keras_serializable(package="dawnchorus")
class AttentionPooling(layers.Layer):
    """(batch, time, 2, classes) frame attention and logits -> the crop's logit per class."""

    def call(self, frames):
        probability = segment_probabilities(frames, 1)[:, 0, :]
        probability = ops.clip(probability, _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
        return ops.log(probability) - ops.log1p(-probability)


@keras.saving.register_keras_serializable(package="dawnchorus")
class FrequencyPosition(layers.Layer):
    """An image channel that holds each row's position on the frequency axis (0 at the lowest
    band, 1 at the highest; images have frequency upwards), the same for every input.

    Convolutions see patterns wherever they are; which band a call is in is a large part of
    which species it is, and without this the network can learn it only from the image borders.
    """

    def call(self, image):
        height = image.shape[1]
        rows = ops.reshape(ops.linspace(1.0, 0.0, height), (1, height, 1, 1))
        return ops.zeros_like(image) + ops.cast(rows, image.dtype)


def segment_probabilities(frames, segments: int):
    """(batch, time, 2, classes) SED frames -> (batch, segments, classes) probabilities.

    The time frames are split into `segments` consecutive groups; each group's probability is the
    mean of its frames' sigmoid probabilities weighted by softmax(tanh(attention)) within the
    group (PANNs' attention pooling). Matrix products only, so TFLite runs it as it is.
    """
    n_time = frames.shape[1]
    if n_time < segments:
        raise ValueError(f"{n_time} time frames cannot give {segments} segments")
    weights = ops.exp(ops.tanh(frames[:, :, 0, :]))  # bounded: no overflow, no max needed
    probability = ops.sigmoid(frames[:, :, 1, :])
    membership = np.zeros((n_time, segments), dtype="float32")
    membership[np.arange(n_time), np.arange(n_time) * segments // n_time] = 1.0
    # (batch, classes, time) @ (time, segments) -> (batch, classes, segments)
    weighted = ops.matmul(ops.transpose(weights * probability, (0, 2, 1)), membership)
    total = ops.matmul(ops.transpose(weights, (0, 2, 1)), membership)
    return ops.transpose(weighted / total, (0, 2, 1))


def _sed_frames(features, num_classes: int, dropout: float):
    """Backbone feature map (batch, freq, time, channels) -> (batch, time, 2, classes)."""
    n_freq, n_time, channels = features.shape[1:]
    x = layers.AveragePooling2D((n_freq, 1), name="mean_over_frequency")(features)
    x = layers.Reshape((n_time, channels), name="time_frames")(x)
    # a little temporal context per frame (max + mean over 3 frames, as PANNs)
    x = layers.Add(name="frame_context")(
        [
            layers.MaxPooling1D(3, strides=1, padding="same")(x),
            layers.AveragePooling1D(3, strides=1, padding="same")(x),
        ]
    )
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(SED_HIDDEN_UNITS, activation="relu", name="frame_dense")(x)
    x = layers.Dropout(dropout, name="frame_dropout")(x)
    outputs = []
    for name in ("frame_attention", "frame_logits"):
        frame = layers.Dense(num_classes, dtype="float32", name=name)(x)
        outputs.append(layers.Reshape((n_time, 1, num_classes), dtype="float32")(frame))
    return layers.Concatenate(axis=2, dtype="float32", name="sed_frames")(outputs)


def build_model(
    num_classes: int,
    input_shape: Sequence[int],
    image_size: Sequence[int],
    backbone: str = "efficientnet_b0",
    weights: str = "none",
    dropout: float = 0.2,
    bn_momentum: float | None = None,
    head: str = "pool",
    frequency_channel: bool = False,
    drop_connect: float | None = None,
) -> keras.Model:
    """Crop (n_mels, frames, 1) in [0, 1] -> resized, grey to RGB, backbone, head, logits.

    `frequency_channel` replaces the third copy of the grey image with `FrequencyPosition`.
    `drop_connect` rescales the backbone's stochastic depth (Keras: 0.2, reached by the last
    block; 0 turns it off, which speeds up short trainings on small data). The
    head computes in float32 under a mixed-precision policy. `bn_momentum` replaces the
    backbone's BatchNormalization momentum (0.99 in Keras): with few steps per epoch, as on a
    CPU, the moving statistics otherwise lag far behind the weights and validation looks random.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r} (known: {', '.join(HEADS)})")
    height, width = image_size
    inputs = keras.Input(shape=tuple(input_shape), name="log_mel_window")
    # antialias: shrinking 313 frames to a few dozen columns by plain bilinear sampling would skip
    # most frames, and with them short calls
    x = layers.Resizing(height, width, interpolation="bilinear", antialias=True, name="resize")(
        inputs
    )
    third = FrequencyPosition(name="frequency_position")(x) if frequency_channel else x
    x = layers.Concatenate(name="grey_to_rgb")([x, x, third])
    x = layers.Rescaling(255.0, name="to_0_255")(x)  # Keras' EfficientNet rescales 0..255 itself
    features = build_backbone(
        backbone, weights, (height, width, 3), pooling="avg" if head == "pool" else None
    )
    for layer in features.layers:
        if bn_momentum is not None and isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
        # stochastic depth: each residual block's "<block>drop" layer, its rate growing with depth
        if drop_connect is not None and layer.name.endswith("drop") and layer.name[:5] == "block":
            layer.rate = layer.rate * drop_connect / KERAS_DROP_CONNECT
    x = features(x)
    if head == "pool":
        x = layers.Dropout(dropout, name="dropout")(x)
        logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    else:
        logits = AttentionPooling(dtype="float32", name="logits")(
            _sed_frames(x, num_classes, dropout)
        )
    return keras.Model(inputs, logits, name=f"dawnchorus_{backbone}")


def frame_output(model: keras.Model):
    """The tensor prediction reads: SED frames (batch, time, 2, classes), or the pooled head's
    logits (batch, classes)."""
    logits = model.get_layer("logits")
    return logits.input if isinstance(logits, AttentionPooling) else logits.output


def frames_to_segments(frames, segments: int):
    """What `frame_output` gives -> (batch, segments, classes) probabilities."""
    if len(frames.shape) == 2:  # pooled head: one prediction for the whole crop
        if segments != 1:
            raise ValueError("a pooled-head model predicts whole crops: segments must be 1")
        return ops.sigmoid(frames)[:, None, :]
    return segment_probabilities(frames, segments)
